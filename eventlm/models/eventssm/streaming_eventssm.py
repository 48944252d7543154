"""EventSSM's streaming step (`EventSSMStreamer`): one chunk of the backbone with its state carried.

The driver (state object, checks, gaps, readout and next-event head, generation, `eventlm stream`) is
eventlm.streaming, shared by every model; `init_stream`, `stream`, `generate` and the other public names
of that module are re-exported here for compatibility.

How a chunk is processed, level by level (a level is a stage; stage s sees one position per
pooling_stride^s events):

- A pooling block needs the SSM state at one event per window of S positions. The state keeps the
  SSM state at the last *closed* window boundary and the raw inputs of the open window (at most
  S − 1 positions: tokens at stage 0, the previous stage's outputs later, with their projections B̃u,
  which the CPU kernel reads instead of projecting the buffered inputs again). The chunk is appended to
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
`linear_recurrence`. Written here for CPU speed, with the same formulas (the parity tests hold them to the full forward): the window sums
in closed form, the pooling sums written out, a fast complex exponential, complex values as real pairs
around B̃/C̃/D held as contiguous matrices (γ folded into B̃), layer-norm statistics from one matmul.
Tiny chunks cost little compute; the floor there is XLA's per-operation overhead (≈ 1 µs for each of
the step's ~150–200 operations) and the dispatch of the call, which is why the device state is one flat
buffer per stream (`StateLayout`), and why on the CPU `stream` can run the same step as one numba function
(`streaming_cpu_kernel`, same state row), 2–5× faster than the XLA step on the hosts measured;
`implementation="auto"` runs whichever of the two is faster on the machine (eventlm.streaming.StepChoices).

The first block's inputs norm(E) and B̃·norm(E) are per-token tables, computed once per set of weights.
"""

from __future__ import annotations

import functools
from typing import Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ...streaming import (  # noqa: F401  (the driver's public names, importable from here as before)
    BUCKETS, TRACE_COUNTS, BackboneChunk, PackedConstants, Streamer, StreamState, _bucket, at_least_rows, dense,
    generate, init_stream, layer_norm, model_fingerprint, run_stream, sample_next_event, stream,
)
from . import modeling_flax_eventssm as modeling
from . import streaming_cpu_kernel as cpu_kernel

_layer_norm = layer_norm  # (its older name)


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
    window_projected: B̃u of those inputs as [re | im] rows, (B, S − 1, 2P) of the stage's pooling block after
        stage 0, (B, 0) at stage 0 (its B̃u are rows of a per-token table): what the block's input projection gave
        them when they arrived, so that the CPU kernel projects only a chunk's own positions (both steps write it;
        the XLA step projects the buffered inputs again, which costs it fewer operations than reading them).
    """

    ssm_states: Tuple[jax.Array, ...]
    window_inputs: jax.Array
    window_time_deltas: jax.Array
    window_count: jax.Array
    window_projected: jax.Array



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
    return layer_norm(x, block_params["scale"], block_params["bias"], cfg.layer_norm_eps, dtype)



# ================================================================================================
# One chunk of one stream (vmapped over the batch)
# ================================================================================================

UNROLL = 64  # recurrences over at most this many positions are unrolled (no loop: fewer, fused kernels)



def _merge(buffer, count, chunk):
    """[buffer[:count], chunk, ...]: the open window's buffered inputs followed by the chunk (axis 0), at
    least S + 1 long: XLA's CPU backend fuses a one-row matmul with all its producers into a loop that
    recomputes them for every output (≈20x slower), so no level ever has a single position."""
    size = buffer.shape[0]
    cat = at_least_rows(jnp.concatenate([buffer, chunk], axis=0), size + 2)
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
_THETA_LIMIT = np.float32(32768.0)
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
    # θ past the reduction's range (|k| ≥ 2^15, huge gaps): θ mod 2π, so that it stays finite
    theta = jnp.where(jnp.abs(theta) > _THETA_LIMIT, jnp.fmod(theta, np.float32(2 * np.pi)), theta)
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


def _window_states(weights, dt, inputs, stride, offset, x0, method):
    """States after the last position of each window of `stride` (the model's window_end_states, from x0):
    b_w = Σ_i exp(Λ·s·τ_i) ⊙ γ_i B̃u_i with τ_i the time from position i to its window's end, then
    x_w = exp(Λ·s·Σ_window Δt) ⊙ x_{w−1} + b_w. `offset` neutral positions (Δt = 0, no input) go first."""
    length, num = dt.shape[0], -(-dt.shape[0] // stride)
    total = -(-(length + offset) // stride) * stride
    pad = (offset, total - length - offset)
    dtw = jnp.pad(dt, pad).reshape(-1, stride)
    inw = jnp.pad(inputs, (pad, (0, 0), (0, 0))).reshape((-1, stride) + inputs.shape[1:])
    # small matmuls with 0/1 matrices (XLA's CPU cumsum is a slow reduce-window): [i', i] = 1 where i' ≥ i
    inclusive = np.tril(np.ones((stride, stride), np.float32))
    window_dt = dtw @ inclusive[:, :1]  # Σ over the window
    tau = dtw @ np.tril(inclusive, -1)  # Σ_{i' > i} Δt_i': time from position i to its window's end
    decay_to_end = _decay(weights, tau[..., None])  # (windows, S, 2, P)
    # a sum of `stride` terms written out: XLA's CPU reduction loop would not vectorise the exps inside it
    b = functools.reduce(jnp.add, [_cmul(decay_to_end[:, i], inw[:, i]) for i in range(stride)])
    a = _decay(weights, window_dt)  # decay over the whole window
    return _recurrence(a, b, x0, method)[:num]


def _gated_output(cfg, dtype, block_params, y, skip, mask, h_in, h_out):
    """The block's tail: y·σ(Dense(GELU(y))) + skip (projected when widening), zero at invalid positions."""
    y = y.astype(dtype)
    gate = dense(h_out, dtype, block_params["gate"], nn.gelu(y))
    y = y * nn.sigmoid(gate)
    if h_in != h_out:
        skip = dense(h_out, dtype, block_params["skip_proj"], skip)
    return (skip + y) * mask[:, None]


def _block_inputs(cfg, dtype, consts, name, stage_zero, x, mask):
    """(u, (γ·)B̃u as a pair (…, 2, P), skip input) of a block: per-token tables when x holds the first block's
    tokens, else EventS5.project_input as one matmul with B = [B̃_re | B̃_im] (H_in, 2P) (γ folded into B when
    it does not depend on Δt)."""
    m = mask[:, None]
    if stage_zero:
        tokens = jnp.where(mask, x, 0)
        u = (jnp.take(consts["table_u"], tokens, axis=0) * m).astype(jnp.float32)
        bu = jnp.take(consts["table_bu"], tokens, axis=0) * m
        skip = jnp.take(consts["variables"]["params"]["eventssm"]["embed"]["embedding"], tokens, axis=0) * m
    else:
        skip = x * m
        u = (_norm(cfg, dtype, consts["variables"], name, skip) * m).astype(jnp.float32)
        bu = u @ consts["blocks"][name]["B"]
    return u, bu.reshape(bu.shape[:-1] + (2, -1)), skip


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
    # (the buffered positions are projected again here, not read from window_projected: for XLA a chunk's cost is
    # its number of operations, and reading them back took more of those than the one matmul over all positions)
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
        window_projected=stage_state.window_projected if stage == 0 else _slice_window(_flat(bu), start, stride - 1),
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


# ================================================================================================
# The streamer: EventSSM's part of eventlm.streaming's contract
# ================================================================================================


class EventSSMStreamer(Streamer):
    """EventSSM's streaming step: per-stage state (committed SSM states, open pooling windows), the
    per-weights constants (`prepare`), the backbone chunk, and the numba CPU kernel of the whole step."""

    def backbone_state_template(self):
        """One stream's per-stage states (StageState per stage), shapes and dtypes, no batch axis."""
        cfg, stride, spec = self.config, self.config.pooling_stride, jax.ShapeDtypeStruct
        stages = []
        for stage in range(cfg.num_stages):
            states = tuple(spec((2, cfg.stored_state_size(p)), np.float32)  # pairs
                           for st, _, _, _, _, p, _ in cfg.block_plan() if st == stage)
            h_in = cfg.hidden_size if stage == 0 else cfg.stage_hidden_size(stage - 1)
            inputs = spec((stride - 1,), np.int32) if stage == 0 else spec((stride - 1, h_in), self.dtype)
            pooled_states = states[0].shape[1]  # the stage's pooling block (its first)
            projected = spec((0,) if stage == 0 else (stride - 1, 2 * pooled_states), np.float32)
            stages.append(StageState(states, inputs, spec((stride - 1,), np.float32), spec((), np.int32), projected))
        return tuple(stages)

    def backbone_state_limits(self):
        """Stage 0's open-window slots hold token ids (< vocab_size), every window_count is ≤ S − 1; the
        rest is any finite value (checked by the driver before a step reads the state)."""
        stride = self.config.pooling_stride
        return tuple(stage.replace(ssm_states=tuple(np.inf for _ in stage.ssm_states),
                                   window_inputs=self.config.vocab_size - 1 if s == 0 else np.inf,
                                   window_time_deltas=np.inf, window_count=stride - 1, window_projected=np.inf)
                     for s, stage in enumerate(self.backbone_state_template()))

    def check_variables(self, variables):
        if self.config.norm == "batch" and not variables.get("batch_stats"):
            raise ValueError("this model uses batch norm but has no batch_stats; pass batch_stats= or load trained "
                             "weights")

    def prepare(self, variables):
        """Per-weights constants of the step, computed once with the model's EventS5 methods: per block Λ·s
        (`lam_step`, a pair) and B̃, C̃ as contiguous real matrices (EventS5 reads them as slices of real pairs
        (…, 2), which XLA would copy on every call), one matmul each: B = [B̃_re | B̃_im] (H_in, 2P), with the
        input gain γ folded in when it does not depend on Δt (async, dirac: (γ·B̃)u = γ·(B̃u)), and
        C = [C̃_re; −C̃_im] (2P, H_out), [x.re | x.im] @ C = Re(C̃x) (times 2 with conj_sym, folded in: exact);
        a widening block's D transposed (H_in, H_out). The first block's per-token inputs are tables:
        norm(E) (`table_u`, V × H) and its B-projection (`table_bu`, V × 2P)."""
        cfg, dtype, params = self.config, self.dtype, variables["params"]
        scale = 2.0 if cfg.conj_sym else 1.0
        blocks = {}
        for _, _, name, h_in, h_out, p, stride in cfg.block_plan():
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
        first = cfg.block_plan()[0][2]
        table_u = _norm(cfg, dtype, variables, first, params["eventssm"]["embed"]["embedding"])
        table_bu = table_u.astype(jnp.float32) @ blocks[first]["B"]
        return {"variables": variables, "blocks": blocks, "table_u": table_u, "table_bu": table_bu}

    def backbone_chunk(self, consts, stages, tokens, dt, n):
        """All stages over one chunk of one stream, stage by stage, block by block."""
        cfg, dtype = self.config, self.dtype
        # events since the last final last-stage position: Σ_s window_count_s · S^s (< S^stages)
        residual = sum(st.window_count * cfg.pooling_stride ** s for s, st in enumerate(stages))
        x, x_dt = tokens, dt
        n_valid = n_final = n
        mask = jnp.arange(tokens.shape[0]) < n
        new_stages = []
        for stage, stage_state in enumerate(stages):
            committed = []
            for st, layer, name, h_in, h_out, p, stride in cfg.block_plan():
                if st != stage:
                    continue
                if layer == 0 and stride > 1:
                    x, x_dt, mask, n_valid, n_final, c, stage_state = _pooling_block(
                        cfg, dtype, consts, stage_state, stage, name, h_in, h_out, p, stride, x, x_dt, n_valid,
                        n_final)
                else:
                    x, c = _scan_block(cfg, dtype, consts, stage_state.ssm_states[layer], name, h_in, h_out, p,
                                       x, x_dt, mask, n_final, stage_zero=stage == 0 and layer == 0)
                committed.append(c)
            new_stages.append(stage_state.replace(ssm_states=tuple(committed)))
        embeds = jnp.take(consts["variables"]["params"]["eventssm"]["embed"]["embedding"], tokens, axis=0)
        return BackboneChunk(x, x_dt, mask, n_final, residual, embeds * (jnp.arange(tokens.shape[0]) < n)[:, None],
                             tuple(new_stages))

    def cpu_kernel_reason(self):
        return cpu_kernel.unsupported_reason(self.config, self.dtype)

    def make_cpu_kernel(self):
        kernel = cpu_kernel.CpuStreamKernel(self.config, self.prepared, self.layout, self.task)
        self.prepared = None  # (the kernel holds its own copy)
        return kernel
