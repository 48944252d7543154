"""Streaming speed: batch-1 per-event latency and chunked throughput with the stream state carried.

`scripts/benchmark_streaming.py` prints the table; the functions here are what it (and its test) call.
Issue 5's target: chunked throughput with state carried ≥ 5× the reference implementation's stateless
chunked throughput on the same machine (the issue quotes ~100–123 k events/s for its DVS model at
256-event chunks and 54–124 k for its SHD model at 64-event chunks on a 2-core box).
Chunks shorter than the reference's total subsampling (16 events): its forward takes no such input (its
pooling keeps complete windows only, so a 16-event chunk reaches no last-stage position), so its stateless
loop gives at best one prediction per 256 (DVS) or 64 (SHD, SSC) events. Issue 14 compares a 16-event chunk
rate with that loop at its own chunk, its best rate (the strict comparison); a stateless update every 16
events would re-run it over the last 256 / 64 events, i.e. its rate × 16/256 or × 16/64.

Every step is timed as a live sensor would see it: `stream(...)` from host numpy arrays to the
prediction ready on the host side (`block_until_ready`), chunk after chunk with the state carried.
Rates are given over wall time (median of the per-chunk times) and over this process's CPU time: on a
shared machine the wall rate also counts time other processes held the cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import jax
import numpy as np

from ...data.benchmark import REALDATA_FILES, achieved, format_peaks, format_rates, machine_description, xla_cost
from . import modeling_flax_eventssm as modeling
from . import streaming_cpu_kernel as cpu_kernel
from ... import streaming
from .configuration_eventssm import EventSSMConfig

PRESET_DATA = {  # which recordings of ../shared/realdata feed which preset (events as they come, tokens remapped)
    "shd": ["aerzip_nas/130Hz_mono_64ch_ONOFF_addr2b_ts02.aedat", "aerzip_nas/sound_mono_32ch_ONOFF_addr2b_ts02.aedat"],
    "dvs-gesture": ["tonic_test_data/sample.aedat4", "expelliarmus/evt2_sample.raw"],
}


def random_stream(config: EventSSMConfig, n_events: int, seed: int = 0, max_gap_us: int = 20):
    """Random channel tokens (no special ones) and int64 µs timestamps with gaps in [0, max_gap_us)."""
    rng = np.random.default_rng(seed)
    channels = config.vocab_size - 3
    return rng.integers(0, channels, n_events), np.cumsum(rng.integers(0, max_gap_us, n_events)).astype(np.int64)


def recording_stream(config: EventSSMConfig, path, options: Optional[dict] = None, max_events: Optional[int] = None):
    """A recording's events as (tokens, timestamps): the sensor's own tokens (a tokenizer for its size,
    downsampled until its channels fit the model's), with the recording's real timing."""
    from ...data.readers import read_events
    from ...tokenization_events import EventTokenizer

    recording = read_events(path, **(options or {}))
    w, h, _ = recording.sensor_size
    factor = 1
    while True:
        tok = EventTokenizer(sensor_size=recording.sensor_size, downsample=factor)
        if tok.num_channels <= config.vocab_size - 3:
            break
        factor += 1
    ids, ts, _ = tok.encode_stream(recording.events[:max_events] if max_events else recording.events)
    return ids.astype(np.int64), ts


def _sync(out):
    jax.block_until_ready(out.logits)


def per_event_latency(model, ids, ts, steps: int = 300, warmup: int = 20, implementation: str = "auto"):
    """p50 / p99 µs (wall) and mean µs (CPU time of this process) of single-event `stream` steps."""
    state = streaming.init_stream(model, 1)
    n = min(steps + warmup, len(ids))
    wall, cpu = [], []
    for k in range(n):
        w, c = time.perf_counter(), time.process_time()
        out, state = streaming.stream(model, ids[k:k + 1][None], ts[k:k + 1][None], state,
                                      implementation=implementation)
        _sync(out)
        if k >= warmup:
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    wall = np.asarray(wall) * 1e6
    return {"p50_us": float(np.percentile(wall, 50)), "p99_us": float(np.percentile(wall, 99)),
            "cpu_us": float(np.mean(cpu) * 1e6)}


def chunked_throughput(model, ids, ts, chunk: int, max_chunks: int = 400, warmup: int = 3,
                       implementation: str = "auto"):
    """Events/s of `stream` over consecutive chunks of `chunk` events with the state carried:
    chunk / median wall time per chunk, and events / CPU time of this process."""
    state = streaming.init_stream(model, 1)
    count = min(len(ids) // chunk, max_chunks + warmup)
    wall, cpu_total, events = [], 0.0, 0
    for k in range(count):
        a = k * chunk
        w, c = time.perf_counter(), time.process_time()
        out, state = streaming.stream(model, ids[a:a + chunk][None], ts[a:a + chunk][None], state,
                                      implementation=implementation)
        _sync(out)
        if k >= warmup:
            wall.append(time.perf_counter() - w)
            cpu_total += time.process_time() - c
            events += chunk
    return {"events_per_s": chunk / float(np.median(wall)), "events_per_cpu_s": events / max(cpu_total, 1e-12),
            "chunks": len(wall)}


def benchmark_model(model, streams: dict, chunks: Sequence[int] = (1, 16, 64, 256), latency_steps: int = 300,
                    max_chunks: int = 400, implementations: Sequence[str] = ("auto",)):
    """Rows (what, data, implementation, numbers) for one model over named (ids, ts) streams and
    `stream` implementations ("auto", "cpu-kernel", "xla"; "auto" is named by what it ran)."""
    rows, costs = [], {}
    for implementation in implementations:
        for data, (ids, ts) in streams.items():
            latency = per_event_latency(model, ids, ts, latency_steps, implementation=implementation)
            ran = model.stream_implementation  # "auto": what it ran
            latency["rates"] = _rates(model, ran, 1, latency["p50_us"] / 1e6, costs)
            rows.append(("1-event latency", data, ran, latency))
            for chunk in chunks:
                rate = chunked_throughput(model, ids, ts, chunk, max_chunks, implementation=implementation)
                ran = model.stream_implementation
                rate["rates"] = _rates(model, ran, chunk, chunk / rate["events_per_s"], costs)
                rows.append((f"chunks of {chunk}", data, ran, rate))
    return rows


def step_work(model, implementation: str, chunk: int, batch: int = 1):
    """(flops, bytes) of one `stream` call on a chunk of `chunk` events: the kernel's count of its work
    (`streaming_cpu_kernel.work_per_chunk`), or the XLA step's cost analysis at the chunk's bucket (None where
    the backend gives none)."""
    streamer = streaming.streamer_for(model)
    if implementation == "cpu-kernel":
        flops, nbytes = cpu_kernel.work_per_chunk(model.config, chunk, model.task, streamer.layout.size)
        return batch * flops, batch * nbytes
    state = streaming.init_stream(model, batch)
    bucket = streaming._bucket(chunk, streaming.BUCKETS)
    lowered = streamer.step.lower(streamer.constants, (state.buffer, state.logits), np.zeros((batch, bucket), np.int32),
                                  np.zeros((batch, bucket), np.float32), np.full(batch, chunk, np.int32))
    return xla_cost(lowered.compile())


def _rates(model, implementation, chunk, seconds, costs):
    """achieved() of one call of `seconds` (step_work kept in `costs` per step and chunk)."""
    if (implementation, chunk) not in costs:
        costs[(implementation, chunk)] = step_work(model, implementation, chunk)
    work = costs[(implementation, chunk)]
    return achieved(*work, seconds) if work else None


def benchmark_streaming(presets: Sequence[str] = ("shd", "dvs-gesture"), realdata_dir=None,
                        chunks: Sequence[int] = (1, 16, 64, 256), n_events: int = 120_000, latency_steps: int = 300,
                        max_chunks: int = 400, seed: int = 0, config_overrides: Optional[dict] = None,
                        implementations: Sequence[str] = ("auto",)):
    """{preset: rows}: randomly initialised classification models of the presets (speed does not depend
    on the weights) on a random stream and on the realdata recordings of their kind."""
    results = {}
    for preset in presets:
        config = EventSSMConfig.from_preset(preset, **(config_overrides or {}))
        model = modeling.FlaxEventSSMForSequenceClassification(config, seed=seed)
        streams = {"random": random_stream(config, n_events, seed)}
        if realdata_dir is not None:
            for rel in PRESET_DATA.get(preset, []):
                path = Path(realdata_dir) / rel
                if path.is_file():
                    streams[rel] = recording_stream(config, path, REALDATA_FILES[rel][0], n_events)
        results[preset] = benchmark_model(model, streams, chunks, latency_steps, max_chunks, implementations)
    return results


def format_table(results: dict, machine: Optional[str] = None, peaks: Optional[dict] = None, busy: bool = False) -> str:
    """A plain-text table of benchmark_streaming's results under lines naming the machine, quiet or busy and
    the measured peaks (`data.benchmark.measure_peaks`); beside each time, the achieved GFLOP/s and GB/s and
    their percentages of the peaks."""
    machine = machine or machine_description()
    lines = [f"eventlm streaming benchmark (batch 1, state carried) on: {machine}, jax {jax.__version__} "
             f"({jax.default_backend()})"]
    if peaks:
        lines.append(format_peaks(peaks, busy))
    lines += ["", f"{'preset':<12} {'data':<52} {'step':<11} {'measure':<16} {'result':>36}   achieved (% of peak)"]
    for preset, rows in results.items():
        for what, data, implementation, r in rows:
            if "p50_us" in r:
                value = f"p50 {r['p50_us']:,.0f} µs  p99 {r['p99_us']:,.0f} µs  cpu {r['cpu_us']:,.0f} µs"
            else:
                value = f"{r['events_per_s']:>10,.0f} ev/s  {r['events_per_cpu_s']:>10,.0f} ev/cpu-s"
            lines.append(f"{preset:<12} {data:<52} {implementation:<11} {what:<16} {value:>36}   "
                         f"{format_rates(r.get('rates'), peaks)}")
    return "\n".join(lines)


__all__ = ["benchmark_streaming", "benchmark_model", "step_work", "per_event_latency", "chunked_throughput", "random_stream",
           "recording_stream", "format_table", "PRESET_DATA"]
