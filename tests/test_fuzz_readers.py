"""Seeded fuzz of every `read_events` format (issue 15): mutated recordings read cleanly or raise the
documented error family (`EventDataError`, a ValueError), never another exception, a crash (signal),
a hang or a structurally invalid stream.

Small valid files of each format are built here (as tests/test_readers.py does), mutated with a fixed
seed (bit flips, truncation, inserted / deleted byte runs, extreme words, header field edits), and read
in one worker subprocess (restarted after a crash or hang) under an address-space limit, so a signal, a
hang or a huge allocation is counted instead of taking pytest down. AEDAT4 has no writer here: its seed
file is the first packets of ../shared/realdata's sample.aedat4, skipped where that folder is absent.

`python tests/test_fuzz_readers.py` prints the table of outcomes per format.
"""

import json
import os
import queue
import re
import struct
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

SEED = 15
MUTANTS = 100  # per format
ITEM_TIMEOUT_S = 20  # one read; the first also waits for the worker's imports
OUTCOMES = ("ok", "clean", "other", "invalid", "crash", "hang")
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


# --------------------------------------------------------------------------------------------
# Seed files: name -> (file name, bytes, read_events options, header end, binary header fields)
# A binary field is (offset, struct format) that the header-field mutation overwrites.
# --------------------------------------------------------------------------------------------

def _events(rng, n, W, H, t_max=10**6):
    return np.sort(rng.integers(0, t_max, n)), rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)


def _nmnist(rng):
    t, x, y, p = _events(rng, 60, 34, 34, 2**23)
    return "a.bin", np.stack([x, y, p << 7 | t >> 16, (t >> 8) & 255, t & 255], 1).astype(np.uint8).tobytes(), {}, 0, []


def _aedat4(rng):
    src = REALDATA / "tonic_test_data" / "sample.aedat4"
    if not src.is_file():
        return None
    data = bytearray(src.read_bytes())
    (hsize,) = struct.unpack_from("<i", data, 14)
    end = 18 + hsize
    for _ in range(3):  # the first three packets (events, IMU, events)
        end += 8 + struct.unpack_from("<i", data, end + 4)[0]
    table = data.index(struct.pack("<q", 945_243))  # IOHeader.dataTablePosition: now the end of the file
    data[table:table + 8] = struct.pack("<q", end)
    body = 18 + hsize
    return ("a.aedat4", bytes(data[:end]), {}, body,
            [(14, "<i"), (table, "<q"), (table - 4, "<i"), (body, "<i"), (body + 4, "<i"), (body + 8, "<i")])


def _evt2(rng):
    import expelliarmus

    t, x, y, p = _events(rng, 200, 640, 480)
    arr = np.zeros(len(t), [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    arr["t"], arr["x"], arr["y"], arr["p"] = t, x, y, p
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        expelliarmus.Wizard(encoding="evt2").save(f"{d}/a.raw", arr)
        data = Path(f"{d}/a.raw").read_bytes()
    return "a.raw", data, {}, data.rindex(b"\n%") + 1 if b"\n%" in data else 0, []


def _evt3(rng):
    t, x, y, p = _events(rng, 200, 64, 48, 3 * 10**7)
    words = []
    for ti, xi, yi, pi in zip(t, x, y, p):
        words += [0x8000 | (ti >> 12) & 0xFFF, 0x6000 | ti & 0xFFF, yi, 0x2000 | pi << 11 | xi]
    head = b"% evt 3.0\n% geometry 64x48\n"
    return "a.raw", head + np.array(words, "<u2").tobytes(), {}, len(head), []


def _dat(rng):
    t, x, y, p = _events(rng, 150, 304, 240, 2**33)
    ev = np.empty(len(t), [("ts", "<u4"), ("data", "<u4")])
    ev["ts"], ev["data"] = t & 0xFFFFFFFF, x | y << 14 | p << 28
    head = b"% Data file containing CD events\n% Version 2\n% Width 304\n% Height 240\n"
    return "a.dat", head + bytes([0, 8]) + ev.tobytes(), {}, len(head) + 2, [(len(head), "<B"), (len(head) + 1, "<B")]


def _aedat2(rng):
    t, x, y, p = _events(rng, 150, 128, 128)
    raw = np.empty(len(t), [("addr", ">u4"), ("ts", ">u4")])
    raw["addr"], raw["ts"] = (127 - x) << 1 | y << 8 | (1 - p), t
    head = b"#!AER-DAT2.0\r\n# Data format is int32 address, int32 timestamp\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n"
    return "a.aedat", head + raw.tobytes(), {}, len(head), []


def _aedat3(rng):
    hdr = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                    ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
    body, fields = b"", []
    head = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    for _ in range(2):
        t, x, y, p = _events(rng, 60, 128, 128, 2**31)
        ev = np.empty(len(t), [("data", "<u4"), ("ts", "<i4")])
        ev["data"], ev["ts"] = x << 17 | y << 2 | p << 1 | 1, t
        h = np.zeros(1, hdr)
        h["type"], h["size"], h["capacity"], h["number"], h["valid"] = 1, 8, len(t), len(t), len(t)
        at = len(head) + len(body)
        fields += [(at, "<h"), (at + 4, "<i"), (at + 12, "<i"), (at + 16, "<i")]
        body += h.tobytes() + ev.tobytes()
    return "a.aedat", head + body, {}, len(head) + 28, fields


def _nas(rng):
    t, ch, _, p = _events(rng, 150, 32, 1, 2**32)
    raw = np.empty(len(t), [("addr", ">u2"), ("ts", ">u4")])
    raw["addr"], raw["ts"] = ch * 2 + (1 - p), t
    return "a.aedat", raw.tobytes(), {"format": "nas", "channels": 32}, 0, []


def _stmnist(rng):
    import io

    import scipy.io

    n = 60
    st = np.zeros((101, n))
    st[rng.integers(0, 100, n), np.arange(n)] = rng.choice([-1.0, 1.0], n)
    st[100] = np.sort(rng.integers(0, 2_000_000, n)) / 1e6
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"spiketrain": st})
    return "a.mat", buf.getvalue(), {}, 128, [(124, "<H"), (126, "<H"), (128, "<I"), (132, "<I"), (136, "<I"),
                                              (140, "<I"), (152, "<I"), (156, "<I"), (160, "<I"), (168, "<I")]


def _table(rng):
    t, x, y, p = _events(rng, 80, 40, 30)
    return t, x, y, p


def _npy(rng):
    import io

    t, x, y, p = _table(rng)
    arr = np.zeros(len(t), [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
    arr["t"], arr["x"], arr["y"], arr["p"] = t, x, y, p
    buf = io.BytesIO()
    np.save(buf, arr)
    data = buf.getvalue()
    return "a.npy", data, {}, data.index(b"\n") + 1, [(8, "<H")]


def _npz(rng):
    import io

    t, x, y, p = _table(rng)
    buf = io.BytesIO()
    np.savez(buf, t=t, x=x, y=y, p=p)
    data = buf.getvalue()
    local = [m.start() for m in re.finditer(b"PK\x03\x04", data)]
    central = [m.start() for m in re.finditer(b"PK\x01\x02", data)]
    fields = [(o + k, "<I") for o in local[:2] for k in (14, 18, 22)] + [(o + k, "<I") for o in central[:2] for k in (20, 24, 42)]
    return "a.npz", data, {}, 120, fields


def _csv(rng):
    t, x, y, p = _table(rng)
    lines = ["t,x,y,p"] + [f"{a},{b},{c},{d}" for a, b, c, d in zip(t, x, y, p)]
    return "a.csv", ("\n".join(lines) + "\n").encode(), {}, 8, []


SEEDS = {"nmnist": _nmnist, "aedat4": _aedat4, "evt2": _evt2, "evt3": _evt3, "dat": _dat, "aedat2": _aedat2,
         "aedat3": _aedat3, "nas": _nas, "stmnist": _stmnist, "npy": _npy, "npz": _npz, "csv": _csv}


# --------------------------------------------------------------------------------------------
# Mutations (seeded)
# --------------------------------------------------------------------------------------------

_EXTREMES = (0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, 255, 65_535, 10**9)


def _pack(fmt, value):
    size = struct.calcsize(fmt)
    return (value % (1 << 8 * size)).to_bytes(size, "big" if fmt[0] == ">" else "little")


MUTATIONS = ("bit-flips", "truncation", "insertion", "deletion", "extreme-word", "header-number", "header-field")


def mutate(rng, data: bytes, header_end: int, fields):
    """One mutant of `data`: a seeded choice of bit flips, truncation, an inserted or deleted run, an
    extreme aligned word, a number in a text header replaced, or a binary header field overwritten.
    Returns (bytes, the kind of mutation)."""
    b = bytearray(data)
    n = len(b)
    kind = int(rng.integers(0, 7))
    done = MUTATIONS[kind]
    if kind == 0:  # 1-8 bit flips, anywhere
        for pos in rng.integers(0, n, rng.integers(1, 9)):
            b[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncation
        del b[int(rng.integers(0, n)):]
    elif kind == 2:  # an inserted run of random bytes
        pos = int(rng.integers(0, n + 1))
        b[pos:pos] = rng.integers(0, 256, rng.integers(1, 65), dtype=np.uint8).tobytes()
    elif kind == 3:  # a deleted run
        pos = int(rng.integers(0, n))
        del b[pos:pos + int(rng.integers(1, 65))]
    elif kind == 4:  # an extreme aligned 4-byte word (0xFFFFFFFF, 0, ...) in the data
        pos = int(rng.integers(header_end // 4, max(n // 4, header_end // 4 + 1))) * 4
        b[pos:pos + 4] = _pack("<i", int(rng.choice(_EXTREMES)))[:max(0, n - pos)]
    elif kind == 5 and header_end and re.search(rb"\d+", bytes(b[:header_end])):  # a header number replaced
        numbers = list(re.finditer(rb"\d+", bytes(b[:header_end])))
        m = numbers[int(rng.integers(0, len(numbers)))]
        b[m.start():m.end()] = str(int(rng.choice(_EXTREMES))).encode()
    elif fields:  # a binary header field set to an extreme value
        done = "header-field"
        off, fmt = fields[int(rng.integers(0, len(fields)))]
        b[off:off + struct.calcsize(fmt)] = _pack(fmt, int(rng.choice(_EXTREMES)))
    else:  # no header fields: 16 random bytes overwritten at the start
        done = "first-16-bytes"
        b[:16] = rng.integers(0, 256, min(16, n), dtype=np.uint8).tobytes()
    return bytes(b), done


def write_mutants(folder: Path, formats=None, mutants: int = MUTANTS):
    """Every format's seed file (as format 'seed-<name>') and its seeded mutants under `folder`; returns
    [(format, path, options)]."""
    cases = []
    for name, build in SEEDS.items():
        if formats and name not in formats:
            continue
        rng = np.random.default_rng([SEED, list(SEEDS).index(name)])
        seed = build(rng)
        if seed is None:
            continue
        fname, data, options, header_end, fields = seed
        (folder / f"{name}_seed{Path(fname).suffix}").write_bytes(data)
        cases.append((f"seed-{name}", str(folder / f"{name}_seed{Path(fname).suffix}"), options))
        for i in range(mutants):
            mutant, kind = mutate(rng, data, header_end, fields)
            path = folder / f"{name}_{i:03d}_{kind}{Path(fname).suffix}"
            path.write_bytes(mutant)
            cases.append((name, str(path), options))
    return cases


def found_cases(folder: Path):
    """What the fuzz found before the fixes, as fixed cases ('found-<format>'): a Prophesee header cut inside a
    '%' line (expelliarmus waited forever, EVT2 and DAT) and AEDAT4 size words (the aedat package allocated
    4 GiB: an abort under a memory cap)."""
    (folder / "cut.raw").write_bytes(b"% evt 2.0\n% serial_number ")
    (folder / "cut.dat").write_bytes(b"% Data file containing CD events\n% Width 3")
    cases = [("found-evt2", str(folder / "cut.raw"), {}), ("found-dat", str(folder / "cut.dat"), {})]
    seed = _aedat4(None)
    if seed is not None:
        for offset, value in ((14, 2**32 - 1), (seed[3] + 4, 2**32 - 1), (seed[3] + 4, 2**31)):
            data = bytearray(seed[1])
            data[offset:offset + 4] = struct.pack("<I", value)
            (folder / f"size{offset}_{value}.aedat4").write_bytes(bytes(data))
            cases.append(("found-aedat4", str(folder / f"size{offset}_{value}.aedat4"), {}))
    return cases


# --------------------------------------------------------------------------------------------
# The worker (a subprocess) and the runner
# --------------------------------------------------------------------------------------------

def _limit_memory(extra_bytes=3 << 30):
    """Address space capped at what the worker uses now plus `extra_bytes` (a claimed 242 GiB is a
    MemoryError counted as 'other', not a machine out of memory)."""
    try:
        import resource

        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ImportError, OSError, StopIteration, ValueError):
        pass


def classify(path, options):
    """'ok' (a stream that keeps the schema's promises), 'clean' (the documented error family) or
    'other' / 'invalid' with a detail."""
    from eventlm.data.events import EVENT_DTYPE
    from eventlm.data.readers import read_events

    try:
        family = __import__("eventlm.errors", fromlist=["EventDataError"]).EventDataError
    except ImportError:  # before the shared error class existed: ValueError was the documented family
        family = ValueError
    try:
        s = read_events(path, **options)
    except BaseException as err:  # noqa: BLE001 -- classify everything, pyo3 panics included
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(err, family) and Path(path).name in str(err):
            return "clean", f"{type(err).__name__}: {str(err)[:300]}"
        return "other", f"{type(err).__module__}.{type(err).__name__}: {str(err)[:200]}"
    e, (W, H, P) = s.events, s.sensor_size
    problems = [msg for bad, msg in (
        (e.dtype != EVENT_DTYPE, f"dtype {e.dtype}"),
        (e.size and (np.diff(e["t"]) < 0).any(), "t not sorted"),
        (e.size and e["t"].min() < 0, "negative t"),
        (e.size and (e["x"].min() < 0 or e["x"].max() >= W), f"x outside {W}"),
        (e.size and (e["y"].min() < 0 or e["y"].max() >= H), f"y outside {H}"),
        (e.size and (e["p"].min() < 0 or e["p"].max() >= max(P, 2)), f"p outside {P}"),
    ) if bad]
    return ("invalid", "; ".join(problems)) if problems else ("ok", "")


def _worker(manifest, start):
    cases = json.loads(Path(manifest).read_text())
    if any(not options.get("_probe") for _, _, options in cases[start:]):
        import eventlm.data.readers  # noqa: F401 -- imports before the memory cap and the first timeout
        import expelliarmus  # noqa: F401
        import scipy.io  # noqa: F401
        import tonic  # noqa: F401

    _limit_memory()
    print("ready", flush=True)
    for i in range(start, len(cases)):
        _, path, options = cases[i]
        probe = options.get("_probe")  # the runner's own test: a crash, a hang, an answer
        if probe == "crash":
            os.kill(os.getpid(), 11)
        if probe == "hang":
            threading.Event().wait(600)
        outcome, detail = ("clean", "") if probe else classify(path, options)
        print(json.dumps([i, outcome, detail]), flush=True)


def run_cases(cases, tmp: Path, item_timeout=ITEM_TIMEOUT_S):
    """Read every case in a worker subprocess; returns {index: (outcome, detail)}, a crash (signal) or a
    hang (no answer within item_timeout) charged to the case being read, the worker restarted after it."""
    manifest = tmp / "cases.json"
    manifest.write_text(json.dumps(cases))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]),
               JAX_PLATFORMS="cpu", OMP_NUM_THREADS="1")
    results, start = {}, 0
    while start < len(cases):
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(manifest), str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put(None)], daemon=True).start()
        timeout, current = 180, start  # imports first
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                proc.kill()
                proc.wait()
                results[current] = ("hang", f"no answer in {timeout} s")
                break
            if line is None:
                code = proc.wait()
                if current < len(cases):
                    results[current] = ("crash", f"worker exited with {code} (signal {-code})" if code < 0
                                        else f"worker exited with {code}")
                break
            if line.strip() != "ready":
                i, outcome, detail = json.loads(line)
                results[i] = (outcome, detail)
                current = i + 1
            timeout = item_timeout
        start = current + 1 if current in results else current
    return results


def table(cases, results, by="format"):
    """{format (or mutation kind, by="mutation"): Counter of outcomes} of the mutants."""
    counts = {}
    for i, (name, path, _) in enumerate(cases):
        if name.startswith(("seed-", "found-")):
            continue
        key = name if by == "format" else Path(path).stem.split("_")[-1]
        counts.setdefault(key, Counter())[results[i][0]] += 1
    return counts


def format_table(counts) -> str:
    rows = [f"{'':14} {'probes':>6} " + " ".join(f"{o:>7}" for o in OUTCOMES)]
    total = Counter()
    for name, c in counts.items():
        total.update(c)
        rows.append(f"{name:14} {sum(c.values()):6} " + " ".join(f"{c[o]:7}" for o in OUTCOMES))
    rows.append(f"{'all':14} {sum(total.values()):6} " + " ".join(f"{total[o]:7}" for o in OUTCOMES))
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    cases = write_mutants(tmp) + found_cases(tmp)
    results = run_cases(cases, tmp)
    print("\n" + format_table(table(cases, results)) + "\n" + format_table(table(cases, results, by="mutation")))
    return cases, results


def test_seed_files_read_cleanly(fuzz):
    cases, results = fuzz
    seeds = {name: results[i] for i, (name, _, _) in enumerate(cases) if name.startswith("seed-")}
    assert len(seeds) >= len(SEEDS) - 1 and all(outcome == "ok" for outcome, _ in seeds.values()), seeds


@pytest.mark.parametrize("name", list(SEEDS))
def test_mutants_read_or_raise_the_documented_error(fuzz, name):
    cases, results = fuzz
    mine = [(cases[i][1], results[i]) for i in range(len(cases)) if cases[i][0] == name]
    if not mine:
        pytest.skip(f"no seed file for {name} (AEDAT4's comes from {REALDATA}, absent here)")
    bad = [(Path(p).name, r) for p, r in mine if r[0] not in ("ok", "clean")]
    assert not bad, f"{len(bad)} of {len(mine)} {name} mutants: {bad[:5]}"


def test_found_by_fuzzing_are_clean_errors(fuzz):
    """Regressions the fuzz found (see found_cases): read in the same worker, clean errors now."""
    cases, results = fuzz
    found = {Path(cases[i][1]).name: results[i] for i in range(len(cases)) if cases[i][0].startswith("found-")}
    assert len(found) >= 2 and all(outcome == "clean" for outcome, _ in found.values()), found
    assert "has no end" in found["cut.raw"][1] and "has no end" in found["cut.dat"][1]


def test_the_fuzz_catches_a_crash_and_a_hang(tmp_path):
    """The runner itself: a worker killed by a signal and one that stops answering are both counted."""
    cases = [("x", str(tmp_path / "a"), {"_probe": "crash"}), ("x", str(tmp_path / "b"), {"_probe": "hang"}),
             ("x", str(tmp_path / "c"), {"_probe": "answer"})]
    results = run_cases(cases, tmp_path, item_timeout=3)
    assert [results[i][0] for i in range(3)] == ["crash", "hang", "clean"], results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        _worker(sys.argv[2], int(sys.argv[3]))
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            cases = write_mutants(Path(d), formats=sys.argv[1:] or None)
            results = run_cases(cases, Path(d))
            print(format_table(table(cases, results)) + "\n\n" + format_table(table(cases, results, by="mutation")))
