"""Benchmark eventlm's data path: reading, tokenization and collation in events/s.

    python scripts/benchmark_data.py [--events 1000000] [--repeat 5] [--realdata ../shared/realdata] [--all-cores]

Runs on one CPU core unless --all-cores (the target: tokenization >= 20 M events/s on one core).
"""

import argparse
from pathlib import Path

from eventlm.data.benchmark import (benchmark_realdata, benchmark_synthetic, format_table, machine_description,
                                    pin_to_one_core)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events per synthetic stream")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--realdata", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "realdata",
                        help="folder of real recordings (skipped when absent)")
    parser.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    args = parser.parse_args(argv)
    if not args.all_cores:
        pin_to_one_core()
    rows = benchmark_synthetic(args.events, args.repeat)
    if args.realdata.is_dir():
        rows += benchmark_realdata(args.realdata, args.repeat)
    else:
        print(f"(no real recordings at {args.realdata}: synthetic streams only)")
    print(format_table(rows, machine_description()))
    return rows


if __name__ == "__main__":
    main()
