"""Event-by-event streaming and event-stream generation for every event model (the shared driver).

    state = init_stream(model, batch_size=1)          # or model.init_stream(1)
    for ids, ts in sensor_chunks():                   # any chunk length ≥ 1
        out, state = stream(model, ids, ts, state)    # state in, state out
        print(out.logits)                             # the prediction given everything so far
    events = generate(next_event_model, num_events=10_000, temperature=1.0, seed=0, tokenizer=tok)

The state is an explicit, immutable pytree (`StreamState`); `stream` returns a new one and never changes
the one passed in, so a state can be kept, copied or branched (generation does).

Written once here: the chunk checks (vocabulary, time order, also against the state), the gaps (int64 µs
→ float32 model units, the full forward's rule), gap_convention="after" (the newest event waits for its
gap), bucketing of chunk lengths, the state object and its flat layout, the running classification
readout and the next-event head over the backbone's outputs, generation, and `eventlm stream`.

A model family supplies a `Streamer` subclass (named by the model class's `streamer_class`): its
backbone's state template, its per-weights constants (`prepare`) and one chunk of its backbone
(`backbone_chunk`: last-stage outputs, how many of them are final, the new backbone state); optionally a
CPU kernel of the whole step (EventSSM has one). One streamer is built per (model, params, batch_stats)
and kept on the model object with the model's compiled steps (no module-level caches).

Chunk lengths are bucketed to powers of two on the XLA step (padded, with a validity count inside the
chunk), so the number of compilations stays ≤ len(BUCKETS) per model and batch size; longer chunks are cut.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ._io import write_json_atomic
from .modeling_events import (HEAD_NAMES, GAP_LOG_SCALE_RANGE, NextEventPredictionOutput, SequenceClassifierOutput,
                              banned_tokens, check_inputs, gaps_to_units, lognormal_mixture_nll, sample_next_event)

try:  # the chunk check runs compiled where numba is installed (an install requirement), else in numpy
    import numba
except ImportError:  # pragma: no cover
    numba = None

BUCKETS = tuple(2**i for i in range(13))  # padded chunk lengths compiled for: 1, 2, 4, ..., 4096
# µs since the open frame began are kept in the float32 state row as low + high·2^24, both halves exact
SINCE_US_SPLIT = 2**24
# how many times a streaming step was traced (compiled), per model fingerprint: a diagnostic counter (the
# compile-count bound of the tests), not a cache
TRACE_COUNTS: collections.Counter = collections.Counter()
IMPLEMENTATIONS = ("auto", "xla", "cpu-kernel")
logger = logging.getLogger(__name__)


# ================================================================================================
# The state
# ================================================================================================


@flax.struct.dataclass
class ReadoutState:
    """Running readout over final last-stage positions: Σ h·w, Σ w (w = 1 for mean, Δt + eps for
    timepool), the last final hidden state (the "last" readout and the next-event context), and the total
    time Σ Δt (the reference timepool readout's divisor)."""

    weighted_sum: jax.Array
    weight: jax.Array
    last_hidden: jax.Array
    total_time: jax.Array


@flax.struct.dataclass
class StreamState:
    """Immutable stream state of a batch of event streams for one model (see the module docstring).

    Device part: `buffer` (B, N) float32 (a jax array after the XLA step, numpy after the CPU kernel; either
    step reads both), each row one stream's backbone state (EventSSM: per-stage SSM states and open pooling
    windows) and `ReadoutState` packed flat (`StateLayout`: a jitted call pays per array it returns, ~3 µs
    each, more than the step's compute at small chunks); `stages` / `readout` unpack them (for inspection). `logits`: the classification prediction given everything so far (None for
    next-event models).
    Host part (numpy, exact): `last_timestamp` (B,) int64 µs of the newest event, `num_events` (B,)
    int64 events seen, `pending_token` (B,) int32 (gap_convention="after": the event waiting for its
    gap, −1 for none). `fingerprint` / `model_name` identify the model the state belongs to.
    """

    buffer: jax.Array
    logits: Optional[jax.Array]
    last_timestamp: np.ndarray
    num_events: np.ndarray
    pending_token: np.ndarray
    fingerprint: str = flax.struct.field(pytree_node=False, default="")
    model_name: str = flax.struct.field(pytree_node=False, default="")
    layout: Any = flax.struct.field(pytree_node=False, default=None)

    @property
    def batch_size(self) -> int:
        return int(self.last_timestamp.shape[0])

    @property
    def stages(self):
        """The backbone's state (EventSSM: per-stage states), unpacked from `buffer` (numpy, batch first)."""
        return self.layout.unpack(np.asarray(self.buffer))[0]

    @property
    def readout(self) -> ReadoutState:
        """The running readout, unpacked from `buffer` (numpy, batch axis first)."""
        return self.layout.unpack(np.asarray(self.buffer))[1]


class StateLayout:
    """Where each array of one stream's (backbone state, readout) tree lies in its flat float32 row. The tree
    is real (complex states are stored as pairs); integers (token ids < 2^24, counts) and bfloat16 values are stored as
    float32 (exact). `pack` / `unpack` run inside jit on one row."""

    def __init__(self, template):
        leaves, self.treedef = jax.tree_util.tree_flatten(template)
        self.entries, offset = [], 0
        for leaf in leaves:
            shape, dtype = tuple(leaf.shape), np.dtype(leaf.dtype)
            size = int(np.prod(shape, dtype=np.int64))
            self.entries.append((offset, size, shape, dtype))
            offset += size
        self.size = offset

    def pack(self, tree) -> jax.Array:
        return jnp.concatenate([jnp.ravel(leaf).astype(jnp.float32) for leaf in jax.tree_util.tree_leaves(tree)])

    def unpack(self, row):
        """The tree of one row (N,), or of a (B, N) buffer with the batch axis first."""
        leaves = [row[..., a:a + n].astype(dtype).reshape(row.shape[:-1] + shape)
                  for a, n, shape, dtype in self.entries]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)




# ================================================================================================
# Model identity
# ================================================================================================

_IGNORED_CONFIG_KEYS = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype")


def model_fingerprint(model) -> str:
    """Short hash of the model class, its dtype and every config value that shapes the computation
    (kept on the model per config object: replace model.config rather than editing it in place)."""
    cached = model.__dict__.get("_fingerprint")
    if cached is not None and cached[0] is model.config:
        return cached[1]
    config = {k: v for k, v in model.config.to_dict().items() if k not in _IGNORED_CONFIG_KEYS}
    text = json.dumps([type(model).__name__, str(np.dtype(model.module.dtype)), config], sort_keys=True, default=str)
    fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
    model.__dict__["_fingerprint"] = (model.config, fingerprint)
    return fingerprint


# ================================================================================================
# The streamer: one per (model, weights); the family's backbone step plus the shared heads
# ================================================================================================


@functools.lru_cache(maxsize=None)
def _computes_on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def streamer_for(model, params=None, batch_stats=None) -> "Streamer":
    """The model's streamer for these weights (its own by default), built on first use and kept on the
    model while the weights objects stay the same; its compiled steps are kept per model config."""
    if getattr(model, "task", None) not in HEAD_NAMES:
        raise TypeError(f"streaming needs a model with a head (…ForSequenceClassification or "
                        f"…ForNextEventPrediction), got {type(model).__name__}")
    params = model.params if params is None else params
    batch_stats = (model.batch_stats if batch_stats is None else batch_stats) or None  # {} -> None
    kept = model.__dict__.get("_streamer")
    if kept is not None and kept.params is params and kept.batch_stats is batch_stats \
            and kept.config is model.config:
        return kept
    target = getattr(model, "streamer_class", None)
    if target is None:
        raise TypeError(f"{type(model).__name__} has no streaming step (its model family sets no streamer_class)")
    if isinstance(target, str):  # "module:Class"
        module, name = target.split(":")
        target = getattr(importlib.import_module(module), name)
    streamer = target(model, params, batch_stats)
    model.__dict__["_streamer"] = streamer
    return streamer


class Streamer:
    """The streaming step of one model with one set of weights.

    Built once per (model, params, batch_stats) by `streamer_for`: the state layout, the per-weights
    constants (packed for the XLA step), the jitted XLA step (shared by every streamer of the same model
    and config: compiled once) and, where the family has one, its CPU kernel. A family subclasses it and
    supplies `backbone_state_template`, `prepare`, `backbone_chunk` (and optionally `make_cpu_kernel`,
    `cpu_kernel_reason`); the readout, the next-event head and the step's plumbing are here.
    """

    def __init__(self, model, params, batch_stats):
        cfg = self.config = model.config
        self.dtype, self.task = model.module.dtype, model.task
        self.params, self.batch_stats = params, batch_stats
        self.fingerprint = model_fingerprint(model)
        self.model_name = f"{type(model).__name__}({cfg.model_type}, vocab_size={cfg.vocab_size}, {self.fingerprint})"
        # what `stream` reads per call, as plain attributes (a transformers config attribute costs ~1 µs)
        self.gap_convention = getattr(cfg, "gap_convention", "before")
        self.vocab_size, self.time_unit_us = cfg.vocab_size, cfg.time_unit_us
        if cfg.vocab_size >= 2**24:
            raise ValueError(f"streaming keeps token ids as float32, exact below 2^24; vocab_size={cfg.vocab_size}")
        width = int(cfg.output_hidden_size)
        spec = jax.ShapeDtypeStruct
        readout = ReadoutState(spec((width,), np.float32), spec((), np.float32), spec((width,), self.dtype),
                               spec((), np.float32))
        self.layout = StateLayout((self.backbone_state_template(), readout))
        compiled = model.__dict__.get("_streaming_compiled")
        if compiled is None or compiled["fingerprint"] != self.fingerprint:
            compiled = {"fingerprint": self.fingerprint, "prepare": jax.jit(self.prepare), "step": self._jitted_step()}
            model.__dict__["_streaming_compiled"] = compiled
        self.compiled = compiled  # the model's compiled functions: prepare, step, generation blocks
        variables = {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}
        self.check_variables(variables)
        self.prepared = compiled["prepare"](variables)
        self.constants = PackedConstants.pack(self.prepared)
        self.step = compiled["step"]
        self.cpu_kernel_unsupported = self.cpu_kernel_reason()
        self.choices = {}  # (batch, chunk bucket) -> the step "auto" runs ("cpu-kernel" | "xla"), see implementation_for
        self.implementation = None  # the step the last chunk ran

    # -- supplied by the model family ---------------------------------------------------------------
    def backbone_state_template(self):
        """One stream's backbone state as a pytree of jax.ShapeDtypeStruct (no batch axis)."""
        raise NotImplementedError

    def prepare(self, variables) -> dict:
        """Per-weights constants of the step (jitted once per model); must hold "variables"."""
        return {"variables": variables}

    def backbone_chunk(self, consts, state, tokens, dt, n) -> "BackboneChunk":
        """One chunk of one stream (tokens, dt (L,), n valid) through the backbone from `state`."""
        raise NotImplementedError

    def check_variables(self, variables) -> None:
        """ValueError when the weights cannot stream (e.g. batch norm without running statistics)."""

    def cpu_kernel_reason(self) -> Optional[str]:
        """Why the family's CPU kernel cannot run this model (None: it can)."""
        return "this model family has no CPU streaming kernel"

    def make_cpu_kernel(self):
        """A callable (buffer, logits, tokens, dt, counts) -> (outputs, buffer, logits); see `stream`."""
        raise NotImplementedError

    def backbone_state_limits(self):
        """The template's tree with, per leaf, the largest value an entry may hold when it is an index or a
        count (an int: entries must be integers in [0, limit]), else np.inf (any finite value)."""
        return jax.tree_util.tree_map(lambda _: np.inf, self.backbone_state_template())

    @functools.cached_property
    def state_bounds(self):
        """(columns, limits) of the flat state row's index / count entries (`backbone_state_limits`)."""
        limits = jax.tree_util.tree_leaves((self.backbone_state_limits(), (np.inf,) * 4))
        columns, bounds = [], []
        for (offset, size, _, _), limit in zip(self.layout.entries, limits):
            if np.isfinite(limit):
                columns.extend(range(offset, offset + size)), bounds.extend([limit] * size)
        return np.asarray(columns, np.int64), np.asarray(bounds, np.float32)

    # -- shared --------------------------------------------------------------------------------------
    @functools.cached_property
    def cpu_kernel(self):
        return self.make_cpu_kernel()

    def implementation_for(self, implementation: str, batch: int = 1, length: int = 1, trial=None) -> str:
        """The step `stream` runs for a chunk of (batch, length) events: "cpu-kernel" or "xla".

        "xla" → the XLA step; "cpu-kernel" → the CPU kernel (ValueError naming why where it cannot run the model);
        "auto" → $EVENTLM_STREAM_IMPLEMENTATION where set (a preference: "cpu-kernel" falls back to the XLA step
        where the kernel does not cover the model), else the XLA step where there is no kernel for the model or
        JAX does not compute on the CPU, else the faster of the two on this machine for this model shape, batch
        size and chunk-length bucket (`StepChoices`: measured once by `trial()`, a callable returning
        {implementation: [seconds per call]}, and kept on disk). The answer is kept in `self.implementation`
        (`model.stream_implementation`)."""
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
        reason = self.cpu_kernel_unsupported
        if implementation == "auto":
            implementation = os.environ.get(IMPLEMENTATION_ENV) or "auto"
            if implementation not in IMPLEMENTATIONS:
                raise ValueError(f"${IMPLEMENTATION_ENV} must be one of {IMPLEMENTATIONS}, got {implementation!r}")
            if implementation == "cpu-kernel" and reason is not None:
                implementation = "xla"
        if implementation == "cpu-kernel" and reason is not None:
            raise ValueError(f"the CPU streaming kernel cannot run this model: {reason}; use implementation='xla'")
        if implementation == "auto":
            if reason is not None or not _computes_on_cpu():
                implementation = "xla"
            else:
                key = (batch, _bucket(length, BUCKETS))
                implementation = self.choices.get(key)
                if implementation is None:
                    implementation = self.choices[key] = STEP_CHOICES.choose(self, *key, trial)
        self.implementation = implementation
        return implementation

    def host_step(self, implementation: str):
        """The callable (buffer, logits, tokens, dt, counts) -> (outputs, buffer, logits) that `stream` runs
        for a chunk instead of the bucketed XLA step ("cpu-kernel": the CPU kernel), or None for the XLA step."""
        return self.cpu_kernel if implementation == "cpu-kernel" else None

    def row_step(self, consts, device_state, ids, dt, n):
        """One chunk of one stream: (outputs, new device state). device_state: (its row of the state
        buffer, its logits); ids, dt (L,), n valid events (scalar)."""
        cfg, dtype = self.config, self.dtype
        consts = consts.unpack() if isinstance(consts, PackedConstants) else consts
        row, logits = device_state
        backbone_state, readout = self.layout.unpack(row)
        length = ids.shape[0]
        ids, dt = at_least_rows(ids, 2), at_least_rows(dt, 2)  # one-row matmuls: see at_least_rows
        valid = jnp.arange(ids.shape[0]) < n
        tokens = jnp.where(valid, jnp.clip(ids, 0, cfg.vocab_size - 1), 0).astype(jnp.int32)
        dt = jnp.where(valid, dt, 0.0)
        out = self.backbone_chunk(consts, backbone_state, tokens, dt, n)
        readout = readout.replace(total_time=readout.total_time + jnp.sum(dt))
        if self.task == "classification":
            logits, readout = _classification_readout(cfg, dtype, consts, readout, out.hidden, out.time_deltas,
                                                      out.mask, out.num_final)
            return logits, (self.layout.pack((out.state, readout)), logits)
        outs, readout = _next_event_outputs(cfg, dtype, consts, readout, out.residual, out.hidden, out.num_final,
                                            out.embeds, n)
        return tuple(o[:length] for o in outs), (self.layout.pack((out.state, readout)), logits)

    def event_step(self, consts, device_state, token, gap_us):
        """Inside jit: one event (token int32, gap int32 µs before it) of a one-stream device state (buffer (1, N),
        logits) through the step, as `generate` feeds its draws back: (new device state, the next-event head's
        outputs after it, one row each)."""
        dt = self._device_units(gap_us)
        outs, device_state = jax.vmap(self.row_step, in_axes=(None, 0, 0, 0, 0))(
            consts, device_state, token[None, None], dt[None, None], jnp.ones((1,), jnp.int32))
        return device_state, tuple(o[0, 0] for o in outs)

    def _device_units(self, gap_us):
        """Inside jit: int32 µs → float32 model units (`gaps_to_units` for gaps < 2^24 µs)."""
        return gap_us.astype(jnp.float32) / jnp.float32(self.time_unit_us)

    def generates_on_device(self, state) -> bool:
        """Whether `generate` can run this state's events as one compiled scan (else one `stream` call each)."""
        return True

    def _jitted_step(self):
        """The jitted, batch-vmapped step (traces counted in TRACE_COUNTS[fingerprint])."""
        fingerprint, row = self.fingerprint, self.row_step

        def step(consts, device_state, ids, dt, n):
            TRACE_COUNTS[fingerprint] += 1  # runs once per trace, never per call
            return jax.vmap(row, in_axes=(None, 0, 0, 0, 0))(consts, device_state, ids, dt, n)

        return jax.jit(step)


class FrameStreamer(Streamer):
    """The streaming step of a frame-based backbone (frames closed by event count or by time: the Spike-Driven
    Transformer). The events of a chunk are cut into frames on the host (the family's `close_frames`, the
    same rule as its full forward); the frames that close run through the backbone in order, from the carried
    state, in one jitted call per ≤ FRAME_PIECE frames (padded to powers of two, a mask freezing the padding);
    they enter the readout as final positions. The open frame (events so far, more may come) runs from the
    committed state as the provisional last position, so the prediction equals the full forward on the prefix.

    A family supplies `network_state_template()` (one stream's carried backbone state, ShapeDtypeStructs),
    `close_frames(...)` (host), `close_frames_one_event(...)` (the same rule for one event inside jit: compiled
    generation) and `run_frames(consts, net_state, counts (T, B, channels), mask (T, B))` →
    (net_state, hidden (B, T, D)); its state row also holds the open frame's event counts and the three
    framing numbers (events in it, µs since it began, whether the stream has begun).
    """

    FRAME_PIECE = 64
    num_channels: int = 0
    frame_length: int = 0  # events or µs per frame (the family's rule)

    def network_state_template(self):
        raise NotImplementedError

    def close_frames(self, tokens, gaps_us, n, open_events, since_us, started):
        raise NotImplementedError

    def run_frames(self, consts, net_state, counts, mask):
        raise NotImplementedError

    def close_frames_one_event(self, real, gap_us, open_events, since_us, started):
        """Device: `close_frames` for one event (see the SDT's `frames.close_frames_one_event`)."""
        raise NotImplementedError

    def backbone_state_template(self):
        scalar = jax.ShapeDtypeStruct((), np.float32)
        return {"network": self.network_state_template(),
                "open": jax.ShapeDtypeStruct((self.num_channels,), np.float32),
                "framing": {"open_events": scalar, "since_us": scalar, "since_us_high": scalar, "started": scalar}}

    def cpu_kernel_reason(self):
        return "frame-based models stream through their jitted frame step"

    def host_step(self, implementation: str):
        return self._frame_chunk  # ("cpu-kernel" is refused by implementation_for: cpu_kernel_reason)

    @functools.cached_property
    def _framing_slice(self):
        """The flat offsets [lo, hi) of open_events, since_us, since_us_high, started (adjacent leaves) in a state row."""
        paths = [jax.tree_util.keystr(p) for p, _ in
                 jax.tree_util.tree_flatten_with_path(self.backbone_state_template())[0]]
        lo = self.layout.entries[paths.index("['framing']['open_events']")][0]
        assert [self.layout.entries[paths.index(f"['framing']['{k}']")][0]
                for k in ("since_us", "since_us_high", "started")] == [lo + 1, lo + 2, lo + 3]
        return lo, lo + 4

    @staticmethod
    def _read_framing(framing, dtype):
        """(open_events, since_us, started) from the framing columns (..., 4) of state rows (numpy or jax), the
        two numbers as integers of `dtype`."""
        since = framing[..., 1].astype(dtype) + framing[..., 2].astype(dtype) * SINCE_US_SPLIT
        return framing[..., 0].astype(dtype), since, framing[..., 3] > 0

    @staticmethod
    def _framing(open_events, since_us, started):
        """The state's framing leaves, float32 (µs since the open frame began as two halves, each exact)."""
        return {"open_events": open_events.astype(np.float32),
                "since_us": (since_us % SINCE_US_SPLIT).astype(np.float32),
                "since_us_high": (since_us // SINCE_US_SPLIT).astype(np.float32),
                "started": started.astype(np.float32)}

    @functools.cached_property
    def _frame_fns(self):
        cfg, dtype, layout, fingerprint = self.config, self.dtype, self.layout, self.fingerprint
        readout_fn = jax.vmap(lambda consts, *row: _classification_readout(cfg, dtype, consts, *row),
                              in_axes=(None, 0, 0, 0, 0, 0))
        predicts_events = self.task == "next-event"

        def commit(consts, buffer, counts, mask, merge_open):
            """Closed frames (T, B, channels) into the state; the open frame's counts join frame 0 of the
            streams that close it (merge_open). Also returns the frames' hidden states (B, T, D)."""
            TRACE_COUNTS[fingerprint] += 1
            consts = consts.unpack()
            state, readout = layout.unpack(buffer)
            counts = counts.at[0].add(state["open"] * merge_open[:, None])
            network, hidden = self.run_frames(consts, state["network"], counts, mask)
            m = mask.T.astype(jnp.float32)  # (B, T)
            count = jnp.sum(m, axis=1)
            last = jnp.take_along_axis(hidden, jnp.maximum(count.astype(jnp.int32) - 1, 0)[:, None, None], axis=1)[:, 0]
            readout = readout.replace(
                weighted_sum=readout.weighted_sum + jnp.einsum("btd,bt->bd", hidden.astype(jnp.float32), m),
                weight=readout.weight + count,
                last_hidden=jnp.where((count > 0)[:, None], last.astype(readout.last_hidden.dtype),
                                      readout.last_hidden))
            state = {**state, "network": network, "open": state["open"] * (1.0 - merge_open[:, None])}
            return jax.vmap(layout.pack)((state, readout)), hidden

        def finish(consts, buffer, new_counts, framing, chunk_time):
            """The open frame gets the chunk's events past the closed frames; a classifier's prediction reads
            the committed positions plus the open frame as the provisional last one (the next-event head reads
            complete frames only: the open one does not run)."""
            TRACE_COUNTS[fingerprint] += 1
            consts = consts.unpack()
            state, readout = layout.unpack(buffer)
            open_counts = state["open"] + new_counts
            readout = readout.replace(total_time=readout.total_time + chunk_time)
            logits = None
            if not predicts_events:
                has = framing["open_events"] > 0
                _, hidden = self.run_frames(consts, state["network"], open_counts[None], has[None])
                logits, readout = readout_fn(consts, readout, hidden, jnp.zeros(hidden.shape[:2]),
                                             has[:, None], jnp.zeros(has.shape, jnp.int32))
            state = {**state, "open": open_counts, "framing": framing}
            return logits, jax.vmap(layout.pack)((state, readout))

        def events(consts, buffer, hidden, known, tokens, n):
            """The next-event head for every token of the chunk: token k reads the last frame complete once it
            is in (known − 1 among this chunk's closed frames `hidden` (B, C, D); −1: the last one committed
            before the chunk, kept in the state's readout) plus its own event embedding."""
            TRACE_COUNTS[fingerprint] += 1
            consts = consts.unpack()
            head = consts["variables"]["params"][HEAD_NAMES["next-event"]]
            _, readout = layout.unpack(buffer)
            index = known - 1
            context = jnp.take_along_axis(hidden, jnp.clip(index, 0, hidden.shape[1] - 1)[..., None], axis=1)
            context = jnp.where((index >= 0)[..., None], context, readout.last_hidden[:, None].astype(context.dtype))
            embeds = jnp.take(head["event_embed"]["embedding"], jnp.clip(tokens, 0, cfg.vocab_size - 1), axis=0)
            features = context + dense(context.shape[-1], dtype, head["local_proj"], embeds)
            outs = _next_event_head(cfg, dtype, head, features)
            valid = (jnp.arange(tokens.shape[1])[None] < n[:, None])[..., None]
            return tuple(jnp.where(valid, o, 0) for o in outs)

        return jax.jit(commit), jax.jit(finish), jax.jit(events)

    def generates_on_device(self, state) -> bool:
        lo, hi = self._framing_slice
        _, since, _ = self._read_framing(np.asarray(state.buffer)[:, lo:hi], np.int64)
        return bool(np.all(since < 2**30)) and self.frame_length < 2**30  # int32 sums on the device

    def event_step(self, consts, device_state, token, gap_us):
        """One drawn event through the frame step on the device, as `_frame_chunk` does it for a one-event chunk:
        the frames it closes run first (a long gap closes several: FRAME_PIECE at a time while that many remain,
        then one by one; the first holds the open frame's counts, and the event where it fills that frame by
        count), else the event joins the open frame; the next-event head reads the last complete frame."""
        commit, finish, events = self._frame_fns
        buffer, logits = device_state
        dt = self._device_units(gap_us)
        gap_us = jnp.round(dt * jnp.float32(self.time_unit_us)).astype(jnp.int32)  # the full forward's rule
        lo, hi = self._framing_slice
        open_events, since, started = (v[0] for v in self._read_framing(buffer[:, lo:hi], jnp.int32))
        real = (token >= 0) & (token < self.num_channels)
        closed, joins_closed, open_events, since, started = self.close_frames_one_event(
            real, gap_us, open_events, since, started)
        event = (jax.nn.one_hot(token, self.num_channels, dtype=jnp.float32) * real)[None, None]  # (T=1, B=1, C)
        width = int(self.config.output_hidden_size)

        def frames(size):  # `size` frames from frame k on; frame 0 holds the open frame (and the event if it joins)
            def run(k, buffer):
                first = k == 0
                counts = jnp.zeros((size, 1, self.num_channels), jnp.float32)
                counts = counts.at[0].set(event[0] * (first & joins_closed))
                buffer, hidden = commit(consts, buffer, counts, jnp.ones((size, 1), bool),
                                        first.astype(jnp.float32)[None])
                return buffer, hidden[:, -1].astype(jnp.float32)
            return run

        def some_frames(carry):  # a long gap closes many empty frames: FRAME_PIECE at a time while they last
            k, buffer, _ = carry
            many = closed - k >= self.FRAME_PIECE
            buffer, last = jax.lax.cond(many, frames(self.FRAME_PIECE), frames(1), k, buffer)
            return k + jnp.where(many, self.FRAME_PIECE, 1), buffer, last

        before = buffer
        _, buffer, last = jax.lax.while_loop(lambda carry: carry[0] < closed, some_frames,
                                             (jnp.int32(0), buffer, jnp.zeros((1, width), jnp.float32)))
        framing = self._framing(open_events[None], since[None], started[None])
        _, buffer = finish(consts, buffer, event[0] * (~joins_closed), framing, dt[None])
        outs = events(consts, before, last[:, None], jnp.minimum(closed, 1)[None, None], token[None, None],
                      jnp.ones((1,), jnp.int32))
        return (buffer, logits), tuple(o[0, 0] for o in outs)

    def _frame_chunk(self, buffer, logits, tokens, dts, counts):
        cfg = self.config
        batch, length = tokens.shape
        lo, hi = self._framing_slice
        gaps_us = np.round(dts * np.float32(cfg.time_unit_us)).astype(np.int64)  # the full forward's rule
        offset, closed, open_events, since_us, started, known = self.close_frames(
            tokens, gaps_us, counts, *self._read_framing(np.asarray(buffer[:, lo:hi]), np.int64))
        commit, finish, events = self._frame_fns
        consts = self.constants
        rows, cols = np.nonzero(offset >= 0)
        frame_of = offset[rows, cols]
        total = int(closed.max()) if batch else 0
        before, hidden = buffer, []
        for start in range(0, total, self.FRAME_PIECE):
            size = min(self.FRAME_PIECE, total - start)
            padded = _bucket(size, BUCKETS)
            piece = np.zeros((padded, batch, self.num_channels), np.float32)
            sel = (frame_of >= start) & (frame_of < start + size) & (frame_of < closed[rows])
            np.add.at(piece, (frame_of[sel] - start, rows[sel], tokens[rows[sel], cols[sel]]), 1.0)
            mask = (start + np.arange(padded))[:, None] < np.minimum(closed, start + size)[None, :]
            merge = (closed > 0) & (start == 0)
            buffer, piece_hidden = commit(consts, buffer, piece, mask, merge.astype(np.float32))
            hidden.append(piece_hidden[:, :size])
        new_counts = np.zeros((batch, self.num_channels), np.float32)
        sel = frame_of == closed[rows]
        np.add.at(new_counts, (rows[sel], tokens[rows[sel], cols[sel]]), 1.0)
        framing = self._framing(open_events, since_us, started)
        chunk_time = np.sum(dts, axis=1, dtype=np.float32)
        out, buffer = finish(consts, buffer, new_counts, framing, chunk_time)
        if self.task != "next-event":
            return out, buffer, out
        # the head over the chunk's tokens, padded to buckets (few compilations): closed frames and tokens
        width = int(cfg.output_hidden_size)
        frames = np.zeros((batch, _padded(total), width), np.float32)
        if hidden:
            frames[:, :total] = np.concatenate([np.asarray(h, np.float32) for h in hidden], axis=1)
        padded = _padded(length)
        pad = lambda a: np.pad(a, ((0, 0), (0, padded - length))).astype(np.int32)  # noqa: E731
        outs = events(consts, before, frames, pad(known), pad(tokens), np.asarray(counts, np.int32))
        return tuple(np.asarray(o)[:, :length] for o in outs), buffer, logits


class BackboneChunk(NamedTuple):
    """What a family's `backbone_chunk` returns for one chunk of one stream: the last-stage outputs
    (positions, F), their Δt and validity, how many of them are final (all their events arrived; the
    rest are provisional and are not committed), the events since the last final position before this
    chunk (`residual`, for the next-event head's causal rule), the chunk's event embeddings (L, H)
    (zero past n; read by the next-event head where the backbone pools) and the new backbone state."""

    hidden: Any
    time_deltas: Any
    mask: Any
    num_final: Any
    residual: Any
    embeds: Any
    state: Any


def at_least_rows(x, rows):
    """x padded along axis 0 to at least `rows` rows (zeros): XLA's CPU backend fuses a one-row matmul
    with all its producers into a loop that recomputes them for every output (≈20x slower)."""
    return jnp.pad(x, [(0, max(rows - x.shape[0], 0))] + [(0, 0)] * (x.ndim - 1))


def layer_norm(x, scale, bias, eps, dtype):
    """flax's LayerNorm over the last axis (float32 statistics, var = E[x²] − E[x]² clipped at 0), with
    both means from one matmul: XLA's CPU row reductions take five operations per norm."""
    x32 = x.astype(jnp.float32)
    ones = jnp.full((x.shape[-1], 1), 1.0 / x.shape[-1], jnp.float32)
    stats = jnp.stack([x32, x32 * x32]) @ ones  # (2, …, 1): E[x], E[x²]
    mean, var = stats[0], jnp.maximum(stats[1] - stats[0] ** 2, 0.0)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(dtype)


def dense(features, dtype, params, x):
    """nn.Dense(features) applied with the given weights."""
    return nn.Dense(features, dtype=dtype).apply({"params": params}, x)


@flax.struct.dataclass
class PackedConstants:
    """The step's constants as few arrays: the vectors concatenated into one flat buffer per dtype, the
    matrices and token tables as they are. jit pays a dispatch cost per argument array, which for ~100
    weight arrays is most of a single-event step. `unpack()` (inside jit) gives the tree back."""

    buffers: tuple
    spec: tuple = flax.struct.field(pytree_node=False)  # (treedef, dtypes, entries): static, hashable

    @classmethod
    def pack(cls, tree) -> "PackedConstants":
        """Vectors go into the flat buffers; matrices (read by matmuls, which would copy a slice) stay apart."""
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        groups, own, entries = {}, [], []
        for leaf in leaves:
            if leaf.ndim >= 2:
                entries.append(("own", len(own), 0, ()))
                own.append(leaf)
            else:
                group = groups.setdefault(str(leaf.dtype), [])
                entries.append(("flat", str(leaf.dtype), sum(x.size for x in group), tuple(leaf.shape)))
                group.append(leaf)
        dtypes = tuple(sorted(groups))  # concatenated on the host: eager jnp ops would compile per shape
        flats = tuple(jnp.asarray(np.concatenate([np.asarray(x).ravel() for x in groups[d]])) for d in dtypes)
        return cls((flats, tuple(own)), (treedef, dtypes, tuple(entries)))

    def unpack(self):
        treedef, dtypes, entries = self.spec
        flats, own = self.buffers
        leaves = [own[a] if kind == "own" else
                  flats[dtypes.index(a)][offset:offset + int(np.prod(shape))].reshape(shape)
                  for kind, a, offset, shape in entries]
        return jax.tree_util.tree_unflatten(treedef, leaves)



# ================================================================================================
# The shared heads over the backbone's outputs
# ================================================================================================


def _classification_readout(cfg, dtype, consts, readout, h, h_dt, mask, n_final):
    """Running masked readout (the model's mean | timepool | last) and the classifier's logits."""
    positions = jnp.arange(h.shape[0])
    final = positions < n_final
    provisional = mask & ~final
    mode = cfg.classifier_pooling
    w = jnp.ones_like(h_dt) if mode == "mean" else h_dt + cfg.timepool_eps
    last = jnp.where(n_final > 0, h[jnp.maximum(n_final - 1, 0)], readout.last_hidden)
    total_time = readout.total_time
    weighted_sum = readout.weighted_sum + jnp.sum(h * (w * final)[:, None], axis=0)
    weight = readout.weight + jnp.sum(w * final)
    if mode == "last":
        has_prov = jnp.any(provisional)
        pooled = jnp.where(has_prov, h[jnp.argmax(provisional)], last)
    else:
        num = weighted_sum + jnp.sum(h * (w * provisional)[:, None], axis=0)
        norm = weight + jnp.sum(w * provisional)
        if mode == "timepool" and cfg.readout_convention == "reference":
            norm = total_time
        pooled = num / jnp.where(norm > 0, norm, 1.0)
    logits = dense(cfg.num_labels, dtype, consts["variables"]["params"][HEAD_NAMES["classification"]], pooled)
    new = readout.replace(weighted_sum=weighted_sum, weight=weight, last_hidden=last)
    return logits, new


def _next_event_outputs(cfg, dtype, consts, readout, residual, h, n_final, embeds, n):
    """The model's next-event head (modeling_events.NextEventHead) for every event of the chunk: event k
    reads the last-stage position complete at k (this chunk's h, or the kept last one) plus local_proj of
    its own embedding (embeds: the chunk's event embeddings, zero past n)."""
    head = consts["variables"]["params"][HEAD_NAMES["next-event"]]
    width = h.shape[-1]
    i = jnp.arange(embeds.shape[0])
    stride = cfg.total_stride
    if stride == 1:
        features = h
    else:
        window = (residual + i + 1) // stride - 1  # index into this chunk's positions; −1: the kept one
        context = jnp.where((window >= 0)[:, None], jnp.take(h, jnp.maximum(window, 0), axis=0), readout.last_hidden)
        features = context + dense(width, dtype, head["local_proj"], embeds)
    outs = _next_event_head(cfg, dtype, head, features)
    last = jnp.where(n_final > 0, h[jnp.maximum(n_final - 1, 0)], readout.last_hidden)
    valid = (i < n)[:, None]
    return tuple(jnp.where(valid, o, 0) for o in outs), readout.replace(last_hidden=last)


def _next_event_head(cfg, dtype, head, features):
    """NextEventHead's layers on its features (norm, token logits, the gap mixture with its log-scales clipped
    to GAP_LOG_SCALE_RANGE): (logits, mixture logits, log means, log scales)."""
    features = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=dtype).apply({"params": head["norm"]}, features)
    logits = dense(cfg.vocab_size, dtype, head["token_logits"], features)
    k = cfg.num_mixture_components
    gap = dense(3 * k, dtype, head["gap_params"], features).astype(jnp.float32)
    return logits, gap[..., :k], gap[..., k : 2 * k], jnp.clip(gap[..., 2 * k :], *GAP_LOG_SCALE_RANGE)



# ================================================================================================
# Public API: init_stream, stream
# ================================================================================================


def init_stream(model, batch_size: int = 1, params=None) -> StreamState:
    """A fresh stream state for `batch_size` parallel streams of `model` (no event seen yet: all zeros)."""
    streamer = streamer_for(model, params)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    b = int(batch_size)
    buffer = jnp.asarray(np.zeros((b, streamer.layout.size), np.float32))  # from numpy: no per-shape compile
    logits = None
    if streamer.task == "classification":  # before any event the readout is zero: the classifier's bias
        bias = np.asarray((model.params if params is None else params)[HEAD_NAMES["classification"]]["bias"])
        logits = jnp.asarray(np.broadcast_to(bias, (b, model.config.num_labels)))
    return StreamState(buffer, logits, np.zeros(b, np.int64), np.zeros(b, np.int64), np.full(b, -1, np.int32),
                       streamer.fingerprint, streamer.model_name, streamer.layout)


def _check_state(streamer, state, batch):
    if not isinstance(state, StreamState):
        raise TypeError(f"state must be a StreamState from init_stream(model, ...), got {type(state).__name__}")
    if state.fingerprint != streamer.fingerprint:
        raise ValueError(
            f"this stream state was made for another model ({state.model_name}, fingerprint {state.fingerprint}); "
            f"this model is {streamer.model_name} (fingerprint {streamer.fingerprint}). Start a new one with "
            "init_stream(model, batch_size)"
        )
    if batch != state.batch_size:
        raise ValueError(
            f"the chunk holds {batch} stream(s) (input_ids.shape[0]) but the state was made for batch_size="
            f"{state.batch_size}; pass one row per stream of the state or init_stream(model, batch_size={batch})"
        )
    _check_state_contents(streamer, state)


_STATE_FAULTS = {
    1: "holds a non-finite value in its state buffer (column {col})",
    2: "holds {value} at column {col} of its state buffer, where an index or count in [0, {limit:g}] belongs",
    3: "has pending_token {value}, outside [-1, vocab_size={vocab})",
    4: "has num_events {value} (< 0)",
}


def _check_state_contents(streamer, state) -> None:
    """ValueError for a damaged or forged state (shapes, indices and counts out of range, non-finite values),
    so that no step reads outside its tables. A few µs: one compiled pass over the state; a buffer this
    streamer produced itself (a jax array, or a numpy array it made read-only) is not scanned again."""
    spec = streamer.__dict__.get("_state_spec")
    if spec is None:  # (columns, limits, logits width): a transformers config attribute costs µs per read
        width = streamer.config.num_labels if streamer.task == "classification" else None
        spec = streamer.__dict__["_state_spec"] = (*streamer.state_bounds, width)
    columns, limits, width = spec
    buffer, logits, host = state.buffer, state.logits, (state.last_timestamp, state.num_events, state.pending_token)
    b, size = len(state.last_timestamp) if hasattr(state.last_timestamp, "__len__") else 0, streamer.layout.size
    try:
        fits = tuple(buffer.shape) == (b, size) and all(
            isinstance(a, np.ndarray) and a.shape == (b,) and a.dtype.kind in "iu" for a in host) and (
            logits is None if width is None else tuple(logits.shape) == (b, width))
    except (AttributeError, TypeError):
        fits = False
    if not fits:
        raise ValueError(
            f"the stream state is damaged: buffer {np.shape(buffer)}, logits {np.shape(logits)}, last_timestamp / "
            f"num_events / pending_token {[np.shape(a) for a in host]}, where this model needs buffer {(b, size)}, "
            f"logits {None if width is None else (b, width)} and integer arrays of shape ({b},); start a new one "
            f"with init_stream(model, {b})")
    trusted = buffer is streamer.__dict__.get("_checked_buffer") and not (
        isinstance(buffer, np.ndarray) and buffer.flags.writeable)  # (made writeable again: scanned)
    rows = _NO_ROWS if trusted else np.asarray(buffer, np.float32)
    code, row, where = _state_fault(rows, columns, limits, state.pending_token, state.num_events, streamer.vocab_size)
    if code == 0:
        if not trusted and not isinstance(buffer, np.ndarray):
            streamer.__dict__["_checked_buffer"] = buffer
        return
    value = (rows[row, where] if code <= 2 else state.pending_token[row] if code == 3 else state.num_events[row])
    limit = limits[np.searchsorted(columns, where)] if code == 2 else 0
    what = _STATE_FAULTS[code].format(col=where, value=value, limit=limit, vocab=streamer.vocab_size)
    raise ValueError(f"the stream state is damaged: stream {row} {what}; it was not made by init_stream/stream for "
                     f"this model (or was changed since). Start a new one with init_stream(model, {b})")


_NO_ROWS = np.zeros((0, 0), np.float32)


def _as_chunk(config, input_ids, timestamps, attention_mask):
    """Checked numpy (ids int64 (B, L), timestamps int64 (B, L), valid counts (B,))."""
    ids, ts = np.asarray(input_ids), np.asarray(timestamps)
    if ids.ndim == 1 and ts.ndim == 1:  # one stream
        ids, ts = ids[None], ts[None]
        attention_mask = None if attention_mask is None else np.asarray(attention_mask)[None]
    if ts.size and ts.dtype.kind not in "iu":
        raise ValueError(f"timestamps must be integer µs, got dtype {ts.dtype} (convert with np.int64(...))")
    if ids.size == 0 and ids.dtype.kind not in "iu":
        ids = ids.astype(np.int64)
    if ts.size == 0:
        ts = ts.astype(np.int64)
    check_inputs(config, ids, ts, attention_mask)
    n = (ids.shape[1] * np.ones(ids.shape[0], np.int64) if attention_mask is None else
         np.sum(np.asarray(attention_mask) != 0, axis=1).astype(np.int64))
    return ids.astype(np.int64), ts.astype(np.int64), n


def _gaps_before(config, ts, n, state):
    """Δt before each event (float32, model units) from int64 µs, against the state's last timestamp;
    ValueError when a chunk starts before it."""
    batch, length = ts.shape
    seen = state.num_events > 0
    first = ts[:, 0] if length else np.zeros(batch, np.int64)
    early = seen & (n > 0) & (first < state.last_timestamp)
    if early.any():
        row = int(np.flatnonzero(early)[0])
        raise ValueError(
            f"stream {row}: the chunk starts at timestamp {int(first[row])} µs, before the state's last timestamp "
            f"{int(state.last_timestamp[row])} µs; events must arrive in time order (equal timestamps are fine)"
        )
    prev = np.where(seen, state.last_timestamp, first)
    gaps = np.diff(np.concatenate([prev[:, None], ts], axis=1), axis=1)
    valid = np.arange(length)[None, :] < n[:, None]
    return np.where(valid, gaps_to_units(gaps, config.time_unit_us), np.float32(0.0))


def _internal_events(config, ids, dt, n, state):
    """(tokens, Δt, counts, new pending) the backbone reads. gap_convention="before": the events as they
    are. "after": event k carries the gap to event k+1, so the newest event waits in `pending_token`."""
    if getattr(config, "gap_convention", "before") == "before":
        return ids, dt, n, state.pending_token
    batch, length = ids.shape
    has = state.pending_token >= 0
    full_ids = np.concatenate([np.maximum(state.pending_token, 0)[:, None].astype(np.int64), ids], axis=1)
    full_dt = np.concatenate([np.zeros((batch, 1), np.float32), dt], axis=1)
    start = (~has).astype(np.int64)  # skip the empty pending slot
    count = np.where(n > 0, n + has - 1, 0)  # events that now know their gap
    idx = np.minimum(start[:, None] + np.arange(length)[None, :], length)
    tokens = np.take_along_axis(full_ids, idx, axis=1)
    gaps = np.take_along_axis(full_dt, np.minimum(idx + 1, length), axis=1)
    gaps = np.where(np.arange(length)[None, :] < count[:, None], gaps, 0.0).astype(np.float32)
    last = np.take_along_axis(ids, np.maximum(n - 1, 0)[:, None], axis=1)[:, 0] if length else state.pending_token
    pending = np.where(n > 0, last, state.pending_token).astype(np.int32)
    return tokens, gaps, np.maximum(count, 0), pending


def _plain_chunk(config, input_ids, timestamps, state):
    """(ids, timestamps, Δt) for a chunk of plain integer arrays of one length ≥ 1 that passes every
    check (ids in the vocabulary, time order also against the state), checked in one compiled pass
    (`checked_gaps`), as a live sensor loop calls this per chunk. None for anything else (the full path
    checks it and names the problem) and for gap_convention="after". config: the model's config or its
    streamer (which holds gap_convention, vocab_size, time_unit_us as plain attributes)."""
    if config.gap_convention != "before":
        return None
    ids, ts = np.asarray(input_ids), np.asarray(timestamps)
    if ids.ndim == 1 and ts.ndim == 1:
        ids, ts = ids[None], ts[None]
    if ids.ndim != 2 or ts.shape != ids.shape or ids.shape[1] == 0 or ids.dtype.kind not in "iu" \
            or ts.dtype.kind not in "iu" or ts.dtype == np.uint64 or ids.shape[0] != state.batch_size:
        return None
    ok, gaps = checked_gaps(ids, ts, state.last_timestamp, state.num_events, config.vocab_size)
    return (ids, ts, gaps_to_units(gaps, config.time_unit_us)) if ok else None


def _check_buckets(buckets) -> tuple:
    if buckets is BUCKETS:  # the default, already sorted and positive (stream calls this per chunk)
        return BUCKETS
    sizes = tuple(sorted(set(int(b) for b in buckets))) if buckets is not None else ()
    if not sizes or sizes[0] < 1:
        raise ValueError(f"buckets must be positive chunk lengths, got {buckets!r}")
    return sizes


def _bucket(length: int, buckets: tuple) -> int:
    """The smallest bucket ≥ length (the largest one for longer pieces): the padded length compiled for."""
    return next((b for b in buckets if b >= length), buckets[-1])


def _padded(length: int) -> int:
    """A length ≥ 1 padded to its bucket, or to a multiple of the largest bucket beyond it."""
    b = _bucket(max(length, 1), BUCKETS)
    return b if b >= length else -(-length // b) * b


def _empty_output(model, state, batch):
    cfg = model.config
    if state.logits is not None:
        return SequenceClassifierOutput(logits=state.logits)
    k = cfg.num_mixture_components
    z = lambda d: np.zeros((batch, 0, d), np.float32)  # noqa: E731
    return NextEventPredictionOutput(logits=z(cfg.vocab_size), gap_mixture_logits=z(k), gap_log_means=z(k),
                                     gap_log_scales=z(k))


def stream(model, input_ids, timestamps, state: StreamState, params=None, batch_stats=None,
           attention_mask=None, buckets=BUCKETS, implementation: str = "auto"):
    """Feed one chunk of events to the streams of `state`; returns (output, new_state).

    input_ids, timestamps: (B, L) token ids and int µs timestamps (or (L,) for a single stream), any
    L ≥ 0, in time order and not before the state's last timestamp; attention_mask (B, L) optional
    (valid events first) lets the streams of a batch receive different numbers of events.
    Output: classification models → SequenceClassifierOutput, logits (B, num_labels) given every event
    so far (what the full forward gives on the whole prefix); next-event models →
    NextEventPredictionOutput with logits (B, L, vocab) and the gap mixture (B, L, K) for
    every event of the chunk (zeros where attention_mask is 0), as numpy arrays.
    buckets: the padded chunk lengths compiled for (one compilation each, at most); a chunk is padded to
    the smallest bucket that holds it, and a longer one is processed in pieces of the largest.
    implementation: "auto" (the faster step on this machine for this model shape, batch size and chunk-length
    bucket, measured once and kept in the user cache; the XLA step where the family has no CPU kernel covering
    the model or JAX does not compute on the CPU; $EVENTLM_STREAM_IMPLEMENTATION overrides it; see
    `Streamer.implementation_for`), "xla" or "cpu-kernel": the same numbers (parity tests), states
    interchangeable; a CPU kernel needs no buckets. `model.stream_implementation` says what the last chunk ran.
    An empty chunk (L = 0) is a no-op: the state comes back unchanged with the current prediction
    (classification) or outputs of length 0 (next-event).
    Raises ValueError for a chunk before the state's last timestamp, ids outside the vocabulary,
    decreasing timestamps, a state of another model or batch size.
    """
    streamer = streamer_for(model, params, batch_stats)
    head, cfg = streamer.task, model.config
    buckets = _check_buckets(buckets)
    if not isinstance(state, StreamState):
        _check_state(streamer, state, None)  # TypeError naming what came instead
    fast = _plain_chunk(streamer, input_ids, timestamps, state) if attention_mask is None else None
    if fast is not None:  # the common case, checked in few numpy operations
        ids, ts, dts = fast
        tokens, (batch, length) = ids, ids.shape
        n = counts = np.full(batch, length, np.int64)
        pending = state.pending_token
        _check_state(streamer, state, batch)
    else:
        ids, ts, n = _as_chunk(cfg, input_ids, timestamps, attention_mask)
        batch, length = ids.shape
        _check_state(streamer, state, batch)
        if length == 0:
            return _empty_output(model, state, batch), state
        dt = _gaps_before(cfg, ts, n, state)
        tokens, dts, counts, pending = _internal_events(cfg, ids, dt, n, state)
    chosen = streamer.implementation_for(implementation, batch, length,
                                         lambda: _trial(streamer, buckets, state, tokens, dts, counts))
    host_step = streamer.host_step(chosen)
    if host_step is not None:
        out, buffer, logits = host_step(state.buffer, state.logits, tokens, dts, counts)
        device_state, pieces = (buffer, logits), [out]
        if isinstance(buffer, np.ndarray) and buffer is not state.buffer:  # new, made from a checked state
            buffer.flags.writeable = False  # (a state is immutable: an edit in place is refused by numpy)
            streamer.__dict__["_checked_buffer"] = buffer  # not scanned again
    else:
        out, device_state, pieces = _xla_chunk(streamer, buckets, state, tokens, dts, counts)
        streamer.__dict__["_checked_buffer"] = device_state[0]  # made here from a checked state: not scanned again
    if fast is not None:  # every row got length ≥ 1 events
        last = ts[:, -1].astype(np.int64)
    else:
        last = np.where(n > 0, ts[np.arange(batch), np.maximum(n - 1, 0)], state.last_timestamp).astype(np.int64)
    new_state = StreamState(device_state[0], device_state[1], last, state.num_events + n, pending, state.fingerprint,
                            state.model_name, state.layout)
    if head == "classification":
        return SequenceClassifierOutput(logits=out), new_state
    parts = [np.concatenate(p, axis=1) if len(pieces) > 1 else p[0] for p in zip(*pieces)]
    return NextEventPredictionOutput(
        logits=parts[0], gap_mixture_logits=parts[1], gap_log_means=parts[2], gap_log_scales=parts[3]), new_state


# ================================================================================================
# implementation="auto": the faster step, measured once per machine, model shape and chunk size
# ================================================================================================

IMPLEMENTATION_ENV = "EVENTLM_STREAM_IMPLEMENTATION"  # "xla" | "cpu-kernel" | "auto": what "auto" runs
TRIAL_SECONDS = 0.02  # timed per step in a trial (after one untimed call each: compilation, caches)


def choose_implementation(timings: dict) -> str:
    """The faster step from trial timings {implementation: [seconds per call, ...]}: the lowest of each step's
    fastest call (the least disturbed by other processes); the CPU kernel on a tie (it needs no compilation
    per chunk bucket)."""
    best = {name: min(times) for name, times in timings.items() if len(times)}
    if not best:
        raise ValueError(f"no trial timings to choose a streaming step from: {timings!r}")
    return min(sorted(best), key=lambda name: (best[name], name != "cpu-kernel"))


def _trial(streamer, buckets, state, tokens, dts, counts, seconds: float = TRIAL_SECONDS) -> dict:
    """{implementation: [seconds per call]}: the CPU kernel and the XLA step on this chunk from this state
    (results dropped; the state is immutable), called in turns after one untimed call each, until each has had
    `seconds` and at least 3 calls."""
    kernel = streamer.cpu_kernel
    runs = {"cpu-kernel": lambda: kernel(state.buffer, state.logits, tokens, dts, counts),
            "xla": lambda: jax.block_until_ready(_xla_chunk(streamer, buckets, state, tokens, dts, counts)[:2])}
    timings = {name: [] for name in runs}
    for run in runs.values():
        run()
    while any(len(t) < 3 or sum(t) < seconds for t in timings.values()) and len(timings["xla"]) < 200:
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    return timings


class StepChoices:
    """What implementation="auto" runs, per machine (CPU model), model shape, batch size and chunk-length bucket,
    in a small JSON file in the user cache ($EVENTLM_CACHE or ~/.cache/eventlm, `stream_implementation.json`;
    written atomically, re-read before each write so that processes add to it): measured once by a trial
    (`choose_implementation` of its timings), logged at info. Delete the file to measure again."""

    FILE = "stream_implementation.json"

    def path(self) -> Path:
        from .resources import default_cache_dir

        return default_cache_dir() / self.FILE

    def _read(self) -> dict:
        try:
            return json.loads(self.path().read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent or damaged: measured again
            return {}

    @staticmethod
    def key(streamer, batch: int, bucket: int) -> str:
        from .resources import cpu_model

        versions = f"jax {jax.__version__}" + (f", numba {numba.__version__}" if numba is not None else "")
        return f"{cpu_model()} | {streamer.model_name} | batch {batch} | chunks ≤ {bucket} events | {versions}"

    def choose(self, streamer, batch: int, bucket: int, trial) -> str:
        key = self.key(streamer, batch, bucket)
        entry = self._read().get(key)
        if isinstance(entry, dict) and entry.get("implementation") in ("cpu-kernel", "xla"):
            return entry["implementation"]
        if trial is None:  # nothing to time: the kernel (it covers the model and JAX computes on the CPU)
            return "cpu-kernel"
        logger.info("stream: timing the CPU kernel and the XLA step once for %s (this may compile the XLA step)", key)
        timings = trial()
        chosen = choose_implementation(timings)
        best = {name: min(t) * 1e6 for name, t in timings.items()}
        logger.info("stream: %s runs %s (fastest call: %s); kept in %s", key, chosen,
                    ", ".join(f"{name} {us:.0f} µs" for name, us in best.items()), self.path())
        entries = self._read()
        entries[key] = {"implementation": chosen, "fastest_call_us": {k: round(v, 1) for k, v in best.items()},
                        "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            write_json_atomic(self.path(), entries, sort_keys=True)
        except OSError as err:  # a read-only home: measured again in the next process
            logger.warning("stream: could not keep the streaming step's choice in %s (%s)", self.path(), err)
        return chosen


STEP_CHOICES = StepChoices()


def _xla_chunk(streamer, buckets, state, tokens, dts, counts):
    """The chunk through the jitted XLA step, in bucket-padded pieces: (last output, (buffer, logits),
    next-event output pieces)."""
    batch, length = tokens.shape
    consts, step = streamer.constants, streamer.step
    device_state = (state.buffer, state.logits)
    pieces, out = [], None
    for start in range(0, length, buckets[-1]):
        size = min(buckets[-1], length - start)
        bucket = _bucket(size, buckets)
        if bucket == size == length:  # no padding
            piece_ids, piece_dt = tokens.astype(np.int32), dts
        else:
            piece_ids = np.zeros((batch, bucket), np.int32)
            piece_dt = np.zeros((batch, bucket), np.float32)
            piece_ids[:, :size], piece_dt[:, :size] = tokens[:, start:start + size], dts[:, start:start + size]
        piece_n = np.clip(counts - start, 0, size).astype(np.int32)
        out, device_state = step(consts, device_state, piece_ids, piece_dt, piece_n)
        if streamer.task == "next-event":  # cut on the host: an eager slice would compile once per chunk length
            pieces.append(tuple(np.asarray(o)[:, :size] for o in out))
    return out, device_state, pieces



def _njit(func):
    return numba.njit(cache=True, nogil=True)(func) if numba is not None else func


@_njit
def _state_fault(buffer, columns, limits, pending, num_events, vocab_size):
    """(code, row, index) of the first fault of a state (codes: `_STATE_FAULTS`; 0: none): a non-finite
    buffer entry, an index / count entry (columns, each ≤ its limit) that is not an integer in range, a
    pending token outside [−1, vocab_size), a negative event count."""
    for r in range(pending.shape[0]):
        if pending[r] < -1 or pending[r] >= vocab_size:
            return 3, r, 0
        if num_events[r] < 0:
            return 4, r, 0
    for r in range(buffer.shape[0]):
        finite = True
        for j in range(buffer.shape[1]):
            finite &= math.isfinite(buffer[r, j])
        if not finite:
            for j in range(buffer.shape[1]):
                if not math.isfinite(buffer[r, j]):
                    return 1, r, j
        for k in range(columns.shape[0]):
            v = buffer[r, columns[k]]
            if not (v >= 0 and v <= limits[k] and v == math.floor(v)):
                return 2, r, columns[k]
    return 0, 0, 0


@_njit
def checked_gaps(ids, timestamps, last_timestamp, num_events, vocab_size):
    """(ok, gaps in µs (B, L) int64) of a chunk of plain integer ids/µs timestamps, checked on the way:
    every id in [0, vocab_size), times not decreasing, also from the state's last timestamp (rows that
    have seen events); ok False at the first failed check (the caller's full checks then name it). One
    pass, as a live loop calls it per chunk."""
    batch, length = ids.shape
    gaps = np.empty((batch, length), np.int64)
    for r in range(batch):
        prev = last_timestamp[r] if num_events[r] > 0 else np.int64(timestamps[r, 0])
        for i in range(length):
            if ids[r, i] < 0 or ids[r, i] >= vocab_size:
                return False, gaps
            gaps[r, i] = np.int64(timestamps[r, i]) - prev
            if gaps[r, i] < 0:
                return False, gaps
            prev = np.int64(timestamps[r, i])
    return True, gaps


# ================================================================================================
# Generation
# ================================================================================================


def _draw(cfg, banned, prediction, key, temperature, i):
    """Generated event i (token, gap in µs) drawn from the prediction after the event before it: the key of
    event i is fold_in(seed key, i), whichever path generates."""
    return sample_next_event(jax.random.fold_in(key, i), *prediction, temperature, cfg.time_unit_us, banned)


def _generator(streamer, block: int):
    """Jitted: `block` events, each sampled from the previous prediction and fed back through the step
    (`Streamer.event_step`); events from `stop` on are drawn but not fed, so the state after the last block is
    the state after exactly `stop` events (compiled once per model and block, kept with the model's streaming
    step)."""
    compiled = streamer.compiled
    if ("generate", block) in compiled:
        return compiled[("generate", block)]
    cfg = streamer.config
    banned = banned_tokens(cfg)
    step = streamer.event_step

    def run(consts, device_state, prediction, key, temperature, offset, stop):
        def one(carry, i):
            token, gap = _draw(cfg, banned, carry[1], key, temperature, offset + i)
            carry = jax.lax.cond(offset + i < stop, lambda: step(consts, carry[0], token, gap), lambda: carry)
            return carry, (token, gap)

        (device_state, prediction), (tokens, gaps) = jax.lax.scan(one, (device_state, prediction), jnp.arange(block))
        return device_state, prediction, tokens, gaps

    compiled[("generate", block)] = jax.jit(run)
    return compiled[("generate", block)]


def _generate_through_stream(model, streamer, state, prediction, num_events, temperature, seed, tokenizer, params,
                             return_state):
    """`generate` one event at a time where the compiled scan cannot run the state (`generates_on_device`: a
    frame model whose open frame's clock passed int32 range): each event is drawn exactly as on the device path
    (`_draw`) and fed back through `stream` as a one-event chunk."""
    compiled, cfg = streamer.compiled, streamer.config
    if "sample" not in compiled:
        banned = banned_tokens(cfg)
        compiled["sample"] = jax.jit(functools.partial(_draw, cfg, banned))
    key, temperature = jax.random.PRNGKey(seed), jnp.float32(temperature)
    tokens, times = np.zeros(num_events, np.int32), np.zeros(num_events, np.int64)
    t = int(state.last_timestamp[0])
    for i in range(num_events):
        token, gap = compiled["sample"](prediction, key, temperature, jnp.int32(i))
        t += int(gap)
        tokens[i], times[i] = int(token), t
        out, state = stream(model, tokens[None, i:i + 1], times[None, i:i + 1], state, params=params)
        prediction = tuple(o[0, -1] for o in (out.logits, out.gap_mixture_logits, out.gap_log_means,
                                              out.gap_log_scales))
    result = tokenizer.decode(tokens, times) if tokenizer is not None else (tokens, times)
    return (result, state) if return_state else result


def _prompt_arrays(model, prompt, tokenizer):
    """(ids, timestamps) int64 of the prompt: None → [bos] at t = 0 (how pretraining windows start);
    (ids, timestamps) or a dict with input_ids / timestamps; raw events when a tokenizer is given."""
    cfg = model.config
    if prompt is None:
        if cfg.bos_token_id is None:
            raise ValueError("generate without a prompt starts from the bos token, but config.bos_token_id is None")
        return np.array([cfg.bos_token_id], np.int64), np.array([0], np.int64)
    if isinstance(prompt, dict) and "input_ids" in prompt:
        ids, ts = prompt["input_ids"], prompt["timestamps"]
    elif isinstance(prompt, (tuple, list)) and len(prompt) == 2 and not isinstance(prompt[0], dict):
        ids, ts = prompt
    elif tokenizer is not None:  # raw events: bos + events, as pretraining saw them
        ids, ts, _ = tokenizer.encode_stream(prompt, add_special_tokens=True)
        ids, ts = ids[:-1], ts[:-1]  # no eos: the stream goes on
    else:
        raise ValueError("prompt must be (input_ids, timestamps), a dict with input_ids/timestamps, or raw events "
                         "together with tokenizer=")
    ids, ts = np.asarray(ids).reshape(-1), np.asarray(ts).reshape(-1)
    if ids.size == 0:
        raise ValueError("the prompt holds no events; pass prompt=None to start from the bos token")
    return ids, ts


def generate(model, num_events: int, temperature: float = 1.0, seed: int = 0, tokenizer=None, prompt=None,
             params=None, return_state: bool = False, block: int = 64):
    """Sample `num_events` events, one by one, from a next-event model with the stream state.

    Each event's token and gap are drawn from the prediction after the previous one (see
    `sample_next_event`: temperature T scales the token and component logits and the log-normal scales;
    T = 0 is greedy; pad/bos/eos are never drawn) and fed back as a one-event chunk.
    prompt: None (start from the bos token at t = 0), (input_ids, timestamps), a dict of those, or raw
    events (with tokenizer=). Returns the generated events only (not the prompt): with a tokenizer,
    `tokenizer.decode(ids, timestamps)`, a structured array with t, x, y, p; without, (ids int32,
    timestamps int64 µs). Timestamps continue from the prompt's last one. return_state=True also returns
    the stream state after the last generated event. Same seed, same events.
    """
    if getattr(model, "task", None) != "next-event":
        raise TypeError(f"generate needs a next-event prediction model (…ForNextEventPrediction), got {type(model).__name__}")
    if isinstance(num_events, bool) or not isinstance(num_events, (int, np.integer)) or num_events < 0:
        raise ValueError(f"num_events must be a non-negative integer, got {num_events!r}")
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be ≥ 0 (0: greedy), got {temperature!r}")
    ids, ts = _prompt_arrays(model, prompt, tokenizer)
    state = init_stream(model, 1, params=params)
    out, state = stream(model, ids[None], ts[None], state, params=params)
    prediction = tuple(o[0, -1] for o in (out.logits, out.gap_mixture_logits, out.gap_log_means, out.gap_log_scales))
    streamer = streamer_for(model, params)
    if not streamer.generates_on_device(state):  # one event at a time through `stream`
        return _generate_through_stream(model, streamer, state, prediction, num_events, temperature, seed, tokenizer,
                                        params, return_state)
    consts, run = streamer.constants, _generator(streamer, block)
    device_state, key = (state.buffer, state.logits), jax.random.PRNGKey(seed)
    tokens, gaps = [], []
    for offset in range(0, num_events, block):
        device_state, prediction, tok, gap = run(consts, device_state, prediction, key, jnp.float32(temperature),
                                                 jnp.int32(offset), jnp.int32(num_events))
        tokens.append(np.asarray(tok)), gaps.append(np.asarray(gap))
    tokens = np.concatenate(tokens)[:num_events] if tokens else np.zeros(0, np.int32)
    gaps = np.concatenate(gaps)[:num_events].astype(np.int64) if gaps else np.zeros(0, np.int64)
    times = int(state.last_timestamp[0]) + np.cumsum(gaps)
    result = tokenizer.decode(tokens, times) if tokenizer is not None else (tokens.astype(np.int32), times)
    if not return_state:
        return result
    state = state.replace(buffer=device_state[0], logits=device_state[1],
                          last_timestamp=np.array([times[-1] if num_events else state.last_timestamp[0]]),
                          num_events=state.num_events + num_events)
    return result, state



# ================================================================================================
# `eventlm stream MODEL RECORDING`: a recording played as if it were live
# ================================================================================================


def load_streaming_model(model_name_or_path, **kwargs):
    """(model, task) for a saved model folder or Hub repo id, with the class its config.json records."""
    from .auto import load_pretrained

    model = load_pretrained(str(model_name_or_path), **kwargs)
    if model.task is None:
        raise ValueError(f"{model_name_or_path} is a bare backbone ({type(model).__name__}); streaming needs a model "
                         "with a classification or next-event head")
    return model, model.task


def _streaming_tokenizer(model, model_name_or_path, sensor_size, tokenizer=None):
    """The model folder's tokenizer if it has one, else one built from the recording's sensor."""
    from .tokenization_events import CONFIG_NAME, EventTokenizer

    if tokenizer is None:
        folder = Path(str(model_name_or_path))
        if (folder / CONFIG_NAME).is_file():
            tokenizer = EventTokenizer.from_pretrained(folder)
        else:
            tokenizer = EventTokenizer(sensor_size=sensor_size)
    elif not isinstance(tokenizer, EventTokenizer):
        tokenizer = EventTokenizer.from_pretrained(tokenizer)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"the tokenizer ({tokenizer!r}) has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model.config.vocab_size}; save the model's tokenizer into its folder or pass tokenizer="
        )
    return tokenizer


def _check_recording_sensor(tokenizer, sensor, recording_path) -> None:
    """A recording of another sensor than the model's tokenizer (width, height, or polarities where the model
    reads them) is refused: its events would fit the vocabulary and stream to a confident, meaningless answer."""
    (w, h, p), (W, H, P) = tuple(sensor), tuple(tokenizer.sensor_size)
    if (w, h) != (W, H) or (P > 1 and p != P):
        raise ValueError(
            f"{recording_path} comes from a {tuple(sensor)} sensor (width, height, polarities) but the model's "
            f"tokenizer is for {(W, H, P)}: a recording of another sensor. Stream a recording of the model's sensor; "
            f"if this one is from it, say so with sensor_size=({W}, {H}, {P}) (--sensor-size {W} {H} {P})")


@dataclass
class StreamRun:
    """What `run_stream` measured: per printed step the stream time (s), events so far, and the
    prediction (class probabilities, or the running next-event NLL per event); events/s of the model."""

    times: np.ndarray
    num_events: np.ndarray
    predictions: np.ndarray
    events_per_second: float
    final: Any
    labels: Optional[list] = None


@functools.partial(jax.jit, static_argnames=("resolution",))
def _chunk_nll(prev, fields, ids, dt, has_prev, resolution):
    """(Σ NLL, prediction after the chunk) for one stream's chunk: NLL (token + gap, nats) of each event
    under the prediction before it (`prev`, from the previous chunk, for the first event; none at the
    stream's start, has_prev False). fields: the chunk's (logits, mixture logits, log means, log scales)."""
    logits, mix, means, scales = (jnp.concatenate([p, f[0, :-1]], axis=0) for p, f in zip(prev, fields))
    token = -jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32)), ids[:, None], axis=1)[:, 0]
    nll = token + lognormal_mixture_nll(dt, mix, means, scales, resolution)
    counted = (jnp.arange(ids.shape[0]) > 0) | has_prev
    return jnp.sum(jnp.where(counted, nll, 0.0)), tuple(f[0, -1:] for f in fields)


def run_stream(model_name_or_path, recording_path, chunk_size: int = 256, plot=None, format: Optional[str] = None,
               tokenizer=None, realtime: bool = False, max_events: Optional[int] = None, lines: int = 20,
               file=None, **reader_options) -> StreamRun:
    """Run a saved model over a recording as if it came live from the sensor, chunk by chunk with the
    stream state, printing the running prediction and the model's events/s.

    model_name_or_path: a folder (or Hub repo id) saved by save_pretrained, with a classification or
    next-event head; its tokenizer_config.json is used when present, else a tokenizer for the recording's
    sensor. recording_path / format / reader_options: what eventlm.data.readers.read_events reads.
    chunk_size: events per chunk. realtime: wait so that no chunk is processed before its last event's
    time (a replay at the recording's pace). plot: a path to save the prediction over time (png/pdf/svg).
    lines: about how many progress lines to print. Returns a StreamRun.
    """
    from .data.readers import read_events

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    file = sys.stdout if file is None else file
    recording = read_events(recording_path, format=format, **reader_options)
    model, head = load_streaming_model(model_name_or_path)
    tokenizer = _streaming_tokenizer(model, model_name_or_path, recording.sensor_size, tokenizer)
    _check_recording_sensor(tokenizer, recording.sensor_size, recording_path)
    ids, ts, _ = tokenizer.encode_stream(recording.events)
    if max_events is not None:
        ids, ts = ids[:max_events], ts[:max_events]
    if len(ids) == 0:
        raise ValueError(f"{recording_path} holds no events to stream")
    cfg = model.config
    labels = [cfg.id2label.get(i, str(i)) for i in range(cfg.num_labels)] if head == "classification" else None
    print(f"streaming {len(ids):,} events of {recording_path} ({recording.sensor_size}) through "
          f"{type(model).__name__} in chunks of {chunk_size}", file=file)
    state = init_stream(model, 1)
    num_chunks = -(-len(ids) // chunk_size)
    every = max(1, num_chunks // max(lines, 1))
    times, counts, preds, busy, nll_sum, prev = [], [], [], 0.0, 0.0, None
    start_wall = time.perf_counter()
    for k in range(num_chunks):
        c_ids, c_ts = ids[k * chunk_size:(k + 1) * chunk_size], ts[k * chunk_size:(k + 1) * chunk_size]
        if realtime:  # the sensor has not produced this chunk before its last event's time
            time.sleep(max(0.0, (c_ts[-1] - ts[0]) / 1e6 - (time.perf_counter() - start_wall)))
        t = time.perf_counter()
        out, new_state = stream(model, c_ids[None], c_ts[None], state)
        jax.block_until_ready(out.logits)
        busy += time.perf_counter() - t
        if head == "classification":
            pred = np.asarray(jax.nn.softmax(out.logits[0]))
        else:
            dt = _gaps_before(cfg, c_ts[None], np.array([len(c_ids)]), state)[0]
            fields = (out.logits, out.gap_mixture_logits, out.gap_log_means, out.gap_log_scales)
            has_prev = prev is not None
            prev = prev if has_prev else tuple(np.zeros((1,) + f.shape[2:], np.float32) for f in fields)
            total, prev = _chunk_nll(prev, fields, c_ids.astype(np.int32), dt, has_prev, 1.0 / cfg.time_unit_us)
            nll_sum += float(total)
            pred = np.array([nll_sum / max(int(new_state.num_events[0]) - 1, 1)])
        state = new_state
        seen = int(state.num_events[0])
        times.append((c_ts[-1] - ts[0]) / 1e6), counts.append(seen), preds.append(pred)
        if (k + 1) % every == 0 or k == num_chunks - 1:
            what = (f"{labels[int(np.argmax(pred))]} (p={pred.max():.2f})" if head == "classification" else
                    f"next token {int(np.argmax(prev[0][0]))}, NLL/event {pred[0]:.3f}")
            print(f"t={times[-1]:9.3f} s  events={seen:>10,}  {what}  |  {seen / busy:,.0f} events/s", file=file)
    result = StreamRun(np.array(times), np.array(counts), np.stack(preds), seen / busy, out, labels)
    if plot is not None:
        _plot_stream(result, head, plot, recording_path)
    return result


def main(argv=None) -> int:
    """`eventlm stream MODEL RECORDING [options]` (registered in eventlm/cli.py)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="eventlm stream",
        description="Run a saved event model over a recording as if it came live from the sensor: chunk by "
                    "chunk with the stream state, printing the running prediction and events/s.")
    parser.add_argument("model", help="model folder saved by save_pretrained (or a Hub repo id)")
    parser.add_argument("recording", help="a recording eventlm.data.readers.read_events can read")
    parser.add_argument("--chunk-size", type=int, default=256, help="events per chunk (default 256)")
    parser.add_argument("--plot", default=None, help="save the prediction over time to this image (png, pdf, svg)")
    parser.add_argument("--format", default=None, help="read_events format (default: from the file)")
    parser.add_argument("--reader-options", default=None, help='read_events options as JSON, e.g. \'{"channels": 64}\'')
    parser.add_argument("--sensor-size", type=int, nargs=3, metavar=("W", "H", "P"), help="the recording's sensor")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder / preset (default: the model folder's)")
    parser.add_argument("--realtime", action="store_true", help="replay at the recording's pace")
    parser.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    parser.add_argument("--lines", type=int, default=20, help="about how many progress lines to print")
    args = parser.parse_args(None if argv is None else list(argv))
    from .data.readers import parse_reader_options

    options = parse_reader_options(args.reader_options)
    if args.sensor_size:
        options["sensor_size"] = tuple(args.sensor_size)
    run_stream(args.model, args.recording, chunk_size=args.chunk_size, plot=args.plot, format=args.format,
               tokenizer=args.tokenizer, realtime=args.realtime, max_events=args.max_events, lines=args.lines,
               **options)
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _plot_stream(run: StreamRun, head: str, path, title) -> Path:
    from .training.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    if head == "classification":
        top = np.argsort(run.predictions.max(axis=0))[::-1][:5]
        for c in top:
            ax.plot(run.times, run.predictions[:, c], label=run.labels[c])
        ax.set_ylabel("probability")
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.plot(run.times, run.predictions[:, 0])
        ax.set_ylabel("NLL per event so far (nats)")
    ax.set_xlabel("stream time (s)")
    ax.set_title(f"{Path(str(title)).name}: prediction over time ({run.events_per_second:,.0f} events/s)")
    return _save(plt, fig, path)


__all__ = [
    "StreamState", "ReadoutState", "StateLayout", "PackedConstants", "Streamer", "BackboneChunk", "streamer_for",
    "init_stream", "stream", "generate", "sample_next_event", "run_stream", "StreamRun", "load_streaming_model",
    "main", "model_fingerprint", "checked_gaps", "TRACE_COUNTS", "BUCKETS", "IMPLEMENTATIONS",
]
