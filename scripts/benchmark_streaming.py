"""Benchmark EventSSM streaming: batch-1 per-event latency and chunked throughput with the state carried.

    python scripts/benchmark_streaming.py [--presets shd dvs-gesture] [--chunks 1 16 64 256]
        [--events 120000] [--realdata ../shared/realdata] [--one-core] [--implementations cpu-kernel xla]
        [--busy-neighbour]

Prints a table naming the machine, quiet or busy, the measured peaks (float32 matmul, memory copy) and beside
each time the achieved GFLOP/s and GB/s as % of them (see eventlm/models/eventssm/streaming_benchmark.py).
"""

import argparse
from pathlib import Path

from eventlm.data.benchmark import busy_neighbour, machine_description, measure_peaks, pin_to_one_core
from eventlm.models.eventssm.streaming_benchmark import benchmark_streaming, format_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["shd", "dvs-gesture"], help="EventSSMConfig presets")
    parser.add_argument("--chunks", nargs="+", type=int, default=[1, 16, 64, 256], help="chunk lengths (events)")
    parser.add_argument("--events", type=int, default=120_000, help="events per stream")
    parser.add_argument("--latency-steps", type=int, default=300, help="timed single-event steps")
    parser.add_argument("--max-chunks", type=int, default=400, help="timed chunks per chunk length")
    realdata = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
    parser.add_argument("--realdata", type=Path, default=realdata, help="folder of real recordings (skipped when absent)")
    parser.add_argument("--one-core", action="store_true", help="pin the process to one CPU core")
    parser.add_argument("--implementations", nargs="+", default=["auto"], choices=["auto", "cpu-kernel", "xla"],
                        help="streaming step(s) to time (auto: the faster one on this machine, measured once)")
    parser.add_argument("--busy-neighbour", action="store_true",
                        help="run one busy-loop process beside the benchmark (peaks included), killed after")
    args = parser.parse_args(argv)
    if args.one_core:
        pin_to_one_core()
    realdata = args.realdata if args.realdata.is_dir() else None
    if realdata is None:
        print(f"(no real recordings at {args.realdata}: random streams only)")
    peaks = measure_peaks()  # what the host can do (before any busy neighbour starts)
    with busy_neighbour(args.busy_neighbour):
        results = benchmark_streaming(args.presets, realdata, args.chunks, args.events, args.latency_steps,
                                      args.max_chunks, implementations=args.implementations)
    print(format_table(results, machine_description(), peaks, args.busy_neighbour))
    return results


if __name__ == "__main__":
    main()
