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
import os
import resource
import statistics
import subprocess
import sys
import time


def random_batch(config, batch, length, seed=0):
    """ids (B, L) among the sensor's channels, int64 µs timestamps with exponential gaps, labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    channels = config.pad_token_id if config.pad_token_id is not None else config.vocab_size
    gaps = rng.exponential(50.0, (batch, length)).astype(np.int64)
    return (
        rng.integers(0, channels, (batch, length)).astype(np.int32),
        np.cumsum(gaps, axis=1),
        np.ones((batch, length), np.int32),
        rng.integers(0, config.num_labels, batch).astype(np.int32),
    )


def _median_time(fn, args, repeats):
    import jax

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_device_bytes():
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def benchmark_one(preset, batch, length, repeats=3, modes=("forward", "step")):
    """Numbers for one preset and length in this process: seconds, events/s, memory."""
    import jax
    import jax.numpy as jnp
    import optax

    from eventlm.auto import AutoModelForSequenceClassification, config_class_for
    from eventlm.data.benchmark import xla_cost

    model_type, _, name = preset.rpartition(":")
    config = config_class_for(model_type or "eventssm").from_preset(name)
    model = AutoModelForSequenceClassification.from_config(config)
    ids, ts, mask, labels = random_batch(config, batch, length)
    # inside jit the timestamps are traced int32 (relative µs) and the gaps are taken in the trace
    times = jnp.asarray((ts - ts[:, :1]).astype("int32"))
    ids, mask, labels = jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(labels)
    row = {"preset": preset, "batch": batch, "length": length, "params": model.num_parameters()}

    if "forward" in modes:
        forward = jax.jit(lambda p, i, t, m: model(i, t, m, params=p).logits)
        args = (model.params, ids, times, mask)
        start = time.perf_counter()
        forward = forward.lower(*args).compile()
        jax.block_until_ready(forward(*args))
        row["forward_compile_s"] = time.perf_counter() - start
        row["forward_cost"] = xla_cost(forward)
        row["forward_s"] = _median_time(forward, args, repeats)
        row["forward_events_per_s"] = batch * length / row["forward_s"]

    if "step" in modes:
        opt = optax.adamw(1e-3, weight_decay=0.01)

        def loss_fn(p, i, t, m, y, key):
            return model(i, t, m, labels=y, params=p, train=True, dropout_rng=key).loss

        @jax.jit
        def step(p, opt_state, i, t, m, y, key):
            loss, grads = jax.value_and_grad(loss_fn)(p, i, t, m, y, key)
            updates, opt_state = opt.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        args = (model.params, opt.init(model.params), ids, times, mask, labels, jax.random.PRNGKey(0))
        lowered = step.lower(*args)
        start = time.perf_counter()
        compiled = lowered.compile()
        jax.block_until_ready(compiled(*args))
        row["step_compile_s"] = time.perf_counter() - start
        row["step_cost"] = xla_cost(compiled)
        row["step_s"] = _median_time(compiled, args, repeats)
        row["step_events_per_s"] = batch * length / row["step_s"]
        memory = compiled.memory_analysis()
        if memory is not None:
            row["xla_step_buffers_gb"] = (
                memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
                - memory.alias_size_in_bytes
            ) / 1e9

    device_peak = _peak_device_bytes()
    if device_peak is not None:
        row["peak_gb"], row["peak_kind"] = device_peak / 1e9, "device"
    else:  # ru_maxrss is in KiB on Linux
        row["peak_gb"], row["peak_kind"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, "RSS"
    return row


def run_isolated(preset, batch, length, repeats, modes):
    """benchmark_one in a fresh process (clean peak memory); None when it fails (e.g. out of memory)."""
    code = (
        "import json, sys; sys.path.insert(0, %r); import benchmark_model as b; "
        "print('ROW' + json.dumps(b.benchmark_one(%r, %d, %d, %d, %r)))"
        % (os.path.dirname(os.path.abspath(__file__)), preset, batch, length, repeats, tuple(modes))
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    rows = [line[3:] for line in result.stdout.splitlines() if line.startswith("ROW")]
    if result.returncode != 0 or not rows:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"  {preset} {batch}x{length}: failed ({tail[0]})", file=sys.stderr)
        return None
    return json.loads(rows[0])


def machine():
    import jax

    from eventlm.data.benchmark import machine_description

    host = machine_description()
    device = jax.devices()[0]
    return f"{host}; jax {jax.__version__} on {device.platform} ({getattr(device, 'device_kind', '')})"


def format_table(rows, title, peaks=None, busy=False):
    from eventlm.data.benchmark import achieved, format_peaks, format_rates

    def fmt(row, key, pattern):
        return pattern % row[key] if key in row else "-"

    def rates(row, mode):  # achieved GFLOP/s, GB/s (% of peak) of a mode's time
        cost = row.get(f"{mode}_cost")
        return format_rates(achieved(*cost, row[f"{mode}_s"]) if cost and f"{mode}_s" in row else None, peaks)

    lines = [
        f"Model benchmark — {title}",
        *([format_peaks(peaks, busy)] if peaks else []),
        "| preset | batch x length | params | forward s | forward events/s | forward achieved (% of peak) | step s | "
        "step events/s | step achieved (% of peak) | peak GB | XLA step buffers GB | compile s (fwd/step) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['batch']} x {row['length']:,} | {row['params']:,} | "
            f"{fmt(row, 'forward_s', '%.3f')} | {fmt(row, 'forward_events_per_s', '%.3g')} | {rates(row, 'forward')} | "
            f"{fmt(row, 'step_s', '%.3f')} | {fmt(row, 'step_events_per_s', '%.3g')} | {rates(row, 'step')} | "
            f"{fmt(row, 'peak_gb', '%.2f')} ({row.get('peak_kind', '')}) | {fmt(row, 'xla_step_buffers_gb', '%.2f')} | "
            f"{fmt(row, 'forward_compile_s', '%.1f')}/{fmt(row, 'step_compile_s', '%.1f')} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    from eventlm.data.benchmark import busy_neighbour, measure_peaks

    peaks = measure_peaks()  # what the host can do (before any busy neighbour starts)
    with busy_neighbour(args.busy_neighbour):
        rows = _run_all(args)
    print(format_table(rows, machine(), peaks, args.busy_neighbour))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peaks": peaks, "busy": args.busy_neighbour, "rows": rows}, f, indent=1)
    return rows


def _run_all(args):
    modes = tuple(m for m in args.modes.split(",") if m)
    rows = []
    for preset in args.presets.split(","):
        for length in (int(n) for n in args.lengths.split(",")):
            print(f"benchmarking {preset} at {args.batch} x {length} ...", file=sys.stderr, flush=True)
            if args.in_process:
                row = benchmark_one(preset, args.batch, length, args.repeats, modes)
            else:
                row = run_isolated(preset, args.batch, length, args.repeats, modes)
            if row is not None:
                rows.append(row)
    return rows


if __name__ == "__main__":
    main()
