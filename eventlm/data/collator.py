"""Batches for the EventSSM: tokenize, pad to a few bucketed lengths, attach labels; slice long recordings.

jit compiles one program per input shape. Padding every batch to the longest sample gives a new shape
almost every step; the collator instead pads to the smallest *bucket* that fits: multiples m·2^k of
`pad_to_multiple_of` (m), capped by `max_length` (the last bucket). A dataset whose samples run from
1 to 2^20 events then compiles about 20 shapes, not thousands.

    collator = EventCollator(tokenizer, pad_to_multiple_of=1024, max_length=65536)
    batch = collator([ds["train"][i] for i in range(32)])   # numpy dict, ready for the model

Long recordings (DVS Gesture) are cut into overlapping windows of a fixed event count before batching,
as the paper does (65,536 events, 50 % overlap), with `slice_by_event_count`, also usable in
`dataset.map(slice_by_event_count, batched=True, fn_kwargs={"length": 65536, "overlap": 0.5})`.
"""

import math
from collections.abc import Mapping
from typing import Optional, Sequence

import numpy as np

from ..tokenization_events import is_batch_column
from .events import EVENT_FIELDS, EventStream

TASKS = ("classification", "next-event")
IGNORE_INDEX = -100  # label of positions the next-event loss skips (padding), as in transformers


def bucket_lengths(pad_to_multiple_of: Optional[int] = None, max_length: Optional[int] = None, up_to=None):
    """The padded lengths a collator can emit: m·2^k (m = pad_to_multiple_of or 1) below max_length,
    then max_length itself. Without max_length the list runs up to the first bucket >= up_to."""
    m = _positive_int(1 if pad_to_multiple_of is None else pad_to_multiple_of, "pad_to_multiple_of")
    if max_length is None:
        if up_to is None:
            raise ValueError("bucket_lengths without max_length needs up_to (the longest length to cover)")
        top = m << max(0, math.ceil(math.log2(max(1, -(-int(up_to) // m)))))  # m·2^ceil(log2(ceil(up_to/m)))
        return [m << k for k in range(int(math.log2(top // m)) + 1)]
    max_length = _positive_int(max_length, "max_length")
    if max_length % m:
        raise ValueError(
            f"max_length={max_length} is not a multiple of pad_to_multiple_of={m}; choose e.g. "
            f"max_length={-(-max_length // m) * m}"
        )
    return [m << k for k in range(max_length.bit_length()) if m << k < max_length] + [max_length]


def _positive_int(value, name):
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class EventCollator:
    """Collate Hub rows (t/x/y/p lists + label) or tokenized samples into a padded numpy batch.

    Args:
        tokenizer: an EventTokenizer.
        pad_to_multiple_of: m, the smallest bucket and the unit of every bucket (default 1).
        max_length: the largest bucket; longer samples are cut (truncation=True, on the tokenizer's
            truncation_side) or refused. Must be a multiple of m. Default: the tokenizer's model_max_length.
        buckets: pad to m·2^k buckets (True) or just to the next multiple of m (False).
        task: "classification" (labels from `label_column`, soft labels from `soft_label_column` or a
            vector label) or "next-event" (labels = input_ids, padding set to -100).
        num_labels: number of classes; with it, integer labels are checked and, in a batch that also
            holds soft labels, turned into one-hot rows.
        add_special_tokens: bos/eos around every sample; default: only for "next-event".
        sort: sort events by time instead of refusing decreasing timestamps.

    Returns a dict of numpy arrays: input_ids (B, L) int32, timestamps (B, L) int64 µs, attention_mask
    (B, L) int32 and, when the rows carry them, labels: (B,) int32, or (B, C) float32 soft labels, or
    (B, L) int32 next-event targets.
    """

    def __init__(
        self,
        tokenizer,
        pad_to_multiple_of: Optional[int] = None,
        max_length: Optional[int] = None,
        buckets: bool = True,
        task: str = "classification",
        num_labels: Optional[int] = None,
        label_column: str = "label",
        soft_label_column: str = "soft_label",
        add_special_tokens: Optional[bool] = None,
        truncation: bool = True,
        sort: bool = False,
    ):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.tokenizer = tokenizer
        self.pad_to_multiple_of = _positive_int(1 if pad_to_multiple_of is None else pad_to_multiple_of,
                                               "pad_to_multiple_of")
        self.max_length = max_length if max_length is not None else getattr(tokenizer, "model_max_length", None)
        if self.max_length is not None:
            bucket_lengths(self.pad_to_multiple_of, self.max_length)  # validates max_length against m
            self.max_length = int(self.max_length)
        self.buckets = bool(buckets)
        self.task = task
        self.num_labels = None if num_labels is None else _positive_int(num_labels, "num_labels")
        self.label_column, self.soft_label_column = label_column, soft_label_column
        self.add_special_tokens = (task == "next-event") if add_special_tokens is None else bool(add_special_tokens)
        self.truncation, self.sort = bool(truncation), bool(sort)

    def bucket_lengths(self, up_to=None):
        """The padded lengths this collator emits (up to `up_to` when there is no max_length)."""
        return bucket_lengths(self.pad_to_multiple_of, self.max_length, up_to=up_to)

    def padded_length(self, longest: int) -> int:
        """The bucket a batch whose longest sample has `longest` tokens is padded to."""
        m = self.pad_to_multiple_of
        if not self.buckets:
            return max(m, -(-longest // m) * m)
        return next(b for b in self.bucket_lengths(up_to=max(longest, 1)) if b >= longest)

    def __call__(self, features: Sequence) -> dict:
        if isinstance(features, Mapping) or not len(features):
            raise ValueError("EventCollator takes a non-empty list of samples (dataset rows or tokenized dicts)")
        ids, ts, mask = zip(*(self._tokens(row, i) for i, row in enumerate(features)))
        length = self.padded_length(max(len(a) for a in ids))
        batch = self.tokenizer._pad_arrays(
            {"input_ids": ids, "timestamps": ts, "attention_mask": mask}, "max_length", length, None, "np"
        )
        if self.task == "next-event":
            labels = batch["input_ids"].copy()
            labels[batch["attention_mask"] == 0] = IGNORE_INDEX  # pad positions are not predicted
            batch["labels"] = labels
        else:
            labels = self._labels(features)
            if labels is not None:
                batch["labels"] = labels
        return batch

    def _tokens(self, row, i):
        """(ids, timestamps, mask) of one sample, tokenized if raw, cut to max_length if allowed."""
        tok = self.tokenizer
        n_special = 2 if self.add_special_tokens else 0
        if isinstance(row, Mapping) and "input_ids" in row:
            ids = np.asarray(row["input_ids"])
            if "timestamps" not in row:
                raise ValueError(f"sample {i} has input_ids but no timestamps; both come from the tokenizer")
            ts = np.asarray(row["timestamps"])
            mask = np.asarray(row["attention_mask"]) if "attention_mask" in row else np.ones(len(ids), np.int32)
            if not (ids.ndim == ts.ndim == mask.ndim == 1 and len(ids) == len(ts) == len(mask)):
                raise ValueError(
                    f"sample {i}: input_ids {ids.shape}, timestamps {ts.shape} and attention_mask {mask.shape} "
                    "must be 1-D of one length"
                )
            if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= tok.vocab_size):
                raise ValueError(
                    f"sample {i}: input_ids must be integers in [0, {tok.vocab_size}), got values "
                    f"{ids.min()}..{ids.max()} ({ids.dtype})"
                )
            ts, mask = _checked_pretokenized(tok, ids, ts, mask, i)
            if self.max_length is not None and len(ids) > self.max_length:
                if not self.truncation:
                    raise ValueError(f"sample {i} has {len(ids)} tokens, more than max_length={self.max_length}")
                cut = slice(len(ids) - self.max_length, None) if tok.truncation_side == "left" else slice(self.max_length)
                ids, ts, mask = ids[cut], ts[cut], mask[cut]
            return ids.astype(np.int32), ts, mask
        max_events = None
        if self.max_length is not None:
            if self.max_length <= n_special:
                raise ValueError(f"max_length={self.max_length} leaves no room for events beside bos/eos")
            max_events = self.max_length - n_special
            n = _num_events(row)
            if not self.truncation and n is not None and n > max_events:
                raise ValueError(f"sample {i} has {n} events, more than max_length={self.max_length} allows")
        try:
            return tok.encode_stream(row, sort=self.sort, add_special_tokens=self.add_special_tokens,
                                     max_events=max_events)
        except ValueError as err:
            raise ValueError(f"sample {i}: {err}") from err

    def _labels(self, features):
        """(B,) int32 class labels, (B, C) float32 soft labels, or None when no sample has a label."""
        raw = []
        for row in features:
            value = None
            if isinstance(row, Mapping):
                value = row.get(self.soft_label_column)
                if value is None:
                    value = row.get(self.label_column, row.get("labels"))
            raw.append(value)
        missing = [i for i, v in enumerate(raw) if v is None]
        if len(missing) == len(raw):
            return None
        if missing:
            raise ValueError(f"sample {missing[0]} has no '{self.label_column}' while others do")
        arrays = [np.asarray(v) for v in raw]
        if all(a.ndim == 0 for a in arrays):
            return self._hard_labels(arrays)
        return self._soft_labels(arrays)

    def _hard_labels(self, arrays):
        kinds = [a.dtype.kind for a in arrays]
        if any(k not in "iubf" for k in kinds):
            i = next(i for i, k in enumerate(kinds) if k not in "iubf")
            raise ValueError(f"sample {i} has label {arrays[i].item()!r}; class labels must be integer class ids "
                             "(turn names into ids with the dataset's ClassLabel feature or config.label2id)")
        labels = np.array([a.item() for a in arrays])
        if labels.dtype.kind == "f" and not (np.isfinite(labels) & (labels == np.round(labels))).all():
            bad = labels[~(np.isfinite(labels) & (labels == np.round(labels)))][0]
            raise ValueError(f"class labels must be integers, got {bad.item()!r}")
        if labels.dtype.kind == "f":
            labels = np.clip(labels, -1, 2**31)  # (beyond int32 either way: refused below, never wrapped)
        labels = labels.astype(np.int64)
        hi = self.num_labels
        bad = (labels < 0) | (labels >= (hi if hi else 2**31 - 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"sample {i} has label {labels[i]}, outside [0, {hi if hi else 'num_labels'}) "
                "(unlabelled rows, e.g. label -1, cannot be batched for classification)"
            )
        return labels.astype(np.int32)

    def _soft_labels(self, arrays):
        sizes = {a.shape[0] for a in arrays if a.ndim == 1}
        if any(a.ndim > 1 for a in arrays) or len(sizes) > 1:
            raise ValueError(f"soft labels must be vectors of one length, got shapes {[a.shape for a in arrays][:4]}")
        C = sizes.pop()
        if self.num_labels is not None and C != self.num_labels:
            raise ValueError(f"soft labels have {C} classes but num_labels={self.num_labels}")
        out = np.zeros((len(arrays), C), np.float32)
        for i, a in enumerate(arrays):
            if a.ndim == 0:  # an integer label among soft ones: its one-hot row
                hard = self._hard_labels([a])[0]
                if hard >= C:
                    raise ValueError(f"sample {i} has label {hard}, outside the {C} classes of the soft labels")
                out[i, hard] = 1.0
            else:
                row = a.astype(np.float64)
                if not np.isfinite(row).all() or (row < 0).any():
                    raise ValueError(f"sample {i} has soft label {a.tolist()}: values must be finite and >= 0")
                out[i] = row
        return out


def _checked_pretokenized(tokenizer, ids, timestamps, mask, i):
    """(timestamps int64, mask int32) of a pre-tokenized sample after the model's own input checks (integer
    µs in int64's range and in time order, a 0/1 mask with the valid events first): a NaN timestamp became
    INT64_MIN, 0.7 became 0, a mask of 5 passed."""
    from ..modeling_events import check_inputs  # (jax: imported only for pre-tokenized rows)

    if timestamps.dtype.kind == "f":
        bad = ~np.isfinite(timestamps) | (timestamps != np.round(timestamps))
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(f"sample {i}: timestamps must be integer µs, got {timestamps[k]} at position {k}")
    elif timestamps.size and timestamps.dtype.kind not in "iu":
        raise ValueError(f"sample {i}: timestamps must be integer µs, got dtype {timestamps.dtype}")
    if timestamps.dtype.kind == "f" and timestamps.size and np.abs(timestamps).max() >= 2.0**63:
        raise ValueError(f"sample {i}: timestamps hold {np.abs(timestamps).max()}, past the int64 µs range")
    try:
        check_inputs(tokenizer, ids[None], timestamps[None], mask[None])
    except ValueError as err:
        raise ValueError(f"sample {i}: {err}") from err
    return timestamps.astype(np.int64), mask.astype(np.int32)


def _num_events(row):
    """Number of events of a raw sample without converting it (None when unknown)."""
    if isinstance(row, EventStream):
        return len(row.events)
    try:
        return len(row["t"])
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def slice_by_event_count(events, length: int, overlap: float = 0.0, include_incomplete: bool = True):
    """Cut a recording into windows of `length` events that share a fraction `overlap` of them.

    Windows start every length - round(overlap·length) events, as tonic's SliceByEventCount
    (include_incomplete keeps the last, shorter window; a recording shorter than `length` is one window).
    The paper's DVS Gesture training uses length=65536, overlap=0.5.

    events: one stream (structured array, EventStream, dict/row with t/x/y/p) -> a list of windows of
    the same kind (other dict keys, e.g. the label, are copied into every window); or a batch of rows
    as dataset.map(batched=True) passes it (a dict of columns) -> a dict of columns with one row per
    window, so `ds.map(slice_by_event_count, batched=True, fn_kwargs={"length": 65536, "overlap": 0.5})`
    turns a dataset of recordings into a dataset of windows.
    """
    length = _positive_int(length, "length")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap is the fraction of events two windows share, in [0, 1); got {overlap!r}")
    stride = length - int(round(overlap * length))
    if stride < 1:
        raise ValueError(f"overlap={overlap} leaves no stride for length={length}")
    if isinstance(events, Mapping) and "t" in events and is_batch_column(events["t"]):
        return _slice_batch(events, length, stride, include_incomplete)
    if isinstance(events, EventStream):
        return [EventStream(w, events.sensor_size) for w in
                _windows(events.events, len(events.events), length, stride, include_incomplete)]
    if isinstance(events, np.ndarray):
        return _windows(events, len(events), length, stride, include_incomplete)
    if isinstance(events, Mapping):
        if "t" not in events:
            raise ValueError(f"events have no 't' field; got keys {sorted(events)}")
        n = len(events["t"])
        per_event = [k for k in EVENT_FIELDS if k in events]
        bounds = _bounds(n, length, stride, include_incomplete)
        return [{**events, **{k: events[k][a:b] for k in per_event}} for a, b in bounds]
    raise TypeError(f"slice_by_event_count takes an event stream or a batch of rows, got {type(events).__name__}")


def _bounds(n, length, stride, include_incomplete):
    """(start, end) of every window, as tonic.slicers.SliceByEventCount computes them."""
    count = min(length, n)
    rounding = math.ceil if include_incomplete else math.floor
    n_windows = int(rounding((n - count) / stride)) + 1
    return [(k * stride, k * stride + count) for k in range(n_windows)]


def _windows(arr, n, length, stride, include_incomplete):
    return [arr[a:b] for a, b in _bounds(n, length, stride, include_incomplete)]


def _slice_batch(columns, length, stride, include_incomplete):
    """A dict of columns (one row per recording) -> a dict of columns (one row per window)."""
    n_rows = len(columns["t"])
    for k, col in columns.items():
        if len(col) != n_rows:
            raise ValueError(f"column '{k}' has {len(col)} rows but 't' has {n_rows}")
    per_event = [k for k in EVENT_FIELDS if k in columns]
    out = {k: [] for k in columns}
    for r in range(n_rows):
        for a, b in _bounds(len(columns["t"][r]), length, stride, include_incomplete):
            for k in columns:
                out[k].append(columns[k][r][a:b] if k in per_event else columns[k][r])
    return out
