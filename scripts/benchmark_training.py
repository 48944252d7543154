#!/usr/bin/env python
"""Speed and memory of one training step (forward + backward + AdamW update) of eventlm's loop.

    python scripts/benchmark_training.py                          # shd, ssc, dvs-gesture at the paper's batch sizes
    python scripts/benchmark_training.py --presets shd --batch_size 4 --seq_len 1024 --steps 3    # small

For each preset: the paper's model (EventSSMConfig.from_preset), a random batch of full-length event
sequences (tokens inside the sensor's channels, realistic µs gaps), and the jitted, data-parallel train
step that `eventlm.training.Trainer` runs (two AdamW groups, gradient accumulation of the preset). Reports
compile time, median step time, steps/s, events/s and peak memory (device peak where the backend reports
it, else the process's peak resident memory; each preset runs in its own process so peaks do not mix).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# the paper's per-device batch and padded length of a training step (reference configs/task/*.yaml)
PAPER = {"shd": (32, 8192), "ssc": (64, 8192), "dvs-gesture": (16, 65536), "tiny": (16, 8192),
         "synthetic": (32, 512)}


def _batch(config, batch_size, seq_len, num_labels, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    channels = config.pad_token_id  # tokens 0..pad-1 are the sensor's channels
    gaps = rng.exponential(50.0, (batch_size, seq_len)).astype(np.int64)  # µs
    return {
        "input_ids": rng.integers(0, channels, (batch_size, seq_len)).astype(np.int32),
        "timestamps": np.cumsum(gaps, axis=1).astype(np.int32),
        "attention_mask": np.ones((batch_size, seq_len), np.int32),
        "labels": rng.integers(0, num_labels, batch_size).astype(np.int32),
    }


def run_one(preset, batch_size, seq_len, steps, accumulation):
    """Benchmark one preset in this process; returns a dict of numbers."""
    import jax

    from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig
    from eventlm.models.eventssm.modeling_flax_eventssm import FlaxEventSSMForSequenceClassification
    from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, TASK_PRESETS, resolve_presets
    from eventlm.training.trainer import Trainer

    spec = TASK_PRESETS[preset]["model"]
    config = EventSSMConfig.from_preset(spec["preset"], **spec.get("overrides", {}))
    model = FlaxEventSSMForSequenceClassification(config, seed=0)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps + 1,
                                 report_to="none", disable_tqdm=True)
        resolve_presets(ModelArguments(preset=preset), DataArguments(), args)
        if accumulation is not None:
            args.gradient_accumulation_steps = accumulation
        trainer = Trainer(model, args, train_dataset=[None] * (batch_size * jax.device_count()), task="classification")
        trainer.optimizer = trainer.create_optimizer()
        trainer.state = trainer.init_state()
        step_fn = trainer._build_train_step()
        global_batch = batch_size * jax.device_count()
        batch = trainer.parallel.shard_batch(_batch(config, global_batch, seq_len, config.num_labels))
        t0 = time.perf_counter()
        state, metrics = step_fn(trainer.state, batch)
        jax.block_until_ready(metrics["loss"])
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            state, metrics = step_fn(state, batch)
            jax.block_until_ready(metrics["loss"])
            times.append(time.perf_counter() - t0)
        trainer.close()
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        peak, source = stats["peak_bytes_in_use"], "device peak_bytes_in_use"
    else:
        peak, source = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"
    median = statistics.median(times)
    return {
        "preset": preset, "device": f"{jax.device_count()} x {device.device_kind}", "per_device_batch": batch_size,
        "global_batch": global_batch, "seq_len": seq_len, "parameters": model.num_parameters(),
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "compile_s": round(compile_s, 2),
        "step_s_median": round(median, 4), "steps_per_s": round(1.0 / median, 3),
        "events_per_s": round(global_batch * seq_len / median, 1), "peak_memory_gb": round(peak / 2**30, 3),
        "memory_source": source, "loss": float(metrics["loss"]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["shd", "ssc", "dvs-gesture"], choices=sorted(PAPER))
    parser.add_argument("--batch_size", type=int, default=None, help="per-device batch (default: the paper's)")
    parser.add_argument("--seq_len", type=int, default=None, help="padded events per sample (default: the paper's)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the compiling one")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        batch, length = PAPER[args._child]
        result = run_one(args._child, args.batch_size or batch, args.seq_len or length, args.steps,
                         args.gradient_accumulation_steps)
        print("RESULT " + json.dumps(result), flush=True)
        return result
    results = []
    for preset in args.presets:
        cmd = [sys.executable, os.path.abspath(__file__), "--_child", preset, "--steps", str(args.steps)]
        for flag in ("batch_size", "seq_len", "gradient_accumulation_steps"):
            if getattr(args, flag) is not None:
                cmd += [f"--{flag}", str(getattr(args, flag))]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            tail = (proc.stderr or proc.stdout)[-1500:]
            results.append({"preset": preset, "error": tail.strip().splitlines()[-1] if tail.strip() else "failed"})
            print(f"{preset}: failed\n{tail}", file=sys.stderr)
            continue
        results.append(json.loads(line[7:]))
    header = f"{'preset':12} {'batch':>6} {'length':>7} {'params':>9} {'compile s':>9} {'step s':>8} {'steps/s':>8} " \
             f"{'events/s':>11} {'peak GB':>8}"
    print(header)
    for r in results:
        if "error" in r:
            print(f"{r['preset']:12} error: {r['error']}")
            continue
        print(f"{r['preset']:12} {r['global_batch']:>6} {r['seq_len']:>7} {r['parameters']:>9,} {r['compile_s']:>9.1f} "
              f"{r['step_s_median']:>8.3f} {r['steps_per_s']:>8.3f} {r['events_per_s']:>11,.0f} {r['peak_memory_gb']:>8.2f}")
    if results and "device" in results[0]:
        print(f"device: {results[0]['device']}; memory: {results[0]['memory_source']}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
