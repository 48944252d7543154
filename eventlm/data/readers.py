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
- A truncated or corrupt file or coordinates outside the sensor raise `eventlm.errors.EventDataError`
  (a ValueError) naming the file, the byte offset or event where known, and the fix; a library's own
  failure (BadZipFile, EOFError, a pyo3 PanicException, ...) is re-raised as one, `from` the original.
  A missing file is FileNotFoundError; an unknown format or a bad option value is ValueError, an
  option the format does not take TypeError.
"""

import json
import os
import re
import struct
from fractions import Fraction
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import EventDataError, as_data_error, is_library_failure
from .events import EventStream, as_events, check_sensor_size, sensor_size_of

__all__ = ["read_events", "guess_format", "KNOWN_FORMATS", "parse_reader_options", "in_flag_words"]

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
    Raises FileNotFoundError for a missing file, EventDataError (a ValueError) for a corrupt file or
    events outside the sensor, ValueError for an unknown format or a bad option value, TypeError for
    an option the format does not take.
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
    if fmt == "nas":
        _check_nas_options(path, **options)
    try:
        fields, sensor = reader(path, **options)
    except BaseException as err:  # ours name the file; a library's (BadZipFile, EOFError, a pyo3 panic) may not
        if isinstance(err, EventDataError) and err.path is None:
            err.path = path  # the readers' own errors name it in the message; the attribute too
        if not is_library_failure(err):
            raise
        raise as_data_error(err, f"{path} (format '{fmt}')", f"{fmt} file, truncated or corrupt", _fix(fmt),
                            path=path) from err
    try:  # the sensor the file's header names (a sensor_size= option was checked above)
        sensor = check_sensor_size(sensor, path)
    except ValueError as err:
        raise EventDataError(f"{path} (format '{fmt}'): {err}", path=path) from err
    try:
        events = as_events(fields, sensor, sort=True)
    except ValueError as err:
        raise EventDataError(f"{path} (format '{fmt}', sensor {sensor}): {err}", path=path) from err
    return EventStream(events, sensor)


def parse_reader_options(text: Optional[str], flag: str = "--reader-options") -> dict:
    """The read_events options a command's `flag` holds as JSON ({} when unset); ValueError in flag words."""
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object such as '{{\"channels\": 64}}', got {text!r} ({err})") from None
    if not isinstance(options, dict):
        raise ValueError(f"{flag} must be a JSON object such as '{{\"channels\": 64}}', got {text!r}")
    return options


def in_flag_words(err: ValueError, format_flag: str, options_flag: str) -> ValueError:
    """`err` again with the hints of read_events' errors (worded for --format / --reader-options, the flags of
    eventlm stream and convert-dataset) in the flags of another command."""
    message = str(err).replace("--format ", f"{format_flag} ").replace("--reader-options ", f"{options_flag} ")
    again = EventDataError(message, path=err.path, offset=err.offset, row=err.row) if isinstance(err, EventDataError) \
        else ValueError(message)
    return again


def _pass(fmt: str) -> str:
    """A format hint in both vocabularies: "format='evt3' (on the command line: --format evt3)"."""
    return f"format='{fmt}' (on the command line: --format {fmt})"


def _fix(fmt: str) -> str:
    """What to do about a file the `fmt` reader could not decode."""
    if fmt == "nas":
        return f"check that the file is complete and its layout: {_NAS_HELP}"
    return (f"check that the file is complete (copy or download it again) and really is {fmt} "
            f"(else pass {_pass('<format>')}, one of {', '.join(KNOWN_FORMATS)})")


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
        raise EventDataError(
            f"{path} is a .aedat file without a '#!AER-DAT' header (it starts with {start!r}), so its "
            f"layout cannot be guessed: it may be a headerless Neuromorphic Auditory Sensor recording; "
            f"if so, {_NAS_HELP}"
        )
    raise ValueError(
        f"cannot guess the format of {path} from its extension {ext!r}; pass {_pass('<format>')}, one of "
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
            raise EventDataError(
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
        raise EventDataError(f"{path}: N-MNIST files hold 5 bytes per event, but it has {size} bytes "
                         f"({size % 5} left over): truncated or not an N-MNIST file")
    ev = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    return ev, _sensor_option(sensor_size, path) or (34, 34, 2)


_AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"


def _aedat4_header(path, data: bytes) -> Tuple[int, int]:
    """(compression, dataTablePosition) of an AEDAT4 IOHeader flatbuffer, its offsets checked against its
    `data` first: the aedat package reads it unchecked (an offset out of bounds is a wild read)."""
    n = len(data)

    def u(fmt, at, what):
        size = struct.calcsize(fmt)
        if not 0 <= at <= n - size:
            raise EventDataError(f"{path}: the AEDAT4 header's {what} at byte {18 + at} lies outside its {n} "
                                 f"bytes: the header is corrupt", path=path, offset=18 + at)
        return struct.unpack_from(fmt, data, at)[0]

    root = u("<I", 0, "root table offset")
    vtable = root - u("<i", root, "vtable offset")
    vt_size = u("<H", vtable, "vtable size")
    fields = {}
    for k, (name, fmt) in enumerate((("compression", "<i"), ("dataTablePosition", "<q"), ("description", "<I"))):
        slot = u("<H", vtable + 4 + 2 * k, f"{name} slot") if 4 + 2 * k < vt_size else 0
        fields[name] = u(fmt, root + slot, name) if slot else None
        if name == "description" and slot:
            at = root + slot + fields[name]
            length = u("<I", at, "description length")
            if at + 4 + length > n:
                raise EventDataError(f"{path}: the AEDAT4 header's description claims {length:,} bytes, past the "
                                     f"header's {n:,}: the header is corrupt", path=path, offset=18 + at)
    compression = fields["compression"] or 0
    if not 0 <= compression <= 4:
        raise EventDataError(f"{path}: the AEDAT4 header names compression {compression}; known: 0-4 (none, LZ4, "
                             f"LZ4 high, Zstd, Zstd high): the header is corrupt", path=path)
    table = fields["dataTablePosition"]
    return compression, -1 if table is None else table


def _check_aedat4_layout(path) -> None:
    """EventDataError unless the sizes an AEDAT4 file claims fit in it: the header length, the header
    flatbuffer's own offsets, the data table position and every packet's length (the aedat package
    allocates a claimed length before reading it: a damaged word meant a 4 GiB allocation or an abort)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(len(_AEDAT4_MAGIC))
        if magic != _AEDAT4_MAGIC:
            raise EventDataError(f"{path}: an AEDAT4 file starts with {_AEDAT4_MAGIC!r}, this one with {magic!r}: "
                                 f"not AEDAT4, or corrupt", path=path, offset=0)
        raw = f.read(4)
        length = struct.unpack("<I", raw)[0] if len(raw) == 4 else -1
        if not 0 < length <= size - 18:
            raise EventDataError(f"{path}: the AEDAT4 header claims {length:,} bytes but the file holds {size:,} "
                                 f"in all: truncated or corrupt", path=path, offset=14)
        _, table = _aedat4_header(path, f.read(length))
        pos = 18 + length
        if table != -1 and not pos <= table <= size:
            raise EventDataError(f"{path}: the AEDAT4 header puts the data table at byte {table:,}, outside the "
                                 f"packets (bytes {pos:,}..{size:,}): truncated or corrupt", path=path, offset=pos)
        end = size if table == -1 else table
        while pos < end:  # packets: uint32 stream id, uint32 length, `length` bytes
            raw = f.read(8)
            claimed = struct.unpack("<II", raw)[1] if len(raw) == 8 else None
            if claimed is None or claimed > end - pos - 8:
                said = "a cut-off packet header" if claimed is None else f"a packet of {claimed:,} bytes"
                raise EventDataError(f"{path}: at byte {pos:,} the AEDAT4 file claims {said}, past the end of its "
                                     f"data (byte {end:,}): truncated or corrupt", path=path, offset=pos)
            pos += 8 + claimed
            f.seek(pos)


def _read_aedat4(path):
    import aedat

    _check_aedat4_layout(path)
    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
        ids = sorted(i for i, s in streams.items() if s["type"] == "events")
        if not ids:  # same stream choice as tonic.io.read_aedat4: the lowest-numbered events stream
            raise EventDataError(f"{path}: the AEDAT4 file has no events stream (streams: {streams})")
        packets = [p["events"] for p in decoder if p["stream_id"] == ids[0] and "events" in p]
    except RuntimeError as err:  # aedat reports corrupt / truncated files as RuntimeError
        raise EventDataError(f"{path}: not a readable AEDAT4 file ({err})") from err
    stream = streams[ids[0]]
    ev = np.concatenate(packets) if packets else np.zeros(0, [("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])
    if ev.size and ev["t"].max() >= 1 << 63:
        raise EventDataError(f"{path}: timestamp {ev['t'].max()} µs does not fit in int64")
    fields = {"t": ev["t"].astype(np.int64), "x": ev["x"], "y": ev["y"], "p": ev["p"]}
    return fields, (int(stream["width"]), int(stream["height"]), 2)


def _read_stmnist(path):
    import scipy.io

    try:  # numeric arrays only: loadmat never unpickles
        mat = scipy.io.loadmat(str(path), variable_names=["spiketrain"])
    except Exception as err:  # scipy signals truncated / foreign files with many exception types
        raise EventDataError(f"{path}: not a readable MATLAB v5 .mat file ({type(err).__name__}: {err})") from err
    if "spiketrain" not in mat:
        raise EventDataError(f"{path}: no 'spiketrain' variable; ST-MNIST files hold spiketrain (101 x events)")
    st = np.asarray(mat["spiketrain"])
    if st.ndim != 2 or st.shape[0] != 101 or st.dtype.kind not in "fiu":
        raise EventDataError(f"{path}: 'spiketrain' must be a numeric 101 x N array, got {st.dtype} {st.shape}")
    spikes, seconds = st[:100].T, st[100]
    bad = ~np.isin(spikes, (-1, 0, 1))
    if bad.any():
        e, taxel = np.argwhere(bad)[0]
        raise EventDataError(f"{path}: taxel {taxel} of column {e} holds {spikes[e, taxel]}; expected +1, -1 or 0")
    if not np.isfinite(seconds).all():
        raise EventDataError(f"{path}: the time row (row 100) of 'spiketrain' holds a non-finite value")
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
            if not line.endswith(b"\n"):  # expelliarmus would wait for its end forever
                raise EventDataError(f"{path}: the '%' header line at byte {offset:,} ({line[:40]!r}) has no end "
                                     f"(no newline before the end of the file): the file is truncated", path=path,
                                     offset=offset)
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
        raise EventDataError(f"{path}: a Prophesee .raw file must say '% evt 2.0' / '% evt 3.0' (or "
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
            raise EventDataError(f"{path}: expelliarmus reads EVT2/EVT3 only from files ending in .raw; rename it")
        found = _prophesee_raw_encoding(path, header)
        if found != encoding:
            raise EventDataError(f"{path}: format='{encoding}' but its header says {found}; pass {_pass(found)}")
        word = 4 if encoding == "evt2" else 2
    else:
        if path.suffix.lower() != ".dat":
            raise EventDataError(f"{path}: expelliarmus reads DAT only from files ending in .dat; rename it")
        with open(path, "rb") as f:  # after the header: event type and event size, one byte each
            f.seek(offset)
            type_size = f.read(2)
        if offset == 0 or len(type_size) < 2:
            raise EventDataError(f"{path}: not a Prophesee DAT file (no '%' header followed by the event type/size bytes)")
        word, offset = type_size[1], offset + 2
        if word != 8:
            raise EventDataError(f"{path}: DAT event size is {word} bytes; only 8-byte CD events are supported")
    body = path.stat().st_size - offset
    if body % word:
        raise EventDataError(f"{path}: {body} bytes of {encoding.upper()} data is not a whole number of "
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
            raise EventDataError(f"{path}: event {i} has polarity {int(ev['p'][i])}; Prophesee CD events have "
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
        raise EventDataError(f"{path}: word {i} has type {typ[i]}, which EVT 3.0 does not define: corrupt or not EVT3")
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
        raise EventDataError(f"{path}: a jAER AEDAT file starts with '#!AER-DAT<version>'; "
                         f"for a headerless NAS recording {_NAS_HELP}")
    major = int(match[1])
    data = np.fromfile(path, dtype=np.uint8, offset=offset)
    if major == 2:
        return _decode_aedat2(path, lines, data, sensor_size)
    if major == 3:
        return _decode_aedat3(path, lines, data, sensor_size)
    raise EventDataError(f"{path}: AEDAT version {match[1]}.{match[2]} is not read as 'aedat' "
                         f"(AEDAT 4 files end in .aedat4: pass {_pass('aedat4')})")


def _decode_aedat2(path, lines, data, sensor_size):
    if data.size % 8:
        raise EventDataError(f"{path}: AEDAT 2.0 data holds 8 bytes per event, but {data.size} bytes leave "
                         f"{data.size % 8} over: the file is truncated or corrupt")
    chip = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("# AEChip:")), "")
    layout = next(((kind, w, h) for pat, kind, w, h in _JAER_CHIPS if re.search(pat, chip, re.I)), None)
    if layout is None:
        raise EventDataError(f"{path}: AEDAT 2.0 from jAER chip {chip or '(no # AEChip line)'!r}, whose address "
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
            raise EventDataError(f"{path}: AEDAT 3 packet header at byte {pos} is cut off: the file is truncated")
        h = data[pos:pos + 28].view(hdr_dtype)[0]
        size, cap = int(h["size"]), int(h["capacity"])
        end = pos + 28 + size * cap
        if size <= 0 or cap < 0 or end > data.size:
            raise EventDataError(f"{path}: AEDAT 3 packet at byte {pos} claims {cap} events of {size} bytes, "
                             f"past the end of the file: truncated or corrupt")
        if h["type"] == 1:  # polarity events: uint32 data + int32 timestamp
            if size != 8:
                raise EventDataError(f"{path}: AEDAT 3 polarity packet at byte {pos} has {size}-byte events; expected 8")
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


def _check_nas_options(path, channels=None, address_bytes=2, tick_us=0.2, stereo=False, on_off=True):
    """The caller's NAS options (ValueError before the file is read: a mistake in the call, not in the file)."""
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


def _read_nas(path, channels=None, address_bytes=2, tick_us=0.2, stereo=False, on_off=True):
    _, offset = _jaer_header(path)  # jAER-recorded files carry '#' lines; MATLAB/aerzip ones do not
    data = np.fromfile(path, dtype=np.uint8, offset=offset)
    width = address_bytes + 4
    if data.size % width:
        raise EventDataError(f"{path}: {data.size} bytes of NAS data is not a whole number of {width}-byte events "
                         f"(address_bytes={address_bytes} + 4-byte timestamp): truncated, or address_bytes is wrong")
    raw = data.view([("addr", f">u{address_bytes}"), ("ts", ">u4")])
    addr = raw["addr"].astype(np.int64)
    ears = 2 if stereo else 1
    n_addr = channels * ears * (2 if on_off else 1)
    if addr.size and addr.max() >= n_addr:
        i = int(np.argmax(addr))
        raise EventDataError(
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
        raise EventDataError(f"{path}: timestamps × tick_us={tick_us} overflow int64 µs")
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
        raise EventDataError(f"{where}: not a plain numpy .npy file of events ({err})") from err
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need > size - f.tell():
        raise EventDataError(f"{where}: its header claims an array of shape {shape} and dtype {dtype} ({need:,} bytes) "
                         f"but the file holds {size - f.tell():,} bytes of data: truncated or corrupt")


def _read_npy(path, sensor_size=None):
    with open(path, "rb") as f:
        _check_npy_claim(f, path.stat().st_size, path)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise EventDataError(f"{path}: not a plain numpy .npy file of events ({err})") from err
    if arr.dtype.names is None:
        raise EventDataError(f"{path}: a .npy of events must be a structured array with fields t, x, [y], [p]; "
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
        raise EventDataError(f"{path}: not a plain numpy .npz file of events ({err})") from err
    if "t" in arrays:
        fields = arrays
    elif len(arrays) == 1 and next(iter(arrays.values())).dtype.names is not None:
        fields = next(iter(arrays.values()))
    else:
        raise EventDataError(f"{path}: a .npz of events needs arrays t, x, [y], [p] (or one structured array); "
                         f"it holds {sorted(arrays)}")
    return fields, _table_sensor(fields, sensor_size, path)


def _read_csv(path, sensor_size=None):
    with open(path, "r", encoding="utf-8") as f:
        names = [n.strip().strip('"').lower() for n in f.readline().split(",")]
    if "t" not in names or "x" not in names:
        raise EventDataError(f"{path}: the first row of an events .csv must name the columns (t, x, [y], [p]); got {names}")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError:
        try:  # float timestamps (µs, rounded down by as_events)
            table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
        except ValueError as err:
            raise EventDataError(f"{path}: not a numeric events .csv ({err})") from err
    if table.size and table.shape[1] != len(names):
        raise EventDataError(f"{path}: rows have {table.shape[1]} values but the header names {len(names)} columns")
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
