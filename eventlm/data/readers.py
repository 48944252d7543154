"""Recording readers: one file of a neuromorphic sensor -> `EventStream(events, sensor_size)`.

`read_events(path, format=None, **options)` returns the events as an EVENT_DTYPE structured array
(t int64 µs, x/y int16, p int8), sorted by t, and the sensor size (W, H, P) the recording implies.

Formats (name: reader, sensor size):

- ``nmnist``  N-MNIST / N-Caltech101 40-bit ``.bin``: tonic.io.read_mnist_file; (34, 34, 2) unless
  ``sensor_size=`` says otherwise (N-Caltech101 is an ATIS, (240, 180, 2)).
- ``aedat4``  iniVation AEDAT 4.0: the ``aedat`` package (what tonic.io.read_aedat4 uses); the
  width and height of the events stream in the file's header.
- ``evt2``, ``dat``  Prophesee RAW EVT 2.0 and DAT: expelliarmus.Wizard. ``evt3`` Prophesee RAW
  EVT 3.0: decoded here with numpy by the Prophesee spec, because expelliarmus 1.1.12 counts every
  backward step of TIME_LOW as a wrap and adds 4096 µs each time (its own evt3 sample comes out
  54 ms long instead of 8.8 ms; its EVT3 writer is broken too, upstream issue #20). Sensor:
  ``sensor_size=`` if given, else the ``% geometry WxH`` / ``% format EVT3;width=;height=`` /
  ``% Width`` ``% Height`` header lines, else the camera plugin name (Gen3: 640x480, Gen4 /
  IMX636: 1280x720), else the smallest sensor that holds the events.
- ``aedat``   jAER AEDAT 2.0 (DVS128 and DAVIS chips named by the ``# AEChip:`` line, decoded as
  jAER's extractors do: x mirrored, y counting from the bottom; APS/IMU samples and special/trigger
  words dropped) and AEDAT 3.x (valid polarity events of every polarity packet, libcaer layout).
  Written here with numpy: tonic's per-chip decoders transpose DVS128 x/y and keep APS/IMU words.
- ``nas``     Neuromorphic Auditory Sensor (FPGA cochlea) jAER-style ``.aedat``: big-endian address
  (2 or 4 bytes) + big-endian uint32 timestamp, optional ``#`` header lines. Written here with numpy
  (no library reads it). Address layout (pyNAVIS): address = ear·C·2 + channel·2 + polarity bit,
  polarity bit 0 = ON (positive half-wave), 1 = OFF; without ON/OFF streams address = ear·C + channel.
  Events: x = channel, y = ear (0 left, 1 right), p = 1 for ON and 0 for OFF; sensor (C, 2 if stereo
  else 1, 2 if on_off else 1). Options: ``channels`` (C, required), ``address_bytes`` (2 | 4,
  default 2), ``tick_us`` (µs per timestamp tick, default 0.2: MATLAB/aerzip recordings; jAER's
  are 1), ``stereo`` (default False), ``on_off`` (default True).
- ``stmnist`` ST-MNIST ``.mat`` (scipy.io.loadmat, variable ``spiketrain``: rows 0..99 taxels
  +1/-1/0, row 100 time in s): x = taxel % 10, y = taxel // 10 (as tonic), p = 1 for +1 and 0 for
  -1; times to µs rounded down (after rounding to the ns, so 0.2 s is 200000 µs, not 199999).
- ``npy``, ``npz``, ``csv``  events already in a table: a structured ``.npy`` with fields t, x, [y],
  [p]; an ``.npz`` with arrays t, x, [y], [p] (or one structured array); a ``.csv`` whose first row
  names the columns. Never unpickled. Sensor from ``sensor_size=``, else the smallest that fits.

Policies, the same for every format:

- Timestamps are the file's own, in µs (absolute for AEDAT4, whatever the recorder wrote
  elsewhere); negative ones are an error. Events are sorted by t with a stable sort, so a file whose
  timestamps step back (several AEDAT 3 packet sources, a timestamp reset) still reads, with the
  events of equal time in file order. 32-bit timestamps that wrap around (jAER 2.0, NAS) are unwrapped.
- A well-formed file that holds no events (a header and nothing else, like tonic's
  ``sample_aedat_header.aedat``) reads as an empty stream with the sensor its header names.
- A truncated or corrupt file, coordinates outside the sensor, an unknown format or an option the
  format does not take raise ValueError / TypeError naming the file, the field and the value.
"""

import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from .events import EventStream, as_events, check_sensor_size, sensor_size_of

__all__ = ["read_events", "guess_format", "KNOWN_FORMATS"]

KNOWN_FORMATS = ("nmnist", "aedat4", "evt2", "evt3", "dat", "aedat", "nas", "stmnist", "npy", "npz", "csv")
_ALIASES = {"aedat2": "aedat", "aedat3": "aedat", "jaer": "aedat", "aedat40": "aedat4", "mat": "stmnist",
            "evt20": "evt2", "evt30": "evt3"}
_EXTENSIONS = {".bin": "nmnist", ".aedat4": "aedat4", ".dat": "dat", ".mat": "stmnist",
               ".npy": "npy", ".npz": "npz", ".csv": "csv"}  # .raw and .aedat: decided by the header
_PROPHESEE_PLUGINS = (("gen4", (1280, 720)), ("imx636", (1280, 720)), ("gen3", (640, 480)))
_NAS_HELP = ("pass format='nas' with channels=<frequency channels, e.g. 64>, address_bytes=2|4, "
             "tick_us=<µs per tick, 0.2 for MATLAB/aerzip recordings, 1 for jAER>, stereo=True|False "
             """(on the command line: --format nas --reader-options '{"channels": 64, "address_bytes": 2, """
             """"tick_us": 0.2}')""")


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------

def read_events(path, format: Optional[str] = None, **options) -> EventStream:
    """Read one recording into `EventStream(events, sensor_size)` (see the module docstring).

    path: the file. format: one of KNOWN_FORMATS, or None to guess it from the extension and the
    header (.bin, .aedat4, .raw, .dat, .mat, .npy, .npz, .csv, and .aedat with a '#!AER-DAT'
    header; a headerless .aedat needs format='nas'). options: the format's own (module docstring).
    Returns events sorted by t (stable) as EVENT_DTYPE and the sensor size (W, H, P).
    Raises FileNotFoundError for a missing file, ValueError for an unknown format, a corrupt file
    or events outside the sensor, TypeError for an option the format does not take.
    """
    path = _existing_file(path)
    fmt = guess_format(path) if format is None else _format_name(format)
    reader, allowed = _READERS[fmt]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no options"
        raise TypeError(f"read_events(format='{fmt}') got unexpected option(s) {unknown}; it takes {takes}")
    if options.get("sensor_size") is not None:  # checked before the file is read
        options["sensor_size"] = _sensor_option(options["sensor_size"], path)
    try:
        fields, sensor = reader(path, **options)
    except (TypeError, OSError):
        raise
    except ValueError as err:  # ours name the file; a library's (e.g. UnicodeDecodeError) may not
        if str(path) in str(err):
            raise
        raise ValueError(f"{path} (format '{fmt}'): not a readable {fmt} file ({type(err).__name__}: {err})") from err
    except BaseException as err:  # a library's own failure (BadZipFile, EOFError, a pyo3 PanicException)
        if not isinstance(err, Exception) and type(err).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        raise ValueError(f"{path} (format '{fmt}'): not a readable {fmt} file, truncated or corrupt "
                         f"({type(err).__name__}: {err})") from err
    sensor = check_sensor_size(sensor, path)
    try:
        events = as_events(fields, sensor, sort=True)
    except ValueError as err:
        raise ValueError(f"{path} (format '{fmt}', sensor {sensor}): {err}") from err
    return EventStream(events, sensor)


def guess_format(path) -> str:
    """The format name read_events would use for `path` (extension, then header where needed)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext == ".raw":
        return _prophesee_raw_encoding(path, _prophesee_header(path)[0])
    if ext == ".aedat":
        with open(path, "rb") as f:
            start = f.read(9)
        if start == b"#!AER-DAT":
            return "aedat"
        raise ValueError(
            f"{path} is a .aedat file without a '#!AER-DAT' header (it starts with {start!r}), so its "
            f"layout cannot be guessed: it may be a headerless Neuromorphic Auditory Sensor recording; "
            f"if so, {_NAS_HELP}"
        )
    raise ValueError(
        f"cannot guess the format of {path} from its extension {ext!r}; pass format= one of "
        f"{', '.join(KNOWN_FORMATS)} (extensions: .bin .aedat4 .raw .dat .aedat .mat .npy .npz .csv)"
    )


def _format_name(format) -> str:
    if not isinstance(format, str):
        raise TypeError(f"format must be a string such as 'evt3', got {type(format).__name__}")
    name = re.sub(r"[-_. ]", "", format.lower())
    name = _ALIASES.get(name, name)
    if name not in KNOWN_FORMATS:
        raise ValueError(f"unknown format {format!r}; known formats: {', '.join(KNOWN_FORMATS)}")
    return name


def _existing_file(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"recording {path} does not exist")
    if not path.is_file():
        raise ValueError(f"recording {path} is not a file (a folder?); read_events reads one file")
    return path


def _sensor_option(sensor_size, where) -> Optional[Tuple[int, int, int]]:
    return None if sensor_size is None else check_sensor_size(sensor_size, where)


def _check_time_jumps(path, ts: np.ndarray, unit: str = "µs") -> None:
    """ValueError at a forward jump of more than 2**31 between consecutive events: a corrupt timestamp word
    (e.g. 0xFFFFFFFF), which would otherwise shift every later event by 2**32 (or be taken for a wrap)."""
    if ts.size > 1:
        jumps = np.diff(ts) > (1 << 31)
        if jumps.any():
            i = int(np.argmax(jumps)) + 1
            raise ValueError(
                f"{path}: event {i} has timestamp word {int(ts[i]):#x} {unit} after {int(ts[i - 1]):#x}, a jump of "
                f"more than 2^31 {unit}: a corrupt timestamp word, not a wrap; the file is damaged")


def _unwrap32(ts: np.ndarray, path="") -> np.ndarray:
    """uint32 timestamps -> int64, adding 2**32 after every wrap (a drop of more than 2**31); a forward jump
    of more than 2**31 is a corrupt word (ValueError naming the event)."""
    ts = ts.astype(np.int64)
    _check_time_jumps(path, ts, "ticks")
    if ts.size > 1:
        wraps = np.concatenate([[0], np.cumsum(np.diff(ts) < -(1 << 31))])
        ts += wraps << 32
    return ts


# ---------------------------------------------------------------------------------------------
# N-MNIST (tonic), AEDAT4 (aedat), ST-MNIST (scipy)
# ---------------------------------------------------------------------------------------------

def _read_nmnist(path, sensor_size=None):
    import tonic

    size = path.stat().st_size
    if size % 5:
        raise ValueError(f"{path}: N-MNIST files hold 5 bytes per event, but it has {size} bytes "
                         f"({size % 5} left over): truncated or not an N-MNIST file")
    ev = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    return ev, _sensor_option(sensor_size, path) or (34, 34, 2)


def _read_aedat4(path):
    import aedat

    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
        ids = sorted(i for i, s in streams.items() if s["type"] == "events")
        if not ids:  # same stream choice as tonic.io.read_aedat4: the lowest-numbered events stream
            raise ValueError(f"{path}: the AEDAT4 file has no events stream (streams: {streams})")
        packets = [p["events"] for p in decoder if p["stream_id"] == ids[0] and "events" in p]
    except RuntimeError as err:  # aedat reports corrupt / truncated files as RuntimeError
        raise ValueError(f"{path}: not a readable AEDAT4 file ({err})") from err
    stream = streams[ids[0]]
    ev = np.concatenate(packets) if packets else np.zeros(0, [("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])
    if ev.size and ev["t"].max() >= 1 << 63:
        raise ValueError(f"{path}: timestamp {ev['t'].max()} µs does not fit in int64")
    fields = {"t": ev["t"].astype(np.int64), "x": ev["x"], "y": ev["y"], "p": ev["p"]}
    return fields, (int(stream["width"]), int(stream["height"]), 2)


def _read_stmnist(path):
    import scipy.io

    try:  # numeric arrays only: loadmat never unpickles
        mat = scipy.io.loadmat(str(path), variable_names=["spiketrain"])
    except Exception as err:  # scipy signals truncated / foreign files with many exception types
        raise ValueError(f"{path}: not a readable MATLAB v5 .mat file ({type(err).__name__}: {err})") from err
    if "spiketrain" not in mat:
        raise ValueError(f"{path}: no 'spiketrain' variable; ST-MNIST files hold spiketrain (101 x events)")
    st = np.asarray(mat["spiketrain"])
    if st.ndim != 2 or st.shape[0] != 101 or st.dtype.kind not in "fiu":
        raise ValueError(f"{path}: 'spiketrain' must be a numeric 101 x N array, got {st.dtype} {st.shape}")
    spikes, seconds = st[:100].T, st[100]
    bad = ~np.isin(spikes, (-1, 0, 1))
    if bad.any():
        e, taxel = np.argwhere(bad)[0]
        raise ValueError(f"{path}: taxel {taxel} of column {e} holds {spikes[e, taxel]}; expected +1, -1 or 0")
    if not np.isfinite(seconds).all():
        raise ValueError(f"{path}: the time row (row 100) of 'spiketrain' holds a non-finite value")
    ev_idx, taxel = np.nonzero(spikes)  # column (time) order, then taxel order
    t = np.floor(np.round(seconds[ev_idx] * 1e6, 3)).astype(np.int64)  # s -> µs, round down
    p = (spikes[ev_idx, taxel] > 0).astype(np.int8)  # +1 -> 1, -1 -> 0
    return {"t": t, "x": taxel % 10, "y": taxel // 10, "p": p}, (10, 10, 2)


# ---------------------------------------------------------------------------------------------
# Prophesee EVT2 / EVT3 / DAT (expelliarmus)
# ---------------------------------------------------------------------------------------------

def _prophesee_header(path) -> Tuple[Dict[str, str], int]:
    """The '% key value' header lines of a Prophesee file (lower-case keys) and its length in bytes."""
    header, offset = {}, 0
    with open(path, "rb") as f:
        while f.peek(1)[:1] == b"%":
            line = f.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            text = line[1:].decode("ascii", "replace").strip()
            if text.lower() == "end":
                break
            key, _, value = text.partition(" ")
            header[key.lower()] = value.strip()
    return header, offset


def _prophesee_raw_encoding(path, header) -> str:
    """'evt2' or 'evt3' from the '% evt 2.0' or '% format EVT3;...' header line of a .raw file."""
    evt, fmt = header.get("evt", ""), header.get("format", "").split(";")[0].strip().upper()
    name = {"2.0": "evt2", "3.0": "evt3"}.get(evt) or {"EVT2": "evt2", "EVT3": "evt3"}.get(fmt)
    if name is None:
        found = f"'% evt {evt}'" if evt else (f"'% format {fmt}'" if fmt else "no '% evt' or '% format' line")
        raise ValueError(f"{path}: a Prophesee .raw file must say '% evt 2.0' / '% evt 3.0' (or "
                         f"'% format EVT2|EVT3') in its header, found {found}; readable encodings: evt2, evt3")
    return name


def _prophesee_sensor(header) -> Optional[Tuple[int, int, int]]:
    fmt_fields = dict(kv.split("=", 1) for kv in header.get("format", "").split(";")[1:] if "=" in kv)
    geometry = re.fullmatch(r"(\d+)\s*x\s*(\d+)", header.get("geometry", ""))
    if geometry:
        return int(geometry[1]), int(geometry[2]), 2
    for w, h in ((fmt_fields.get("width"), fmt_fields.get("height")), (header.get("width"), header.get("height"))):
        if w and h and w.strip().isdigit() and h.strip().isdigit():
            return int(w), int(h), 2
    plugin = header.get("plugin_name", "").lower()
    for key, (w, h) in _PROPHESEE_PLUGINS:
        if key in plugin:
            return w, h, 2
    return None


def _read_prophesee(path, encoding, sensor_size=None):
    import expelliarmus

    header, offset = _prophesee_header(path)
    if encoding in ("evt2", "evt3"):
        if path.suffix.lower() != ".raw":
            raise ValueError(f"{path}: expelliarmus reads EVT2/EVT3 only from files ending in .raw; rename it")
        found = _prophesee_raw_encoding(path, header)
        if found != encoding:
            raise ValueError(f"{path}: format='{encoding}' but its header says {found}; pass format='{found}'")
        word = 4 if encoding == "evt2" else 2
    else:
        if path.suffix.lower() != ".dat":
            raise ValueError(f"{path}: expelliarmus reads DAT only from files ending in .dat; rename it")
        with open(path, "rb") as f:  # after the header: event type and event size, one byte each
            f.seek(offset)
            type_size = f.read(2)
        if offset == 0 or len(type_size) < 2:
            raise ValueError(f"{path}: not a Prophesee DAT file (no '%' header followed by the event type/size bytes)")
        word, offset = type_size[1], offset + 2
        if word != 8:
            raise ValueError(f"{path}: DAT event size is {word} bytes; only 8-byte CD events are supported")
    body = path.stat().st_size - offset
    if body % word:
        raise ValueError(f"{path}: {body} bytes of {encoding.upper()} data is not a whole number of "
                         f"{word}-byte words: the file is truncated or corrupt")
    if encoding == "evt3":  # expelliarmus 1.1.12 adds 4096 µs per time-high step: decoded here
        ev = _decode_evt3(path, np.fromfile(path, dtype="<u2", offset=offset))
    else:
        ev = expelliarmus.Wizard(encoding=encoding).read(str(path)) if body else None
    sensor = _sensor_option(sensor_size, path) or _prophesee_sensor(header)
    if ev is None:  # expelliarmus returns None when it finds no events
        ev = np.zeros(0, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    if encoding != "evt3" and ev.size:  # expelliarmus unwraps 32-bit time words and keeps 4-bit polarities
        _check_time_jumps(path, np.asarray(ev["t"], np.int64))
        if ev["p"].max() > 1:
            i = int(np.argmax(ev["p"]))
            raise ValueError(f"{path}: event {i} has polarity {int(ev['p'][i])}; Prophesee CD events have "
                             "polarity 0 or 1: the file is corrupt")
    return ev, sensor or sensor_size_of(as_events(ev, sort=True))


def _last_index(mask):
    """For every word j, the index of the last word i <= j where mask holds (-1 before any)."""
    return np.maximum.accumulate(np.where(mask, np.arange(mask.size), -1))


def _ffill(last, values, default=0):
    """values carried forward from the words that `last` (a _last_index) points at."""
    return np.where(last >= 0, values[np.maximum(last, 0)], default)


def _decode_evt3(path, w):
    """Prophesee EVT 3.0 (docs.prophesee.ai, encoding formats): 16-bit words, type in bits 12-15.

    0 ADDR_Y (y), 2 ADDR_X (x, polarity bit 11), 3 VECT_BASE_X (base x, polarity), 4 VECT_12 /
    5 VECT_8 (bit k: an event at base x + k; base x then advances by 12 / 8), 6 TIME_LOW (bits 0-11
    of the 24-bit time), 8 TIME_HIGH (bits 12-23); 7, 10, 14, 15 carry no CD events.
    """
    typ = (w >> 12).astype(np.int8)
    bad = ~np.isin(typ, (0, 2, 3, 4, 5, 6, 7, 8, 10, 14, 15))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: word {i} has type {typ[i]}, which EVT 3.0 does not define: corrupt or not EVT3")
    low12 = (w & 0xFFF).astype(np.int64)
    is_high = typ == 8
    high = low12[is_high]
    wraps = np.cumsum(np.diff(high, prepend=high[:1]) < -2048)  # the 24-bit time base wraps (16.8 s)
    full_high = np.zeros(w.size, np.int64)
    full_high[is_high] = wraps << 12 | high
    t = _ffill(_last_index(is_high), full_high) << 12 | _ffill(_last_index(typ == 6), low12)  # µs
    y = _ffill(_last_index(typ == 0), low12 & 0x7FF)
    pol_bit = (w >> 11 & 1).astype(np.int8)
    single = np.flatnonzero(typ == 2)
    vec = np.flatnonzero((typ == 4) | (typ == 5))
    # vectors: base x of the last VECT_BASE_X + the widths (12 or 8) of the vectors since then
    last_base = _last_index(typ == 3)[vec]
    width = np.where(typ[vec] == 4, 12, 8)
    before = np.cumsum(width) - width  # widths of the earlier vectors (in vec order)
    since = before - before[np.searchsorted(vec, last_base)] if vec.size else before
    x0 = np.where(last_base >= 0, low12[np.maximum(last_base, 0)] & 0x7FF, 0) + since
    bits = (w[vec, None] >> np.arange(12, dtype=w.dtype) & 1).astype(bool) & (np.arange(12) < width[:, None])
    row, k = np.nonzero(bits)  # vector order, then bit order
    word = np.concatenate([single, vec[row]])
    order = np.argsort(word, kind="stable")  # file order; a vector's events keep their bit order
    word = word[order]
    x = np.concatenate([low12[single] & 0x7FF, x0[row] + k])[order]
    p = np.concatenate([pol_bit[single], np.where(last_base >= 0, pol_bit[np.maximum(last_base, 0)], 0)[row]])[order]
    return {"t": t[word], "x": x, "y": y[word], "p": p}


# ---------------------------------------------------------------------------------------------
# jAER AEDAT 2.0 / 3.x and NAS (numpy)
# ---------------------------------------------------------------------------------------------

def _jaer_header(path) -> Tuple[list, int]:
    """The '#' header lines of a jAER file (decoded) and the byte offset where the data starts."""
    lines, offset = [], 0
    with open(path, "rb") as f:
        while f.peek(1)[:1] == b"#":
            line = f.readline()
            if not line.endswith(b"\n"):
                break
            offset += len(line)
            text = line.decode("latin-1").rstrip("\r\n")
            lines.append(text)
            if text.startswith("#!END-HEADER"):
                break
    return lines, offset


# jAER chip classes -> (layout, width, height); layouts follow jAER's DVS128 and DavisBaseCamera extractors
_JAER_CHIPS = (
    (r"davis346", "davis", 346, 260), (r"davis240", "davis", 240, 180), (r"davis640", "davis", 640, 480),
    (r"davis128", "davis", 128, 128), (r"dvs128|tmpdiff128", "dvs128", 128, 128),
)
_AEDAT3_SOURCES = ((r"dvs128", 128, 128), (r"davis346", 346, 260), (r"davis240", 240, 180))


def _read_aedat(path, sensor_size=None):
    lines, offset = _jaer_header(path)
    match = re.match(r"#!AER-DAT(\d+)\.(\d+)", lines[0]) if lines else None
    if not match:
        raise ValueError(f"{path}: a jAER AEDAT file starts with '#!AER-DAT<version>'; "
                         f"for a headerless NAS recording {_NAS_HELP}")
    major = int(match[1])
    data = np.fromfile(path, dtype=np.uint8, offset=offset)
    if major == 2:
        return _decode_aedat2(path, lines, data, sensor_size)
    if major == 3:
        return _decode_aedat3(path, lines, data, sensor_size)
    raise ValueError(f"{path}: AEDAT version {match[1]}.{match[2]} is not read as 'aedat' "
                     f"(AEDAT 4 files end in .aedat4: pass format='aedat4')")


def _decode_aedat2(path, lines, data, sensor_size):
    if data.size % 8:
        raise ValueError(f"{path}: AEDAT 2.0 data holds 8 bytes per event, but {data.size} bytes leave "
                         f"{data.size % 8} over: the file is truncated or corrupt")
    chip = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("# AEChip:")), "")
    layout = next(((kind, w, h) for pat, kind, w, h in _JAER_CHIPS if re.search(pat, chip, re.I)), None)
    if layout is None:
        raise ValueError(f"{path}: AEDAT 2.0 from jAER chip {chip or '(no # AEChip line)'!r}, whose address "
                         f"layout is not known here (known: DVS128, DAVIS128/240/346/640); for a "
                         f"cochlea (NAS) recording {_NAS_HELP}")
    kind, W, H = layout
    raw = data.view([("addr", ">u4"), ("ts", ">u4")])
    addr, t = raw["addr"].astype(np.int64), _unwrap32(raw["ts"], path)
    if kind == "dvs128":
        keep = (addr & 0x80008000) == 0  # bit 31 / bit 15: special (sync) events, not pixels
        addr = addr[keep]
        x = (W - 1) - ((addr & 0xFE) >> 1)  # x mirrored, bits 1-7
        y = (addr & 0x7F00) >> 8  # bits 8-14
        p = 1 - (addr & 1)  # jAER: type = (1 - addr) & 1, 1 = ON
    else:
        keep = (addr & 0x80000400) == 0  # bit 31: APS/IMU sample; bit 10: external input event
        addr = addr[keep]
        x = (W - 1) - ((addr >> 12) & 0x3FF)  # x mirrored, bits 12-21
        y = (addr >> 22) & 0x1FF  # bits 22-30
        p = (addr >> 11) & 1  # bit 11, 1 = ON
    sensor = _sensor_option(sensor_size, path) or (W, H, 2)
    return {"t": t[keep], "x": x, "y": y, "p": p}, sensor


def _decode_aedat3(path, lines, data, sensor_size):
    """AEDAT 3.x: packets of a 28-byte header + events; keeps valid polarity events (type 1)."""
    hdr_dtype = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                          ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
    pos, parts = 0, []
    while pos < data.size:
        if pos + 28 > data.size:
            raise ValueError(f"{path}: AEDAT 3 packet header at byte {pos} is cut off: the file is truncated")
        h = data[pos:pos + 28].view(hdr_dtype)[0]
        size, cap = int(h["size"]), int(h["capacity"])
        end = pos + 28 + size * cap
        if size <= 0 or cap < 0 or end > data.size:
            raise ValueError(f"{path}: AEDAT 3 packet at byte {pos} claims {cap} events of {size} bytes, "
                             f"past the end of the file: truncated or corrupt")
        if h["type"] == 1:  # polarity events: uint32 data + int32 timestamp
            if size != 8:
                raise ValueError(f"{path}: AEDAT 3 polarity packet at byte {pos} has {size}-byte events; expected 8")
            ev = data[pos + 28:end].view([("data", "<u4"), ("ts", "<i4")])
            ev = ev[(ev["data"] & 1) == 1]  # bit 0: valid mark
            parts.append((ev, int(h["ts_overflow"])))
        pos = end
    d = np.concatenate([ev["data"] for ev, _ in parts]).astype(np.int64) if parts else np.zeros(0, np.int64)
    t = (np.concatenate([(np.int64(o) << 31) + ev["ts"] for ev, o in parts]) if parts
         else np.zeros(0, np.int64))  # full time = overflow << 31 | ts
    fields = {"t": t, "x": (d >> 17) & 0x7FFF, "y": (d >> 2) & 0x7FFF, "p": (d >> 1) & 1}
    source = " ".join(ln for ln in lines if "source" in ln.lower())
    sensor = _sensor_option(sensor_size, path) or next(
        ((w, h, 2) for pat, w, h in _AEDAT3_SOURCES if re.search(pat, source, re.I)), None)
    return fields, sensor or sensor_size_of(as_events(fields, sort=True))


def _read_nas(path, channels=None, address_bytes=2, tick_us=0.2, stereo=False, on_off=True):
    if channels is None:
        raise ValueError(f"{path}: format='nas' needs channels=<number of frequency channels, e.g. 32 or 64> "
                         """(on the command line: --reader-options '{"channels": 64}')""")
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    if isinstance(address_bytes, bool) or not isinstance(address_bytes, (int, np.integer)) \
            or address_bytes not in (2, 4):
        raise ValueError(f"address_bytes must be 2 or 4, got {address_bytes!r}")
    if not isinstance(tick_us, (int, float, np.number)) or isinstance(tick_us, bool) or not (1e-6 <= tick_us < 1e9):
        raise ValueError(f"tick_us must be the µs per timestamp tick (1e-6 .. 1e9), got {tick_us!r}")
    for name, value in (("stereo", stereo), ("on_off", on_off)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    _, offset = _jaer_header(path)  # jAER-recorded files carry '#' lines; MATLAB/aerzip ones do not
    data = np.fromfile(path, dtype=np.uint8, offset=offset)
    width = address_bytes + 4
    if data.size % width:
        raise ValueError(f"{path}: {data.size} bytes of NAS data is not a whole number of {width}-byte events "
                         f"(address_bytes={address_bytes} + 4-byte timestamp): truncated, or address_bytes is wrong")
    raw = data.view([("addr", f">u{address_bytes}"), ("ts", ">u4")])
    addr = raw["addr"].astype(np.int64)
    ears = 2 if stereo else 1
    n_addr = channels * ears * (2 if on_off else 1)
    if addr.size and addr.max() >= n_addr:
        i = int(np.argmax(addr))
        raise ValueError(
            f"{path}: event {i} has NAS address {addr[i]}, but channels={channels}, stereo={stereo}, "
            f"on_off={on_off} allow addresses 0..{n_addr - 1}; check channels/stereo/address_bytes"
        )
    if on_off:
        p, base = 1 - (addr & 1), addr >> 1  # polarity bit 0 = ON (positive), 1 = OFF
    else:
        p, base = np.zeros_like(addr), addr
    tick = Fraction(str(float(tick_us))).limit_denominator(1_000_000)
    ticks = _unwrap32(raw["ts"], path)
    if ticks.size and int(ticks.max()) * tick.numerator >= 1 << 63:
        raise ValueError(f"{path}: timestamps × tick_us={tick_us} overflow int64 µs")
    t = ticks * tick.numerator // tick.denominator  # ticks -> µs, rounded down
    fields = {"t": t, "x": base % channels, "y": base // channels, "p": p}
    return fields, (channels, ears, 2 if on_off else 1)


# ---------------------------------------------------------------------------------------------
# Tables: .npy / .npz / .csv
# ---------------------------------------------------------------------------------------------

def _table_sensor(fields, sensor_size, path):
    return _sensor_option(sensor_size, path) or sensor_size_of(as_events(fields, sort=True))


def _check_npy_claim(f, size: int, where) -> None:
    """ValueError when an .npy header (file object f at its start, `size` bytes in all) claims more data
    than the file holds: numpy would try to allocate the claimed size first (MemoryError for a damaged
    shape) before finding out."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except ValueError as err:
        raise ValueError(f"{where}: not a plain numpy .npy file of events ({err})") from err
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > size - f.tell():
        raise ValueError(f"{where}: its header claims an array of shape {shape} and dtype {dtype} ({need:,} bytes) "
                         f"but the file holds {size - f.tell():,} bytes of data: truncated or corrupt")


def _read_npy(path, sensor_size=None):
    with open(path, "rb") as f:
        _check_npy_claim(f, path.stat().st_size, path)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{path}: not a plain numpy .npy file of events ({err})") from err
    if arr.dtype.names is None:
        raise ValueError(f"{path}: a .npy of events must be a structured array with fields t, x, [y], [p]; "
                         f"got dtype {arr.dtype} shape {arr.shape}")
    return arr, _table_sensor(arr, sensor_size, path)


def _read_npz(path, sensor_size=None):
    import zipfile

    with zipfile.ZipFile(path) as archive:  # each member's header against its own size (see _check_npy_claim)
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                with archive.open(info) as f:
                    _check_npy_claim(f, info.file_size, f"{path} (array {info.filename[:-4]!r})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as err:
        raise ValueError(f"{path}: not a plain numpy .npz file of events ({err})") from err
    if "t" in arrays:
        fields = arrays
    elif len(arrays) == 1 and next(iter(arrays.values())).dtype.names is not None:
        fields = next(iter(arrays.values()))
    else:
        raise ValueError(f"{path}: a .npz of events needs arrays t, x, [y], [p] (or one structured array); "
                         f"it holds {sorted(arrays)}")
    return fields, _table_sensor(fields, sensor_size, path)


def _read_csv(path, sensor_size=None):
    with open(path, "r", encoding="utf-8") as f:
        names = [n.strip().strip('"').lower() for n in f.readline().split(",")]
    if "t" not in names or "x" not in names:
        raise ValueError(f"{path}: the first row of an events .csv must name the columns (t, x, [y], [p]); got {names}")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError:
        try:  # float timestamps (µs, rounded down by as_events)
            table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
        except ValueError as err:
            raise ValueError(f"{path}: not a numeric events .csv ({err})") from err
    if table.size and table.shape[1] != len(names):
        raise ValueError(f"{path}: rows have {table.shape[1]} values but the header names {len(names)} columns")
    fields = {n: (table[:, i] if table.size else np.zeros(0, np.int64)) for i, n in enumerate(names)}
    return fields, _table_sensor(fields, sensor_size, path)


_READERS = {
    "nmnist": (_read_nmnist, ("sensor_size",)),
    "aedat4": (_read_aedat4, ()),
    "evt2": (lambda path, **kw: _read_prophesee(path, "evt2", **kw), ("sensor_size",)),
    "evt3": (lambda path, **kw: _read_prophesee(path, "evt3", **kw), ("sensor_size",)),
    "dat": (lambda path, **kw: _read_prophesee(path, "dat", **kw), ("sensor_size",)),
    "aedat": (_read_aedat, ("sensor_size",)),
    "nas": (_read_nas, ("channels", "address_bytes", "tick_us", "stereo", "on_off")),
    "stmnist": (_read_stmnist, ()),
    "npy": (_read_npy, ("sensor_size",)),
    "npz": (_read_npz, ("sensor_size",)),
    "csv": (_read_csv, ("sensor_size",)),
}
