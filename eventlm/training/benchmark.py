"""Model and training-step benchmarks (the logic of scripts/benchmark_model.py and scripts/benchmark_training.py).

`benchmark_model_one`: a model alone, jitted forward and forward + backward + AdamW step, per preset and
length, with XLA's cost analysis (achieved GFLOP/s and GB/s against the host's measured peaks) and memory.
`benchmark_training_step`: the data-parallel train step that `eventlm.training.Trainer` runs (its optimizer
groups and the task preset's gradient accumulation). Both on random batches of full-length event sequences
(tokens inside the sensor's channels, exponential µs gaps); each configuration may run in its own process
(`run_isolated`) so that peak memories do not mix.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

import numpy as np

from ..data.benchmark import GB

# the paper's per-device batch and padded length of a training step (reference configs/task/*.yaml)
PAPER_STEP = {"shd": (32, 8192), "ssc": (64, 8192), "dvs-gesture": (16, 65536), "tiny": (16, 8192),
              "synthetic": (32, 512)}


def random_batch(config, batch: int, length: int, seed: int = 0) -> dict:
    """input_ids (B, L) among the sensor's channels (below the pad token), int64 µs timestamps with
    exponential gaps (mean 50 µs), a full attention mask and random labels."""
    rng = np.random.default_rng(seed)
    channels = config.pad_token_id if config.pad_token_id is not None else config.vocab_size
    gaps = rng.exponential(50.0, (batch, length)).astype(np.int64)
    return {"input_ids": rng.integers(0, channels, (batch, length)).astype(np.int32),
            "timestamps": np.cumsum(gaps, axis=1),
            "attention_mask": np.ones((batch, length), np.int32),
            "labels": rng.integers(0, config.num_labels, batch).astype(np.int32)}


def _median_time(fn, args, repeats: int) -> float:
    import jax

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory() -> tuple:
    """(bytes, kind): the device's peak where the backend reports it (GPU/TPU), else this process's peak RSS."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if stats.get("peak_bytes_in_use") is not None:
        return stats["peak_bytes_in_use"], "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "RSS"  # ru_maxrss: KiB on Linux


def benchmark_model_one(preset: str, batch: int, length: int, repeats: int = 3,
                        modes: Sequence[str] = ("forward", "step")) -> dict:
    """Numbers for one preset ("name" of EventSSM or "model_type:name") and length in this process."""
    import jax
    import jax.numpy as jnp
    import optax

    from ..auto import AutoModelForSequenceClassification, config_class_for
    from ..data.benchmark import xla_cost

    model_type, _, name = preset.rpartition(":")
    config = config_class_for(model_type or "eventssm").from_preset(name)
    model = AutoModelForSequenceClassification.from_config(config)
    data = random_batch(config, batch, length)
    # inside jit the timestamps are traced int32 (relative µs) and the gaps are taken in the trace
    ts = data["timestamps"]
    times = jnp.asarray((ts - ts[:, :1]).astype("int32"))
    ids, mask, labels = (jnp.asarray(data[k]) for k in ("input_ids", "attention_mask", "labels"))
    row = {"preset": preset, "batch": batch, "length": length, "params": model.num_parameters()}

    def timed(mode, fn, args):
        start = time.perf_counter()
        compiled = fn.lower(*args).compile()
        jax.block_until_ready(compiled(*args))
        row[f"{mode}_compile_s"] = time.perf_counter() - start
        row[f"{mode}_cost"] = xla_cost(compiled)
        row[f"{mode}_s"] = _median_time(compiled, args, repeats)
        row[f"{mode}_events_per_s"] = batch * length / row[f"{mode}_s"]
        return compiled

    if "forward" in modes:
        timed("forward", jax.jit(lambda p, i, t, m: model(i, t, m, params=p).logits), (model.params, ids, times, mask))
    if "step" in modes:
        opt = optax.adamw(1e-3, weight_decay=0.01)

        def loss_fn(p, i, t, m, y, key):
            return model(i, t, m, labels=y, params=p, train=True, dropout_rng=key).loss

        @jax.jit
        def step(p, opt_state, i, t, m, y, key):
            loss, grads = jax.value_and_grad(loss_fn)(p, i, t, m, y, key)
            updates, opt_state = opt.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        compiled = timed("step", step, (model.params, opt.init(model.params), ids, times, mask, labels,
                                        jax.random.PRNGKey(0)))
        memory = compiled.memory_analysis()
        if memory is not None:
            row["xla_step_buffers_gb"] = (memory.temp_size_in_bytes + memory.argument_size_in_bytes
                                          + memory.output_size_in_bytes - memory.alias_size_in_bytes) / GB
    peak, row["peak_kind"] = peak_memory()
    row["peak_gb"] = peak / GB
    return row


def benchmark_training_step(preset: str, batch_size: int, seq_len: int, steps: int,
                            accumulation: Optional[int] = None) -> dict:
    """One task preset's train step as the Trainer builds it (its model_type, optimizer groups, gradient
    accumulation), timed over `steps` steps after the compiling one, in this process."""
    import jax

    from ..auto import AutoModelForSequenceClassification, config_class_for
    from .arguments import TASK_PRESETS, DataArguments, ModelArguments, TrainingArguments, resolve_presets
    from .trainer import Trainer

    spec = TASK_PRESETS[preset]["model"]
    config = config_class_for(spec["model_type"]).from_preset(spec["preset"], **spec.get("overrides", {}))
    model = AutoModelForSequenceClassification.from_config(config, seed=0)
    global_batch = batch_size * jax.device_count()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps + 1,
                                 report_to="none", disable_tqdm=True)
        resolve_presets(ModelArguments(preset=preset), DataArguments(), args)
        if accumulation is not None:
            args.gradient_accumulation_steps = accumulation
        trainer = Trainer(model, args, train_dataset=[None] * global_batch, task="classification")
        trainer.optimizer = trainer.create_optimizer()
        trainer.state = trainer.init_state()
        step_fn = trainer._build_train_step()
        data = random_batch(config, global_batch, seq_len)
        data["timestamps"] = data["timestamps"].astype(np.int32)
        batch = trainer.parallel.shard_batch(data)
        start = time.perf_counter()
        state, metrics = step_fn(trainer.state, batch)
        jax.block_until_ready(metrics["loss"])
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            state, metrics = step_fn(state, batch)
            jax.block_until_ready(metrics["loss"])
            times.append(time.perf_counter() - start)
        trainer.close()
    peak, kind = peak_memory()
    median = statistics.median(times)
    device = jax.devices()[0]
    return {
        "preset": preset, "device": f"{jax.device_count()} x {device.device_kind}", "per_device_batch": batch_size,
        "global_batch": global_batch, "seq_len": seq_len, "parameters": model.num_parameters(),
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "compile_s": round(compile_s, 2),
        "step_s_median": round(median, 4), "steps_per_s": round(1.0 / median, 3),
        "events_per_s": round(global_batch * seq_len / median, 1), "peak_memory_gb": round(peak / GB, 3),
        "memory_source": "device peak_bytes_in_use" if kind == "device" else "process peak RSS",
        "loss": float(metrics["loss"]),
    }


def run_isolated(function: str, *args) -> Optional[dict]:
    """`function(*args)` of this module in a fresh Python process (clean peak memory); None when it fails (e.g.
    out of memory), with the failure's last line on stderr."""
    code = f"import json; from eventlm.training import benchmark as b; print('ROW' + json.dumps(b.{function}(*{args!r})))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    rows = [line[3:] for line in result.stdout.splitlines() if line.startswith("ROW")]
    if result.returncode != 0 or not rows:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"  {function}{args}: failed ({tail[0]})", file=sys.stderr)
        return None
    return json.loads(rows[0])


def machine() -> str:
    """The host (CPU model, cores) and the JAX device."""
    import jax

    from ..data.benchmark import machine_description

    device = jax.devices()[0]
    return f"{machine_description()}; jax {jax.__version__} on {device.platform} ({getattr(device, 'device_kind', '')})"


def format_model_table(rows, title: str, peaks: Optional[dict] = None, busy: bool = False) -> str:
    """The model benchmark's table: times, events/s, achieved rates as % of the host's peaks, memory."""
    from ..data.benchmark import achieved, format_peaks, format_rates

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


def format_training_table(results) -> str:
    """The training-step benchmark's table (one line per preset, errors named)."""
    lines = [f"{'preset':12} {'batch':>6} {'length':>7} {'params':>9} {'compile s':>9} {'step s':>8} {'steps/s':>8} "
             f"{'events/s':>11} {'peak GB':>8}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['preset']:12} error: {r['error']}")
            continue
        lines.append(f"{r['preset']:12} {r['global_batch']:>6} {r['seq_len']:>7} {r['parameters']:>9,} "
                     f"{r['compile_s']:>9.1f} {r['step_s_median']:>8.3f} {r['steps_per_s']:>8.3f} "
                     f"{r['events_per_s']:>11,.0f} {r['peak_memory_gb']:>8.2f}")
    ok = [r for r in results if "device" in r]
    if ok:
        lines.append(f"device: {ok[0]['device']}; memory: {ok[0]['memory_source']}")
    return "\n".join(lines)
