"""Flax EventSSM (Schöne et al. 2024, arXiv 2404.18508): an S5 state-space model discretised per event.

Read top to bottom:

1. time: the gap Δt_k before every event (eventlm.modeling_events.compute_time_deltas), float32 in units
   of `config.time_unit_us`; the first event and padding get 0.
2. S5 layer. Per state p and event k (s = step_rescale·exp(log_step), the learned step):
       Λ̄_k = exp(Λ·s·Δt_k)                              decay over the gap before event k
       x_k = Λ̄_k ⊙ x_{k−1} + γ_k ⊙ (B̃ u_k)    γ: zoh (Λ̄_k − 1)/Λ, dirac 1, async (exp(Λs) − 1)/Λ
       y_k = Re(C̃ x_k) (2·Re with conj_sym) + D u_k
   The recurrence runs as jax.lax.associative_scan on accelerators and as lax.scan on CPU (same
   numbers; lax.scan compiles ~10x and runs ~2x faster there). A layer that pools with stride S needs
   the state at one event per window only: it runs the recurrence inside all windows at once (S steps)
   and then across windows, never forming a state per event; the first layer gathers B̃·norm(E[token])
   from a per-token table instead of projecting every event.
3. Event pooling: windows of S events; the state kept is the one after the window's last valid event
   (the reference: its first); the skip and D paths summarise a window by mode last | avg | timepool;
   a pooled position's Δt is the sum of its window's gaps; a window holding any valid event is valid.
4. Block: pre-norm → S5 → y·σ(Dense(GELU(y))) → dropout → + skip (pooled, projected when widening).
   Stages of blocks; the first block of each stage pools and widens.
5. The model classes: this backbone under the shared heads, input checks, outputs and the jitted call
   of eventlm.modeling_events (classification readout, next-event head, their losses and sampling).

Padding never leaks: padded events get Δt = 0 and a zero input (the state passes through them
unchanged), pooling and norms use valid events only, and every readout is masked.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import block_diag

from ...modeling_events import (  # noqa: F401  (the shared losses and input helpers stay importable from here)
    BackboneOutput, EventModelModule, FlaxEventPreTrainedModel, ForNextEventPrediction, ForSequenceClassification,
    NextEventPredictionModule, SequenceClassificationModule, classification_loss, compute_time_deltas, flat_dense,
    flat_matmul, lognormal_mixture_nll, prepare_inputs, valid_mask,
)
from .configuration_eventssm import EventSSMConfig

# ================================================================================================
# 2. The S5 layer
# ================================================================================================


@functools.lru_cache(maxsize=None)
def hippo_legs_diagonal(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Eigenvalues Λ (n,) and eigenvectors V (n, n) of the normal part of HiPPO-LegS (S5's init).

    A_nk = −√(2n+1)√(2k+1) (n > k), −(n+1) (n = k); adding p pᵀ with p_n = √(n + 1/2) makes it
    normal: S = −½·I + skew-symmetric. Λ = −½ + i·eig(−i·skew), sorted by imaginary part.
    """
    q = np.sqrt(2 * np.arange(n) + 1.0)
    a = -(np.tril(np.outer(q, q)) - np.diag(np.arange(n)))
    p = np.sqrt(np.arange(n) + 0.5)
    s = a + np.outer(p, p)
    real = np.mean(np.diagonal(s))
    imag, v = np.linalg.eigh(-1j * (s - real * np.eye(n)))
    return real + 1j * imag, v


def _lambda_init(block_size: int, num_blocks: int, conj_sym: bool, part: str):
    lam, _ = hippo_legs_diagonal(block_size)
    lam = lam[: block_size // 2] if conj_sym else lam
    lam = np.tile(lam, num_blocks)
    return lambda rng, shape: jnp.asarray(lam.real if part == "re" else lam.imag, jnp.float32)


def _eigvecs(block_size: int, num_blocks: int, conj_sym: bool) -> np.ndarray:
    """Block-diagonal V (P, P_local) of the kept eigenvectors."""
    _, v = hippo_legs_diagonal(block_size)
    v = v[:, : block_size // 2] if conj_sym else v
    return block_diag(*([v] * num_blocks))


def _b_init(v: np.ndarray):
    """B̃ = V⁻¹B with B ~ lecun_normal (P, H_in), as S5; stored as real pairs (P_local, H_in, 2)."""

    def init(rng, shape):
        b = jax.nn.initializers.lecun_normal()(rng, (v.shape[0], shape[1]))
        vb = jnp.asarray(v.conj().T, jnp.complex64) @ b.astype(jnp.complex64)
        return jnp.stack([vb.real, vb.imag], axis=-1)

    return init


def _c_init(v: np.ndarray):
    """C̃ = C·V with C ~ lecun_normal (H_out, P, 2) as complex, as S5; real pairs (H_out, P_local, 2)."""

    def init(rng, shape):
        c = jax.nn.initializers.lecun_normal()(rng, (shape[0], v.shape[0], 2))
        cv = (c[..., 0] + 1j * c[..., 1]).astype(jnp.complex64) @ jnp.asarray(v, jnp.complex64)
        return jnp.stack([cv.real, cv.imag], axis=-1)

    return init


def _log_step_init(dt_min: float, dt_max: float):
    """log s ~ U[log dt_min, log dt_max] per state."""

    def init(rng, shape):
        return jax.random.uniform(rng, shape, jnp.float32, np.log(dt_min), np.log(dt_max))

    return init


class TokenInputs(NamedTuple):
    """B̃u_k gathered per event from a per-token table instead of a (B, L, P) array:
    bu_k = table[tokens_k]·mask_k."""

    table: jax.Array  # (V, P) complex
    tokens: jax.Array  # (B, L) int
    mask: jax.Array  # (B, L) bool


def scan_method(config) -> str:
    """"sequential" (lax.scan) on CPU, where it compiles ~10x and runs ~2x faster; "associative" elsewhere."""
    if config.scan_implementation != "auto":
        return config.scan_implementation
    return "sequential" if jax.default_backend() == "cpu" else "associative"


def _combine(left, right):
    """Compose two affine maps x ↦ a·x + b (left first): the associative operator of the linear scan."""
    a_l, b_l = left
    a_r, b_r = right
    return a_r * a_l, a_r * b_l + b_r


def linear_recurrence(a, b, method: str, initial_state=None):
    """x_k = a_k ⊙ x_{k−1} + b_k along axis 1 from x_{−1} = initial_state (default 0): a parallel scan
    (associative) or lax.scan (sequential)."""
    x0 = jnp.zeros(b.shape[:1] + b.shape[2:], b.dtype) if initial_state is None else initial_state
    if method == "associative":
        decay, xs = jax.lax.associative_scan(_combine, (a, b), axis=1)
        return xs if initial_state is None else xs + decay * x0[:, None]

    def step(x, ab):
        x = ab[0] * x + ab[1]
        return x, x

    _, xs = jax.lax.scan(step, x0, (jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1)))
    return jnp.swapaxes(xs, 0, 1)


def _event_inputs(bu, index=None):
    """bu_k for the events at `index` (a slice of the event axes) from an array or a TokenInputs."""
    if isinstance(bu, TokenInputs):
        tokens, mask = (bu.tokens, bu.mask) if index is None else (bu.tokens[index], bu.mask[index])
        return jnp.take(bu.table, tokens, axis=0) * mask[..., None]
    return bu if index is None else bu[index]


def event_states(discretize, dt, bu, method: str, initial_state=None):
    """States after every event (B, L, P): x_k = Λ̄_k ⊙ x_{k−1} + γ_k ⊙ bu_k with (Λ̄_k, γ_k) =
    discretize(Δt_k), from x_{−1} = initial_state (B, P) (default 0)."""
    if method == "associative":
        decay, gain = discretize(dt[..., None])
        return linear_recurrence(decay, gain * _event_inputs(bu), method, initial_state)

    if isinstance(bu, TokenInputs):
        inputs = TokenInputs(bu.table, bu.tokens.T, bu.mask.T)
    else:
        inputs = jnp.swapaxes(bu, 0, 1)  # time-major (L, B, P)

    @jax.checkpoint  # the backward pass recomputes Λ̄, γ and the inputs instead of storing them
    def step(x, k):  # one event for the whole batch
        decay, gain = discretize(dt[:, k, None])
        x = decay * x + gain * _event_inputs(inputs, k)
        return x, x

    p = bu.table.shape[-1] if isinstance(bu, TokenInputs) else bu.shape[-1]
    x0 = jnp.zeros((dt.shape[0], p), jnp.complex64) if initial_state is None else initial_state
    _, xs = jax.lax.scan(step, x0, jnp.arange(dt.shape[1]))
    return jnp.swapaxes(xs, 0, 1)


def window_end_states(discretize, dt, bu, stride: int, offset: int, method: str, initial_state=None):
    """States after the last event of each window of `stride` events (B, ceil(L/S), P), without states
    for the other events.

    Within every window (all windows at once) the recurrence runs over its S events from 0, giving
    b_w; then x_w = a_w ⊙ x_{w−1} + b_w over windows with a_w = exp(Λ·s·Σ_window Δt). `offset` neutral
    events (Δt = 0, no input) go in front: offset = S − 1 makes windows end at events 0, S, 2S, ...
    (the reference's "keep the first event of each window"). initial_state (B, P): x before event 0.
    """
    batch, length = dt.shape
    num_windows = -(-length // stride)
    total = -(-(length + offset) // stride) * stride
    pad = ((0, 0), (offset, total - length - offset))
    to_windows = lambda x: jnp.moveaxis(x.reshape(batch, -1, stride, *x.shape[2:]), 2, 0)  # noqa: E731
    dtw = to_windows(jnp.pad(dt, pad))  # (S, B, W)
    if isinstance(bu, TokenInputs):
        buw = TokenInputs(bu.table, to_windows(jnp.pad(bu.tokens, pad)), to_windows(jnp.pad(bu.mask, pad)))
    else:
        buw = to_windows(jnp.pad(bu, pad + ((0, 0),)))

    @jax.checkpoint  # the backward pass recomputes Λ̄, γ and the gathered inputs instead of storing them
    def step(x, i):  # event i of every window
        decay, gain = discretize(dtw[i][..., None])
        return decay * x + gain * _event_inputs(buw, i), None

    p = bu.table.shape[-1] if isinstance(bu, TokenInputs) else bu.shape[-1]
    b, _ = jax.lax.scan(step, jnp.zeros(dtw.shape[1:] + (p,), jnp.complex64), jnp.arange(stride))
    a, _ = discretize(jnp.sum(dtw, axis=0)[..., None])  # decay over the whole window
    return linear_recurrence(a, b, method, initial_state)[:, :num_windows]


def pool_windows(x, dt, mask, stride: int, mode: str, keep: str, eps: float):
    """Summarise windows of `stride` events over their valid events: (B, L, F) → (B, ceil(L/S), F).

    last: the kept event (the last valid one; keep="first": the first); avg: mean; timepool: mean
    weighted by Δt + eps (Δt as the event carries it: the gap before it by default).
    x may be TokenInputs (rows of a (V, F) table gathered per event): then the windows are summed one
    event position at a time and no (B, L, F) array is ever formed.
    """
    batch, length = dt.shape
    total = -(-length // stride) * stride
    pad = ((0, 0), (0, total - length))
    def to_windows(a):  # (B, L, ...) → (B, W, S, ...)
        return jnp.pad(a, pad + ((0, 0),) * (a.ndim - 2)).reshape(batch, -1, stride, *a.shape[2:])

    m = to_windows(mask).astype(jnp.float32)
    if mode == "last":
        count = jnp.sum(m, axis=-1).astype(jnp.int32)
        idx = jnp.zeros_like(count) if keep == "first" else jnp.maximum(count - 1, 0)
        if isinstance(x, TokenInputs):
            kept = jnp.take_along_axis(to_windows(x.tokens), idx[..., None], axis=2)[..., 0]
            return jnp.take(x.table, kept, axis=0) * (count > 0)[..., None]
        return jnp.take_along_axis(to_windows(x), idx[..., None, None], axis=2)[:, :, 0] * (count > 0)[..., None]
    w = m if mode == "avg" else (to_windows(dt) + eps) * m
    norm = jnp.sum(w, axis=-1)[..., None]
    if isinstance(x, TokenInputs):
        tokens = to_windows(x.tokens)

        def add(acc, i):  # acc += w_i · table[token_i] for event position i of every window
            return acc + w[..., i, None] * jnp.take(x.table, tokens[..., i], axis=0), None

        zeros = jnp.zeros(tokens.shape[:2] + x.table.shape[1:], x.table.dtype)
        summed, _ = jax.lax.scan(add, zeros, jnp.arange(stride))
    else:
        summed = jnp.sum(to_windows(x) * w[..., None], axis=2)
    return summed / jnp.where(norm > 0, norm, 1.0)


class EventS5(nn.Module):
    """S5 layer H_in → H_out with P complex states (P/2 stored with conj_sym), discretised per event.

    __call__(u, dt, bu=None) with u (B, L, H_in) already normalised and zero at padding:
      stride 1: outputs at every event (B, L, H_out);
      stride S: outputs at the kept event of each window (B, ceil(L/S), H_out), with D applied to
      `pooled_u` (the window summary of u, as the reference pools the D path).
    `bu` (B, L, P) replaces B̃u when the caller gathered it from a per-token table.
    """

    config: EventSSMConfig
    h_in: int
    h_out: int
    state_size: int
    stride: int = 1

    def setup(self):
        cfg = self.config
        block = cfg.ssm_block_size
        blocks = self.state_size // block
        local = cfg.stored_state_size(self.state_size)
        v = _eigvecs(block, blocks, cfg.conj_sym)
        self.Lambda_re = self.param("Lambda_re", _lambda_init(block, blocks, cfg.conj_sym, "re"), (local,))
        self.Lambda_im = self.param("Lambda_im", _lambda_init(block, blocks, cfg.conj_sym, "im"), (local,))
        self.B = self.param("B", _b_init(v), (local, self.h_in, 2))
        self.C = self.param("C", _c_init(v), (self.h_out, local, 2))
        if self.h_in == self.h_out:
            self.D = self.param("D", nn.initializers.normal(1.0), (self.h_in,))
        else:
            self.D = self.param("D", nn.initializers.glorot_normal(), (self.h_out, self.h_in))
        self.log_step = self.param("log_step", _log_step_init(cfg.dt_min, cfg.dt_max), (local,))

    # -- the continuous-time system and its discretisation --------------------------------------------
    def eigenvalues(self):
        """Λ (P_local,) complex; Re Λ ≤ −1e−4 with clip_eigs."""
        re = self.Lambda_re.astype(jnp.float32)  # the SSM always runs in float32 / complex64
        re = jnp.minimum(re, -1e-4) if self.config.clip_eigs else re
        return jax.lax.complex(re, self.Lambda_im.astype(jnp.float32))

    def step(self):
        """s = step_rescale · exp(log_step) per state."""
        return self.config.step_rescale * jnp.exp(self.log_step.astype(jnp.float32))

    def discretize(self, dt):
        """(Λ̄, γ) for gaps dt (..., 1): Λ̄ = exp(Λ·s·Δt); γ: zoh (Λ̄ − 1)/Λ, dirac 1, async (exp(Λs) − 1)/Λ."""
        lam, step = self.eigenvalues(), self.step()
        decay = jnp.exp(lam * step * dt)
        method = self.config.discretization
        if method == "zoh":
            return decay, jnp.expm1(lam * step * dt) / lam  # expm1: exact for tiny Λ·s·Δt
        if method == "dirac":
            return decay, jnp.ones_like(lam)
        return decay, jnp.expm1(lam * step) / lam

    def project_input(self, u):
        """B̃u (…, P) complex for real u (…, H_in)."""
        b = self.B.astype(jnp.float32)
        return jax.lax.complex(flat_matmul(u, b[..., 0].T), flat_matmul(u, b[..., 1].T))

    def project_output(self, x):
        """Re(C̃x) (2·Re with conj_sym) for complex states x (…, P) → (…, H_out)."""
        c = self.C.astype(jnp.float32)
        y = flat_matmul(x.real, c[..., 0].T) - flat_matmul(x.imag, c[..., 1].T)
        return 2.0 * y if self.config.conj_sym else y

    def feedthrough(self, u):
        d = self.D.astype(jnp.float32)
        return u * d if d.ndim == 1 else flat_matmul(u, d.T)

    def __call__(self, u, dt, bu=None, pooled_u=None):
        """u (B, L, H_in) normalised, zero at padding (None when bu and pooled_u make it unnecessary);
        dt (B, L); bu: B̃u as (B, L, P) or TokenInputs; pooled_u: window summaries of u (stride > 1)."""
        if self.is_initializing():  # init only creates the variables: skip compiling the scans
            length = dt.shape[1] if self.stride == 1 else -(-dt.shape[1] // self.stride)
            return jnp.zeros(dt.shape[:1] + (length, self.h_out), jnp.float32)
        bu = self.project_input(u.astype(jnp.float32)) if bu is None else bu
        method = scan_method(self.config)
        if self.stride == 1:
            x = event_states(self.discretize, dt, bu, method)
            return self.project_output(x) + self.feedthrough(u.astype(jnp.float32))
        offset = self.stride - 1 if self.config.pooling_keep == "first" else 0
        x = window_end_states(self.discretize, dt, bu, self.stride, offset, method)
        return self.project_output(x) + self.feedthrough(pooled_u.astype(jnp.float32))


# ================================================================================================
# 3./4. Norms, blocks, backbone
# ================================================================================================


class MaskedBatchNorm(nn.Module):
    """Batch norm over valid events only: statistics weighted by `weights` (the mask, or token counts).

    Parameters "scale"/"bias" and running statistics "mean"/"var" in the "batch_stats" collection, as
    flax's BatchNorm (running = momentum·running + (1 − momentum)·batch; biased variance).
    """

    momentum: float = 0.95
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, weights, use_running_average: bool):
        feat = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((feat,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((feat,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (feat,))
        bias = self.param("bias", nn.initializers.zeros, (feat,))
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            w = weights.astype(jnp.float32)[..., None]
            axes = tuple(range(x.ndim - 1))
            count = jnp.sum(w, axis=axes)
            n = jnp.maximum(count, 1.0)
            mean = jnp.sum(w * x, axis=axes) / n  # μ = Σ w x / Σ w
            var = jnp.sum(w * jnp.square(x - mean), axis=axes) / n  # σ² = Σ w (x − μ)² / Σ w
            if not self.is_initializing():
                seen = count > 0  # an all-padding batch leaves the statistics alone
                m = self.momentum
                ra_mean.value = jnp.where(seen, m * ra_mean.value + (1 - m) * mean, ra_mean.value)
                ra_var.value = jnp.where(seen, m * ra_var.value + (1 - m) * var, ra_var.value)
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class EventSSMBlock(nn.Module):
    """pre-norm → S5 → gated GELU y·σ(Dense(GELU(y))) → dropout → + skip; pools when stride > 1."""

    config: EventSSMConfig
    h_in: int
    h_out: int
    state_size: int
    stride: int = 1
    dtype: Any = jnp.float32

    def _norm(self, x, weights, train):
        cfg = self.config
        if cfg.norm == "batch":
            return MaskedBatchNorm(cfg.batchnorm_momentum, cfg.batchnorm_eps, name="norm")(x, weights, not train)
        return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="norm")(x)

    def _pool(self, x, dt, mask):
        cfg = self.config
        return pool_windows(x, dt, mask, self.stride, cfg.pooling_mode, cfg.pooling_keep, cfg.timepool_eps)

    @nn.compact
    def __call__(self, x, dt, mask, train: bool = False, tokens=None):
        """x (B, L, H_in), dt and mask (B, L) → (B, L', H_out), dt', mask' with L' = ceil(L / stride).

        With `tokens` (B, L), x is the (vocab, H_in) embedding table and the block input at event k is
        x[tokens_k]: pre-norm and B̃ projection then run once per token (a table), then a gather.
        """
        cfg = self.config
        ssm = EventS5(cfg, self.h_in, self.h_out, self.state_size, self.stride, name="ssm")
        m = mask[..., None]
        pooled_u = u = None
        if tokens is None:
            u = self._norm(x, mask, train) * m  # padding enters the SSM as zero input
            bu, skip = None, x
            if self.stride > 1:
                pooled_u, skip = self._pool(u, dt, mask), self._pool(x, dt, mask)
        else:  # per-token tables: norm(E) (V, H) and B̃·norm(E) (V, P); rows gathered per event
            counts = jnp.zeros((x.shape[0],), jnp.float32).at[tokens].add(mask.astype(jnp.float32))
            table = self._norm(x, counts, train)
            bu = TokenInputs(ssm.project_input(table.astype(jnp.float32)), tokens, mask)
            if self.stride > 1:  # one pass pools both the SSM input (for D) and the skip
                both = self._pool(TokenInputs(jnp.concatenate([table, x], -1), tokens, mask), dt, mask)
                pooled_u, skip = both[..., : self.h_in], both[..., self.h_in :]
            else:
                u, skip = jnp.take(table, tokens, axis=0) * m, jnp.take(x, tokens, axis=0) * m
        y = ssm(u, dt, bu, pooled_u)
        if self.stride > 1:
            dt, mask = self._pooled_times(dt, mask)
        deterministic = not train
        drop = functools.partial(nn.Dropout, cfg.dropout, broadcast_dims=(1,), deterministic=deterministic)
        y = y.astype(self.dtype)
        dense = lambda name: nn.Dense(self.h_out, dtype=self.dtype, name=name)  # noqa: E731
        gate = flat_dense(dense("gate"), drop()(nn.gelu(y)))
        y = drop()(y * nn.sigmoid(gate))
        if self.h_in != self.h_out:
            skip = flat_dense(dense("skip_proj"), skip)
        out = (skip + y) * mask[..., None]
        return out, dt, mask

    def _pooled_times(self, dt, mask):
        """Δt of a window = Σ of its gaps; valid if it holds a valid event (reference: all S valid)."""
        batch, length = dt.shape
        total = -(-length // self.stride) * self.stride
        pad = ((0, 0), (0, total - length))
        dt_w = jnp.pad(dt, pad).reshape(batch, -1, self.stride).sum(-1)
        count = jnp.pad(mask, pad).reshape(batch, -1, self.stride).sum(-1)
        valid = count == self.stride if self.config.readout_convention == "reference" else count > 0
        return dt_w * valid, valid



def use_token_table(config: EventSSMConfig, shape) -> bool:
    """Gather the first block's input from per-token tables when there are fewer tokens than events."""
    return config.vocab_size <= int(np.prod(shape))


class FlaxEventSSMBackbone(nn.Module):
    """Embedding (masked pad) → stages of EventSSM blocks. The `eventssm` part of every model."""

    config: EventSSMConfig
    dtype: Any = jnp.float32
    token_table: Optional[bool] = None  # None: automatic (fewer tokens than events)

    @nn.compact
    def __call__(self, input_ids, time_deltas, attention_mask, train: bool = False, output_hidden_states=False):
        """input_ids (B, L) int, time_deltas (B, L) float32 gaps before each event (model units),
        attention_mask (B, L) (valid events first) → BackboneOutput at the last stage's resolution."""
        cfg = self.config
        mask = jnp.asarray(valid_mask(attention_mask, input_ids.shape))
        dt = jnp.where(mask, jnp.asarray(time_deltas, jnp.float32), 0.0)
        if cfg.gap_convention == "after":  # reference: event k carries t_{k+1} − t_k; the last only ends it
            dt = jnp.concatenate([dt[:, 1:], jnp.zeros_like(dt[:, :1])], axis=1)
            mask = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
            dt = jnp.where(mask, dt, 0.0)
        tokens = jnp.where(mask, jnp.clip(input_ids, 0, cfg.vocab_size - 1), 0).astype(jnp.int32)
        embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=self.dtype, name="embed")
        x = embed(tokens) * mask[..., None]  # the pad never reads a real row
        inputs_embeds, total_time = x, jnp.sum(dt, axis=1)
        hidden_states = (x,)
        table = self.token_table if self.token_table is not None else use_token_table(cfg, input_ids.shape)
        for stage, layer, name, h_in, h_out, p, stride in cfg.block_plan():
            block = EventSSMBlock(cfg, h_in, h_out, p, stride, self.dtype, name=name)
            if stage == 0 and layer == 0 and table:
                x, dt, mask = block(embed.embedding, dt, mask, train, tokens=tokens)
            else:
                x, dt, mask = block(x, dt, mask, train)
            hidden_states += (x,)
        return BackboneOutput(
            last_hidden_state=x,
            pooled_mask=mask,
            pooled_time_deltas=dt,
            hidden_states=hidden_states if output_hidden_states else None,
            inputs_embeds=inputs_embeds,
            total_time=total_time,
        )




# ================================================================================================
# 5./6. The model classes: EventSSM's backbone under the shared heads (eventlm.modeling_events)
# ================================================================================================


class FlaxEventSSMModule(EventModelModule):
    backbone_class = FlaxEventSSMBackbone
    backbone_name = "eventssm"


class FlaxEventSSMForSequenceClassificationModule(SequenceClassificationModule):
    backbone_class = FlaxEventSSMBackbone
    backbone_name = "eventssm"


class FlaxEventSSMForNextEventPredictionModule(NextEventPredictionModule):
    backbone_class = FlaxEventSSMBackbone
    backbone_name = "eventssm"


SSM_PARAM_NAMES = ("B", "Lambda_re", "Lambda_im")  # the paper's "ssm" optimizer group


class FlaxEventSSMPreTrainedModel(FlaxEventPreTrainedModel):
    """EventSSM's config, backbone name, optimizer groups and streaming step; the rest is shared."""

    config_class = EventSSMConfig
    base_model_prefix = "eventssm"
    streamer_class = "eventlm.models.eventssm.streaming_eventssm:EventSSMStreamer"  # its streaming step

    def param_groups(self, params=None):
        """Optimizer group of every parameter, a pytree like `params`: "ssm" for the S5 parameters B,
        Lambda_re and Lambda_im (the paper's SSM learning rate, no weight decay: the reference's groups;
        log_step, C, D and the norms are not in it), "regular" for every other one."""
        def label(path, _):
            return "ssm" if getattr(path[-1], "key", None) in SSM_PARAM_NAMES else "regular"

        return jax.tree_util.tree_map_with_path(label, self.params if params is None else params)


class FlaxEventSSMModel(FlaxEventSSMPreTrainedModel):
    """EventSSM backbone: hidden states of the last stage (see EventModelOutput)."""

    module_class = FlaxEventSSMModule


class FlaxEventSSMForSequenceClassification(ForSequenceClassification, FlaxEventSSMPreTrainedModel):
    """EventSSM with a masked pooled readout and a linear classifier; labels int (B,) or soft (B, C)."""

    module_class = FlaxEventSSMForSequenceClassificationModule


class FlaxEventSSMForNextEventPrediction(ForNextEventPrediction, FlaxEventSSMPreTrainedModel):
    """EventSSM pretraining head: for every event, the next token and the gap to it."""

    module_class = FlaxEventSSMForNextEventPredictionModule


__all__ = [
    "FlaxEventSSMModel",
    "FlaxEventSSMForSequenceClassification",
    "FlaxEventSSMForNextEventPrediction",
    "FlaxEventSSMPreTrainedModel",
    "FlaxEventSSMModule",
    "FlaxEventSSMForSequenceClassificationModule",
    "FlaxEventSSMForNextEventPredictionModule",
    "compute_time_deltas",
    "prepare_inputs",
]
