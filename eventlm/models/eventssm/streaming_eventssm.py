"""Event-by-event streaming inference and event-stream generation for EventSSM models.

    state = init_stream(model, batch_size=1)
    for ids, ts in sensor_chunks():                   # any chunk length ≥ 1
        out, state = stream(model, ids, ts, state)    # state in, state out; jit-compiled
        print(out.logits)                             # the prediction given everything so far
    events = generate(next_event_model, num_events=10_000, temperature=1.0, seed=0, tokenizer=tok)

The state is an explicit, immutable pytree (`StreamState`); `stream` returns a new one and never
changes the one passed in, so a state can be kept, copied or branched (generation does).

How a chunk is processed, level by level (a level is a stage; stage s sees one position per
pooling_stride^s events):

- A pooling block needs the SSM state at one event per window of S positions. The state keeps the
  SSM state at the last *closed* window boundary and the raw inputs of the open window (at most
  S − 1 positions: tokens at stage 0, the previous stage's outputs later). The chunk is appended to
  those buffered inputs and the window-aligned sequence is processed from the committed state:
  x_w = exp(Λ·s·Σ_window Δt) ⊙ x_{w−1} + Σ_i exp(Λ·s·τ_i) ⊙ γ_i B̃u_i (τ_i: time from position i
  to its window's end), i.e. the model's `window_end_states` started from x_committed.
- Positions are *final* once all their events have arrived; the last window of a level may be
  *provisional* (partial). Provisional positions flow on to the next levels and into the readout
  (the full forward on the prefix sees them as valid), but only final ones are committed: the
  committed SSM states are those after the last final position, the buffers hold final positions.
- Blocks after the pooling block run the recurrence over their positions from the committed state
  (x_0 = Λ̄_0 ⊙ x_committed + γ_0 B̃u_0).
- The classification readout keeps running sums over final last-level positions and adds the
  provisional one at output time; the next-event head reads, for event k, the last-stage position
  that is complete at k (the model's rule) from this chunk's outputs or the kept last one.

Reused from the model: the EventS5 parameters and methods (Λ, s, γ via `discretize`, B̃ for the token
tables), the norms and Dense layers (applied with their weights), `EventSSMBlock._pooled_times`,
`check_inputs`, `linear_recurrence`, `lognormal_mixture_nll`, the output classes. Written here for
CPU speed, with the same formulas (the parity tests hold them to the full forward): the window sums
in closed form, the pooling sums written out, a fast complex exponential, complex values as real pairs
around B̃/C̃/D held as contiguous matrices (γ folded into B̃), layer-norm statistics from one matmul.
Tiny chunks cost little compute; the floor there is XLA's per-operation overhead (≈ 1 µs for each of
the step's ~150–200 operations) and the dispatch of the call, which is why the device state is one flat
buffer per stream (`StateLayout`), and why on the CPU `stream` runs the same step as one numba function
(`streaming_cpu_kernel`, same state row, `implementation="auto"`), 2–5× faster than the XLA step.

Time: timestamps are int µs; the gaps are differenced on the host in int64 and converted exactly as
the full forward does ((float64 gap / time_unit_us) → float32). With gap_convention="after" (converted
reference checkpoints, classification only) the newest event is held back until the next one gives
its gap, as the full forward drops the last event of a sequence.

Chunk lengths are bucketed to powers of two (padded, with a validity count inside the chunk), so the
number of compilations stays ≤ len(BUCKETS) per model and batch size; longer chunks are cut.
The first block's inputs norm(E) and B̃·norm(E) are per-token tables, computed once per set of weights.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ...modeling_events import GAP_LOG_SCALE_RANGE
from . import modeling_flax_eventssm as modeling
from . import streaming_cpu_kernel as cpu_kernel
from .configuration_eventssm import EventSSMConfig

BUCKETS = tuple(2**i for i in range(13))  # padded chunk lengths compiled for: 1, 2, 4, ..., 4096
# how many times the streaming step was traced (compiled), per model fingerprint: the compile-count bound
TRACE_COUNTS: collections.Counter = collections.Counter()


# ================================================================================================
# The state
# ================================================================================================


@flax.struct.dataclass
class StageState:
    """Stream state of one stage (all arrays have the batch axis first).

    ssm_states: committed complex SSM state of each block of the stage, after the last final position, as a
        pair (real parts, then imaginary parts).
    window_inputs: the open pooling window's final inputs, (B, S − 1) token ids at stage 0, else
        (B, S − 1, H_in) outputs of the previous stage; window_time_deltas (B, S − 1) their Δt;
        window_count (B,) how many of the S − 1 slots are filled.
    """

    ssm_states: Tuple[jax.Array, ...]
    window_inputs: jax.Array
    window_time_deltas: jax.Array
    window_count: jax.Array


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
    step reads both), each row one stream's `StageState`s (per-stage SSM states and open pooling windows)
    and `ReadoutState` packed flat (`StateLayout`: a jitted call pays per array
    it returns, ~3 µs each, more than the step's compute at small chunks); `stages` / `readout` unpack
    them (for inspection). `logits`: the classification prediction given everything so far (None for
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
    def stages(self) -> Tuple[StageState, ...]:
        """The per-stage states, unpacked from `buffer` (numpy, batch axis first)."""
        return self.layout.unpack_numpy(self.buffer)[0]

    @property
    def readout(self) -> ReadoutState:
        """The running readout, unpacked from `buffer` (numpy, batch axis first)."""
        return self.layout.unpack_numpy(self.buffer)[1]


class StateLayout:
    """Where each array of one stream's (stages, readout) tree lies in its flat float32 row. The tree is
    real (SSM states are pairs); integers (token ids < 2^24, counts) and bfloat16 values are stored as
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
        leaves = [row[a:a + n].astype(dtype).reshape(shape) for a, n, shape, dtype in self.entries]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def unpack_numpy(self, buffer):
        """(stages, readout) of a (B, N) buffer as numpy arrays with the batch axis first."""
        buffer = np.asarray(buffer)
        leaves = [buffer[:, a:a + n].astype(dtype).reshape((buffer.shape[0],) + shape)
                  for a, n, shape, dtype in self.entries]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


# ================================================================================================
# Model identity, heads and per-weights constants
# ================================================================================================

_IGNORED_CONFIG_KEYS = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype")


def _head(model) -> str:
    if isinstance(model, modeling.FlaxEventSSMForSequenceClassification):
        return "classification"
    if isinstance(model, modeling.FlaxEventSSMForNextEventPrediction):
        return "next-event"
    raise TypeError(
        f"streaming needs an EventSSM model with a head (FlaxEventSSMForSequenceClassification or "
        f"FlaxEventSSMForNextEventPrediction), got {type(model).__name__}"
    )


def _model_name(model) -> str:
    cfg = model.config
    return (f"{type(model).__name__}(hidden_size={cfg.hidden_size}, state_size={cfg.state_size}, "
            f"stages={cfg.num_stages}x{cfg.num_layers_per_stage}, pooling_stride={cfg.pooling_stride}, "
            f"vocab_size={cfg.vocab_size})")


_FINGERPRINTS = weakref.WeakKeyDictionary()  # model -> (config object, fingerprint)


def model_fingerprint(model) -> str:
    """Short hash of the model class, its dtype and every config value that shapes the computation
    (cached per model and config object: replace model.config rather than editing it in place)."""
    cached = _FINGERPRINTS.get(model)
    if cached is not None and cached[0] is model.config:
        return cached[1]
    config = {k: v for k, v in model.config.to_dict().items() if k not in _IGNORED_CONFIG_KEYS}
    text = json.dumps([type(model).__name__, str(np.dtype(model.module.dtype)), config], sort_keys=True, default=str)
    fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
    _FINGERPRINTS[model] = (model.config, fingerprint)
    return fingerprint


def _block_names(cfg: EventSSMConfig):
    """(stage, layer, name, h_in, h_out, state_size, stride) of every block, in order."""
    h_in = cfg.hidden_size
    for stage in range(cfg.num_stages):
        h_out, p = cfg.stage_hidden_size(stage), cfg.stage_state_size(stage)
        for layer in range(cfg.num_layers_per_stage):
            stride = cfg.pooling_stride if layer == 0 else 1
            yield stage, layer, f"stage{stage}_block{layer}", h_in, h_out, p, stride
            h_in = h_out


def _local_state_size(cfg, p):
    return p // 2 if cfg.conj_sym else p


def _ssm(cfg, params, name, h_in, h_out, p, stride):
    """The model's EventS5 of block `name`, bound to its weights (its methods give Λ, s, γ, B̃u, C̃x, Du)."""
    return modeling.EventS5(cfg, h_in, h_out, p, stride).bind({"params": params["eventssm"][name]["ssm"]})


def _norm(cfg, dtype, variables, name, x):
    """The block's pre-norm in inference mode (layer norm, or batch norm with running statistics)."""
    block_params = variables["params"]["eventssm"][name]["norm"]
    if cfg.norm == "batch":
        stats = variables["batch_stats"]["eventssm"][name]["norm"]
        norm = modeling.MaskedBatchNorm(cfg.batchnorm_momentum, cfg.batchnorm_eps)
        return norm.apply({"params": block_params, "batch_stats": stats}, x, None, True)
    return _layer_norm(x, block_params["scale"], block_params["bias"], cfg.layer_norm_eps, dtype)


def _layer_norm(x, scale, bias, eps, dtype):
    """flax's LayerNorm over the last axis (float32 statistics, var = E[x²] − E[x]² clipped at 0), with
    both means from one matmul: XLA's CPU row reductions take five operations per norm."""
    x32 = x.astype(jnp.float32)
    ones = jnp.full((x.shape[-1], 1), 1.0 / x.shape[-1], jnp.float32)
    stats = jnp.stack([x32, x32 * x32]) @ ones  # (2, …, 1): E[x], E[x²]
    mean, var = stats[0], jnp.maximum(stats[1] - stats[0] ** 2, 0.0)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias).astype(dtype)


def _dense(features, dtype, params, x):
    return nn.Dense(features, dtype=dtype).apply({"params": params}, x)


def _prepare(cfg, dtype, variables):
    """Per-weights constants of the step, computed once with the model's EventS5 methods: per block Λ·s
    (`lam_step`, a pair) and B̃, C̃ as contiguous real matrices (EventS5 reads them as slices of real pairs
    (…, 2), which XLA would copy on every call), one matmul each: B = [B̃_re | B̃_im] (H_in, 2P), with the
    input gain γ folded in when it does not depend on Δt (async, dirac: (γ·B̃)u = γ·(B̃u)), and
    C = [C̃_re; −C̃_im] (2P, H_out), [x.re | x.im] @ C = Re(C̃x) (times 2 with conj_sym, folded in: exact);
    a widening block's D transposed (H_in, H_out). The first block's per-token inputs are tables:
    norm(E) (`table_u`, V × H) and its B-projection (`table_bu`, V × 2P)."""
    params = variables["params"]
    scale = 2.0 if cfg.conj_sym else 1.0
    blocks = {}
    for _, _, name, h_in, h_out, p, stride in _block_names(cfg):
        ssm = _ssm(cfg, params, name, h_in, h_out, p, stride)
        b, c, d = ssm.B, ssm.C, ssm.D
        b = jax.lax.complex(b[..., 0], b[..., 1])  # (P, H_in)
        if cfg.discretization != "zoh":
            b = ssm.discretize(jnp.zeros((1,), jnp.float32))[1].reshape(-1, 1) * b
        blocks[name] = {
            "B": jnp.concatenate([b.real.T, b.imag.T], axis=1),
            "C": scale * jnp.concatenate([c[..., 0].T, -c[..., 1].T], axis=0),
            "D": d if d.ndim == 1 else d.T,
            "lam_step": _to_pair(ssm.eigenvalues() * ssm.step()),
        }
    first = next(_block_names(cfg))[2]
    table_u = _norm(cfg, dtype, variables, first, params["eventssm"]["embed"]["embedding"])
    table_bu = table_u.astype(jnp.float32) @ blocks[first]["B"]
    return {"variables": variables, "blocks": blocks, "table_u": table_u, "table_bu": table_bu}


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


_CONSTANTS = weakref.WeakKeyDictionary()  # model -> (params, batch_stats, packed constants, {kind: derived})
_PREPARE: dict = {}  # model fingerprint -> jitted _prepare


def _cached_constants(model, params=None, batch_stats=None) -> list:
    """[params, batch_stats, packed constants (the XLA step's), {} (the CPU kernel, made on first use)] for
    the model's weights, cached per model while its weights objects stay the same."""
    params = model.params if params is None else params
    batch_stats = (model.batch_stats if batch_stats is None else batch_stats) or None  # {} -> None
    cached = _CONSTANTS.get(model)
    if cached is not None and cached[0] is params and cached[1] is batch_stats:
        return cached
    if model.config.norm == "batch" and not batch_stats:
        raise ValueError("this model uses batch norm but has no batch_stats; pass batch_stats= or load trained weights")
    variables = {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}
    key = model_fingerprint(model)
    if key not in _PREPARE:
        _PREPARE[key] = jax.jit(functools.partial(_prepare, model.config, model.module.dtype))
    prepared = _PREPARE[key](variables)
    cached = [params, batch_stats, PackedConstants.pack(prepared), {"prepared": prepared}]
    _CONSTANTS[model] = cached
    return cached


def _constants(model, params=None, batch_stats=None) -> PackedConstants:
    """The XLA step's constants (weights + derived) for the model's weights."""
    return _cached_constants(model, params, batch_stats)[2]


def _cpu_kernel(model, params=None, batch_stats=None):
    """The CPU kernel (streaming_cpu_kernel.CpuStreamKernel) holding the model's weights (cached)."""
    derived = _cached_constants(model, params, batch_stats)[3]
    if "kernel" not in derived:
        derived["kernel"] = cpu_kernel.CpuStreamKernel(model.config, derived["prepared"],
                                                       state_layout(model.config, model.module.dtype), _head(model))
        del derived["prepared"]  # (the kernel holds its own copy)
    return derived["kernel"]


IMPLEMENTATIONS = ("auto", "xla", "cpu-kernel")


class _Spec(NamedTuple):
    """What `stream` reads of a model on every call (transformers' config attributes cost ~1 µs each)."""

    head: str
    gap_convention: str
    vocab_size: int
    time_unit_us: float
    kernel_unsupported: Optional[str]  # why the CPU kernel cannot run the model (None: it can)


_SPECS: dict = {}  # model fingerprint -> _Spec


def _spec(model) -> _Spec:
    key = model_fingerprint(model)
    if key not in _SPECS:
        cfg = model.config
        _SPECS[key] = _Spec(_head(model), cfg.gap_convention, cfg.vocab_size, cfg.time_unit_us,
                            cpu_kernel.unsupported_reason(model))
    return _SPECS[key]


@functools.lru_cache(maxsize=None)
def _computes_on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def _use_cpu_kernel(spec: _Spec, implementation: str) -> bool:
    """Whether `stream` runs the CPU kernel: "auto" where it supports the model and JAX computes on the
    CPU, "cpu-kernel" (or ValueError naming why not), "xla" never."""
    if implementation == "xla":
        return False
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    reason = spec.kernel_unsupported
    if implementation == "cpu-kernel" and reason is not None:
        raise ValueError(f"the CPU streaming kernel cannot run this model: {reason}; use implementation='xla'")
    return reason is None and (implementation == "cpu-kernel" or _computes_on_cpu())


# ================================================================================================
# One chunk of one stream (vmapped over the batch)
# ================================================================================================

UNROLL = 64  # recurrences over at most this many positions are unrolled (no loop: fewer, fused kernels)


def _at_least_two_rows(x, rows):
    """x padded along axis 0 to at least `rows` rows (zeros)."""
    return jnp.pad(x, [(0, max(rows - x.shape[0], 0))] + [(0, 0)] * (x.ndim - 1))


def _merge(buffer, count, chunk):
    """[buffer[:count], chunk, ...]: the open window's buffered inputs followed by the chunk (axis 0), at
    least S + 1 long: XLA's CPU backend fuses a one-row matmul with all its producers into a loop that
    recomputes them for every output (≈20x slower), so no level ever has a single position."""
    size = buffer.shape[0]
    cat = _at_least_two_rows(jnp.concatenate([buffer, chunk], axis=0), size + 2)
    i = jnp.arange(cat.shape[0])
    src = jnp.where(i < count, i, i + size - count)  # skip the empty buffer slots
    return jnp.take(cat, jnp.minimum(src, cat.shape[0] - 1), axis=0)


def _slice_window(x, start, size):
    """x[start : start + size] along axis 0 (x padded so that the slice never runs off the end)."""
    pad = [(0, size)] + [(0, 0)] * (x.ndim - 1)
    return jax.lax.dynamic_slice_in_dim(jnp.pad(x, pad), start, size, axis=0)


# Complex arrays of the step are "pairs": real arrays (…, 2, P) holding the real parts, then the imaginary
# parts. XLA's CPU backend runs every complex↔real conversion and every concatenation as an operation of
# its own (≈1 µs each, the streaming step's main cost at small chunks); with pairs the matmuls read and
# write the states directly (a reshape to (…, 2P)), and a complex product is one elementwise expression
# of broadcasts and a reversal, which XLA fuses with its neighbours.

_SIGN = np.array([[-1.0], [1.0]], np.float32)  # (2, 1)


def _to_pair(z):
    return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-2)


def _to_complex(x):
    return jax.lax.complex(x[..., 0, :], x[..., 1, :])


def _cmul(a, b):
    """The complex product of two pairs (broadcasting): [a_re·b_re − a_im·b_im, a_re·b_im + a_im·b_re]."""
    return a[..., :1, :] * b + (a[..., 1:, :] * _SIGN) * jnp.flip(b, axis=-2)


def _flat(x):
    """A pair (…, 2, P) as the (…, 2P) rows the matmuls read (a free reshape)."""
    return x.reshape(x.shape[:-2] + (-1,))


def _project_input(weights, u):
    """(γ·)B̃u as a pair (…, 2, P) (EventS5.project_input, one matmul with B = [B̃_re | B̃_im] (H_in, 2P);
    γ folded into B when it does not depend on Δt)."""
    bu = u @ weights["B"]
    return bu.reshape(bu.shape[:-1] + (2, -1))


def _project_output(weights, x):
    """Re(C̃x) (2·Re with conj_sym) (EventS5.project_output, one matmul of the pair x with
    C = [C̃_re; −C̃_im] (2P, H_out))."""
    return _flat(x) @ weights["C"]


def _gained(cfg, ssm, dt, bu):
    """γ_k·B̃u_k: γ is folded into B and the token table unless it depends on Δt (zoh: EventS5.discretize)."""
    return bu if cfg.discretization != "zoh" else _cmul(_to_pair(ssm.discretize(dt[:, None])[1]), bu)


def _feedthrough(weights, u):
    """Du (EventS5.feedthrough with a contiguous D)."""
    return u * weights["D"] if weights["D"].ndim == 1 else u @ weights["D"]


def _pool(x, dt, mask, stride, mode, keep, eps):
    """The model's pool_windows for one stream (x (L, F) → (ceil(L/S), F)), with the window sum written
    out as `stride` terms: XLA's CPU reduction loop does not vectorise the gathers fused into it."""
    length, feat = x.shape
    pad = -(-length // stride) * stride - length
    m = jnp.pad(mask, (0, pad)).reshape(-1, stride).astype(x.dtype)
    xw = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, stride, feat)
    if mode == "last":
        count = jnp.sum(m, axis=-1).astype(jnp.int32)
        idx = jnp.zeros_like(count) if keep == "first" else jnp.maximum(count - 1, 0)
        return jnp.take_along_axis(xw, idx[:, None, None], axis=1)[:, 0] * (count > 0)[:, None]
    w = m if mode == "avg" else (jnp.pad(dt, (0, pad)).reshape(-1, stride) + eps) * m
    norm = jnp.sum(w, axis=-1, keepdims=True)
    total = functools.reduce(jnp.add, [xw[:, i] * w[:, i, None] for i in range(stride)])
    return total / jnp.where(norm > 0, norm, 1.0)


def _recurrence(a, b, x0, method):
    """x_k = a_k ⊙ x_{k−1} + b_k along axis 0 from x_{−1} = x0 (pairs in, complex64 out: the model's
    linear_recurrence; short ones unrolled). In complex64 because a product of pairs reads the previous
    state twice, and XLA, fusing the chain, would recompute it (2^L)."""
    a, b, x0 = _to_complex(a), _to_complex(b), _to_complex(x0)
    b = b.at[0].add(a[0] * x0)  # (also materialises b: fused into the steps, its window sums would be recomputed)
    if a.shape[0] > UNROLL:
        return modeling.linear_recurrence(a[None], b[None], method)[0]
    xs = [b[0]]
    for k in range(1, a.shape[0]):
        xs.append(a[k] * xs[-1] + b[k])
    return jnp.stack(xs)


def _state_at(states, index, x0):
    """The pair of states[index − 1] (complex states), or x0 (a pair) where index is 0."""
    return jnp.where(index > 0, _to_pair(states[jnp.maximum(index - 1, 0)]), x0)


# π/2 in three parts (the first two with few bits, so that k·part is exact for |k| < 2^15): Cody-Waite
_PIO2 = (np.float32(1.5703125), np.float32(4.837512969970703125e-4), np.float32(7.54978995489188216e-8))
_SIN = tuple(np.float32(c) for c in (-1.6666654611e-1, 8.3321608736e-3, -1.9515295891e-4))  # Cephes sinf
_COS = tuple(np.float32(c) for c in (4.166664568298827e-2, -1.388731625493765e-3, 2.443315711809948e-5))


def complex_exp(z):
    """exp(z) for complex64 z, as jnp.exp(z) to float32 rounding but ~4x faster on CPU, where XLA's
    sin/cos are the streaming step's bottleneck (`exp_pair` of its real and imaginary parts)."""
    return _to_complex(exp_pair(jnp.real(z), jnp.imag(z)))


def exp_pair(re, theta):
    """exp(re + i·θ) for real arrays (…, P) as a pair (…, 2, P) [exp(re)·cos θ, exp(re)·sin θ]: θ reduced
    to r ∈ [−π/4, π/4] (θ = k·π/2 + r), Cephes' minimax polynomials for sin r and cos r, and
    sin θ = cos(θ − π/2), i.e. cos in the previous quadrant (one expression over both rows)."""
    k = jnp.round(theta * np.float32(2 / np.pi))
    r = ((theta - k * _PIO2[0]) - k * _PIO2[1]) - k * _PIO2[2]
    r2 = r * r
    sin_r = r + r * r2 * (_SIN[0] + r2 * (_SIN[1] + r2 * _SIN[2]))
    cos_r = 1 - 0.5 * r2 + r2 * r2 * (_COS[0] + r2 * (_COS[1] + r2 * _COS[2]))
    # cos(r + q·π/2) with q = k for the real row and k − 1 for the imaginary one
    q = (k.astype(jnp.int32)[..., None, :] - np.array([[0], [1]], np.int32)) & 3
    cos_r, sin_r = cos_r[..., None, :], sin_r[..., None, :]
    rotated = jnp.where(q == 0, cos_r, jnp.where(q == 1, -sin_r, jnp.where(q == 2, -cos_r, sin_r)))
    return jnp.exp(re)[..., None, :] * rotated


def _decay(weights, dt):
    """Λ̄ = exp(Λ·s·Δt) (a pair) for gaps dt (..., 1), as EventS5.discretize computes it (with exp_pair)."""
    lam = weights["lam_step"]
    return exp_pair(lam[0] * dt, lam[1] * dt)


def _suffix_sums(stride):
    """(S, S) 0/1 matrices: dt @ inclusive = Σ_{i' ≥ i} Δt_i', dt @ exclusive = Σ_{i' > i} Δt_i' (a small
    matmul: XLA's CPU cumsum is a slow reduce-window)."""
    inclusive = np.tril(np.ones((stride, stride), np.float32))  # [i', i] = 1 where i' ≥ i
    return inclusive, np.tril(inclusive, -1)


def _window_states(weights, dt, inputs, stride, offset, x0, method):
    """States after the last position of each window of `stride` (the model's window_end_states, from x0):
    b_w = Σ_i exp(Λ·s·τ_i) ⊙ γ_i B̃u_i with τ_i the time from position i to its window's end, then
    x_w = exp(Λ·s·Σ_window Δt) ⊙ x_{w−1} + b_w. `offset` neutral positions (Δt = 0, no input) go first."""
    length, num = dt.shape[0], -(-dt.shape[0] // stride)
    total = -(-(length + offset) // stride) * stride
    pad = (offset, total - length - offset)
    dtw = jnp.pad(dt, pad).reshape(-1, stride)
    inw = jnp.pad(inputs, (pad, (0, 0), (0, 0))).reshape((-1, stride) + inputs.shape[1:])
    inclusive, exclusive = _suffix_sums(stride)
    window_dt = dtw @ inclusive[:, :1]  # Σ over the window
    tau = dtw @ exclusive  # Σ_{i' > i} Δt_i': time from position i to its window's end
    decay_to_end = _decay(weights, tau[..., None])  # (windows, S, 2, P)
    # a sum of `stride` terms written out: XLA's CPU reduction loop would not vectorise the exps inside it
    b = functools.reduce(jnp.add, [_cmul(decay_to_end[:, i], inw[:, i]) for i in range(stride)])
    a = _decay(weights, window_dt)  # decay over the whole window
    return _recurrence(a, b, x0, method)[:num]


def _gated_output(cfg, dtype, block_params, y, skip, mask, h_in, h_out):
    """The block's tail: y·σ(Dense(GELU(y))) + skip (projected when widening), zero at invalid positions."""
    y = y.astype(dtype)
    gate = _dense(h_out, dtype, block_params["gate"], nn.gelu(y))
    y = y * nn.sigmoid(gate)
    if h_in != h_out:
        skip = _dense(h_out, dtype, block_params["skip_proj"], skip)
    return (skip + y) * mask[:, None]


def _block_inputs(cfg, dtype, consts, name, stage_zero, x, mask):
    """(u, B̃u, skip input) of a block: per-token tables when x holds the first block's tokens."""
    params = consts["variables"]["params"]
    m = mask[:, None]
    if stage_zero:
        tokens = jnp.where(mask, x, 0)
        u = jnp.take(consts["table_u"], tokens, axis=0) * m
        bu = jnp.take(consts["table_bu"], tokens, axis=0) * m
        bu = bu.reshape(bu.shape[:-1] + (2, -1))
        return u.astype(jnp.float32), bu, jnp.take(params["eventssm"]["embed"]["embedding"], tokens, axis=0) * m
    x = x * m
    u = (_norm(cfg, dtype, consts["variables"], name, x) * m).astype(jnp.float32)
    return u, _project_input(consts["blocks"][name], u), x


def _pooling_block(cfg, dtype, consts, stage_state, stage, name, h_in, h_out, p, stride, x, dt, n_valid, n_final):
    """First block of a stage with stride S > 1 on [open window's buffered inputs, chunk positions].

    Returns the block output at window resolution, its Δt and mask, the valid and final window counts,
    the committed SSM state and the new open-window buffer.
    """
    x0, count = stage_state.ssm_states[0], stage_state.window_count
    seq = _merge(stage_state.window_inputs, count, x)
    seq_dt = _merge(stage_state.window_time_deltas, count, dt)
    length = seq_dt.shape[0]
    nv, nf = count + n_valid, count + n_final
    mask = jnp.arange(length) < nv
    seq_dt = jnp.where(mask, seq_dt, 0.0)
    seq = jnp.where(mask, seq, 0) if stage == 0 else seq * mask[:, None]
    u, bu, skip_in = _block_inputs(cfg, dtype, consts, name, stage == 0, seq, mask)
    ssm = _ssm(cfg, consts["variables"]["params"], name, h_in, h_out, p, stride)
    method = modeling.scan_method(cfg)
    weights = consts["blocks"][name]
    inputs = _gained(cfg, ssm, seq_dt, bu)
    last_states = _window_states(weights, seq_dt, inputs, stride, 0, x0, method)
    kept = last_states
    if cfg.pooling_keep == "first":  # states after each window's first position
        kept = _window_states(weights, seq_dt, inputs, stride, stride - 1, x0, method)
    pool = functools.partial(_pool, dt=seq_dt, mask=mask, stride=stride, mode=cfg.pooling_mode,
                             keep=cfg.pooling_keep, eps=cfg.timepool_eps)
    y = _project_output(consts["blocks"][name], _to_pair(kept)) + _feedthrough(consts["blocks"][name], pool(u))
    skip = pool(skip_in)
    block = modeling.EventSSMBlock(cfg, h_in, h_out, p, stride, dtype)
    w_dt, w_mask = block._pooled_times(seq_dt[None], mask[None])
    w_dt, w_mask = w_dt[0], w_mask[0]
    out = _gated_output(cfg, dtype, consts["variables"]["params"]["eventssm"][name], y, skip, w_mask, h_in, h_out)
    closed = nf // stride  # final (closed) windows
    committed = _state_at(last_states, closed, x0)
    start = closed * stride
    new_stage = stage_state.replace(
        window_inputs=_slice_window(seq, start, stride - 1),
        window_time_deltas=_slice_window(seq_dt, start, stride - 1),
        window_count=nf - start,
    )
    return out, w_dt, w_mask, jnp.sum(w_mask).astype(jnp.int32), closed, committed, new_stage


def _scan_block(cfg, dtype, consts, x0, name, h_in, h_out, p, x, dt, mask, n_final, stage_zero=False):
    """A stride-1 block over positions from the committed state x0; returns (output, committed state)."""
    u, bu, skip_in = _block_inputs(cfg, dtype, consts, name, stage_zero, x, mask)
    ssm = _ssm(cfg, consts["variables"]["params"], name, h_in, h_out, p, 1)
    weights = consts["blocks"][name]
    states = _recurrence(_decay(weights, dt[:, None]), _gained(cfg, ssm, dt, bu), x0, modeling.scan_method(cfg))
    y = _project_output(consts["blocks"][name], _to_pair(states)) + _feedthrough(consts["blocks"][name], u)
    out = _gated_output(cfg, dtype, consts["variables"]["params"]["eventssm"][name], y, skip_in, mask, h_in, h_out)
    committed = _state_at(states, n_final, x0)
    return out, committed


def _backbone_chunk(cfg, dtype, consts, stages, tokens, dt, n):
    """All stages over one chunk of one stream: last-stage outputs (positions, Δt, mask, final count)
    and the new stage states."""
    x, x_dt = tokens, dt
    n_valid = n_final = n
    mask = jnp.arange(tokens.shape[0]) < n
    new_stages = []
    blocks = list(_block_names(cfg))
    for stage, stage_state in enumerate(stages):
        committed = []
        for st, layer, name, h_in, h_out, p, stride in blocks:
            if st != stage:
                continue
            if layer == 0 and stride > 1:
                x, x_dt, mask, n_valid, n_final, c, stage_state = _pooling_block(
                    cfg, dtype, consts, stage_state, stage, name, h_in, h_out, p, stride, x, x_dt, n_valid, n_final)
            else:
                x, c = _scan_block(cfg, dtype, consts, stage_state.ssm_states[layer], name, h_in, h_out, p,
                                   x, x_dt, mask, n_final, stage_zero=stage == 0 and layer == 0)
            committed.append(c)
        new_stages.append(stage_state.replace(ssm_states=tuple(committed)))
    return x, x_dt, mask, n_final, tuple(new_stages)


def _residual_events(cfg, stages):
    """Events since the last final last-stage position: Σ_s window_count_s · S^s (< S^stages)."""
    return sum(st.window_count * cfg.pooling_stride ** s for s, st in enumerate(stages))


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
    logits = _dense(cfg.num_labels, dtype, consts["variables"]["params"]["classifier"], pooled)
    new = readout.replace(weighted_sum=weighted_sum, weight=weight, last_hidden=last)
    return logits, new


def _next_event_outputs(cfg, dtype, consts, readout, residual, h, n_final, tokens, n):
    """The model's next-event head for every event of the chunk: event k reads the last-stage position
    complete at k (this chunk's h, or the kept last one) plus local_proj of its own embedding."""
    params = consts["variables"]["params"]
    head = params["next_event_head"]
    width = h.shape[-1]
    i = jnp.arange(tokens.shape[0])
    if cfg.total_stride == 1:
        features = h
    else:
        window = (residual + i + 1) // cfg.total_stride - 1  # index into this chunk's positions; −1: the kept one
        context = jnp.where((window >= 0)[:, None], jnp.take(h, jnp.maximum(window, 0), axis=0), readout.last_hidden)
        valid = i < n
        embedding = params["eventssm"]["embed"]["embedding"]
        embeds = jnp.take(embedding, jnp.where(valid, tokens, 0), axis=0) * valid[:, None]
        features = context + _dense(width, dtype, head["local_proj"], embeds)
    features = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=dtype).apply({"params": head["norm"]}, features)
    logits = _dense(cfg.vocab_size, dtype, head["token_logits"], features)
    k = cfg.num_mixture_components
    gap = _dense(3 * k, dtype, head["gap_params"], features).astype(jnp.float32)
    last = jnp.where(n_final > 0, h[jnp.maximum(n_final - 1, 0)], readout.last_hidden)
    outs = (logits, gap[..., :k], gap[..., k : 2 * k], jnp.clip(gap[..., 2 * k :], *GAP_LOG_SCALE_RANGE))
    valid = (i < n)[:, None]
    return tuple(jnp.where(valid, o, 0) for o in outs), readout.replace(last_hidden=last)


def _row_step(cfg, dtype, head, consts, device_state, ids, dt, n):
    """One chunk of one stream: (outputs, new device state). device_state: (its row of the state buffer,
    its logits); ids, dt (L,), n valid events (scalar)."""
    consts = consts.unpack() if isinstance(consts, PackedConstants) else consts
    layout = state_layout(cfg, dtype)
    row, logits = device_state
    stages, readout = layout.unpack(row)
    length = ids.shape[0]
    ids, dt = _at_least_two_rows(ids, 2), _at_least_two_rows(dt, 2)  # one-row matmuls: see _merge
    valid = jnp.arange(ids.shape[0]) < n
    tokens = jnp.where(valid, jnp.clip(ids, 0, cfg.vocab_size - 1), 0).astype(jnp.int32)
    dt = jnp.where(valid, dt, 0.0)
    residual = _residual_events(cfg, stages)
    h, h_dt, mask, n_final, new_stages = _backbone_chunk(cfg, dtype, consts, stages, tokens, dt, n)
    readout = readout.replace(total_time=readout.total_time + jnp.sum(dt))
    if head == "classification":
        logits, readout = _classification_readout(cfg, dtype, consts, readout, h, h_dt, mask, n_final)
        return logits, (layout.pack((new_stages, readout)), logits)
    outs, readout = _next_event_outputs(cfg, dtype, consts, readout, residual, h, n_final, tokens, n)
    return tuple(o[:length] for o in outs), (layout.pack((new_stages, readout)), logits)


_STEPS: dict = {}  # model fingerprint -> jitted step


def _jitted_step(fingerprint: str, cfg: EventSSMConfig, dtype, head: str):
    """The jitted, batch-vmapped step of one model kind (traces counted in TRACE_COUNTS[fingerprint])."""

    def step(consts, device_state, ids, dt, n):
        TRACE_COUNTS[fingerprint] += 1  # runs once per trace, never per call
        row = functools.partial(_row_step, cfg, dtype, head)
        return jax.vmap(row, in_axes=(None, 0, 0, 0, 0))(consts, device_state, ids, dt, n)

    return jax.jit(step)


def _step_for(model):
    key = model_fingerprint(model)
    if key not in _STEPS:
        _STEPS[key] = _jitted_step(key, model.config, model.module.dtype, _head(model))
    return _STEPS[key]


# ================================================================================================
# Public API: init_stream, stream
# ================================================================================================


def _state_template(cfg: EventSSMConfig, dtype):
    """One stream's (stages, readout) tree of shapes and dtypes (no batch axis)."""
    stride = cfg.pooling_stride
    spec = jax.ShapeDtypeStruct
    stages = []
    for stage in range(cfg.num_stages):
        states = tuple(spec((2, _local_state_size(cfg, p)), np.float32)  # pairs
                       for st, _, _, _, _, p, _ in _block_names(cfg) if st == stage)
        h_in = cfg.hidden_size if stage == 0 else cfg.stage_hidden_size(stage - 1)
        inputs = spec((stride - 1,), np.int32) if stage == 0 else spec((stride - 1, h_in), dtype)
        stages.append(StageState(states, inputs, spec((stride - 1,), np.float32), spec((), np.int32)))
    width = cfg.output_hidden_size
    readout = ReadoutState(spec((width,), np.float32), spec((), np.float32), spec((width,), dtype),
                           spec((), np.float32))
    return tuple(stages), readout


_LAYOUTS: dict = {}  # (the config values that shape the state, dtype) -> StateLayout


def state_layout(cfg: EventSSMConfig, dtype) -> StateLayout:
    """The flat layout of one stream's state for this config and compute dtype (cached)."""
    key = tuple(getattr(cfg, k) for k in ("hidden_size", "state_size", "num_stages", "num_layers_per_stage",
                                          "pooling_stride", "state_expansion_factor", "hidden_expansion_factor",
                                          "conj_sym", "vocab_size")) + (str(np.dtype(dtype)),)
    if key not in _LAYOUTS:
        if cfg.vocab_size >= 2**24:
            raise ValueError(f"streaming keeps token ids as float32, exact below 2^24; vocab_size={cfg.vocab_size}")
        _LAYOUTS[key] = StateLayout(_state_template(cfg, dtype))
    return _LAYOUTS[key]


def init_stream(model, batch_size: int = 1, params=None) -> StreamState:
    """A fresh stream state for `batch_size` parallel streams of `model` (no event seen yet: all zeros)."""
    head = _head(model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    cfg = model.config
    b = int(batch_size)
    layout = state_layout(cfg, model.module.dtype)
    buffer = jnp.asarray(np.zeros((b, layout.size), np.float32))  # from numpy: no per-shape compile
    logits = None
    if head == "classification":  # before any event the readout is zero: the classifier's bias
        bias = np.asarray((model.params if params is None else params)["classifier"]["bias"])
        logits = jnp.asarray(np.broadcast_to(bias, (b, cfg.num_labels)))
    return StreamState(buffer, logits, np.zeros(b, np.int64), np.zeros(b, np.int64), np.full(b, -1, np.int32),
                       model_fingerprint(model), _model_name(model), layout)


def _check_state(model, state, batch):
    if not isinstance(state, StreamState):
        raise TypeError(f"state must be a StreamState from init_stream(model, ...), got {type(state).__name__}")
    if state.fingerprint != model_fingerprint(model):
        raise ValueError(
            f"this stream state was made for another model ({state.model_name}, fingerprint {state.fingerprint}); "
            f"this model is {_model_name(model)} (fingerprint {model_fingerprint(model)}). Start a new one with "
            "init_stream(model, batch_size)"
        )
    if batch != state.batch_size:
        raise ValueError(
            f"the chunk holds {batch} stream(s) (input_ids.shape[0]) but the state was made for batch_size="
            f"{state.batch_size}; pass one row per stream of the state or init_stream(model, batch_size={batch})"
        )


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
    modeling.check_inputs(config, ids, ts, attention_mask)
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
    return np.where(valid, modeling.gaps_to_units(gaps, config.time_unit_us), np.float32(0.0))


def _internal_events(config, ids, dt, n, state):
    """(tokens, Δt, counts, new pending) the backbone reads. gap_convention="before": the events as they
    are. "after": event k carries the gap to event k+1, so the newest event waits in `pending_token`."""
    if config.gap_convention == "before":
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
    (`streaming_cpu_kernel.checked_gaps`), as a live sensor loop calls this per chunk. None for anything
    else (the full path checks it and names the problem) and for gap_convention="after".
    config: the model's config or its `_Spec`."""
    if config.gap_convention != "before":
        return None
    ids, ts = np.asarray(input_ids), np.asarray(timestamps)
    if ids.ndim == 1 and ts.ndim == 1:
        ids, ts = ids[None], ts[None]
    if ids.ndim != 2 or ts.shape != ids.shape or ids.shape[1] == 0 or ids.dtype.kind not in "iu" \
            or ts.dtype.kind not in "iu" or ids.shape[0] != state.batch_size:
        return None
    ok, gaps = cpu_kernel.checked_gaps(ids, ts, state.last_timestamp, state.num_events, config.vocab_size)
    return (ids, ts, modeling.gaps_to_units(gaps, config.time_unit_us)) if ok else None


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


def _empty_output(model, state, batch):
    cfg = model.config
    if state.logits is not None:
        return modeling.FlaxEventSSMSequenceClassifierOutput(logits=state.logits)
    k = cfg.num_mixture_components
    z = lambda d: np.zeros((batch, 0, d), np.float32)  # noqa: E731
    return modeling.FlaxEventSSMNextEventPredictionOutput(logits=z(cfg.vocab_size), gap_mixture_logits=z(k),
                                                          gap_log_means=z(k), gap_log_scales=z(k))


def stream(model, input_ids, timestamps, state: StreamState, params=None, batch_stats=None,
           attention_mask=None, buckets=BUCKETS, implementation: str = "auto"):
    """Feed one chunk of events to the streams of `state`; returns (output, new_state).

    input_ids, timestamps: (B, L) token ids and int µs timestamps (or (L,) for a single stream), any
    L ≥ 0, in time order and not before the state's last timestamp; attention_mask (B, L) optional
    (valid events first) lets the streams of a batch receive different numbers of events.
    Output: classification models → FlaxEventSSMSequenceClassifierOutput, logits (B, num_labels) given
    every event so far (what the full forward gives on the whole prefix); next-event models →
    FlaxEventSSMNextEventPredictionOutput with logits (B, L, vocab) and the gap mixture (B, L, K) for
    every event of the chunk (zeros where attention_mask is 0), as numpy arrays.
    buckets: the padded chunk lengths compiled for (one compilation each, at most); a chunk is padded to
    the smallest bucket that holds it, and a longer one is processed in pieces of the largest.
    implementation: "auto" (the CPU kernel of `streaming_cpu_kernel` when JAX computes on the CPU and
    the kernel covers the model, else the XLA step), "xla" or "cpu-kernel": the same numbers (parity
    tests), states interchangeable; the CPU kernel needs no buckets (one compilation for every length).
    An empty chunk (L = 0) is a no-op: the state comes back unchanged with the current prediction
    (classification) or outputs of length 0 (next-event).
    Raises ValueError for a chunk before the state's last timestamp, ids outside the vocabulary,
    decreasing timestamps, a state of another model or batch size.
    """
    spec = _spec(model)
    head, cfg = spec.head, model.config
    buckets = _check_buckets(buckets)
    if not isinstance(state, StreamState):
        _check_state(model, state, None)  # TypeError naming what came instead
    fast = _plain_chunk(spec, input_ids, timestamps, state) if attention_mask is None else None
    if fast is not None:  # the common case, checked in few numpy operations
        ids, ts, dts = fast
        tokens, (batch, length) = ids, ids.shape
        n = counts = np.full(batch, length, np.int64)
        pending = state.pending_token
        _check_state(model, state, batch)
    else:
        ids, ts, n = _as_chunk(cfg, input_ids, timestamps, attention_mask)
        batch, length = ids.shape
        _check_state(model, state, batch)
        if length == 0:
            return _empty_output(model, state, batch), state
        dt = _gaps_before(cfg, ts, n, state)
        tokens, dts, counts, pending = _internal_events(cfg, ids, dt, n, state)
    if _use_cpu_kernel(spec, implementation):
        out, buffer, logits = _cpu_kernel(model, params, batch_stats)(state.buffer, state.logits, tokens, dts, counts)
        device_state, pieces = (buffer, logits), [out]
    else:
        out, device_state, pieces = _xla_chunk(model, params, batch_stats, buckets, state, tokens, dts, counts)
    last = ts[:, -1] if fast is not None else ts[np.arange(batch), np.maximum(n - 1, 0)]
    new_state = StreamState(device_state[0], device_state[1], np.where(n > 0, last, state.last_timestamp).astype(np.int64),
                            state.num_events + n, pending, state.fingerprint, state.model_name, state.layout)
    if head == "classification":
        return modeling.FlaxEventSSMSequenceClassifierOutput(logits=out), new_state
    parts = [np.concatenate(p, axis=1) if len(pieces) > 1 else p[0] for p in zip(*pieces)]
    return modeling.FlaxEventSSMNextEventPredictionOutput(
        logits=parts[0], gap_mixture_logits=parts[1], gap_log_means=parts[2], gap_log_scales=parts[3]), new_state


def _xla_chunk(model, params, batch_stats, buckets, state, tokens, dts, counts):
    """The chunk through the jitted XLA step, in bucket-padded pieces: (last output, (buffer, logits),
    next-event output pieces)."""
    batch, length = tokens.shape
    consts = _constants(model, params, batch_stats)
    step = _step_for(model)
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
        if _head(model) == "next-event":  # cut on the host: an eager slice would compile once per chunk length
            pieces.append(tuple(np.asarray(o)[:, :size] for o in out))
    return out, device_state, pieces


# ================================================================================================
# Generation
# ================================================================================================


def sample_next_event(key, logits, mixture_logits, log_means, log_scales, temperature, time_unit_us, banned):
    """One event from the next-event head's outputs (one row): (token int32, gap int32 µs).

    Token ~ softmax(logits / T) without the `banned` ids (pad/bos/eos); log(gap + 1 µs) ~ the log-normal
    mixture with component ~ softmax(mixture_logits / T) and scale σ·T. T = 0 is greedy: the most likely
    token and component, gap = exp(μ) − 1 µs (the mixture's median-like mode of its main component).
    """
    k_token, k_comp, k_gap = jax.random.split(key, 3)
    logits = jnp.where(banned, -jnp.inf, logits.astype(jnp.float32))
    greedy = temperature <= 0
    t = jnp.where(greedy, 1.0, temperature)
    token = jnp.where(greedy, jnp.argmax(logits), jax.random.categorical(k_token, logits / t))
    comp = jnp.where(greedy, jnp.argmax(mixture_logits), jax.random.categorical(k_comp, mixture_logits / t))
    noise = jnp.where(greedy, 0.0, jax.random.normal(k_gap) * jnp.exp(log_scales[comp]) * t)
    log_gap = log_means[comp] + noise  # log(gap + resolution) in model time units
    gap_us = jnp.exp(log_gap) * time_unit_us - 1.0  # gap + 1 µs = exp(y) units
    return token.astype(jnp.int32), jnp.round(jnp.clip(gap_us, 0.0, 2.0**30)).astype(jnp.int32)


_GENERATORS: dict = {}  # model fingerprint -> jitted block of generation steps


def _generator(model, block: int):
    """Jitted: `block` events, each sampled from the previous prediction and fed back as a 1-event chunk."""
    key_ = (model_fingerprint(model), block)
    if key_ in _GENERATORS:
        return _GENERATORS[key_]
    cfg, dtype = model.config, model.module.dtype
    banned = np.zeros(cfg.vocab_size, bool)
    banned[[i for i in (cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) if i is not None]] = True
    row = functools.partial(_row_step, cfg, dtype, "next-event")

    def run(consts, device_state, prediction, key, temperature, offset):
        def one(carry, i):
            device_state, prediction = carry
            token, gap = sample_next_event(jax.random.fold_in(key, offset + i), *prediction, temperature,
                                           cfg.time_unit_us, banned)
            dt = gap.astype(jnp.float32) / jnp.float32(cfg.time_unit_us)  # exact for gaps < 2^24 µs
            outs, device_state = jax.vmap(row, in_axes=(None, 0, 0, 0, 0))(
                consts, device_state, token[None, None], dt[None, None], jnp.ones((1,), jnp.int32))
            return (device_state, tuple(o[0, 0] for o in outs)), (token, gap)

        (device_state, prediction), (tokens, gaps) = jax.lax.scan(one, (device_state, prediction), jnp.arange(block))
        return device_state, prediction, tokens, gaps

    _GENERATORS[key_] = jax.jit(run)
    return _GENERATORS[key_]


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
    if _head(model) != "next-event":
        raise TypeError(f"generate needs a FlaxEventSSMForNextEventPrediction, got {type(model).__name__}")
    if isinstance(num_events, bool) or not isinstance(num_events, (int, np.integer)) or num_events < 0:
        raise ValueError(f"num_events must be a non-negative integer, got {num_events!r}")
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be ≥ 0 (0: greedy), got {temperature!r}")
    ids, ts = _prompt_arrays(model, prompt, tokenizer)
    state = init_stream(model, 1, params=params)
    out, state = stream(model, ids[None], ts[None], state, params=params)
    prediction = tuple(o[0, -1] for o in (out.logits, out.gap_mixture_logits, out.gap_log_means, out.gap_log_scales))
    consts, run = _constants(model, params), _generator(model, block)
    device_state, key = (state.buffer, state.logits), jax.random.PRNGKey(seed)
    tokens, gaps = [], []
    for offset in range(0, num_events, block):
        device_state, prediction, tok, gap = run(consts, device_state, prediction, key, jnp.float32(temperature),
                                                 jnp.int32(offset))
        tokens.append(np.asarray(tok)), gaps.append(np.asarray(gap))
    tokens = np.concatenate(tokens)[:num_events] if tokens else np.zeros(0, np.int32)
    gaps = np.concatenate(gaps)[:num_events].astype(np.int64) if gaps else np.zeros(0, np.int64)
    times = int(state.last_timestamp[0]) + np.cumsum(gaps)
    result = tokenizer.decode(tokens, times) if tokenizer is not None else (tokens.astype(np.int32), times)
    if not return_state:
        return result
    if num_events % block:  # the last block ran past num_events: replay the exact events on the state
        _, state = stream(model, tokens[None], times[None], state, params=params)
    else:
        state = state.replace(buffer=device_state[0], logits=device_state[1],
                              last_timestamp=np.array([times[-1] if num_events else state.last_timestamp[0]]),
                              num_events=state.num_events + num_events)
    return result, state


# ================================================================================================
# `eventlm stream MODEL RECORDING`: a recording played as if it were live
# ================================================================================================


def load_streaming_model(model_name_or_path, **kwargs):
    """(model, head) for a saved model folder or Hub repo id, with the head its weights carry."""
    from ...training.arguments import ModelArguments
    from ...training.pipelines import model_head

    args = ModelArguments(model_name_or_path=str(model_name_or_path), **kwargs)
    head = model_head(args)
    cls = (modeling.FlaxEventSSMForSequenceClassification if head == "classification"
           else modeling.FlaxEventSSMForNextEventPrediction)
    return cls.from_pretrained(str(model_name_or_path), **kwargs), head


def _streaming_tokenizer(model, model_name_or_path, sensor_size, tokenizer=None):
    """The model folder's tokenizer if it has one, else one built from the recording's sensor."""
    from ...tokenization_events import CONFIG_NAME, EventTokenizer

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
    nll = token + modeling.lognormal_mixture_nll(dt, mix, means, scales, resolution)
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
    from ...data.readers import read_events

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    file = sys.stdout if file is None else file
    recording = read_events(recording_path, format=format, **reader_options)
    model, head = load_streaming_model(model_name_or_path)
    tokenizer = _streaming_tokenizer(model, model_name_or_path, recording.sensor_size, tokenizer)
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
        description="Run a saved EventSSM model over a recording as if it came live from the sensor: chunk by "
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
    options = json.loads(args.reader_options) if args.reader_options else {}
    if args.sensor_size:
        options["sensor_size"] = tuple(args.sensor_size)
    run_stream(args.model, args.recording, chunk_size=args.chunk_size, plot=args.plot, format=args.format,
               tokenizer=args.tokenizer, realtime=args.realtime, max_events=args.max_events, lines=args.lines,
               **options)
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def _plot_stream(run: StreamRun, head: str, path, title) -> Path:
    from ...training.plots import _pyplot, _save

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
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


__all__ = [
    "StreamState", "StageState", "ReadoutState", "StateLayout", "state_layout", "PackedConstants", "init_stream", "stream", "generate",
    "sample_next_event", "complex_exp", "exp_pair", "run_stream", "StreamRun", "load_streaming_model", "main",
    "model_fingerprint", "TRACE_COUNTS", "BUCKETS",
]
