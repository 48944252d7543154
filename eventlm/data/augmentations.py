"""Event-stream augmentations of EventSSM (Schöne et al. 2024), vectorized numpy, seeded.

Every augmentation takes one EVENT_DTYPE stream (or anything `as_events` accepts), the sensor size
(W, H, P) and a random source `rng` (a `numpy.random.Generator`, an int seed or None), and returns a
new EVENT_DTYPE array that still satisfies the schema: timestamps non-decreasing and >= 0, every
coordinate inside the sensor, dtypes kept. The input is never modified. The same seed gives the same
output. Empty and one-event streams pass through without error.

    from eventlm.data.augmentations import augmentations_for, apply_to_row
    aug = augmentations_for("shd")                 # the paper's SHD pipeline and parameters
    events = aug(events, (700, 1, 1), rng=0)
    row = apply_to_row(hub_row, aug, (700, 1, 1), rng)

What happens to a coordinate pushed outside the sensor is the `outside` argument of each spatial
augmentation: "drop" the event, "clip" it to the border, or (roll only) "wrap" it modulo W / H.
Defaults follow the reference code (github.com/Efficient-Scalable-Machine-Learning/event-ssm):
jitter, roll and scale drop, rotate clips. Parameters and pipeline order come from its task configs.

Deliberate differences from the reference code (its quirks are not defaults here):
- rounding to the pixel grid is round-to-nearest, ties to even (np.rint; the reference and tonic
  truncate float coordinates, a -0.5 px bias); the audio channel jitter keeps the reference's truncation of the Gaussian shift
  (`rounding="trunc"`, unbiased) because the SHD/SSC jitter strengths were tuned with it;
- rotate and scale act about the pixel-grid center ((W-1)/2, (H-1)/2), so a 90° turn of a square
  sensor is a permutation of its pixels; clipping goes to W-1 / H-1 (the reference clips to W, H);
- roll draws shifts in [-max, max] (the reference: [-max, max-1]);
- time jitter clips negative timestamps to 0 (the reference keeps them; the schema forbids them);
- time skew scales time about the first event (gaps scale the same as about t = 0);
- CutMix aligns the pasted chunk to the receiving stream's start (see `cut_mix`).
tonic.transforms are not used: they draw from numpy's global random state (no Generator) and write
floats into the integer fields by truncation (tonic's SpatialJitter(clip_outliers=True) drops, not
clips, events jittered outside; checked on tonic 1.7).
"""

import inspect
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import did_you_mean
from .events import EVENT_DTYPE, as_events, check_sensor_size

RngLike = Union[None, int, np.random.Generator, np.random.SeedSequence]
_OUTSIDE = ("drop", "clip")
_ROUNDING = {"round": np.rint, "trunc": np.trunc, "floor": np.floor}

__all__ = [
    "drop_event", "drop_chunk", "spatial_jitter", "channel_jitter", "time_skew", "time_jitter",
    "uniform_noise", "roll", "rotate", "scale", "cut_mix", "cut_mix_batch", "cut_mix_rows",
    "DropEvent", "DropChunk", "SpatialJitter", "ChannelJitter", "TimeSkew", "TimeJitter",
    "UniformNoise", "Roll", "Rotate", "Scale", "Compose", "augmentations_for", "apply_to_row",
    "apply_to_batch", "as_dataset_transform", "TASK_PRESETS",
]


# ----------------------------------------------------------------------------------------- helpers
def _rng(rng: RngLike) -> np.random.Generator:
    """A Generator from a Generator (used as is, so draws advance it), a seed or None."""
    if isinstance(rng, np.random.RandomState):
        raise TypeError("rng must be a numpy.random.Generator, an int seed or None, not a RandomState")
    return np.random.default_rng(rng)


def _make(t, x, y, p) -> np.ndarray:
    """An EVENT_DTYPE array from int fields already inside the sensor."""
    out = np.empty(len(t), EVENT_DTYPE)
    out["t"], out["x"], out["y"], out["p"] = t, x, y, p
    return out


def _by_time(events: np.ndarray) -> np.ndarray:
    """Stable sort by t (ties keep their order; already-sorted runs merge in linear time)."""
    return events[np.argsort(events["t"], kind="stable")]


def _check_outside(outside, allowed=_OUTSIDE):
    if outside not in allowed:
        raise ValueError(f"outside must be one of {allowed}, got {outside!r}")


def _check_range(name, value, lo, hi=None):
    """A float parameter in [lo, hi] (or a (low, high) pair for ranges), else ValueError."""
    vals = value if isinstance(value, (tuple, list)) else (value,)
    if isinstance(value, (tuple, list)) and (len(value) != 2 or value[0] > value[1]):
        raise ValueError(f"{name} as a range must be (low, high) with low <= high, got {value!r}")
    for v in vals:
        if not np.isfinite(float(v)) or v < lo or (hi is not None and v > hi):
            bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ValueError(f"{name} must be {bound}, got {value!r}")


def _draw(value, rng):
    """A float, or a uniform draw from a (low, high) range."""
    return rng.uniform(value[0], value[1]) if isinstance(value, (tuple, list)) else float(value)


def _place(x, y, sensor, outside):
    """Integer coordinates -> (x, y, keep): out-of-sensor events dropped (keep=False), clipped or wrapped."""
    W, H, _ = sensor
    if outside == "clip":
        return np.clip(x, 0, W - 1), np.clip(y, 0, H - 1), None
    if outside == "wrap":
        return np.mod(x, W), np.mod(y, H), None
    keep = (x >= 0) & (x < W) & (y >= 0) & (y < H)
    return x, y, keep


def _with_xy(events, x, y, keep):
    """Events with new coordinates (x, y in range where keep is True), rows with keep False removed."""
    if keep is not None:
        events, x, y = events[keep], x[keep], y[keep]
    return _make(events["t"], x, y, events["p"])


# ----------------------------------------------------------------------------- core augmentations
# Each _name(events, sensor, rng, **params) trusts its input (a valid EVENT_DTYPE array, a checked
# sensor, a Generator) and checks its parameters first, before any early return.

def _drop_event(events, sensor, rng, p=0.1):
    _check_range("p", p, 0.0, 1.0)
    n = len(events)
    k = int(_draw(p, rng) * n + 0.5)  # tonic's count: round(p·n) events dropped, without replacement
    keep = np.ones(n, bool)
    keep[rng.choice(n, size=k, replace=False)] = False
    return events[keep]


def _drop_chunk(events, sensor, rng, max_fraction=0.02, unit="events"):
    _check_range("max_fraction", max_fraction, 0.0, 1.0)
    if unit not in ("events", "time"):
        raise ValueError(f"unit must be 'events' or 'time', got {unit!r}")
    n = len(events)
    if unit == "events":
        m = int(max_fraction * n)  # longest chunk, in events
        if m < 1:
            return events.copy()
        size = int(rng.integers(1, m + 1))
        start = int(rng.integers(0, n - size + 1))
        return np.concatenate([events[:start], events[start + size:]])
    if n < 2:
        return events.copy()
    t0, t1 = int(events["t"][0]), int(events["t"][-1])
    width = rng.uniform(0.0, max_fraction) * (t1 - t0)  # drop [s, s + width], width <= max_fraction·duration
    s = rng.uniform(t0, t1 - width)
    t = events["t"]
    return events[(t < s) | (t > s + width)]


def _spatial_jitter(events, sensor, rng, std=1.0, rounding="round", outside="drop"):
    if not np.isscalar(std) and len(std) != 2:
        raise ValueError(f"std must be one σ or a (σx, σy) pair, got {std!r}")
    sx, sy = (std, std) if np.isscalar(std) else tuple(std)
    _check_range("std", (min(sx, sy), max(sx, sy)), 0.0)
    _check_outside(outside)
    if rounding not in _ROUNDING:
        raise ValueError(f"rounding must be one of {tuple(_ROUNDING)}, got {rounding!r}")
    W, H, _ = sensor
    n = len(events)
    r = _ROUNDING[rounding]
    x = events["x"].astype(np.int64) + r(rng.normal(0.0, sx, n)).astype(np.int64)  # x + [N(0, σx)]
    y = events["y"].astype(np.int64)
    if H > 1 and sy > 0:  # a one-row (audio) sensor has no y to jitter
        y = y + r(rng.normal(0.0, sy, n)).astype(np.int64)
    return _with_xy(events, *_place(x, y, sensor, outside))


def _channel_jitter(events, sensor, rng, std=0.55, rounding="trunc", outside="drop"):
    return _spatial_jitter(events, sensor, rng, std=(std, 0.0), rounding=rounding, outside=outside)


def _time_skew(events, sensor, rng, max_factor=1.2, factor=None):
    _check_range("max_factor", max_factor, 1.0)
    if factor is not None:
        _check_range("factor", factor, 1e-12)
    c = float(factor) if factor is not None else rng.uniform(1.0 / max_factor, max_factor)
    if len(events) == 0:
        return events.copy()
    out = events.copy()
    t0 = out["t"][0]
    out["t"] = t0 + np.rint((out["t"] - t0) * c).astype(np.int64)  # t0 + c·(t - t0): gaps scale by c
    return out


def _time_jitter(events, sensor, rng, std=1.0):
    _check_range("std", std, 0.0)
    out = events.copy()
    t = out["t"] + np.rint(rng.normal(0.0, std, len(out))).astype(np.int64)  # t + [N(0, σ)] µs
    out["t"] = np.maximum(t, 0)  # the schema forbids t < 0: clip (keeps every event)
    return _by_time(out)


def _uniform_noise(events, sensor, rng, max_events=35, n=None):
    if n is not None:
        _check_range("n", n, 0)
    else:
        _check_range("max_events", max_events, 0)
    if len(events) == 0:
        return events.copy()  # no time range to place noise in (tonic does the same)
    W, H, P = sensor
    k = int(n) if n is not None else (int(rng.integers(0, int(max_events))) if max_events >= 1 else 0)
    t = rng.integers(events["t"][0], events["t"][-1], size=k, endpoint=True)  # uniform in [t_first, t_last]
    noise = _make(t, rng.integers(0, W, k), rng.integers(0, H, k), rng.integers(0, P, k))
    return _by_time(np.concatenate([events, noise]))


def _roll(events, sensor, rng, max_shift=32, shift=None, outside="drop"):
    _check_range("max_shift", max_shift, 0)
    _check_outside(outside, _OUTSIDE + ("wrap",))
    W, H, _ = sensor
    if shift is None:
        dx = int(rng.integers(-int(max_shift), int(max_shift), endpoint=True))
        dy = int(rng.integers(-int(max_shift), int(max_shift), endpoint=True)) if H > 1 else 0
    else:
        dx, dy = (int(shift), 0) if np.isscalar(shift) else (int(shift[0]), int(shift[1]))
    x = events["x"].astype(np.int64) + dx
    y = events["y"].astype(np.int64) + dy
    return _with_xy(events, *_place(x, y, sensor, outside))


def _affine(events, sensor, outside, a, b, c, d):
    """Apply [[a, b], [c, d]] about the pixel-grid center, round to the nearest pixel, then place."""
    W, H, _ = sensor
    cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
    u, v = events["x"] - cx, events["y"] - cy
    x = np.rint(cx + a * u + b * v).astype(np.int64)
    y = np.rint(cy + c * u + d * v).astype(np.int64)
    return _with_xy(events, *_place(x, y, sensor, outside))


def _rotate(events, sensor, rng, max_angle=10.0, angle=None, outside="clip"):
    _check_range("max_angle", max_angle, 0.0, 180.0)
    _check_outside(outside)
    deg = float(angle) if angle is not None else rng.uniform(-max_angle, max_angle)
    th = np.deg2rad(deg)
    cos, sin = np.cos(th), np.sin(th)
    cos, sin = (0.0 if abs(cos) < 1e-12 else cos), (0.0 if abs(sin) < 1e-12 else sin)  # exact at 90°
    return _affine(events, sensor, outside, cos, -sin, sin, cos)  # x' = x cosθ - y sinθ, y' = x sinθ + y cosθ


def _scale(events, sensor, rng, max_scale=1.2, factor=None, outside="drop"):
    _check_range("max_scale", max_scale, 1.0)
    _check_outside(outside)
    if factor is not None:
        _check_range("factor", factor, 1e-12)
    f = float(factor) if factor is not None else rng.uniform(1.0 / max_scale, max_scale)
    return _affine(events, sensor, outside, f, 0.0, 0.0, f)


# ----------------------------------------------------------------------- public functional forms
def _public(core, doc):
    def augmentation(events, sensor_size, rng: RngLike = None, **params):
        sensor = check_sensor_size(sensor_size)
        return core(as_events(events, sensor), sensor, _rng(rng), **params)

    augmentation.__name__ = augmentation.__qualname__ = core.__name__.lstrip("_")
    augmentation.__doc__ = doc
    head = list(inspect.signature(augmentation).parameters.values())[:3]
    tail = list(inspect.signature(core).parameters.values())[3:]
    tail = [q.replace(kind=inspect.Parameter.KEYWORD_ONLY) for q in tail]
    augmentation.__signature__ = inspect.Signature(head + tail)  # help() shows the real parameters
    return augmentation


drop_event = _public(_drop_event, """drop_event(events, sensor_size, rng=None, p=0.1)

Drop round(p·n) events chosen uniformly without replacement (tonic's DropEvent count); the kept
events keep their order. p may be a (low, high) range to draw from.""")

drop_chunk = _public(_drop_chunk, """drop_chunk(events, sensor_size, rng=None, max_fraction=0.02, unit="events")

Drop one contiguous chunk. unit="events": a run of k consecutive events, k uniform in
[1, floor(max_fraction·n)] (nothing when that is < 1), start uniform. unit="time": all events in a
window [s, s + w], w uniform in [0, max_fraction·duration].""")

spatial_jitter = _public(_spatial_jitter, """spatial_jitter(events, sensor_size, rng=None, std=1.0, rounding="round",
outside="drop")

Add an integer Gaussian shift per event: x + round(N(0, σx)), y + round(N(0, σy)). std is σ in
pixels, one value or (σx, σy) (tonic's SpatialJitter takes variances: σ = sqrt(var)). A one-row
sensor (H = 1) jitters x only. rounding: "round" | "trunc" | "floor" the Gaussian draw.
outside: "drop" (reference) | "clip".""")

channel_jitter = _public(_channel_jitter, """channel_jitter(events, sensor_size, rng=None, std=0.55, rounding="trunc",
outside="drop")

The audio jitter of the reference (Jitter1D): x + trunc(N(0, σ)), events pushed outside the channel
range dropped; y untouched.""")

time_skew = _public(_time_skew, """time_skew(events, sensor_size, rng=None, max_factor=1.2, factor=None)

Stretch time by c ~ U(1/max_factor, max_factor) (or the given factor) about the first event:
t' = t0 + round(c·(t - t0)), so every gap is scaled by c within rounding; order is kept.""")

time_jitter = _public(_time_jitter, """time_jitter(events, sensor_size, rng=None, std=1.0)

Add round(N(0, σ)) µs to each timestamp, clip at 0 (no event is lost) and stable-sort by time.""")

uniform_noise = _public(_uniform_noise, """uniform_noise(events, sensor_size, rng=None, max_events=35, n=None)

Add k noise events (k uniform in [0, max_events), tonic's draw, or exactly n), each uniform over the
sensor (x, y, p) and over [t_first, t_last]; merged in time order (the input is a subsequence of the
output). An empty stream is returned unchanged (no time range to place noise in).""")

roll = _public(_roll, """roll(events, sensor_size, rng=None, max_shift=32, shift=None, outside="drop")

Translate by (dx, dy), each uniform in [-max_shift, max_shift] (dy = 0 on a one-row sensor), or by
the given shift (an int dx or a (dx, dy) pair). outside: "drop" (reference) | "clip" | "wrap"
(modulo W and H, like numpy.roll).""")

rotate = _public(_rotate, """rotate(events, sensor_size, rng=None, max_angle=10.0, angle=None, outside="clip")

Rotate by θ ~ U(-max_angle, max_angle) degrees (or the given angle) about the pixel-grid center
((W-1)/2, (H-1)/2), rounding to the nearest pixel. outside: "clip" (reference) | "drop". On a square
sensor 90° maps (x, y) to (W-1-y, x).""")

scale = _public(_scale, """scale(events, sensor_size, rng=None, max_scale=1.2, factor=None, outside="drop")

Zoom by f ~ U(1/max_scale, max_scale) (or the given factor) about the pixel-grid center, rounding to
the nearest pixel. outside: "drop" (reference) | "clip".""")


# ------------------------------------------------------------------------------------------ CutMix
def _cut_mix(a, b, rng, align_start=True):
    nb = len(b)
    if nb == 0:
        return a.copy(), 0.0
    k = int(rng.integers(1, nb)) if nb > 1 else 1  # chunk length in [1, nb-1] (the reference's range)
    s = int(rng.integers(0, nb - k, endpoint=True))
    chunk = b[s:s + k].copy()
    if align_start and len(a):
        chunk["t"] += a["t"][0] - b["t"][0]  # same time since stream start in both streams
    lo, hi = chunk["t"][0], chunk["t"][-1]
    kept = a[(a["t"] < lo) | (a["t"] > hi)]  # the chunk replaces a's events inside its time window
    mixed = _by_time(np.concatenate([kept, chunk]))
    return mixed, k / len(mixed)


def cut_mix(events_a, events_b, sensor_size=None, rng: RngLike = None, align_start: bool = True):
    """Event-count CutMix of the reference: paste a chunk of b into a; returns (mixed, lam).

    A run of k consecutive events of b (k uniform in [1, n_b - 1], start uniform) replaces the events
    of a whose timestamps fall inside the chunk's time window [t_first, t_last]; the result is their
    stable time-sorted merge. lam = k / len(mixed) is the fraction of events that came from b: the
    soft label is (1 - lam)·label_a + lam·label_b. align_start shifts the chunk by
    a.t[0] - b.t[0] so that "time since the stream start" is kept (slices of long recordings do not
    share a time origin; the reference pastes raw timestamps). An empty b gives (a, 0.0); an empty a
    gives (chunk, 1.0).
    """
    sensor = None if sensor_size is None else check_sensor_size(sensor_size)
    a, b = as_events(events_a, sensor), as_events(events_b, sensor)
    return _cut_mix(a, b, _rng(rng), align_start=align_start)


def _soft_labels(labels, num_classes):
    """(B,) int labels -> one-hot float64 (B, C); (B, C) soft labels pass through."""
    y = np.asarray(labels)
    if y.ndim == 2:
        if num_classes is not None and y.shape[1] != num_classes:
            raise ValueError(f"soft labels have {y.shape[1]} classes, num_classes is {num_classes}")
        return y.astype(np.float64)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be (B,) integers or (B, C) soft labels, got shape {y.shape} {y.dtype}")
    if num_classes is None:
        raise ValueError("num_classes is needed to turn integer labels into soft labels")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][0]
        raise ValueError(f"label {bad} is outside [0, num_classes={num_classes})")
    return np.eye(num_classes)[y]


def cut_mix_batch(events_list, labels, num_classes=None, sensor_size=None, rng: RngLike = None,
                  p: float = 1.0, align_start: bool = True):
    """CutMix over a batch as the reference collator does it; returns (events_list, soft_labels).

    With probability p (one draw per batch) every sample i receives a chunk of sample perm[i] for a
    random permutation perm (a sample may draw itself); soft label = (1 - lam_i)·y_i + lam_i·y_perm[i].
    labels: (B,) ints with num_classes, or (B, C) soft labels. soft_labels: float32 (B, C).
    """
    _check_range("p", p, 0.0, 1.0)
    rng = _rng(rng)
    sensor = None if sensor_size is None else check_sensor_size(sensor_size)
    events = [as_events(e, sensor) for e in events_list]
    y = _soft_labels(labels, num_classes)
    if len(y) != len(events):
        raise ValueError(f"{len(events)} event streams but {len(y)} labels")
    if not events or rng.random() >= p:
        return events, y.astype(np.float32)
    perm = rng.permutation(len(events))
    out, lams = [], np.zeros(len(events))
    for i, j in enumerate(perm):
        mixed, lams[i] = _cut_mix(events[i], events[j], rng, align_start=align_start)
        out.append(mixed)
    return out, ((1.0 - lams)[:, None] * y + lams[:, None] * y[perm]).astype(np.float32)


def cut_mix_rows(rows, num_classes, sensor_size=None, rng: RngLike = None, p: float = 1.0,
                 label_key: str = "label", soft_label_key: str = "soft_label"):
    """cut_mix_batch on Hub rows (dicts with t/x/y/p lists and an int label): new rows with the
    mixed events as arrays and `soft_label_key` = float32 (num_classes,) vector; other keys copied."""
    rows = list(rows)
    missing = [i for i, r in enumerate(rows) if label_key not in r]
    if missing:
        raise ValueError(f"row {missing[0]} has no {label_key!r} column; pass label_key=")
    events, soft = cut_mix_batch(rows, np.asarray([r[label_key] for r in rows], dtype=np.int64),
                                 num_classes, sensor_size, rng, p)
    return [_row_with(r, e, **{soft_label_key: s}) for r, e, s in zip(rows, events, soft)]


# ------------------------------------------------------------------------- transform objects
class _Augmentation:
    """Base of the configurable transforms: `aug(events, sensor_size, rng)`; applied with probability
    `prob` (the reference applies roll, rotate, scale and drop-chunk with p = 0.3)."""

    _core: Callable = None

    def __post_init__(self):
        _check_range("prob", self.prob, 0.0, 1.0)
        empty = np.empty(0, EVENT_DTYPE)  # a dry run on no events checks the parameters now
        type(self)._core(empty, (1, 1, 1), np.random.default_rng(0), **self._params())

    def _params(self):
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "prob"}

    def apply(self, events, sensor, rng):
        """Trusted path (used by Compose): valid events, checked sensor, a Generator."""
        if self.prob < 1.0 and rng.random() >= self.prob:
            return events
        return type(self)._core(events, sensor, rng, **self._params())

    def __call__(self, events, sensor_size, rng: RngLike = None):
        sensor = check_sensor_size(sensor_size)
        return self.apply(as_events(events, sensor), sensor, _rng(rng))


def _transform(name, core):
    """The configurable transform class of `core`: a frozen dataclass whose fields are the core's
    parameters (same order and defaults), then `prob`."""
    params = list(inspect.signature(core).parameters.values())[3:]
    spec = [(q.name, Any, field(default=q.default)) for q in params] + [("prob", float, field(default=1.0))]
    return make_dataclass(name, spec, bases=(_Augmentation,), frozen=True,
                          namespace={"_core": staticmethod(core), "__module__": __name__})


DropEvent = _transform("DropEvent", _drop_event)
DropChunk = _transform("DropChunk", _drop_chunk)
SpatialJitter = _transform("SpatialJitter", _spatial_jitter)
ChannelJitter = _transform("ChannelJitter", _channel_jitter)
TimeSkew = _transform("TimeSkew", _time_skew)
TimeJitter = _transform("TimeJitter", _time_jitter)
UniformNoise = _transform("UniformNoise", _uniform_noise)
Roll = _transform("Roll", _roll)
Rotate = _transform("Rotate", _rotate)
Scale = _transform("Scale", _scale)


@dataclass
class Compose:
    """A pipeline: `Compose([...])(events, sensor_size=None, rng=None)` -> events.

    transforms: the augmentation objects above, or any callable f(events, sensor_size, rng) returning
    events (its output is validated). sensor_size: the default sensor when a call gives none.
    cut_mix: probability that the collator applies `cut_mix_batch` to a batch (a batch-level step,
    not run by __call__; the presets carry the paper's value).
    """

    transforms: Sequence[Callable] = field(default_factory=list)
    sensor_size: Optional[Tuple[int, int, int]] = None
    cut_mix: float = 0.0

    def __post_init__(self):
        self.transforms = list(self.transforms)
        bad = [t for t in self.transforms if not callable(t)]
        if bad:
            raise TypeError(f"Compose needs callables f(events, sensor_size, rng), got {bad[0]!r}")
        _check_range("cut_mix", self.cut_mix, 0.0, 1.0)
        if self.sensor_size is not None:
            self.sensor_size = check_sensor_size(self.sensor_size)

    def __call__(self, events, sensor_size=None, rng: RngLike = None) -> np.ndarray:
        sensor_size = self.sensor_size if sensor_size is None else sensor_size
        if sensor_size is None:
            raise ValueError("no sensor_size: pass it to the call or to Compose(sensor_size=...)")
        sensor, rng = check_sensor_size(sensor_size), _rng(rng)
        out = as_events(events, sensor)
        for t in self.transforms:
            out = t.apply(out, sensor, rng) if isinstance(t, _Augmentation) else as_events(t(out, sensor, rng), sensor)
        return out


# -------------------------------------------------------------------------------------- presets
# The reference's task configs (configs/task/*.yaml) and pipelines (event_ssm/dataloading.py).
# spatial_jitter: σ in channels for audio (Jitter1D uses its 'var' as σ); a *variance* in px² for
# cameras (tonic SpatialJitter), so σ = sqrt(0.3) there. noise: max noise events per sample.
TASK_PRESETS = {
    "shd": dict(sensor_size=(700, 1, 1), drop_event=0.1, max_drop_chunk=0.02, spatial_jitter=0.55,
                time_skew=1.2, time_jitter=1.0, noise=35, cut_mix=0.3),
    "ssc": dict(sensor_size=(700, 1, 1), drop_event=0.1, max_drop_chunk=0.02, spatial_jitter=1.0,
                time_skew=1.05, time_jitter=3.0, noise=100, cut_mix=0.3),
    "dvs-gesture": dict(sensor_size=(128, 128, 2), drop_event=0.05, max_drop_chunk=0.02,
                        spatial_jitter=0.3, time_skew=1.12, time_jitter=5.0, noise=0, max_roll=32,
                        max_angle=10.0, max_scale=1.2, cut_mix=0.4),
}
_ALIASES = {"spiking-heidelberg-digits": "shd", "spiking-speech-commands": "ssc",
            "dvsgesture": "dvs-gesture", "dvs128-gesture": "dvs-gesture", "dvs": "dvs-gesture"}
_GEOMETRY_P = 0.3  # the reference applies drop-chunk, roll, rotate and scale with p = 0.3


def augmentations_for(task: str, **overrides) -> Compose:
    """The paper's training augmentations for "shd" | "ssc" | "dvs-gesture" as a Compose.

    overrides: any key of TASK_PRESETS[task] (the reference's config names: drop_event,
    max_drop_chunk, spatial_jitter, time_skew, time_jitter, noise, cut_mix, sensor_size; cameras also
    max_roll, max_angle, max_scale). Order as in the reference. Audio: drop event, drop chunk
    (p 0.3), channel jitter, time skew, time jitter, uniform noise. Cameras: drop chunk (p 0.3), drop
    event, uniform noise (when > 0), time skew, time jitter, spatial jitter, roll / rotate / scale
    (each p 0.3). The returned Compose's `cut_mix` is the per-batch CutMix probability.
    """
    key = _ALIASES.get(str(task).lower().replace("_", "-"), str(task).lower().replace("_", "-"))
    if key not in TASK_PRESETS:
        raise ValueError(f"unknown task {task!r}{did_you_mean(task, TASK_PRESETS)}; augmentation presets exist "
                         f"for {sorted(TASK_PRESETS)}")
    cfg = dict(TASK_PRESETS[key])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown augmentation setting(s) {unknown} for {key!r}; valid: {sorted(cfg)}")
    cfg.update(overrides)
    chunk = DropChunk(max_fraction=cfg["max_drop_chunk"], prob=_GEOMETRY_P)
    skew, jitter_t = TimeSkew(max_factor=cfg["time_skew"]), TimeJitter(std=cfg["time_jitter"])
    noise = [UniformNoise(max_events=cfg["noise"])] if cfg["noise"] > 0 else []
    if key in ("shd", "ssc"):
        steps = [DropEvent(p=cfg["drop_event"]), chunk, ChannelJitter(std=cfg["spatial_jitter"]),
                 skew, jitter_t, *noise]
    else:
        steps = [chunk, DropEvent(p=cfg["drop_event"]), *noise, skew, jitter_t,
                 SpatialJitter(std=float(np.sqrt(cfg["spatial_jitter"]))),
                 Roll(max_shift=cfg["max_roll"], prob=_GEOMETRY_P),
                 Rotate(max_angle=cfg["max_angle"], prob=_GEOMETRY_P),
                 Scale(max_scale=cfg["max_scale"], prob=_GEOMETRY_P)]
    return Compose(steps, sensor_size=cfg["sensor_size"], cut_mix=cfg["cut_mix"])


# -------------------------------------------------------------------------- Hub rows / datasets
def _row_with(row, events, **extra):
    """A copy of the row with t/x/y/p replaced by the event arrays (schema dtypes)."""
    out = dict(row)
    for name in ("t", "x", "y", "p"):
        out[name] = events[name].copy()
    out.update(extra)
    return out


def apply_to_row(row, transform, sensor_size=None, rng: RngLike = None) -> dict:
    """Augment one Hub row (a dict with t/x/y/p lists; y/p may be absent for audio).

    Returns a new dict: t, x, y, p as numpy arrays (int64, int16, int16, int8), every other column
    copied. transform: a Compose, an augmentation object or any f(events, sensor_size, rng).
    sensor_size may be omitted when the transform is a Compose that carries one.
    """
    if sensor_size is None:
        sensor_size = getattr(transform, "sensor_size", None)
        if sensor_size is None:
            raise ValueError("apply_to_row needs sensor_size (the transform carries none)")
    sensor = check_sensor_size(sensor_size)
    events = transform(as_events(row, sensor), sensor, _rng(rng))
    return _row_with(row, as_events(events, sensor))


def apply_to_batch(batch, transform, sensor_size=None, rng: RngLike = None) -> dict:
    """Augment a batch as `datasets` hands it to `.with_transform` / `.map(batched=True)`:
    a dict of columns, each a list with one entry per row. Returns the same layout."""
    if "t" not in batch:
        raise ValueError(f"batch has no 't' column; columns are {sorted(batch)}")
    rng = _rng(rng)
    n = len(batch["t"])
    rows = [apply_to_row({k: v[i] for k, v in batch.items()}, transform, sensor_size, rng) for i in range(n)]
    keys = list(batch) + [k for k in ("t", "x", "y", "p") if k not in batch]
    return {k: [r[k] for r in rows] for k in keys}


def as_dataset_transform(transform, sensor_size=None, seed: RngLike = None):
    """A function for `dataset.with_transform(...)`: one Generator seeded once, advanced per batch
    (so a run is reproducible for a fixed order of batches)."""
    rng = _rng(seed)

    def _transform(batch):
        return apply_to_batch(batch, transform, sensor_size, rng)

    return _transform
