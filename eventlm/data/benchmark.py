"""Data-path throughput: reading recordings, tokenizing and collating, in events per second.

`scripts/benchmark_data.py` prints the table; the functions here are what it (and its test) call.
The target (issue 3): tokenization >= 20 M events/s on one core, so data never holds training back.
"""

import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..resources import available_cpus, cpu_model

GB = 1e9  # bytes in every benchmark's "GB" and "GB/s" (decimal, as memory and bandwidth are quoted)

# The files of ../shared/realdata (see its SOURCES.md): how to read each, its preset, its event count.
REALDATA_FILES = {
    "tonic_test_data/sample_nmnist.bin": ({}, "nmnist", 4325),
    "tonic_test_data/sample.aedat4": ({}, "dvxplorer", 111954),
    "tonic_test_data/sample_stmnist.mat": ({}, "st-mnist", 2346),
    "expelliarmus/evt2_sample.raw": ({}, "prophesee-gen3", 539481),
    "aerzip_nas/130Hz_mono_64ch_ONOFF_addr2b_ts02.aedat": (
        {"format": "nas", "channels": 64, "address_bytes": 2, "tick_us": 0.2}, "nas-64-mono", 331949),
    "aerzip_nas/sound_mono_32ch_ONOFF_addr2b_ts02.aedat": (
        {"format": "nas", "channels": 32, "address_bytes": 2, "tick_us": 0.2}, "nas-32-mono", 49864),
}


def machine_description() -> str:
    """CPU model, core count and Python/numpy versions, for the table's title."""
    model = cpu_model()
    return f"{model}, {available_cpus()} core(s) in use, Python {platform.python_version()}, numpy {np.__version__}"


def pin_to_one_core() -> Optional[int]:
    """Run this process on one CPU core (Linux); returns the core, or None where unsupported. Every
    thread is pinned: sched_setaffinity(0) moves only the calling one, and BLAS / XLA start their
    worker threads at import."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    tasks = Path("/proc/self/task")
    for tid in ([int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else []) + [0]:
        try:
            os.sched_setaffinity(tid, {core})
        except OSError:  # a thread that ended meanwhile
            pass
    return core


# ----------------------------------------------------------------------------------------------------------
# the distance to the limit: the host's measured peaks, what a run achieved, quiet or busy
# ----------------------------------------------------------------------------------------------------------


def measure_peaks(matmul_size: int = 1024, copy_mb: int = 128, cache_mb: int = 4, repeats: int = 5) -> dict:
    """The host's measured peaks, best of `repeats` runs each: "gflops", a float32 matmul (numpy's BLAS with its
    default threads: every core) at 2·n³ operations; "gbps", a copy of a copy_mb MB array (np.copyto; bytes
    read + bytes written: memory); "cache_gbps", a float32 matrix-vector product over a cache_mb MB matrix on
    one BLAS thread, read again and again (bytes of the matrix: what one core reads from the caches when its
    data fit there, the bound of the streaming kernel, whose weights stay cached between chunks)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = (rng.random((matmul_size, matmul_size), dtype=np.float32) for _ in range(2))
    src = np.ones(copy_mb * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    cached = rng.random((cache_mb * 2**20 // 4 // 1024, 1024), dtype=np.float32)
    vector = rng.random(1024, dtype=np.float32)
    a @ b, np.copyto(dst, src)  # warm-up: BLAS threads, page faults
    matmul = min(_seconds(lambda: a @ b) for _ in range(repeats))
    copy = min(_seconds(lambda: np.copyto(dst, src)) for _ in range(repeats))
    with threadpool_limits(limits=1, user_api="blas"):
        cached @ vector  # (into the caches)
        passes = 20
        matvec = min(_seconds(lambda: [cached @ vector for _ in range(passes)]) for _ in range(repeats)) / passes
    return {"gflops": 2 * matmul_size**3 / matmul / 1e9, "gbps": 2 * src.nbytes / copy / GB,
            "cache_gbps": cached.nbytes / matvec / GB}


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def achieved(flops: float, nbytes: float, seconds: float) -> dict:
    """{"gflops", "gbps"}: the operation and byte rates of work done in `seconds`."""
    return {"gflops": flops / seconds / 1e9, "gbps": nbytes / seconds / GB}


def percent_of_peak(rates: dict, peaks: dict) -> dict:
    """{"gflops", "gbps"}: each achieved rate as a percentage of the measured peak of the same kind."""
    return {kind: 100.0 * rates[kind] / peaks[kind] for kind in ("gflops", "gbps")}


def format_rates(rates: Optional[dict], peaks: Optional[dict]) -> str:
    """"12.3 GFLOP/s 4.1% · 5.6 GB/s 2.0%" (the percentages of the peaks; "-" where a count is missing), and
    where the peaks hold a cache read rate, the bytes' rate as a percentage of it too: "(cache 8.5%)"."""
    if not rates:
        return "-"
    pct = percent_of_peak(rates, peaks) if peaks else None
    cache = f" (cache {100.0 * rates['gbps'] / peaks['cache_gbps']:.1f}%)" if peaks and peaks.get("cache_gbps") else ""
    parts = [f"{rates['gflops']:.2f} GFLOP/s" + (f" {pct['gflops']:.1f}%" if pct else ""),
             f"{rates['gbps']:.2f} GB/s" + (f" {pct['gbps']:.1f}%" if pct else "") + cache]
    return " · ".join(parts)


def format_peaks(peaks: dict, busy: bool) -> str:
    """The line naming the CPU, quiet or busy, and the measured peaks that the % columns divide by."""
    cache = (f", cache read {peaks['cache_gbps']:.1f} GB/s (one core, a float32 matrix-vector product over a matrix "
             "that stays in the caches)" if peaks.get("cache_gbps") else "")
    return (f"{cpu_model()}, {'busy (one busy-loop process beside the run)' if busy else 'quiet'}; peaks measured "
            f"before the run (no busy loop): float32 matmul {peaks['gflops']:.1f} GFLOP/s (all cores), memory copy "
            f"{peaks['gbps']:.1f} GB/s (one core, read + write){cache}")


def xla_cost(compiled):
    """(flops, bytes accessed) of a compiled XLA program (its cost_analysis; None where the backend gives none).
    XLA counts a loop's body once (a lax.scan's recurrence), so a program with loops gets a lower bound."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"]), float(cost.get("bytes accessed", 0.0))


@contextmanager
def busy_neighbour(enabled: bool = True):
    """One process spinning on a core for the duration of the block (a live pipeline never has the machine to
    itself): benchmarks report their numbers "busy" beside it, "quiet" without (their peaks are measured before
    it starts: the % columns say how far a figure is from what the host can do)."""
    if not enabled:
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def synthetic_stream(n_events: int, sensor_size=(128, 128, 2), seed: int = 0, dtype=None) -> np.ndarray:
    """A random sorted stream in tonic's DVSGesture layout (x, y int16, p bool, t int64), or SHD's (t, x, p)
    for a sensor with one row; `dtype` overrides the field layout."""
    rng = np.random.default_rng(seed)
    W, H, P = sensor_size
    if dtype is None:
        dtype = ([("t", "<i8"), ("x", "<i8"), ("p", "<i8")] if H == 1 else
                 [("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")])
    ev = np.empty(n_events, dtype)
    ev["t"] = np.cumsum(rng.integers(0, 20, n_events))  # µs, non-decreasing, with equal times
    ev["x"] = rng.integers(0, W, n_events)
    if "y" in ev.dtype.names:
        ev["y"] = rng.integers(0, H, n_events)
    ev["p"] = rng.integers(0, P, n_events) if P > 1 else 1  # tonic's SHD carries p = 1
    return ev


def events_per_second(fn: Callable[[], object], n_events: int, repeat: int = 5):
    """(wall, cpu): n_events / the median wall time and / the median CPU time of this process over
    `repeat` runs of fn() (after one warm-up). On a shared machine the CPU-time rate is the one-core
    figure; the wall-time rate also counts the time other processes held the core."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return n_events / max(float(np.median(wall)), 1e-12), n_events / max(float(np.median(cpu)), 1e-12)


def benchmark_synthetic(n_events: int = 1_000_000, repeat: int = 5, batch_size: int = 32):
    """Tokenization and collation of synthetic streams: rows of (what, data, events, (wall, cpu) events/s)."""
    from ..tokenization_events import EventTokenizer
    from .collator import EventCollator

    rows = []
    for preset in ("shd", "dvs-gesture"):
        tok = EventTokenizer.from_pretrained(preset)
        ev = synthetic_stream(n_events, tok.sensor_size)
        rate = events_per_second(lambda: tok(ev, return_tensors="np"), n_events, repeat)
        rows.append(("tokenize 1 stream", f"synthetic {preset}", n_events, rate))
        per = max(1, n_events // batch_size)
        fields = [f for f in ("t", "x", "y", "p") if f in ev.dtype.names]
        samples = [{**{f: ev[f][i * per:(i + 1) * per] for f in fields}, "label": i % 10} for i in range(batch_size)]
        collator = EventCollator(tok, pad_to_multiple_of=1024)
        rate = events_per_second(lambda: collator(samples), per * batch_size, repeat)
        rows.append((f"collate {batch_size} rows", f"synthetic {preset}", per * batch_size, rate))
    return rows


def benchmark_realdata(realdata_dir, repeat: int = 5):
    """Reading, tokenizing and collating each file of ../shared/realdata: rows as benchmark_synthetic."""
    from ..tokenization_events import EventTokenizer
    from .collator import EventCollator
    from .readers import read_events

    rows, folder = [], Path(realdata_dir)
    for rel, (options, preset, _) in REALDATA_FILES.items():
        path = folder / rel
        if not path.is_file():
            continue
        stream = read_events(path, **options)
        n = len(stream)
        rows.append(("read", rel, n, events_per_second(lambda: read_events(path, **options), n, repeat)))
        tok = EventTokenizer.from_pretrained(preset)
        rows.append(("tokenize", rel, n, events_per_second(lambda: tok(stream, return_tensors="np"), n, repeat)))
        collator = EventCollator(tok, pad_to_multiple_of=1024)
        batch = [stream.events] * 8
        rows.append(("collate 8 copies", rel, 8 * n, events_per_second(lambda: collator(batch), 8 * n, repeat)))
    return rows


def format_table(rows, machine: str) -> str:
    """A plain-text table of benchmark rows under a line naming the machine."""
    lines = [f"eventlm data benchmark on: {machine}", "",
             f"{'step':<18} {'data':<52} {'events':>10} {'M ev/s wall':>12} {'M ev/s CPU':>11}"]
    lines += [f"{what:<18} {data:<52} {n:>10,} {wall / 1e6:>12.1f} {cpu / 1e6:>11.1f}"
              for what, data, n, (wall, cpu) in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------
# audio → events (scripts/benchmark_audio.py)
# ----------------------------------------------------------------------------------------------------------


def spoken_digit_clips(n: int, sample_rate: int = 48000, seed: int = 0):
    """n eSpeak NG spoken digits (English and German, varied voices and speeds) resampled to sample_rate:
    [(name, float64 waveform)]."""
    from scipy.signal import resample_poly

    from .speech import synthesize

    rng = np.random.default_rng(seed)
    words = [("en", w) for w in "zero one two three four five six seven eight nine".split()] + \
            [("de", w) for w in "null eins zwei drei vier fünf sechs sieben acht neun".split()]
    clips = []
    for i in range(n):
        lang, word = words[i % len(words)]
        voice = f"{lang}+{rng.choice(['m1', 'm3', 'f2', 'f4'])}"
        wave, rate = synthesize(word, voice=voice, speed=int(rng.integers(130, 220)))
        g = np.gcd(sample_rate, rate)
        clips.append((f"{word} ({voice})", resample_poly(wave.astype(np.float64), sample_rate // g, rate // g)))
    return clips


def _lauscher_chain(wave, sample_rate, num_channels, seed):
    """lauscher's Wave2Spike stage by stage: (membrane, hair cell, events, seconds)."""
    from lauscher.audiowaves import MonoAudioWave
    from lauscher.transformations import BasilarMembrane, BushyCell, HairCell, HanningWindow, RmsNormalizer

    np.random.seed(seed)
    start = time.perf_counter()
    windowed = MonoAudioWave(wave.copy(), sample_rate).transform(RmsNormalizer(0.3)).transform(HanningWindow())
    membrane = windowed.transform(BasilarMembrane(channels=num_channels))
    hair = membrane.transform(HairCell())
    train = hair.transform(BushyCell())
    seconds = time.perf_counter() - start
    return membrane.channels, np.asarray(hair.channels), train, seconds


def _convert_one(args):
    from .audio import TRANSFER_CACHE, audio_to_events

    wave, sample_rate, num_channels, seed, shared, pad_to = args
    TRANSFER_CACHE.directory = shared  # as the converter's workers: transfer matrices from the shared folder
    return len(audio_to_events(wave, sample_rate, num_channels, seed, pad_to=pad_to))


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (lauscher's pool workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def benchmark_audio(clips, sample_rate: int, num_channels: int = 700, lauscher_clips: int = 1, workers: int = 2):
    """Seconds of audio per second of wall time (and of CPU time): lauscher and eventlm's chain on the same clips.

    Returns (rows, parity): rows of (what, clips, audio seconds, wall seconds, CPU seconds); parity: the
    largest |eventlm − lauscher| / max |lauscher| of the membrane and hair cell, and whether the events
    are equal (eventlm with lauscher's sampler and seed), over the clips lauscher ran on. On a shared
    machine the CPU-time rate is the better measure of the work done; the wall rate also counts waiting.
    """
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from . import audio as A
    from .audio_conversion import ChainOptions

    rows, parity = [], {"membrane": 0.0, "hair_cell": 0.0, "events_equal": True}
    audio_s = lambda cs: sum(len(w) for _, w in cs) / sample_rate

    def timed(label, cs, fn):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        fn()
        rows.append((label, len(cs), audio_s(cs), time.perf_counter() - wall, _cpu_seconds() - cpu))

    if lauscher_clips:
        subset = clips[:lauscher_clips]
        refs = []
        timed("lauscher 1.0.1 (its own process pool)", subset,
              lambda: refs.extend(_lauscher_chain(w, sample_rate, num_channels, seed=k) for k, (_, w) in enumerate(subset)))
        for k, ((_, wave), (membrane, hair, train, _)) in enumerate(zip(subset, refs)):
            velocity, rate = A.basilar_membrane(A.normalize_and_window(wave), sample_rate, num_channels)
            prob = A.hair_cell(velocity, rate)
            parity["membrane"] = max(parity["membrane"], float(np.abs(velocity - membrane).max() / np.abs(membrane).max()))
            parity["hair_cell"] = max(parity["hair_cell"], float(np.abs(prob - hair).max() / np.abs(hair).max()))
            ours = A.audio_to_events(wave, sample_rate, num_channels, seed=k, sampler="bernoulli")
            t_ref = np.rint(train.spike_times * 1e6).astype(np.int64)
            parity["events_equal"] &= bool(len(ours) == len(t_ref) and (ours["t"] == t_ref).all()
                                           and (ours["x"] == train.spike_labels).all())
    A.audio_to_events(np.sin(np.arange(256)), sample_rate, 4)  # compile the numba kernels outside the timings
    options = ChainOptions(sample_rate=sample_rate)  # the converter's default buckets
    pad_to, bucket = options.pad_to(), f"{options.bucket_seconds:g} s buckets"

    def each(sampler, pad):
        for k, (_, wave) in enumerate(clips):
            if pad is None:
                A.TRANSFER_CACHE.clear()
            A.audio_to_events(wave, sample_rate, num_channels, seed=k, sampler=sampler, pad_to=pad)

    timed("eventlm, 1 process, new length each clip (bucket 0)", clips, lambda: each("interval", None))
    # the converter's default: clips padded to a bucket share a transfer matrix (the first pass computes them)
    A.TRANSFER_CACHE.clear()
    timed(f"eventlm, 1 process, {bucket}, first pass", clips, lambda: each("interval", pad_to))
    for sampler in ("interval", "bernoulli"):
        timed(f"eventlm, 1 process, {bucket}, {sampler} sampler", clips, lambda: each(sampler, pad_to))
    if workers > 1:
        import tempfile

        with tempfile.TemporaryDirectory() as shared, \
                ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            # start the workers (imports, numba kernels, the shared transfer matrices) outside the timing
            list(pool.map(_convert_one, [(w, sample_rate, num_channels, 0, shared, pad_to) for _, w in clips]))
            jobs = [(w, sample_rate, num_channels, k, shared, pad_to) for k, (_, w) in enumerate(clips)]
            timed(f"eventlm, {workers} worker processes, {bucket}", clips, lambda: list(pool.map(_convert_one, jobs)))
        rows[-1] = rows[-1][:4] + (float("nan"),)  # the workers' CPU time is not this process's
    return rows, parity


def format_audio_table(rows, parity, machine: str, num_channels: int, sample_rate: int) -> str:
    """The audio benchmark's table: audio seconds per wall (and CPU) second, and the speed-up over lauscher."""
    per = lambda x, y: x / y if y > 0 else float("nan")  # a CPU time under the clock's tick reads 0
    ref = next(((per(a, w), per(a, c)) for what, _, a, w, c in rows if what.startswith("lauscher")), None)
    lines = [f"eventlm audio→events benchmark ({num_channels} channels, {sample_rate} Hz) on: {machine}", "",
             f"{'chain':<56} {'clips':>5} {'audio s':>8} {'wall s':>8} {'CPU s':>8} {'audio s/wall s':>15} "
             f"{'audio s/CPU s':>14} {'vs lauscher (wall, CPU)':>24}"]
    for what, n, a, w, c in rows:
        vs = f"{per(per(a, w), ref[0]):.0f}x, {per(per(a, c), ref[1]):.0f}x" if ref else "-"
        lines.append(f"{what:<56} {n:>5} {a:>8.2f} {w:>8.2f} {c:>8.2f} {per(a, w):>15.3f} {per(a, c):>14.3f} {vs:>24}")
    if parity is not None and ref is not None:
        lines += ["", f"parity with lauscher on its clips: membrane {parity['membrane']:.1e}, hair cell "
                      f"{parity['hair_cell']:.1e} (max |diff| / max |lauscher|); events equal with lauscher's "
                      f"sampler and seed: {parity['events_equal']}"]
    lines += ["", "CPU s: this process and its finished child processes (lauscher's pool); not measured for our "
                  "live worker pool (nan)."]
    return "\n".join(lines)
