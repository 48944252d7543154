#!/usr/bin/env python
"""Speed and memory of a model alone: jitted forward and training step, per preset and length.

    python scripts/benchmark_model.py                                   # shd, ssc, dvs-gesture; 32 x 2k/8k/32k
    python scripts/benchmark_model.py --presets shd --lengths 2048 --batch 4 --repeats 2      # small
    python scripts/benchmark_model.py --presets spike-driven-transformer:dvs-gesture --lengths 65536 --batch 2

Presets are EventSSM's by default, or "model_type:preset" for another backbone.

For every preset and padded length: a random batch of full-length event sequences (tokens inside the
sensor's channels, exponential µs gaps), then the median time of
  forward  — model(..., params=p) in evaluation mode, jitted;
  step     — forward + backward + AdamW update (train=True, dropout on), jitted, as a user's loop runs it;
events/s = batch · length / time, and the peak memory: the device's peak where the backend reports it
(GPU/TPU), else the process's peak resident memory (each configuration runs in its own process unless
--in-process, so peaks do not mix), beside XLA's own estimate of the step's buffers. Beside each time: the
achieved GFLOP/s and GB/s from the compiled program's cost analysis (a lower bound where it loops: XLA counts a
loop body once) as % of the host's peaks measured in this run (eventlm.data.benchmark.measure_peaks); the
title names the CPU and says quiet or busy (--busy-neighbour: one busy-loop process beside the whole run).
"""

import argparse
import json
import sys

from eventlm.data.benchmark import busy_neighbour, measure_peaks
from eventlm.training.benchmark import benchmark_model_one, format_model_table, machine, run_isolated


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--presets", default="shd,ssc,dvs-gesture", help="comma-separated preset names")
    parser.add_argument("--lengths", default="2048,8192,32768", help="comma-separated padded lengths")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--modes", default="forward,step", help="forward and/or step")
    parser.add_argument("--in-process", action="store_true", help="run everything in this process (peaks mix)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--busy-neighbour", action="store_true",
                        help="run one busy-loop process beside the whole benchmark (peaks included), killed after")
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    peaks = measure_peaks()  # what the host can do (before any busy neighbour starts)
    rows = []
    with busy_neighbour(args.busy_neighbour):
        for preset in args.presets.split(","):
            for length in (int(n) for n in args.lengths.split(",")):
                print(f"benchmarking {preset} at {args.batch} x {length} ...", file=sys.stderr, flush=True)
                run = (lambda *a: benchmark_model_one(*a)) if args.in_process else \
                    (lambda *a: run_isolated("benchmark_model_one", *a))
                row = run(preset, args.batch, length, args.repeats, modes)
                if row is not None:
                    rows.append(row)
    print(format_model_table(rows, machine(), peaks, args.busy_neighbour))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peaks": peaks, "busy": args.busy_neighbour, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
