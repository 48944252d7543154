"""The one event schema of eventlm and the one place that validates events.

Every reader, converter, augmentation and the tokenizer speak this schema: a numpy structured array
with fields t (int64 µs), x, y (int16) and p (int8), plus the sensor size (W, H, P) as tonic writes
it. Audio sensors use x = channel, y = 0. A sensor with one polarity ignores p (tonic's SHD/SSC carry
p = 1 with sensor_size (700, 1, 1)).
"""

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
EVENT_FIELDS = ("t", "x", "y", "p")
_SCHEMA_LIMITS = {"x": 2**15, "y": 2**15, "p": 2**7}  # values must stay below these (int16, int16, int8)
MAX_SENSOR_SIZE = (2**15, 2**15, 2**7)  # (W, H, P) the schema holds


class EventStream(NamedTuple):
    """What `read_events` returns: the events and the sensor size they imply."""

    events: np.ndarray  # structured array of EVENT_DTYPE
    sensor_size: Tuple[int, int, int]  # (W, H, P)

    def __len__(self):  # len(stream) is the number of events, not 2
        return len(self.events)


def _field(obj, name):
    """Field `name` of a structured array, a dict of arrays or a Hub row; None when absent."""
    if isinstance(obj, np.ndarray) and obj.dtype.names is not None:
        return obj[name] if name in obj.dtype.names else None
    if isinstance(obj, dict) or hasattr(obj, "keys"):
        return obj[name] if name in obj else None
    raise TypeError(
        f"events must be a structured numpy array, a dict of arrays or a dataset row with fields "
        f"t/x/y/p; got {type(obj).__name__}"
    )


def _as_int(values, name, lo=None, hi=None, schema=True):
    """Values of field `name` as integers (t: int64; x, y, p keep their integer dtype, range-checked in
    it without an int64 copy), rejecting non-integers, NaN and out-of-range values."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"events field '{name}' must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.int8)
    elif arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"events field '{name}' holds a non-finite value {arr[i]} at index {i}")
        if name != "t" and (arr != np.round(arr)).any():
            i = int(np.flatnonzero(arr != np.round(arr))[0])
            raise ValueError(f"events field '{name}' must hold integers, got {arr[i]} at index {i}")
    elif arr.dtype.kind not in "iu" and arr.size:
        raise ValueError(f"events field '{name}' has dtype {arr.dtype}; expected integers")
    if not arr.size:
        arr = np.zeros(0, np.int64)
    elif name == "t" or arr.dtype.kind not in "iu":
        arr = arr.astype(np.int64, copy=False)
    if arr.size and lo is not None and arr.min() < lo:
        i = int(np.argmin(arr))
        raise ValueError(f"events field '{name}' has value {arr[i]} at index {i}, below the minimum {lo}")
    if arr.size and hi is not None and arr.max() >= hi:
        i = int(np.argmax(arr))
        raise ValueError(
            f"events field '{name}' has value {arr[i]} at index {i}, outside the sensor (must be < {hi})"
        )
    limit = _SCHEMA_LIMITS.get(name) if schema else None
    if arr.size and limit is not None and arr.dtype.kind in "iu" and np.iinfo(arr.dtype).max >= limit \
            and arr.max() >= limit:  # would wrap in the schema's int16 / int8 fields
        i = int(np.argmax(arr))
        raise ValueError(
            f"events field '{name}' has value {arr[i]} at index {i}, past the event schema's range (x, y < 32768, "
            f"p < 128: int16 / int8); a sensor this large is not supported, or the file is corrupt"
        )
    return arr


def as_events(obj, sensor_size: Optional[Sequence[int]] = None, sort: bool = False) -> np.ndarray:
    """Validate one event stream and return it as an EVENT_DTYPE structured array (a new array).

    obj: a structured array in any field order (t,x,p / x,y,p,t / ...), a dict of arrays, a Hub row
    (t/x/y/p lists) or an EventStream. A missing y (audio) reads as 0, a missing p as 0.
    sensor_size: (W, H, P); coordinates must lie inside it (P == 1 ignores p).
    sort: timestamps must never decrease; with sort=True a stable sort by t is applied instead.
    Float timestamps are taken as µs and rounded down.
    Raises ValueError naming the field and the offending value.
    """
    t, x, y, p = event_columns(obj, sensor_size, sort=sort)
    out = np.empty(len(t), EVENT_DTYPE)
    out["t"], out["x"], out["y"], out["p"] = t, x, y, p
    return out


def event_columns(obj, sensor_size: Optional[Sequence[int]] = None, sort: bool = False):
    """The validation of `as_events` without building the structured array: (t, x, y, p), t int64 and
    x, y, p integer arrays of one length (possibly views of obj's own fields: do not write to them).
    For hot paths (the tokenizer) that read the columns anyway. Same arguments and errors as as_events.
    """
    if isinstance(obj, EventStream):
        sensor_size = sensor_size if sensor_size is not None else obj.sensor_size
        obj = obj.events
    t, x, y, p = (_field(obj, name) for name in EVENT_FIELDS)
    if t is None or x is None:
        missing = "'t' (timestamp)" if t is None else "'x'"
        raise ValueError(f"events have no {missing} field; expected fields t, x, [y], [p]")
    W, H, P = (None, None, None) if sensor_size is None else tuple(int(s) for s in sensor_size)
    t = np.floor(np.asarray(t, dtype=np.float64)) if np.asarray(t).dtype.kind == "f" else t
    t = _as_int(t, "t", lo=0)
    n = len(t)
    x = _as_int(x, "x", lo=0, hi=W)
    y = np.zeros(n, np.int16) if y is None else _as_int(y, "y", lo=0, hi=H)
    if p is None:
        p = np.zeros(n, np.int8)
    else:
        p = _as_int(p, "p", lo=0 if P is None or P > 1 else None, hi=P if P is not None and P > 1 else None,
                    schema=P != 1)
        if P == 1:
            p = np.zeros(n, np.int8)  # one polarity: p carries no information
    for name, arr in (("x", x), ("y", y), ("p", p)):
        if len(arr) != n:
            raise ValueError(f"events field '{name}' has {len(arr)} values but 't' has {n}")
    if n > 1:
        dec = t[1:] < t[:-1]
        if dec.any():
            if not sort:
                i = int(np.argmax(dec)) + 1
                raise ValueError(
                    f"events field 't' decreases at index {i} ({t[i - 1]} -> {t[i]} µs); "
                    f"timestamps must be sorted (pass sort=True to sort them)"
                )
            order = np.argsort(t, kind="stable")
            t, x, y, p = t[order], x[order], y[order], p[order]
    return t, x, y, p


def check_sensor_size(sensor_size, where: str = "") -> Tuple[int, int, int]:
    """sensor_size as (W, H, P) ints >= 1 (as tonic writes it), or a ValueError naming the value."""
    suffix = f" for {where}" if where else ""
    try:
        size = tuple(int(s) for s in sensor_size)
    except (TypeError, ValueError):
        raise ValueError(f"sensor_size must be (W, H, P) integers, got {sensor_size!r}{suffix}") from None
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"sensor_size must be three positive integers (W, H, P), got {sensor_size!r}{suffix}")
    if any(s > m for s, m in zip(size, MAX_SENSOR_SIZE)):
        raise ValueError(f"sensor_size {size}{suffix} is larger than the event schema holds (W, H ≤ 32768, P ≤ 128: "
                         "x, y int16, p int8); check the recording's header or the sensor_size you passed")
    return size


def sensor_size_of(events: np.ndarray) -> Tuple[int, int, int]:
    """The smallest sensor (W, H, P) that holds these events (for recordings without a header)."""
    if len(events) == 0:
        return (1, 1, 1)
    return (int(events["x"].max()) + 1, int(events["y"].max()) + 1, max(int(events["p"].max()) + 1, 1))


def flat_column(dataset, name: str):
    """(values, offsets) of a list column: every row's values in one numpy array and where each row starts
    (offsets[i]:offsets[i + 1]); from Arrow without a per-row loop for a datasets.Dataset."""
    try:
        import pyarrow as pa

        table = dataset.with_format("arrow")[:]  # (row selections applied)
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            lengths = column.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
            values = column.flatten().to_numpy(zero_copy_only=False)
            return np.asarray(values), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    except (AttributeError, KeyError, TypeError, ImportError):
        pass
    rows = [np.asarray(r).ravel() for r in (dataset[name] if hasattr(dataset, "column_names") else
                                           [row[name] for row in dataset])]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return (np.concatenate(rows) if rows else np.zeros(0)), offsets
