"""EventTokenizer: raw sensor events -> (token, time) sequences, the way a text tokenizer turns text into ids.

A sensor of size (W, H, P) (tonic's sensor_size) downsampled by integer factors (fx, fy) has
W' = ceil(W / fx) columns, H' = ceil(H / fy) rows and P' polarities (1 when merged or when P == 1).
Every event becomes one token, unique per channel:

    token = p·W'·H' + y'·W' + x'        with x' = x // fx, y' = y // fy    ("unique", the default)

and the special tokens come after the channels: pad = W'·H'·P', bos = pad + 1, eos = pad + 2.
Audio sensors have x = channel, y = 0, so their tokens are the channel numbers.

Converted original checkpoints (Schöne et al. 2024, issue 6) use token_layout="reference-dvs":
token = x'·y' + W'·H'·p, the reference's DVS tokens (x·y collides, so such ids cannot be decoded); never
the default. Its audio tokens are the channels, i.e. the default layout. The reference's other time
convention (each token paired with the gap *after* it, the last event dropped) is the model's switch
EventSSMConfig(gap_convention="after"): the tokenizer always emits every event, so that exactly one
place drops the last one (for L events the model reads Δt_k = timestamps[k+1] - timestamps[k],
k < L - 1, which is the reference collate function's np.diff(t)).

Outputs follow transformers' tokenizers: a BatchEncoding with input_ids (int32), timestamps (int64 µs
from the stream's first event) and attention_mask (int32), with the usual padding / truncation /
max_length / pad_to_multiple_of / return_tensors arguments. Padded positions hold pad_token_id, the
last valid timestamp (so timestamps never decrease) and attention_mask 0; padding is on the right.
"""

import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ._io import write_json_atomic
from ._quiet import import_transformers_quietly
from .data.events import EventStream, as_events, event_columns
from .errors import EventDataError, did_you_mean
from .resources import data_dir

import_transformers_quietly()
from transformers.tokenization_utils_base import BatchEncoding  # noqa: E402  (works without torch)

CONFIG_NAME = "tokenizer_config.json"
TOKEN_LAYOUTS = ("unique", "reference-dvs")
_SIDES = ("left", "right")
_DERIVED = ("num_channels", "vocab_size", "pad_token_id", "bos_token_id", "eos_token_id")
_INFO = ("tokenizer_class", "eventlm_version")
_SETTINGS = ("name", "description", "sensor_size", "sensor_layout", "downsample", "merge_polarities", "token_layout",
             "truncation_side", "model_max_length")  # saved in this order (tuples as lists)


def _positive_ints(value, count):
    """value as a tuple of `count` positive ints, or None when it is not one."""
    try:
        values = (value,) * count if np.isscalar(value) and count == 2 else tuple(value)
        ok = len(values) == count and all(not isinstance(v, bool) and int(v) == v and int(v) >= 1 for v in values)
    except (TypeError, ValueError):
        return None
    return tuple(int(v) for v in values) if ok else None



def is_batch_column(value):
    """True when a dict column holds one sequence per sample (a batch), not one value per event."""
    if isinstance(value, np.ndarray):
        return value.dtype == object or value.ndim == 2
    if isinstance(value, (list, tuple)) and len(value):
        return isinstance(value[0], (list, tuple, np.ndarray))
    return False


def split_streams(events):
    """(streams, is_batch): one stream or a batch of them as a list of single streams.

    One stream: an EventStream, a structured array, a dict of arrays or a Hub row (t/x/y/p lists).
    A batch: a list/tuple of those, or a dict of columns holding one list per sample (what
    `dataset.map(..., batched=True)` passes).
    """
    if isinstance(events, (EventStream, np.ndarray)):
        return [events], False
    if isinstance(events, Mapping) or hasattr(events, "keys"):
        if "input_ids" in events:
            raise TypeError("these samples are already tokenized (they hold input_ids): use tokenizer.pad(...)")
        if "t" in events and is_batch_column(events["t"]):
            fields = [k for k in ("t", "x", "y", "p") if k in events]
            return [{k: events[k][i] for k in fields} for i in range(len(events["t"]))], True
        return [events], False
    if isinstance(events, (list, tuple)):
        return list(events), True
    raise TypeError(
        "events must be a structured numpy array, a dict of arrays, a Hub dataset row (t/x/y/p lists), an "
        f"EventStream, or a list of them; got {type(events).__name__}"
    )


class EventTokenizer:
    """Turns event streams into input_ids / timestamps / attention_mask for an EventSSM.

    Args:
        sensor_size: (W, H, P) as tonic writes it; events are validated against it (P == 1 ignores p).
        downsample: spatial factor(s) fx or (fx, fy); x' = x // fx, y' = y // fy.
        merge_polarities: one channel per pixel for both polarities.
        token_layout: "unique" (p·W'·H' + y'·W' + x') or "reference-dvs" (x'·y' + W'·H'·p, converted
            original checkpoints only).
        truncation_side: "right" keeps the first max_length events, "left" the last ones.
        model_max_length: default max_length for truncation / padding="max_length" (None: unlimited).
        name, description, sensor_layout: free text saved with the tokenizer (what x, y, p mean).
    """

    model_input_names = ["input_ids", "timestamps", "attention_mask"]
    padding_side = "right"

    def __init__(
        self,
        sensor_size: Sequence[int],
        downsample: Union[int, Sequence[int]] = (1, 1),
        merge_polarities: bool = False,
        token_layout: str = "unique",
        truncation_side: str = "right",
        model_max_length: Optional[int] = None,
        name: Optional[str] = None,
        description: Optional[str] = None,
        sensor_layout: Optional[dict] = None,
    ):
        size = None if np.isscalar(sensor_size) else _positive_ints(sensor_size, 3)
        if size is None:
            raise ValueError(f"sensor_size must be three positive integers (W, H, P), got {sensor_size!r}")
        factors = _positive_ints(downsample, 2)
        if factors is None:
            raise ValueError(f"downsample must be a positive integer or a pair of them (fx, fy), got {downsample!r}")
        if token_layout not in TOKEN_LAYOUTS:
            raise ValueError(f"token_layout must be one of {TOKEN_LAYOUTS}, got {token_layout!r}")
        if truncation_side not in _SIDES:
            raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
        if model_max_length is not None and _positive_ints([model_max_length], 1) is None:
            raise ValueError(f"model_max_length must be a positive integer or None, got {model_max_length!r}")
        self.sensor_size, self.downsample = size, factors
        self.merge_polarities = bool(merge_polarities)
        self.token_layout = token_layout
        self.truncation_side = truncation_side
        self.model_max_length = None if model_max_length is None else int(model_max_length)
        self.name, self.description = name, description
        self.sensor_layout = dict(sensor_layout) if sensor_layout else None
        W, H, P = self.sensor_size
        fx, fy = self.downsample
        # W' = ceil(W / fx): x // fx of the last column stays inside
        self.channel_size = (-(-W // fx), -(-H // fy), 1 if (self.merge_polarities or P == 1) else P)
        if token_layout == "reference-dvs" and self.channel_size[1] == 1:
            raise ValueError(
                "token_layout='reference-dvs' is the reference's camera layout (x·y + W·H·p); for a sensor with "
                f"one row {self.sensor_size} the reference's tokens are the channels, i.e. the default 'unique'"
            )
        self.num_channels = int(np.prod(self.channel_size))
        self.pad_token_id = self.num_channels  # special tokens come after the channels
        self.bos_token_id = self.num_channels + 1
        self.eos_token_id = self.num_channels + 2
        self.vocab_size = self.num_channels + 3
        self.all_special_ids = [self.pad_token_id, self.bos_token_id, self.eos_token_id]
        if self.vocab_size >= 2**31:
            raise ValueError(f"vocabulary of {self.vocab_size} tokens does not fit int32 ids; downsample the sensor")

    # ------------------------------------------------------------------ tokens

    def __len__(self):
        return self.vocab_size

    def __repr__(self):
        return (
            f"EventTokenizer(name={self.name!r}, sensor_size={self.sensor_size}, downsample={self.downsample}, "
            f"merge_polarities={self.merge_polarities}, token_layout={self.token_layout!r}, "
            f"vocab_size={self.vocab_size})"
        )

    def _check_stream_sensor(self, events):
        """An EventStream from a larger sensor than this tokenizer's is a mismatch, even if its events fit."""
        if isinstance(events, EventStream):
            w, h, p = events.sensor_size
            W, H, P = self.sensor_size
            if w > W or h > H or (P > 1 and p > P):
                raise ValueError(
                    f"events come from a sensor of size {tuple(events.sensor_size)} but this tokenizer is for "
                    f"{self.sensor_size}; use a tokenizer for that sensor (e.g. EventTokenizer(sensor_size="
                    f"{tuple(events.sensor_size)}))"
                )

    def validate(self, events, sort: bool = False) -> np.ndarray:
        """One stream as a validated EVENT_DTYPE array (eventlm.data.events.as_events with this sensor)."""
        self._check_stream_sensor(events)
        return as_events(events, self.sensor_size, sort=sort)

    def token_ids(self, x, y, p) -> np.ndarray:
        """Token ids (int32) of validated raw coordinates x, y, p (integer arrays of one length).

        One int32 buffer, updated in place (fresh allocations, i.e. page faults, dominate at 1 M events)."""
        fx, fy = self.downsample
        W2, H2, P2 = self.channel_size
        x, y, p = np.asarray(x), np.asarray(y), np.asarray(p)
        xd = np.floor_divide(x, fx, dtype=np.int32) if fx > 1 else x  # x' = x // fx
        yd = np.floor_divide(y, fy, dtype=np.int32) if fy > 1 else y  # y' = y // fy
        if self.token_layout == "reference-dvs":  # reference: x'·y' + W'·H'·p
            ids = yd.astype(np.int32)
            ids *= xd
            if P2 > 1:
                ids += np.multiply(p, np.int32(W2 * H2), dtype=np.int32)
            return ids
        if P2 > 1:  # p·W'·H' + y'·W' + x' = (p·H' + y')·W' + x'
            ids = p.astype(np.int32)
            ids *= np.int32(H2)
            ids += yd
        elif H2 > 1:
            ids = yd.astype(np.int32)
        else:  # audio: the channel
            return xd.astype(np.int32, copy=xd is x)
        ids *= np.int32(W2)
        ids += xd
        return ids

    def channel_events(self, events, sort: bool = False) -> np.ndarray:
        """The events as the tokens see them: validated, x // fx, y // fy, p = 0 when merged / P == 1,
        t from the stream's first event (what decode(ids, timestamps) gives back)."""
        ev = self.validate(events, sort=sort)
        fx, fy = self.downsample
        ev["x"] //= fx
        ev["y"] //= fy
        if self.channel_size[2] == 1:
            ev["p"] = 0
        if len(ev):
            ev["t"] -= ev["t"][0]
        return ev

    def encode_stream(self, events, sort=False, add_special_tokens=False, max_events=None, truncation_side=None):
        """One stream -> (input_ids int32, timestamps int64, attention_mask int32) numpy arrays, unpadded,
        cut to max_events events (special tokens not counted) on truncation_side."""
        truncation_side = truncation_side or self.truncation_side
        self._check_stream_sensor(events)
        t, x, y, p = event_columns(events, self.sensor_size, sort=sort)  # validated once, no structured copy
        n = len(t)
        t0 = t[0] if n else 0
        if max_events is not None and n > max_events:
            cut = slice(n - max_events, None) if truncation_side == "left" else slice(max_events)
            t, x, y, p = t[cut], x[cut], y[cut], p[cut]
            n = max_events
        ids = self.token_ids(x, y, p)
        ts = t - t0
        mask = np.ones(n, np.int32)
        if add_special_tokens:  # bos at the stream's start, eos at its last event
            last = ts[-1] if n else 0
            ids = np.concatenate([[self.bos_token_id], ids, [self.eos_token_id]]).astype(np.int32)
            ts = np.concatenate([[ts[0] if n else 0], ts, [last]]).astype(np.int64)
            mask = np.ones(n + 2, np.int32)
        return ids, ts, mask

    def __call__(
        self,
        events,
        padding: Union[bool, str] = False,
        truncation: Optional[bool] = None,
        max_length: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        return_tensors: Optional[str] = None,
        add_special_tokens: bool = False,
        return_attention_mask: bool = True,
        truncation_side: Optional[str] = None,
        sort: bool = False,
    ) -> BatchEncoding:
        """Tokenize one stream or a batch of streams.

        padding: False/"do_not_pad", True/"longest" (the longest in the batch) or "max_length".
        truncation: True cuts every stream to max_length tokens (special tokens included) on
            truncation_side ("right" keeps the start, "left" the end); None means True when max_length
            is given. max_length defaults to model_max_length.
        pad_to_multiple_of: round the padded length up to a multiple of this.
        return_tensors: None (Python lists), "np" or "jax" (a batch dimension is added for one stream).
        add_special_tokens: bos before and eos after each stream (next-event pretraining).
        sort: sort events by time instead of rejecting decreasing timestamps.
        Bad events raise ValueError naming the field and the value (eventlm.data.events.as_events).
        """
        streams, is_batch = split_streams(events)
        side = truncation_side or self.truncation_side
        if side not in _SIDES:
            raise ValueError(f"truncation_side must be 'left' or 'right', got {side!r}")
        if truncation is None:  # as in transformers: an explicit max_length truncates
            truncation = max_length is not None
        max_length = self.model_max_length if max_length is None else max_length
        if truncation not in (True, False, "longest_first", "only_first", "do_not_truncate"):
            raise ValueError(f"truncation must be True or False, got {truncation!r}")
        truncation = truncation in (True, "longest_first", "only_first")
        if max_length is not None and _positive_ints([max_length], 1) is None:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        n_special = 2 if add_special_tokens else 0
        max_events = None
        if truncation:
            if max_length is None:
                raise ValueError("truncation=True needs max_length (or model_max_length on the tokenizer)")
            if max_length <= n_special:
                raise ValueError(f"max_length={max_length} leaves no room for events beside the bos/eos tokens")
            max_events = max_length - n_special
        encoded = [self.encode_stream(s, sort, add_special_tokens, max_events, side) for s in streams]
        data = {k: [e[i] for e in encoded] for i, k in enumerate(self.model_input_names)}  # ids, timestamps, mask
        out = self._pad_arrays(data, padding, max_length, pad_to_multiple_of, return_tensors)
        if not return_attention_mask:
            del out["attention_mask"]
        return self._finish(out, is_batch, return_tensors)

    # ------------------------------------------------------------------ padding

    def _target_length(self, lengths, padding, max_length, pad_to_multiple_of):
        """The padded length for these sample lengths, or None for no padding."""
        if padding in (False, None, "do_not_pad"):
            return None
        if padding in (True, "longest"):
            target = max(lengths, default=0)
        elif padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length (or model_max_length on the tokenizer)")
            target = max(int(max_length), max(lengths, default=0))
            if target > max_length:
                raise ValueError(
                    f"a sample has {max(lengths)} tokens, more than max_length={max_length}; pass truncation=True"
                )
        else:
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        if pad_to_multiple_of is not None:
            if _positive_ints([pad_to_multiple_of], 1) is None:
                raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of  # round up
        return target

    def _pad_arrays(self, data, padding, max_length, pad_to_multiple_of, return_tensors):
        """Pad lists of per-sample arrays to one length: (B, L) arrays, or the lists unchanged."""
        ids, ts, mask = data["input_ids"], data["timestamps"], data["attention_mask"]
        lengths = [len(a) for a in ids]
        target = self._target_length(lengths, padding, max_length, pad_to_multiple_of)
        if target is None:
            if return_tensors is not None and len(set(lengths)) > 1:
                raise ValueError(
                    f"streams have different lengths {sorted(set(lengths))[:5]}...; return_tensors="
                    f"{return_tensors!r} needs padding=True (or 'max_length')"
                )
            if return_tensors is None:
                return dict(data)
            target = lengths[0] if lengths else 0
        B = len(ids)
        if B and all(n == target for n in lengths) and return_tensors is not None:  # nothing to pad: no copies for B=1
            stack = lambda rows: rows[0][None] if B == 1 else np.stack(rows)  # noqa: E731
            return {"input_ids": stack(ids), "timestamps": stack(ts), "attention_mask": stack(mask)}
        out_ids = np.full((B, target), self.pad_token_id, np.int32)
        out_ts = np.zeros((B, target), np.int64)
        out_mask = np.zeros((B, target), np.int32)
        for i, n in enumerate(lengths):
            out_ids[i, :n] = ids[i]
            out_ts[i, :n] = ts[i]
            out_ts[i, n:] = ts[i][-1] if n else 0  # pads repeat the last time: Δt = 0, never decreasing
            out_mask[i, :n] = mask[i]
        result = {"input_ids": out_ids, "timestamps": out_ts, "attention_mask": out_mask}
        if return_tensors is None:  # padded but as lists
            result = {k: [row for row in v] for k, v in result.items()}
        return result

    def pad(
        self,
        encoded_inputs,
        padding: Union[bool, str] = True,
        max_length: Optional[int] = None,
        pad_to_multiple_of: Optional[int] = None,
        return_tensors: Optional[str] = None,
    ) -> BatchEncoding:
        """Pad already tokenized samples (a list of dicts or a dict of lists with input_ids, timestamps and
        optionally attention_mask). Keys other than the model inputs pass through unchanged."""
        is_batch = isinstance(encoded_inputs, (list, tuple))
        if is_batch:
            if encoded_inputs and not isinstance(encoded_inputs[0], Mapping):
                raise TypeError(f"pad expects dicts with input_ids and timestamps, got {type(encoded_inputs[0]).__name__}")
            keys = list(encoded_inputs[0].keys()) if encoded_inputs else self.model_input_names
            encoded_inputs = {k: [e[k] for e in encoded_inputs] for k in keys}
        if not isinstance(encoded_inputs, Mapping):
            raise TypeError(f"pad expects a list of dicts or a dict of lists, got {type(encoded_inputs).__name__}")
        for key in ("input_ids", "timestamps"):
            if key not in encoded_inputs:
                raise ValueError(f"pad needs '{key}' in every sample; got keys {sorted(encoded_inputs)}")
        ids_col = encoded_inputs["input_ids"]
        is_batch = is_batch or (len(ids_col) > 0 and not np.isscalar(ids_col[0]))
        rows = lambda col: [np.asarray(r) for r in (col if is_batch else [col])]  # noqa: E731
        ids, ts = rows(ids_col), rows(encoded_inputs["timestamps"])
        mask = rows(encoded_inputs["attention_mask"]) if "attention_mask" in encoded_inputs else [
            np.ones(len(a), np.int32) for a in ids
        ]
        for i, (a, b, c) in enumerate(zip(ids, ts, mask)):
            if not (len(a) == len(b) == len(c)):
                raise ValueError(
                    f"sample {i}: input_ids ({len(a)}), timestamps ({len(b)}) and attention_mask ({len(c)}) "
                    "differ in length"
                )
            if a.size and a.dtype.kind not in "iu":
                raise ValueError(f"sample {i}: input_ids must be integers, got dtype {a.dtype}")
            if a.size and (a.min() < 0 or a.max() >= self.vocab_size):
                bad = a[(a < 0) | (a >= self.vocab_size)][0]
                raise ValueError(f"sample {i}: input_ids holds {bad}, outside the vocabulary [0, {self.vocab_size})")
        data = {"input_ids": ids, "timestamps": [b.astype(np.int64) for b in ts], "attention_mask": mask}
        out = self._pad_arrays(data, padding, max_length, pad_to_multiple_of, return_tensors)
        for k, v in encoded_inputs.items():
            if k not in out:
                out[k] = v
        return self._finish(out, is_batch, return_tensors)

    def _finish(self, out, is_batch, return_tensors):
        """Lists, numpy or jax, with transformers' shapes: a single stream gives flat lists, or (1, L) tensors."""
        model_keys = [k for k in self.model_input_names if k in out]
        if return_tensors is None:
            for k in model_keys:
                rows = [np.asarray(r).tolist() for r in out[k]]
                out[k] = rows if is_batch else rows[0]
        elif return_tensors in ("np", "jax"):
            for k in model_keys:
                arr = out[k]
                arr = arr if isinstance(arr, np.ndarray) else np.stack(arr) if len(arr) else np.zeros((0, 0))
                out[k] = arr.astype(np.int64 if k == "timestamps" else np.int32, copy=False)
            if return_tensors == "jax":
                out = self._to_jax(out, model_keys)
        else:
            raise ValueError(f"return_tensors must be None, 'np' or 'jax', got {return_tensors!r}")
        return BatchEncoding(out, tensor_type=None)

    @staticmethod
    def _to_jax(out, keys):
        """jax arrays; int64 timestamps become int32 unless jax_enable_x64 (refused if they would overflow)."""
        import jax
        import jax.numpy as jnp

        ts = out.get("timestamps")
        if ts is not None and not jax.config.jax_enable_x64:
            if ts.size and ts.max() >= 2**31:
                raise ValueError(
                    f"timestamps reach {int(ts.max())} µs, beyond int32; jax without jax_enable_x64 cannot hold "
                    "them: use return_tensors='np' (the models take numpy int64) or enable x64"
                )
            out["timestamps"] = ts.astype(np.int32)
        for k in keys:
            out[k] = jnp.asarray(out[k])
        return out

    # ------------------------------------------------------------------ decoding

    def decode(self, token_ids, timestamps=None, skip_special_tokens: bool = True) -> np.ndarray:
        """Channel coordinates of token ids: a structured array with x, y, p (int16, int16, int8), and t
        (int64) when timestamps are given. Special tokens are dropped (skip_special_tokens=False makes
        them an error). These are the coordinates after downsampling, p = 0 when polarities are merged."""
        from .data.events import EVENT_DTYPE

        ids = np.asarray(token_ids)
        if ids.ndim != 1:
            raise ValueError(f"decode takes one sequence of ids (1-D), got shape {ids.shape}; use batch_decode")
        if ids.size and ids.dtype.kind not in "iu":
            raise ValueError(f"token ids must be integers, got dtype {ids.dtype}")
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = int(ids[(ids < 0) | (ids >= self.vocab_size)][0])
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.vocab_size})")
        ts = None if timestamps is None else np.asarray(timestamps)
        if ts is not None and ts.shape != ids.shape:
            raise ValueError(f"timestamps have shape {ts.shape} but token ids {ids.shape}")
        special = ids >= self.num_channels
        if special.any():
            if not skip_special_tokens:
                raise ValueError(
                    f"token {int(ids[special][0])} is a special token (pad/bos/eos), not an event; "
                    "pass skip_special_tokens=True"
                )
            ids = ids[~special]
            ts = None if ts is None else ts[~special]
        if self.token_layout == "reference-dvs":
            raise ValueError(
                "token_layout='reference-dvs' (x·y + W·H·p) maps different pixels to one token and cannot be decoded"
            )
        W2, H2, _ = self.channel_size
        dtype = EVENT_DTYPE if ts is not None else np.dtype([(f, EVENT_DTYPE[f]) for f in ("x", "y", "p")])
        out = np.empty(len(ids), dtype)
        out["x"] = ids % W2  # token = p·W'·H' + y·W' + x
        out["y"] = (ids // W2) % H2
        out["p"] = ids // (W2 * H2)
        if ts is not None:
            out["t"] = ts
        return out

    def batch_decode(self, sequences, timestamps=None, attention_mask=None, skip_special_tokens=True):
        """decode for each row of a batch; positions with attention_mask 0 are dropped."""
        out = []
        for i, ids in enumerate(sequences):
            ids = np.asarray(ids)
            ts = None if timestamps is None else np.asarray(timestamps[i])
            if attention_mask is not None:
                keep = np.asarray(attention_mask[i]).astype(bool)
                ids, ts = ids[keep], (None if ts is None else ts[keep])
            out.append(self.decode(ids, ts, skip_special_tokens=skip_special_tokens))
        return out

    # ------------------------------------------------------------------ saving and loading

    def to_dict(self) -> dict:
        """What tokenizer_config.json holds: the arguments, then derived values for the reader."""
        from . import __version__

        d = {"tokenizer_class": "EventTokenizer", "eventlm_version": __version__}
        for k in _SETTINGS:
            value = getattr(self, k)
            d[k] = list(value) if isinstance(value, tuple) else value
        d.update({k: getattr(self, k) for k in _DERIVED})
        return d

    @classmethod
    def from_dict(cls, config: dict, source: str = "config", **overrides) -> "EventTokenizer":
        """Build from a tokenizer_config.json dict; derived values are checked, unknown keys warned about."""
        if not isinstance(config, Mapping):
            raise ValueError(f"{source}: a tokenizer config must be a JSON object, got {type(config).__name__}")
        if config.get("tokenizer_class", "EventTokenizer") != "EventTokenizer":
            raise ValueError(f"{source}: tokenizer_class is {config['tokenizer_class']!r}, not 'EventTokenizer'")
        args = {k: v for k, v in config.items() if k not in _DERIVED + _INFO}
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(args) - known)
        if unknown:
            warnings.warn(f"{source}: ignoring unknown tokenizer settings {unknown}", stacklevel=3)
        args = {k: v for k, v in args.items() if k in known}
        if "sensor_size" not in args:
            raise ValueError(f"{source}: the tokenizer config has no 'sensor_size'")
        args.update(overrides)
        try:
            tok = cls(**args)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err
        if not overrides:  # the saved derived values must match what the arguments give
            for k in _DERIVED:
                if k in config and config[k] != getattr(tok, k):
                    raise ValueError(
                        f"{source}: {k} is {config[k]} in the file but its settings give {getattr(tok, k)}; the "
                        "file is inconsistent"
                    )
        return tok

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **push_kwargs):
        """Write tokenizer_config.json into save_directory (atomically); optionally push it to the Hub."""
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"save_directory {str(folder)!r} is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CONFIG_NAME
        write_json_atomic(path, self.to_dict())
        if push_to_hub:
            repo_id = push_kwargs.pop("repo_id", None) or folder.name
            self.push_to_hub(repo_id, **push_kwargs)
        return (str(path),)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: Optional[str] = None,
        private: Optional[bool] = None,
        token: Optional[str] = None,
        revision: Optional[str] = None,
        create_pr: bool = False,
    ):
        """Upload tokenizer_config.json to a Hub repo (created if missing) with huggingface_hub."""
        import huggingface_hub

        huggingface_hub.create_repo(repo_id, private=private, token=token, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return huggingface_hub.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message or "Upload EventTokenizer",
                token=token,
                revision=revision,
                create_pr=create_pr,
            )

    @staticmethod
    def presets() -> list:
        """Names of the tokenizer presets shipped with eventlm (tokenizers/*.json)."""
        return sorted(p.stem for p in data_dir("tokenizers").glob("*.json"))

    @classmethod
    def from_pretrained(
        cls,
        pretrained_name_or_path: Union[str, os.PathLike],
        revision: Optional[str] = None,
        cache_dir=None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: Optional[str] = None,
        **overrides,
    ) -> "EventTokenizer":
        """Load a tokenizer from a folder (or its tokenizer_config.json), a preset name ("shd",
        "dvs-gesture", ... see EventTokenizer.presets()) or a Hub repo id. Keyword overrides replace
        saved settings, e.g. from_pretrained("prophesee-gen4", downsample=4)."""
        if not str(pretrained_name_or_path).strip():  # Path("") is the current folder
            raise ValueError(f"EventTokenizer.from_pretrained got an empty name; pass a folder, a preset "
                             f"({', '.join(cls.presets())}) or a Hub repo id")
        path = Path(pretrained_name_or_path)
        if path.is_dir():
            path = path / CONFIG_NAME
            if not path.is_file():
                raise OSError(f"folder {str(path.parent)!r} has no {CONFIG_NAME}: it holds no EventTokenizer")
        elif path.is_file():
            pass
        elif str(pretrained_name_or_path) in cls.presets():
            path = data_dir("tokenizers") / f"{pretrained_name_or_path}.json"
        else:
            path = cls._download(str(pretrained_name_or_path), revision, cache_dir, force_download,
                                 local_files_only, token)
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise EventDataError(f"{path}: not a valid tokenizer config ({err})", path=path) from err
        return cls.from_dict(config, source=str(path), **overrides)

    @classmethod
    def _download(cls, repo_id, revision, cache_dir, force_download, local_files_only, token):
        """tokenizer_config.json of a Hub repo through huggingface_hub (cached, HF_ENDPOINT honoured)."""
        import huggingface_hub

        try:
            return huggingface_hub.hf_hub_download(
                repo_id,
                CONFIG_NAME,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
        except Exception as err:  # noqa: BLE001  (any Hub failure gets one message naming all three options)
            raise OSError(
                f"{repo_id!r} is not a folder, not a preset{did_you_mean(repo_id, cls.presets())} "
                f"({', '.join(cls.presets())}) and its "
                f"{CONFIG_NAME} could not be fetched from the Hub: {type(err).__name__}: {err}"
            ) from err
