"""Flax EventSSM (Schöne et al. 2024, arXiv 2404.18508): an S5 state-space model discretised per event.

Read top to bottom:

1. time: the gap Δt_k before every event, from integer µs timestamps (host int64, or the traced integer
   dtype inside jit), float32 in units of `config.time_unit_us`; the first event and padding get 0.
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
5. Heads: hidden states; sequence classification (masked readout mean | timepool | last → logits);
   next-event prediction (per event a categorical over the next token and a log-normal mixture over
   the gap to it, trained by negative log-likelihood; strictly causal, see `EventSSMNextEventHead`).
6. The model classes (`FlaxPreTrainedModel`): host-side input checks, the jitted call, outputs.

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
import optax
from scipy.linalg import block_diag

from ...modeling_events import GAP_LOG_SCALE_RANGE
from ...modeling_flax_utils import FlaxPreTrainedModel, ModelOutput
from .configuration_eventssm import EventSSMConfig

# ================================================================================================
# 1. Time: gaps before each event
# ================================================================================================


def is_traced(x) -> bool:
    """True for abstract values inside jit / grad / vmap (host-side checks must skip them)."""
    return isinstance(x, jax.core.Tracer)


def valid_mask(attention_mask, shape) -> Any:
    """Prefix mask (B, L) bool from attention_mask: the first sum(mask) events of each row are valid."""
    xp = jnp if is_traced(attention_mask) else np
    if attention_mask is None:
        return np.ones(shape, bool)
    lengths = xp.sum(xp.asarray(attention_mask) != 0, axis=-1)
    return xp.arange(shape[-1])[None, :] < lengths[:, None]


def compute_time_deltas(timestamps, attention_mask=None, time_unit_us: float = 1000.0):
    """Δt_k = t_k − t_{k−1} before every event (first event and padding: 0), float32 in model units.

    Concrete inputs are differenced on the host in int64 (µs timestamps overflow int32 after 36 min);
    traced inputs in their own integer dtype (a wrapped int32 difference is still exact for gaps below
    2^31 µs). Negative gaps can only reach this point under jit; they are clamped to 0.
    """
    if is_traced(timestamps) or is_traced(attention_mask):
        t = jnp.asarray(timestamps)
        gaps = jnp.diff(t, axis=-1)  # in the traced dtype
        gaps = jnp.concatenate([jnp.zeros_like(t[:, :1]), gaps], axis=-1)
        valid = valid_mask(attention_mask, t.shape) if attention_mask is not None else jnp.ones(t.shape, bool)
        dt = jnp.maximum(gaps.astype(jnp.float32), 0.0) / jnp.float32(time_unit_us)
        return jnp.where(valid, dt, 0.0)
    t = np.asarray(timestamps)
    t = t.astype(np.int64) if t.dtype.kind in "iub" else t.astype(np.float64)
    gaps = np.diff(t, axis=-1, prepend=t[:, :1])
    valid = valid_mask(attention_mask, t.shape)
    return np.where(valid, gaps_to_units(gaps, time_unit_us), np.float32(0.0))


def gaps_to_units(gaps, time_unit_us: float) -> np.ndarray:
    """Host gaps in µs (int64 or float) → float32 model units: float64 gap (negative ones as 0) / time
    unit, then rounded to float32 (the one rule the full forward and streaming share)."""
    return (np.maximum(np.asarray(gaps, np.float64), 0.0) / float(time_unit_us)).astype(np.float32)


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


def flat_matmul(x, w):
    """x (…, K) @ w (K, N) with x flattened to 2-D: for 3-D x, XLA CPU computes the weight gradient
    xᵀ·g through a slow transposing copy that fuses x's producers (measured 2.6x on a whole step)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def flat_dense(dense: nn.Module, x):
    """A Dense layer applied to x flattened to 2-D (see flat_matmul)."""
    return dense(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], dense.features)


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
        local = self.state_size // 2 if cfg.conj_sym else self.state_size
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


@flax.struct.dataclass
class BackboneOutput(ModelOutput):
    """Internal result of the backbone (also the fields of FlaxEventSSMModelOutput)."""

    last_hidden_state: jax.Array = None
    pooled_mask: jax.Array = None
    pooled_time_deltas: jax.Array = None
    hidden_states: Optional[Tuple[jax.Array, ...]] = None
    inputs_embeds: jax.Array = None
    total_time: jax.Array = None


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
        h_in = cfg.hidden_size
        for stage in range(cfg.num_stages):
            h_out, p = cfg.stage_hidden_size(stage), cfg.stage_state_size(stage)
            for layer in range(cfg.num_layers_per_stage):
                stride = cfg.pooling_stride if layer == 0 else 1
                block = EventSSMBlock(cfg, h_in, h_out, p, stride, self.dtype, name=f"stage{stage}_block{layer}")
                if stage == 0 and layer == 0 and table:
                    x, dt, mask = block(embed.embedding, dt, mask, train, tokens=tokens)
                else:
                    x, dt, mask = block(x, dt, mask, train)
                hidden_states += (x,)
                h_in = h_out
        return BackboneOutput(
            last_hidden_state=x,
            pooled_mask=mask,
            pooled_time_deltas=dt,
            hidden_states=hidden_states if output_hidden_states else None,
            inputs_embeds=inputs_embeds,
            total_time=total_time,
        )


# ================================================================================================
# 5. Heads
# ================================================================================================


def masked_readout(hidden, mask, dt, total_time, config: EventSSMConfig):
    """One vector per sample from the valid pooled positions: mean | timepool | last.

    timepool: Σ_j h_j (Δt_j + eps) / Σ_j (Δt_j + eps) over valid j (reference readout: divided by the
    whole duration instead). A sample without valid events reads as zeros.
    """
    m = mask.astype(hidden.dtype)
    mode = config.classifier_pooling
    if mode == "last":
        count = jnp.sum(mask, axis=1).astype(jnp.int32)
        last = jnp.take_along_axis(hidden, jnp.maximum(count - 1, 0)[:, None, None], axis=1)[:, 0]
        return last * (count > 0)[:, None]
    w = m if mode == "mean" else (dt + config.timepool_eps) * m
    norm = jnp.sum(w, axis=1)
    if mode == "timepool" and config.readout_convention == "reference":
        norm = total_time
    return jnp.sum(hidden * w[..., None], axis=1) / jnp.where(norm > 0, norm, 1.0)[:, None]


def classification_loss(logits, labels):
    """Mean cross-entropy; labels int (B,) class ids or float (B, C) soft targets (cut-mix, smoothing)."""
    logits = logits.astype(jnp.float32)
    if jnp.issubdtype(labels.dtype, jnp.floating):
        return jnp.mean(optax.softmax_cross_entropy(logits, labels))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32)))


def log_diff_ndtr(a, b):
    """log(Φ(b) − Φ(a)) for a < b, computed in the lower tail (Φ(b) − Φ(a) = Φ(−a) − Φ(−b))."""
    flip = a > 0
    lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
    log_lo, log_hi = jax.scipy.special.log_ndtr(lo), jax.scipy.special.log_ndtr(hi)
    return log_hi + jnp.log(-jnp.expm1(log_lo - log_hi))


def lognormal_mixture_nll(gap, mixture_logits, log_means, log_scales, resolution):
    """−log P(gap) of a gap quantised to `resolution` (1 µs) under a log-normal mixture: nats ≥ 0.

    The gap n·r (r = resolution, in model time units) falls in the bin y ∈ [log(n·r + r), log(n·r + 2r))
    of y = log(gap + r) ~ Σ_i w_i N(μ_i, σ_i²), so P(n) = Σ_i w_i (Φ(z_hi,i) − Φ(z_lo,i)): a proper
    distribution over integer µs gaps, finite for simultaneous events (n = 0) and never below 0 nats.
    A bin far narrower than σ uses the midpoint rule φ(z_mid)·width (the CDF difference would cancel).
    """
    scale = jnp.exp(log_scales)
    z_lo = (jnp.log(gap + resolution)[..., None] - log_means) / scale
    width = (jnp.log1p(resolution / (gap + resolution)))[..., None] / scale  # bin width in z
    narrow = width < 1e-3
    z_hi = jnp.where(narrow, z_lo + 1.0, z_lo + width)  # keeps the unused branch finite (and its grad)
    mid = z_lo + 0.5 * width
    log_bin = jnp.where(
        narrow,
        -0.5 * jnp.square(mid) - 0.5 * np.log(2 * np.pi) + jnp.log(width),
        log_diff_ndtr(z_lo, z_hi),
    )
    return -jax.nn.logsumexp(jax.nn.log_softmax(mixture_logits, axis=-1) + log_bin, axis=-1)


class EventSSMNextEventHead(nn.Module):
    """For every event k: logits over the next token and a log-normal mixture over the gap to it.

    Causality with a strided backbone: the last stage has one position per window of D = stride^stages
    events and its position j depends on events < (j+1)·D only. Event k therefore reads the last window
    that is complete at k, j = ⌊(k+1)/D⌋ − 1 (none for k < D − 1), plus its own embedding through
    `local_proj` (so the most recent event always informs the prediction). With D = 1 (pooling_stride=1,
    the recommended pretraining setting) it reads the event's own hidden state. No prediction at k ever
    sees an event after k (batch-norm statistics in training mode aside, as for any batch-normed model).
    """

    config: EventSSMConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden, inputs_embeds):
        cfg = self.config
        length, width = inputs_embeds.shape[1], hidden.shape[-1]
        if cfg.total_stride == 1:
            features = hidden
        else:
            window = (jnp.arange(length) + 1) // cfg.total_stride - 1  # last complete window at k
            context = jnp.take(hidden, jnp.clip(window, 0, hidden.shape[1] - 1), axis=1)
            context = context * (window >= 0)[None, :, None]
            features = context + flat_dense(nn.Dense(width, dtype=self.dtype, name="local_proj"), inputs_embeds)
        features = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="norm")(features)
        logits = flat_dense(nn.Dense(cfg.vocab_size, dtype=self.dtype, name="token_logits"), features)
        k = cfg.num_mixture_components
        gap = flat_dense(nn.Dense(3 * k, dtype=self.dtype, name="gap_params"), features).astype(jnp.float32)
        return logits, gap[..., :k], gap[..., k : 2 * k], jnp.clip(gap[..., 2 * k :], *GAP_LOG_SCALE_RANGE)


def next_event_loss(logits, mixture_logits, log_means, log_scales, labels, time_deltas, mask, config):
    """Mean NLL per predicted event (token + gap) of event k+1 given events ≤ k; labels < 0 are ignored.

    Returns (loss, token_nll, time_nll), each averaged over positions k whose next event k+1 is valid.
    """
    target = jnp.concatenate([labels[:, 1:], jnp.full_like(labels[:, :1], -1)], axis=1)
    next_gap = jnp.concatenate([time_deltas[:, 1:], jnp.zeros_like(time_deltas[:, :1])], axis=1)
    has_next = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1) & (target >= 0)
    token = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), jnp.clip(target, 0, config.vocab_size - 1).astype(jnp.int32)
    )
    gap = lognormal_mixture_nll(next_gap, mixture_logits, log_means, log_scales, 1.0 / config.time_unit_us)
    w = has_next.astype(jnp.float32)
    n = jnp.maximum(jnp.sum(w), 1.0)
    token_nll, time_nll = jnp.sum(token * w) / n, jnp.sum(gap * w) / n
    return token_nll + time_nll, token_nll, time_nll


# ================================================================================================
# Output dataclasses (pytrees: they cross jax.jit) and the flax modules of the three models
# ================================================================================================


@flax.struct.dataclass
class FlaxEventSSMModelOutput(ModelOutput):
    """last_hidden_state (B, L', H') at the last stage's resolution (L' = ceil(L / stride^stages)),
    pooled_mask (B, L') its valid positions, pooled_time_deltas (B, L') their Δt, hidden_states
    (embeddings, then every block's output) with output_hidden_states, batch_stats when train=True with
    batch norm."""

    last_hidden_state: jax.Array = None
    pooled_mask: jax.Array = None
    pooled_time_deltas: jax.Array = None
    hidden_states: Optional[Tuple[jax.Array, ...]] = None
    batch_stats: Optional[dict] = None


@flax.struct.dataclass
class FlaxEventSSMSequenceClassifierOutput(ModelOutput):
    """loss (with labels), logits (B, num_labels), hidden_states, batch_stats (train with batch norm)."""

    loss: Optional[jax.Array] = None
    logits: jax.Array = None
    hidden_states: Optional[Tuple[jax.Array, ...]] = None
    batch_stats: Optional[dict] = None


@flax.struct.dataclass
class FlaxEventSSMNextEventPredictionOutput(ModelOutput):
    """Per event k (B, L, ·): logits over the next token; gap_mixture_logits, gap_log_means,
    gap_log_scales of the log-normal mixture over log(gap to the next event + 1 µs) (model time units).
    With labels: loss = token_nll + time_nll, mean NLL per predicted event (time_nll: nats of the
    integer-µs gap, see `lognormal_mixture_nll`)."""

    loss: Optional[jax.Array] = None
    logits: jax.Array = None
    gap_mixture_logits: jax.Array = None
    gap_log_means: jax.Array = None
    gap_log_scales: jax.Array = None
    token_nll: Optional[jax.Array] = None
    time_nll: Optional[jax.Array] = None
    hidden_states: Optional[Tuple[jax.Array, ...]] = None
    batch_stats: Optional[dict] = None


class FlaxEventSSMModule(nn.Module):
    config: EventSSMConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.eventssm = FlaxEventSSMBackbone(self.config, self.dtype)

    def __call__(self, input_ids, time_deltas, attention_mask, labels=None, train=False, output_hidden_states=False):
        out = self.eventssm(input_ids, time_deltas, attention_mask, train, output_hidden_states)
        return FlaxEventSSMModelOutput(
            last_hidden_state=out.last_hidden_state,
            pooled_mask=out.pooled_mask,
            pooled_time_deltas=out.pooled_time_deltas,
            hidden_states=out.hidden_states,
        )


class FlaxEventSSMForSequenceClassificationModule(nn.Module):
    config: EventSSMConfig
    dtype: Any = jnp.float32

    def setup(self):
        self.eventssm = FlaxEventSSMBackbone(self.config, self.dtype)
        self.classifier = nn.Dense(self.config.num_labels, dtype=self.dtype)

    def __call__(self, input_ids, time_deltas, attention_mask, labels=None, train=False, output_hidden_states=False):
        out = self.eventssm(input_ids, time_deltas, attention_mask, train, output_hidden_states)
        pooled = masked_readout(
            out.last_hidden_state, out.pooled_mask, out.pooled_time_deltas, out.total_time, self.config
        )
        logits = self.classifier(pooled)
        loss = classification_loss(logits, labels) if labels is not None else None
        return FlaxEventSSMSequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class FlaxEventSSMForNextEventPredictionModule(nn.Module):
    config: EventSSMConfig
    dtype: Any = jnp.float32

    def setup(self):
        if self.config.gap_convention == "after":
            raise ValueError(
                "next-event prediction needs gap_convention='before': with 'after' every event carries the "
                "gap to the next one, which the model would then read instead of predicting it"
            )
        self.eventssm = FlaxEventSSMBackbone(self.config, self.dtype)
        self.next_event_head = EventSSMNextEventHead(self.config, self.dtype)

    def __call__(self, input_ids, time_deltas, attention_mask, labels=None, train=False, output_hidden_states=False):
        out = self.eventssm(input_ids, time_deltas, attention_mask, train, output_hidden_states)
        logits, mix, means, scales = self.next_event_head(out.last_hidden_state, out.inputs_embeds)
        loss = token_nll = time_nll = None
        if labels is not None:
            mask = jnp.asarray(valid_mask(attention_mask, input_ids.shape))
            dt = jnp.where(mask, jnp.asarray(time_deltas, jnp.float32), 0.0)
            loss, token_nll, time_nll = next_event_loss(logits, mix, means, scales, labels, dt, mask, self.config)
        return FlaxEventSSMNextEventPredictionOutput(
            loss=loss, logits=logits, gap_mixture_logits=mix, gap_log_means=means, gap_log_scales=scales,
            token_nll=token_nll, time_nll=time_nll, hidden_states=out.hidden_states,
        )  # fmt: skip


# ================================================================================================
# 6. Host-side input checks and the model classes
# ================================================================================================


def _first_bad(bad):
    """(sample, position) of the first True in a 2-D bool array."""
    i, k = np.argwhere(bad)[0]
    return int(i), int(k)


def check_inputs(config: EventSSMConfig, input_ids, timestamps, attention_mask=None) -> None:
    """ValueError naming the argument and the offending value for concrete (non-traced) inputs:
    shapes (batch, length) that match, attention_mask of 0/1 with valid events first, ids inside the
    vocabulary, finite timestamps that never decrease over the valid events (equal ones are legal)."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must have shape (batch, length), got shape {ids.shape}")
    ts = np.asarray(timestamps)
    if ts.shape != ids.shape:
        raise ValueError(f"timestamps has shape {ts.shape} but input_ids has shape {ids.shape}; they must match")
    if attention_mask is not None:
        am = np.asarray(attention_mask)
        if am.shape != ids.shape:
            raise ValueError(
                f"attention_mask has shape {am.shape} but input_ids has shape {ids.shape}; they must match"
            )
        if am.dtype.kind == "f" and np.isnan(am).any():
            raise ValueError(f"attention_mask holds NaN at (sample, position) {_first_bad(np.isnan(am))}")
        if not np.isin(am, (0, 1)).all():
            i, k = _first_bad(~np.isin(am, (0, 1)))
            raise ValueError(f"attention_mask must hold 0/1, got {am[i, k]} at (sample, position) ({i}, {k})")
        if (np.diff(am.astype(np.int8), axis=1) > 0).any():
            i = int(np.argwhere(np.diff(am.astype(np.int8), axis=1) > 0)[0, 0])
            raise ValueError(
                f"attention_mask of sample {i} has a valid event after padding ({am[i].astype(int).tolist()[:20]}...); "
                "put the valid events first and the padding at the end"
            )
    valid = valid_mask(attention_mask, ids.shape)
    if ids.dtype.kind == "f":
        if np.isnan(ids[valid]).any():
            raise ValueError(f"input_ids holds NaN at (sample, position) {_first_bad(np.isnan(ids) & valid)}")
        if (ids[valid] != np.round(ids[valid])).any():
            i, k = _first_bad((ids != np.round(ids)) & valid)
            raise ValueError(f"input_ids must hold integer token ids, got {ids[i, k]} at ({i}, {k})")
    elif ids.dtype.kind not in "iu":
        raise ValueError(f"input_ids must hold integer token ids, got dtype {ids.dtype}")
    outside = valid & ((ids < 0) | (ids >= config.vocab_size))
    if outside.any():
        i, k = _first_bad(outside)
        raise ValueError(
            f"input_ids holds token id {ids[i, k]} at (sample, position) ({i}, {k}), outside the vocabulary "
            f"[0, {config.vocab_size}); check that the tokenizer matches the model (vocab_size={config.vocab_size})"
        )
    if ts.dtype.kind == "f":
        bad = valid & ~np.isfinite(ts)
        if bad.any():
            i, k = _first_bad(bad)
            raise ValueError(f"timestamps holds {ts[i, k]} at (sample, position) ({i}, {k})")
    elif ts.dtype.kind not in "iu":
        raise ValueError(f"timestamps must be integer µs, got dtype {ts.dtype}")
    ts64 = ts.astype(np.int64) if ts.dtype.kind in "iu" else ts
    decreasing = (np.diff(ts64, axis=1) < 0) & valid[:, 1:]
    if decreasing.any():
        i, k = _first_bad(decreasing)
        raise ValueError(
            f"timestamps decrease in sample {i}: {ts[i, k]} at position {k} then {ts[i, k + 1]} at position "
            f"{k + 1}; events must be sorted by time (equal timestamps are fine)"
        )


def prepare_inputs(config: EventSSMConfig, input_ids, timestamps, attention_mask=None):
    """Checked (input_ids int32, time_deltas float32, attention_mask int32) for the jitted call.

    Concrete inputs are checked and differenced on the host (int64); traced ones inside the trace.
    """
    traced = any(is_traced(a) for a in (input_ids, timestamps, attention_mask))
    if not traced:
        check_inputs(config, input_ids, timestamps, attention_mask)
    xp = jnp if traced else np
    ids = xp.asarray(input_ids)
    if attention_mask is None:
        mask = xp.ones(ids.shape, xp.int32)
    else:
        mask = (xp.asarray(attention_mask) != 0).astype(xp.int32)
    dt = compute_time_deltas(timestamps, mask, config.time_unit_us)
    ids = xp.where(mask != 0, ids, 0).astype(xp.int32)  # padding may hold anything (-1, pad id, ...)
    return ids, dt, mask


SSM_PARAM_NAMES = ("B", "Lambda_re", "Lambda_im")  # the paper's "ssm" optimizer group


class FlaxEventSSMPreTrainedModel(FlaxPreTrainedModel):
    """Shared machinery of the three EventSSM models: weights init, input checks, the jitted call.

    model(input_ids, timestamps, attention_mask=None, labels=None, *, params=None, batch_stats=None,
          train=False, dropout_rng=None, output_hidden_states=False, return_dict=True)
    timestamps are int µs (any offset). Works eagerly (jit-compiled per input shape) and inside
    jax.jit / jax.grad with params= passed explicitly.
    """

    config_class = EventSSMConfig
    base_model_prefix = "eventssm"
    main_input_name = "input_ids"
    task = None  # "classification" | "next-event" for the head models

    def param_groups(self, params=None):
        """Optimizer group of every parameter, a pytree like `params`: "ssm" for the S5 parameters B,
        Lambda_re and Lambda_im (the paper's SSM learning rate, no weight decay: the reference's groups;
        log_step, C, D and the norms are not in it), "regular" for every other one."""
        def label(path, _):
            return "ssm" if getattr(path[-1], "key", None) in SSM_PARAM_NAMES else "regular"

        return jax.tree_util.tree_map_with_path(label, self.params if params is None else params)

    def init_weights(self, rng, input_shape) -> dict:
        ids = jnp.zeros(input_shape, jnp.int32)
        dt = jnp.ones(input_shape, jnp.float32)
        mask = jnp.ones(input_shape, jnp.int32)
        params_rng, dropout_rng = jax.random.split(rng)
        # one compilation instead of thousands of eager ops; init runs once, so on CPU XLA may skip its
        # backend optimisations (halves the compile time)
        rngs = {"params": params_rng, "dropout": dropout_rng}
        options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
        try:
            variables = jax.jit(self.module.init, compiler_options=options)(rngs, ids, dt, mask)
        except ValueError as err:  # inside a trace (eval_shape, jit): options only apply at the top level
            if "compiler_options" not in str(err):
                raise
            variables = self.module.init(rngs, ids, dt, mask)
        return flax.core.unfreeze(variables)

    def _check_labels(self, labels, shape):
        return labels

    @functools.cached_property
    def _jitted_apply(self):
        return jax.jit(self._apply, static_argnames=("train", "output_hidden_states"))

    def _apply(self, variables, ids, dt, mask, labels, rngs, train=False, output_hidden_states=False):
        kwargs = dict(labels=labels, train=train, output_hidden_states=output_hidden_states, rngs=rngs)
        if train and "batch_stats" in variables:
            out, updated = self.module.apply(variables, ids, dt, mask, mutable=["batch_stats"], **kwargs)
            return out.replace(batch_stats=updated["batch_stats"])
        return self.module.apply(variables, ids, dt, mask, **kwargs)

    def __call__(
        self,
        input_ids,
        timestamps,
        attention_mask=None,
        labels=None,
        *,
        params=None,
        batch_stats=None,
        train: bool = False,
        dropout_rng=None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ):
        ids, dt, mask = prepare_inputs(self.config, input_ids, timestamps, attention_mask)
        if labels is not None:
            labels = self._check_labels(labels, ids.shape)
        if train and self.config.dropout > 0 and dropout_rng is None:
            raise ValueError(
                f"train=True with dropout={self.config.dropout} needs dropout_rng=jax.random.PRNGKey(...) "
                "(or set config.dropout=0)"
            )
        rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
        variables = self._variables_for(params, batch_stats)
        out = self._jitted_apply(
            variables, ids, dt, mask, labels, rngs, train=train, output_hidden_states=output_hidden_states
        )
        return out if return_dict else out.to_tuple()

    # Event-by-event inference (issue 5): state in, state out; the math lives in streaming_eventssm.py.
    def init_stream(self, batch_size: int = 1, params=None):
        """A fresh stream state for `batch_size` streams (see streaming_eventssm.init_stream)."""
        from .streaming_eventssm import init_stream

        return init_stream(self, batch_size, params=params)

    def stream(self, input_ids, timestamps, state, attention_mask=None, *, params=None, batch_stats=None):
        """(output given every event so far, new state) for one chunk of any length ≥ 1."""
        from .streaming_eventssm import stream

        return stream(self, input_ids, timestamps, state, params=params, batch_stats=batch_stats,
                      attention_mask=attention_mask)


class FlaxEventSSMModel(FlaxEventSSMPreTrainedModel):
    """EventSSM backbone: hidden states of the last stage (see FlaxEventSSMModelOutput)."""

    module_class = FlaxEventSSMModule

    def _check_labels(self, labels, shape):
        raise ValueError("FlaxEventSSMModel has no head and takes no labels; use a ...ForSequenceClassification "
                         "or ...ForNextEventPrediction model")


class FlaxEventSSMForSequenceClassification(FlaxEventSSMPreTrainedModel):
    """EventSSM with a masked pooled readout and a linear classifier; labels int (B,) or soft (B, C)."""

    module_class = FlaxEventSSMForSequenceClassificationModule
    task = "classification"

    def _check_labels(self, labels, shape):
        if is_traced(labels):
            return labels
        arr = np.asarray(labels)
        n = self.config.num_labels
        if arr.dtype.kind == "f":
            if arr.shape != (shape[0], n):
                raise ValueError(f"soft labels must have shape (batch, num_labels) = {(shape[0], n)}, got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"labels holds a non-finite value at {tuple(np.argwhere(~np.isfinite(arr))[0])}")
            return arr.astype(np.float32)
        if arr.dtype.kind not in "iu" or arr.shape != (shape[0],):
            raise ValueError(
                f"labels must be int class ids of shape ({shape[0]},) or float soft labels of shape "
                f"({shape[0]}, {n}); got dtype {arr.dtype}, shape {arr.shape}"
            )
        if ((arr < 0) | (arr >= n)).any():
            i = int(np.flatnonzero((arr < 0) | (arr >= n))[0])
            raise ValueError(f"labels[{i}] = {arr[i]} is not a class id in [0, {n}) (num_labels={n})")
        return arr.astype(np.int32)


class FlaxEventSSMForNextEventPrediction(FlaxEventSSMPreTrainedModel):
    """EventSSM pretraining head: for every event, the next token and the gap to it (labels = input_ids;
    the model shifts them; negative labels are ignored)."""

    module_class = FlaxEventSSMForNextEventPredictionModule
    task = "next-event"

    def _check_labels(self, labels, shape):
        if is_traced(labels):
            return labels
        arr = np.asarray(labels)
        if arr.shape != tuple(shape) or arr.dtype.kind not in "iu":
            raise ValueError(
                f"labels must be int token ids shaped like input_ids {tuple(shape)} (usually labels=input_ids), "
                f"got dtype {arr.dtype}, shape {arr.shape}"
            )
        if (arr >= self.config.vocab_size).any():
            i, k = _first_bad(arr >= self.config.vocab_size)
            raise ValueError(
                f"labels holds token id {arr[i, k]} at ({i}, {k}), outside the vocabulary of {self.config.vocab_size}"
            )
        return arr.astype(np.int32)

    def generate(self, num_events: int, temperature: float = 1.0, seed: int = 0, tokenizer=None, prompt=None, **kwargs):
        """Sample `num_events` events one by one with the stream state (see streaming_eventssm.generate)."""
        from .streaming_eventssm import generate

        return generate(self, num_events, temperature=temperature, seed=seed, tokenizer=tokenizer, prompt=prompt, **kwargs)


__all__ = [
    "FlaxEventSSMModel",
    "FlaxEventSSMForSequenceClassification",
    "FlaxEventSSMForNextEventPrediction",
    "FlaxEventSSMPreTrainedModel",
    "FlaxEventSSMModule",
    "FlaxEventSSMForSequenceClassificationModule",
    "FlaxEventSSMForNextEventPredictionModule",
    "FlaxEventSSMModelOutput",
    "FlaxEventSSMSequenceClassifierOutput",
    "FlaxEventSSMNextEventPredictionOutput",
    "compute_time_deltas",
    "check_inputs",
    "prepare_inputs",
]
