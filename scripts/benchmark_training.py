#!/usr/bin/env python
"""Speed and memory of one training step (forward + backward + AdamW update) of eventlm's loop.

    python scripts/benchmark_training.py                          # shd, ssc, dvs-gesture at the paper's batch sizes
    python scripts/benchmark_training.py --presets shd --batch_size 4 --seq_len 1024 --steps 3    # small

For each task preset: its model (the preset's model_type and from_preset), a random batch of full-length event
sequences (tokens inside the sensor's channels, realistic µs gaps), and the jitted, data-parallel train
step that `eventlm.training.Trainer` runs (two AdamW groups, gradient accumulation of the preset). Reports
compile time, median step time, steps/s, events/s and peak memory (device peak where the backend reports
it, else the process's peak resident memory; each preset runs in its own process so peaks do not mix).
"""

import argparse
import json
import sys

from eventlm.training.benchmark import PAPER_STEP, format_training_table, run_isolated


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--presets", nargs="+", default=["shd", "ssc", "dvs-gesture"], choices=sorted(PAPER_STEP))
    parser.add_argument("--batch_size", type=int, default=None, help="per-device batch (default: the paper's)")
    parser.add_argument("--seq_len", type=int, default=None, help="padded events per sample (default: the paper's)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the compiling one")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = []
    for preset in args.presets:  # each in its own process: peaks do not mix
        batch, length = PAPER_STEP[preset]
        result = run_isolated("benchmark_training_step", preset, args.batch_size or batch, args.seq_len or length,
                              args.steps, args.gradient_accumulation_steps)
        results.append(result if result is not None else {"preset": preset, "error": "failed (see above)"})
    print(format_training_table(results))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
