"""The streaming step of an EventSSM as one compiled CPU function (numba), for streaming on the CPU.

`streaming_eventssm` runs a chunk as one XLA program. On the CPU, XLA executes such a program as
~170–200 separate operations at ≈ 1 µs of executor overhead each, so a small chunk costs ≥ 150 µs
whatever its size. This module computes the same chunk step (the same model weights and derived
constants, the same flat state row, `StateLayout`) as one numba function over plain numpy arrays: no
per-operation overhead, no padding to a bucket, one compilation for every model and chunk length (all
sizes are runtime values). Being sequential, it runs pooling windows by the plain recurrence
x_i = exp(Λ·s·Δt_i) ⊙ x_{i−1} + γB̃u_i and keeps the states at window ends (the XLA step sums each
window in closed form for parallelism: equal up to rounding). The tests hold it to the XLA step chunk
by chunk (outputs and state rows, ≤ 1e-5) and to the full forward.

What it reads: the step's constants (`streaming_eventssm.EventSSMStreamer.prepare`: B̃/C̃ as contiguous real
matrices, Λ·s as a pair, γ folded into B̃ and the token tables) packed into one float32 array with an
int64 table of offsets. Not covered (`unsupported_reason` says which, and `stream` uses the XLA step):
zoh discretization (γ depends on Δt through expm1), compute dtypes other than float32, and a missing
numba.

Complex numbers are pairs of float32 rows [re | im] as in the state row; the complex exponential is
the XLA step's: Cody-Waite reduction and Cephes polynomials for exp, sin and cos, written so that
LLVM vectorises the loop over the state (libm's scalar calls were 5x slower).
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import numpy as np

from ...modeling_events import GAP_LOG_SCALE_RANGE

try:  # optional at import time: without numba `stream` uses the XLA step
    import numba
except ImportError:  # pragma: no cover - numba is an install requirement
    numba = None

F32 = np.float32


def _njit(func=None, fastmath=False):
    if func is None:  # used as @_njit(fastmath=...)
        return lambda f: _njit(f, fastmath)
    if numba is None:  # pragma: no cover
        return func
    return numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=fastmath)(func)


def _fast(func):
    """_njit with fused multiply-adds allowed (no reassociation: the Cody-Waite reductions rely on the
    order of their subtractions)."""
    return _njit(func, fastmath={"contract"})


# ------------------------------------------------------------------------------------------------
# Table fields. Per block (row of `blocks`):
B_OFF, C_OFF, D_OFF, D_MATRIX, LAM_OFF, NS_OFF, NB_OFF, GW_OFF, GB_OFF, SW_OFF, SB_OFF, H_IN, H_OUT, P, \
    STRIDE, STAGE, LAYER, STATE_OFF = range(18)
# Per stage (row of `stages`): offsets in the state row of the open window's inputs, Δt, count and the inputs'
# projections B̃u (stages after the first).
WIN_IN, WIN_DT, WIN_COUNT, WIN_BU = range(4)
# Globals (`g`):
(TABLE_U, TABLE_BU, EMB, NUM_BLOCKS, NUM_STAGES, NORM_AFFINE, POOL_MODE, KEEP_FIRST, READOUT_REF, CLS_POOL,
 CLS_W, CLS_B, NUM_LABELS, HIDDEN, RO_SUM, RO_WEIGHT, RO_LAST, RO_TIME, WIDTH, TOTAL_STRIDE, HEAD_NEXT,
 LOCAL_W, LOCAL_B, HN_SCALE, HN_BIAS, TOK_W, TOK_B, GAP_W, GAP_B, VOCAB, MIXTURE) = range(31)
POOL_MODES = {"avg": 0, "timepool": 1, "last": 2}
CLS_POOLS = {"mean": 0, "timepool": 1, "last": 2}


# ------------------------------------------------------------------------------------------------
# Numerics

# |θ| above which the Cody-Waite reduction θ = k·π/2 + r loses r (|k| ≥ 2^15): θ is reduced mod 2π first
THETA_LIMIT, TWO_PI = F32(32768.0), F32(2 * math.pi)

if numba is not None:
    from llvmlite import ir as _ir
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def _float_from_bits(typingctx, bits):
        """The float32 whose bits are the int32 `bits` (a register move; keeps the exp loops vectorisable)."""
        return _types.float32(_types.int32), lambda ctx, builder, sig, args: builder.bitcast(args[0], _ir.FloatType())
else:  # pragma: no cover
    def _float_from_bits(bits):
        return np.array(bits, np.int32).view(np.float32)[()]


@_fast
def _cexp(lam_re, lam_im, t, out_re, out_im):
    """out = exp((Λ_re + iΛ_im)·t) for a scalar t, into separate real and imaginary rows (`_cexp_at` per
    element; one loop over the state that LLVM vectorises, ≈ 3 cycles per element; θ past the reduction's range
    (huge gaps) takes a scalar loop that reduces it mod 2π first, so that it stays finite)."""
    largest = F32(0.0)  # max |Λ_im|: |Λ_im·t| > THETA_LIMIT somewhere iff largest·|t| > THETA_LIMIT (exact)
    for p in range(lam_re.shape[0]):
        if abs(lam_im[p]) > largest:
            largest = abs(lam_im[p])
    if largest * abs(t) > THETA_LIMIT:
        for p in range(lam_re.shape[0]):
            th = lam_im[p] * t
            if abs(th) > THETA_LIMIT:
                th = np.fmod(th, TWO_PI)
            out_re[p], out_im[p] = _cexp_at(lam_re[p] * t, th)
    else:
        for p in range(lam_re.shape[0]):
            out_re[p], out_im[p] = _cexp_at(lam_re[p] * t, lam_im[p] * t)


@_fast
def _cexp_at(x, th):
    """exp(x + iθ) as (re, im), as the XLA step's exp_pair: exp(x) = 2^k·e^r (`_exp_parts`), cos/sin after
    θ = k'·π/2 + r (Cody-Waite in float32, Cephes sinf/cosf polynomials)."""
    m, scale = _exp_parts(x)
    k = np.floor(th * F32(0.6366197723675814) + F32(0.5))  # float32 (math.floor would give int64: float64 math)
    q = ((th - k * F32(1.5703125)) - k * F32(4.837512969970703125e-4)) - k * F32(7.54978995489188216e-8)
    q2 = q * q
    s = q + q * q2 * (F32(-1.6666654611e-1) + q2 * (F32(8.3321608736e-3) + q2 * F32(-1.9515295891e-4)))
    c = F32(1.0) - F32(0.5) * q2 + q2 * q2 * (F32(4.166664568298827e-2) + q2 * (
        F32(-1.388731625493765e-3) + q2 * F32(2.443315711809948e-5)))
    quadrant = np.int32(k)
    odd = (quadrant & 1) != 0
    cos_th = s if odd else c  # cos(r + quadrant·π/2) and sin(…), up to sign
    sin_th = c if odd else s
    sign_c = F32(-1.0) if ((quadrant + 1) & 2) != 0 else F32(1.0)  # quadrant 1 or 2
    sign_s = F32(-1.0) if (quadrant & 2) != 0 else F32(1.0)  # quadrant 2 or 3
    return m * sign_c * cos_th * scale, m * sign_s * sin_th * scale


@_fast
def _exp_parts(x):
    """exp(x) = m·2^k for float32 x (clamped to [−87, 88]): (m, 2^k). Cody-Waite reduction x = k·ln2 + r and
    the Cephes expf polynomial for e^r, 2^k from its exponent bits; the caller multiplies."""
    v = min(max(x, F32(-87.0)), F32(88.0))
    fk = np.floor(v * F32(1.44269504088896341) + F32(0.5))
    r = v - fk * F32(0.693359375) - fk * F32(-2.12194440e-4)
    e = ((((F32(1.9875691500e-4) * r + F32(1.3981999507e-3)) * r + F32(8.3334519073e-3)) * r
          + F32(4.1665795894e-2)) * r + F32(1.6666665459e-1)) * r + F32(5.0000001201e-1)
    return e * r * r + r + F32(1.0), _float_from_bits((np.int32(fk) + np.int32(127)) << np.int32(23))


@_fast
def _exp_inplace(x):
    """x ← exp(x) elementwise for a flat float32 array (the real part of `_cexp`; vectorised)."""
    for i in range(x.shape[0]):
        m, scale = _exp_parts(x[i])
        x[i] = m * scale


@_njit
def _sigmoid(z):
    """1 / (1 + exp(−z)) of a 2-D array (a new array)."""
    e = -z.ravel()
    _exp_inplace(e)
    return (F32(1.0) / (F32(1.0) + e)).reshape(z.shape)


@_njit
def _layer_norm(x, scale, bias, eps):
    """flax LayerNorm over the last axis (float32 statistics, var = E[x²] − E[x]², clipped at 0)."""
    rows, h = x.shape
    out = np.empty_like(x)
    for i in range(rows):
        mean, mean_sq = _moments(x[i])
        inv = F32(1.0 / math.sqrt(max(mean_sq - mean * mean, F32(0.0)) + eps))
        for j in range(h):
            out[i, j] = (x[i, j] - mean) * inv * scale[j] + bias[j]
    return out


@_njit(fastmath=True)
def _moments(v):
    """(E[v], E[v²]) in float32 (summation order free: vectorised)."""
    s1 = F32(0.0)
    s2 = F32(0.0)
    for j in range(v.shape[0]):
        s1 += v[j]
        s2 += v[j] * v[j]
    return s1 / v.shape[0], s2 / v.shape[0]


@_njit
def _norm(w, blk, x, eps, affine):
    h = blk[H_IN]
    scale, bias = w[blk[NS_OFF]:blk[NS_OFF] + h], w[blk[NB_OFF]:blk[NB_OFF] + h]
    if affine:  # batch norm with running statistics, folded to x·a + c
        return x * scale + bias
    return _layer_norm(x, scale, bias, eps)


@_njit
def _dense(w, x, w_off, b_off, n_in, n_out):
    out = np.dot(x, w[w_off:w_off + n_in * n_out].reshape((n_in, n_out)))
    out += w[b_off:b_off + n_out]
    return out


@_njit
def _gelu(x):
    """jax.nn.gelu (tanh approximation, flax's default): ½x(1 + tanh a) = x·σ(2a), a = √(2/π)(x + 0.044715x³)."""
    return x * _sigmoid(F32(1.5957691216057308) * (x + F32(0.044715) * x * x * x))


@_njit
def _touch(table, rows, sink):
    """Load one value per cache line of the rows `rows` of `table` (independent loads, so the memory
    system fetches them in parallel) before the loops that read them one after the other."""
    total = F32(0.0)
    for i in range(rows.shape[0]):
        row = table[rows[i]]
        for j in range(0, row.shape[0], 16):
            total += row[j]
    sink[0] = total  # (keeps the loads)


@_njit
def _token_tables(w, g, p, h):
    """The first block's per-token tables as (V, ·) views of the packed weights: γB̃·norm(E) (V, 2p),
    norm(E) (V, h) and the embedding E (V, h)."""
    vocab = g[VOCAB]
    return (w[g[TABLE_BU]:g[TABLE_BU] + vocab * 2 * p].reshape((vocab, 2 * p)),
            w[g[TABLE_U]:g[TABLE_U] + vocab * h].reshape((vocab, h)),
            w[g[EMB]:g[EMB] + vocab * h].reshape((vocab, h)))


@_njit
def _block_inputs(w, g, blk, x, tokens, stage_zero, eps):
    """(u, B̃u as [re | im] rows, skip input): token tables at the first block, else norm(x) and u·B."""
    h, p2 = blk[H_IN], 2 * blk[P]
    if stage_zero:
        table_bu, table_u, embedding = _token_tables(w, g, blk[P], h)
        return table_u[tokens], table_bu[tokens], embedding[tokens]
    u = _norm(w, blk, x, eps, g[NORM_AFFINE] == 1)
    return u, np.dot(u, w[blk[B_OFF]:blk[B_OFF] + h * p2].reshape((h, p2))), x


@_njit
def _advance(x_re, x_im, a, b):
    """x ← a ⊙ x + b (complex; x as real and imaginary rows, a and b as [re | im] rows, split here: the form
    LLVM vectorises best, 81 cycles per 128 states against 122 with six arguments, 366 indexing a[p + j])."""
    p = x_re.shape[0]
    a_re, a_im, b_re, b_im = a[:p], a[p:], b[:p], b[p:]
    for j in range(p):
        re = a_re[j] * x_re[j] - a_im[j] * x_im[j] + b_re[j]
        x_im[j] = a_re[j] * x_im[j] + a_im[j] * x_re[j] + b_im[j]
        x_re[j] = re


@_njit
def _decays(lam_re, lam_im, dt):
    """exp(Λ·s·Δt) once per distinct nonzero Δt (event gaps repeat: µs timestamps): (index of each position's
    row, −1 where Δt = 0; the rows as [re | im]). Distinct values are found by their float32
    bits in an open-addressing table; each is computed by _cexp (the same numbers as computing every one)."""
    m, p = dt.shape[0], lam_re.shape[0]
    size = 16
    while size < 2 * m:
        size *= 2
    keys = np.full(size, -1, np.int64)
    slot_row = np.empty(size, np.int64)
    bits = dt.copy().view(np.int32)
    index = np.empty(m, np.int64)
    times = np.empty(m, F32)
    distinct = 0
    for i in range(m):
        if dt[i] == 0:  # exp(0) = 1: the recurrence adds the input
            index[i] = -1
            continue
        key = np.int64(bits[i]) & np.int64(0xFFFFFFFF)
        h = ((key * np.int64(2654435761)) >> np.int64(16)) & np.int64(size - 1)
        while keys[h] != -1 and keys[h] != key:
            h = (h + 1) & (size - 1)
        if keys[h] == -1:
            keys[h], slot_row[h] = key, distinct
            times[distinct] = dt[i]
            distinct += 1
        index[i] = slot_row[h]
    table = np.empty((distinct, 2 * p), F32)
    for k in range(distinct):
        _cexp(lam_re, lam_im, times[k], table[k, :p], table[k, p:])
    return index, table


@_njit
def _recurrence(lam_re, lam_im, bu, rows, dt, stride, keep_first, x0):
    """x_i = exp(Λ·s·Δt_i) ⊙ x_{i−1} + γB̃u_i over positions i < len(rows) from x0, input i being row
    rows[i] of `bu` (a token table at the first block). Returns the states after the last position of
    each window of `stride` (the model's window_end_states; every position for stride 1) and, with
    keep_first, after each window's first position (else the same array)."""
    m, p = rows.shape[0], lam_re.shape[0]
    num = (m + stride - 1) // stride
    last = np.empty((num, 2 * p), F32)
    first = np.empty((num, 2 * p), F32) if keep_first else last
    index, table = _decays(lam_re, lam_im, dt[:m])
    x_re, x_im = x0[:p].copy(), x0[p:].copy()
    for i in range(m):
        row = bu[rows[i]]
        k = index[i]
        if k < 0:
            for j in range(p):
                x_re[j] += row[j]
                x_im[j] += row[p + j]
        else:
            _advance(x_re, x_im, table[k], row)
        if keep_first and i % stride == 0:
            first[i // stride, :p] = x_re
            first[i // stride, p:] = x_im
        if i % stride == stride - 1 or i == m - 1:
            last[i // stride, :p] = x_re
            last[i // stride, p:] = x_im
    return last, first


@_njit
def _pool(x, rows, dt, stride, mode, keep_first, eps):
    """The model's pool_windows over positions i < len(rows) with values x[rows[i]] (windows of
    `stride`, the last one partial): mean (mode 0), Δt-weighted mean (1) or the last/first value (2)."""
    m, f = rows.shape[0], x.shape[1]
    num = (m + stride - 1) // stride
    out = np.zeros((num, f), F32)
    for win in range(num):
        a, z = win * stride, min(win * stride + stride, m)
        if mode == 2:
            out[win] = x[rows[a]] if keep_first else x[rows[z - 1]]
            continue
        norm = F32(0.0)
        acc = out[win]
        for i in range(a, z):
            weight = F32(1.0) if mode == 0 else dt[i] + eps
            norm += weight
            src = x[rows[i]]
            for j in range(f):
                acc[j] += src[j] * weight
        if norm > 0:
            for j in range(f):
                acc[j] /= norm
    return out


@_njit
def _gated_output(w, blk, y, skip):
    """y·σ(Dense(GELU(y))) + skip (projected when widening)."""
    h_in, h_out = blk[H_IN], blk[H_OUT]
    gate = _dense(w, _gelu(y), blk[GW_OFF], blk[GB_OFF], h_out, h_out)
    out = y * _sigmoid(gate)
    if h_in != h_out:
        skip = _dense(w, skip, blk[SW_OFF], blk[SB_OFF], h_in, h_out)
    return out + skip


@_njit
def _output(w, blk, states, u_for_d):
    """Re(C̃x) + Du."""
    p2, h_in, h_out = 2 * blk[P], blk[H_IN], blk[H_OUT]
    y = np.dot(states, w[blk[C_OFF]:blk[C_OFF] + p2 * h_out].reshape((p2, h_out)))
    if blk[D_MATRIX] == 1:
        y += np.dot(u_for_d, w[blk[D_OFF]:blk[D_OFF] + h_in * h_out].reshape((h_in, h_out)))
    else:
        y += u_for_d * w[blk[D_OFF]:blk[D_OFF] + h_in]
    return y


@_njit
def _row_step(w, g, blocks, stages, eps, row, tokens, dt, n, logits_out, next_out):
    """One chunk (tokens, dt: its n valid events) of one stream; updates `row` (its flat state) in place
    and writes the classification logits or the next-event outputs."""
    num_stages, stride = g[NUM_STAGES], blocks[0, STRIDE]
    # events since the last final last-stage position (next-event head): Σ_s count_s · S^s
    residual = 0
    for s in range(num_stages):
        residual += np.int64(row[stages[s, WIN_COUNT]]) * stride ** s
    total_dt = F32(0.0)
    for i in range(n):
        total_dt += dt[i]
    x = np.zeros((0, 0), F32)
    toks = tokens[:n].copy()
    x_dt = dt[:n].copy()
    n_valid = n
    n_final = n
    for b in range(g[NUM_BLOCKS]):
        blk = blocks[b]
        s, layer, p, h_out = blk[STAGE], blk[LAYER], blk[P], blk[H_OUT]
        lam = w[blk[LAM_OFF]:blk[LAM_OFF] + 2 * p]
        lam_re, lam_im = lam[:p], lam[p:]
        x0 = row[blk[STATE_OFF]:blk[STATE_OFF] + 2 * p].copy()
        stage_zero = s == 0 and layer == 0
        if layer == 0 and stride > 1:  # pooling block on [open window's inputs, this chunk's positions]
            st = stages[s]
            count = np.int64(row[st[WIN_COUNT]])
            m = count + n_valid
            nf = count + n_final
            seq_dt = np.empty(m, F32)
            seq_dt[:count] = row[st[WIN_DT]:st[WIN_DT] + count]
            seq_dt[count:] = x_dt[:n_valid]
            if stage_zero:  # the inputs are rows of the token tables: read in place
                seq_tok = np.empty(m, np.int64)
                for i in range(count):
                    seq_tok[i] = np.int64(row[st[WIN_IN] + i])
                seq_tok[count:] = toks[:n_valid]
                seq = np.zeros((0, 0), F32)
                bu, u, skip_in = _token_tables(w, g, p, blk[H_IN])
                rows = seq_tok
                sink = np.empty(1, F32)
                _touch(bu, rows, sink)
                _touch(u, rows, sink)
                _touch(skip_in, rows, sink)
            else:  # the buffered inputs' B̃u as kept in the state; the chunk's positions projected here
                h_in, p2 = blk[H_IN], 2 * p
                seq = np.empty((m, h_in), F32)
                seq[:count] = row[st[WIN_IN]:st[WIN_IN] + count * h_in].reshape((count, h_in))
                seq[count:] = x[:n_valid]
                u = _norm(w, blk, seq, eps[0], g[NORM_AFFINE] == 1)
                bu = np.empty((m, p2), F32)
                bu[:count] = row[st[WIN_BU]:st[WIN_BU] + count * p2].reshape((count, p2))
                if m > count:
                    bu[count:] = np.dot(u[count:], w[blk[B_OFF]:blk[B_OFF] + h_in * p2].reshape((h_in, p2)))
                skip_in = seq
                rows = np.arange(m)
            last_states, kept = _recurrence(lam_re, lam_im, bu, rows, seq_dt, stride, g[KEEP_FIRST] == 1, x0)
            mode, keep_first, tp_eps = g[POOL_MODE], g[KEEP_FIRST] == 1, F32(eps[1])
            y = _output(w, blk, kept, _pool(u, rows, seq_dt, stride, mode, keep_first, tp_eps))
            out = _gated_output(w, blk, y, _pool(skip_in, rows, seq_dt, stride, mode, keep_first, tp_eps))
            num = out.shape[0]
            w_dt = np.zeros(num, F32)
            valid = 0
            for win in range(num):
                a, z = win * stride, min(win * stride + stride, m)
                if g[READOUT_REF] == 1 and z - a < stride:
                    continue  # the reference keeps full windows only (they come first)
                valid += 1
                for i in range(a, z):
                    w_dt[win] += seq_dt[i]
            closed = nf // stride
            if closed > 0:
                row[blk[STATE_OFF]:blk[STATE_OFF] + 2 * p] = last_states[closed - 1]
            start = closed * stride
            width = stride - 1
            keep = max(min(m - start, width), 0)
            if stage_zero:
                for i in range(width):
                    row[st[WIN_IN] + i] = F32(seq_tok[start + i]) if i < keep else F32(0.0)
            else:
                h_in, p2 = blk[H_IN], 2 * p
                buf = row[st[WIN_IN]:st[WIN_IN] + width * h_in].reshape((width, h_in))
                buf[:] = 0.0
                buf[:keep] = seq[start:start + keep]
                projected = row[st[WIN_BU]:st[WIN_BU] + width * p2].reshape((width, p2))
                projected[:] = 0.0
                projected[:keep] = bu[start:start + keep]
            row[st[WIN_DT]:st[WIN_DT] + width] = 0.0
            row[st[WIN_DT]:st[WIN_DT] + keep] = seq_dt[start:start + keep]
            row[st[WIN_COUNT]] = F32(nf - start)
            x, x_dt, n_valid, n_final = out[:valid], w_dt[:valid], valid, closed
        else:  # stride 1: the recurrence over the positions from the committed state
            u, bu, skip_in = _block_inputs(w, g, blk, x, toks, stage_zero, eps[0])
            states = _recurrence(lam_re, lam_im, bu, np.arange(n_valid), x_dt, 1, False, x0)[0]
            if n_final > 0:
                row[blk[STATE_OFF]:blk[STATE_OFF] + 2 * p] = states[n_final - 1]
            x = _gated_output(w, blk, _output(w, blk, states, u), skip_in)
    # readout over the last-stage positions x (the first n_final final, then provisional ones)
    width = g[WIDTH]
    last = row[g[RO_LAST]:g[RO_LAST] + width]
    row[g[RO_TIME]] += total_dt
    if g[HEAD_NEXT] == 0:
        mode = g[CLS_POOL]
        wsum = row[g[RO_SUM]:g[RO_SUM] + width]
        prov_sum = np.zeros(width, np.float32)
        prov_w = F32(0.0)
        for k in range(n_valid):
            weight = F32(1.0) if mode == 0 else x_dt[k] + F32(eps[1])
            if k < n_final:
                wsum += x[k] * weight
                row[g[RO_WEIGHT]] += weight
            else:
                prov_sum += x[k] * weight
                prov_w += weight
        if n_final > 0:
            last[:] = x[n_final - 1]
        if mode == 2:
            pooled = x[n_final].copy() if n_valid > n_final else last.copy()
        else:
            norm = row[g[RO_WEIGHT]] + prov_w
            if mode == 1 and g[READOUT_REF] == 1:
                norm = row[g[RO_TIME]]
            pooled = (wsum + prov_sum) / (norm if norm > 0 else F32(1.0))
        logits_out[:] = _dense(w, pooled.reshape((1, width)), g[CLS_W], g[CLS_B], width, g[NUM_LABELS])[0]
        return
    # next-event head: event i reads the last-stage position complete at i, plus local_proj(embedding)
    total = g[TOTAL_STRIDE]
    hidden = g[HIDDEN]
    features = np.empty((n, width), F32)
    for i in range(n):
        if total == 1:
            features[i] = x[i]
        else:
            win = (residual + i + 1) // total - 1
            features[i] = x[win] if win >= 0 else last
    if total > 1:
        embedding = _token_tables(w, g, blocks[0, P], hidden)[2]
        features += _dense(w, embedding[toks], g[LOCAL_W], g[LOCAL_B], hidden, width)
    if n_final > 0:
        last[:] = x[n_final - 1]
    features = _layer_norm(features, w[g[HN_SCALE]:g[HN_SCALE] + width], w[g[HN_BIAS]:g[HN_BIAS] + width], eps[0])
    vocab, k = g[VOCAB], g[MIXTURE]
    next_out[:n, :vocab] = _dense(w, features, g[TOK_W], g[TOK_B], width, vocab)
    gap = _dense(w, features, g[GAP_W], g[GAP_B], width, 3 * k)
    next_out[:n, vocab:vocab + 2 * k] = gap[:, :2 * k]
    next_out[:n, vocab + 2 * k:] = np.minimum(np.maximum(gap[:, 2 * k:], F32(eps[2])), F32(eps[3]))


@_njit
def _out_of_bounds(g, blocks, stages, buffer, tokens, counts) -> int:
    """The first row (−1: none) whose chunk or state would make `_row_step` read outside its tables: a count
    past the chunk, a token id outside the vocabulary, an open-window count outside [0, S − 1] or a
    buffered stage-0 token outside the vocabulary (the driver checks states first; this keeps the kernel
    memory-safe whatever it is given, at a few comparisons per event)."""
    vocab, stride = g[VOCAB], blocks[0, STRIDE]
    for r in range(buffer.shape[0]):
        if counts[r] < 0 or counts[r] > tokens.shape[1]:
            return r
        for i in range(counts[r]):
            if tokens[r, i] < 0 or tokens[r, i] >= vocab:
                return r
        if stride > 1:
            for s in range(g[NUM_STAGES]):
                c = buffer[r, stages[s, WIN_COUNT]]
                if not (c >= 0 and c <= stride - 1):
                    return r
                if s == 0:
                    for i in range(np.int64(c)):
                        v = buffer[r, stages[0, WIN_IN] + i]
                        if not (v >= 0 and v < vocab):
                            return r
    return -1


@_njit
def _step(w, g, blocks, stages, eps, buffer, tokens, dt, counts, logits, next_out):
    """All streams of a batch: (−1, a new state buffer; the old one is left as it is), or (the first row that
    `_out_of_bounds` refuses, an unchanged copy) without computing anything (one call: ≈ 1 µs of dispatch less)."""
    new = buffer.copy()
    bad = _out_of_bounds(g, blocks, stages, buffer, tokens, counts)
    if bad >= 0:
        return bad, new
    for r in range(buffer.shape[0]):
        if counts[r] > 0:
            _row_step(w, g, blocks, stages, eps, new[r], tokens[r], dt[r], counts[r], logits[r], next_out[r])
    return -1, new


# ------------------------------------------------------------------------------------------------
# Python side


@functools.lru_cache(maxsize=None)
def _blas_libraries():
    """threadpoolctl's controllers of the BLAS libraries in this process, scipy's included (numba's np.dot calls
    it through scipy.linalg.cython_blas, imported first so that it is loaded when they are listed)."""
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@functools.lru_cache(maxsize=None)
def _blas_thread_switches():
    """(get, set) of each BLAS library's thread count. For OpenBLAS with its own thread pool, its C functions
    (found by threadpoolctl, symbol prefixes included) called directly through ctypes: ≈ 0.1 µs a call against
    ≈ 1 µs through threadpoolctl's wrappers, which `stream` paid four times per chunk. Elsewhere (an OpenMP
    build, MKL, BLIS, another threadpoolctl) the controller's own methods."""
    switches = []
    for lib in _blas_libraries():
        get = put = None
        if lib.internal_api == "openblas" and getattr(lib, "threading_layer", None) != "openmp":
            try:
                get, put = lib._get_symbol("openblas_get_num_threads"), lib._get_symbol("openblas_set_num_threads")
            except AttributeError:  # another threadpoolctl
                get = put = None
        if get is None or put is None:
            get, put = lib.get_num_threads, lib.set_num_threads
        switches.append((get, put))
    return tuple(switches)


class one_blas_thread:
    """Context: the BLAS libraries run every matmul on the calling thread (their thread counts restored after).
    A multithreaded BLAS splits the kernel's matmuls over worker threads that wait for each other; with one
    core taken by another process each matmul then waits for the scheduler (the kernel ran 20× slower beside
    one busy process). ≈ 1 µs per call (`_blas_thread_switches`: get, and where needed set and set back)."""

    __slots__ = ("saved",)

    def __enter__(self):
        self.saved = saved = []
        for get, put in _blas_thread_switches():
            n = get()
            if n is not None and n != 1:
                put(1)
                saved.append((put, n))
        return self

    def __exit__(self, *exc):
        for put, n in self.saved:
            put(n)


def unsupported_reason(cfg, dtype=None) -> Optional[str]:
    """Why the streaming step of a model (its config and compute dtype; or the model) cannot run as the
    CPU kernel (None when it can)."""
    if hasattr(cfg, "module"):  # a model
        cfg, dtype = cfg.config, cfg.module.dtype
    if numba is None:
        return "numba is not installed"
    if cfg.discretization == "zoh":
        return "zoh discretization (γ depends on Δt) runs on the XLA step"
    if np.dtype(dtype) != np.float32:
        return f"compute dtype {np.dtype(dtype)} (the kernel computes in float32)"
    return None


def work_per_chunk(cfg, n: int, head: str, row_floats: int):
    """(floating-point operations, bytes) of one call on a chunk of n events of one stream, counted from the
    block plan (what the distance-to-peak columns of the benchmarks divide by): per block, the matmuls (2·m·k·n
    each: B̃ except at the first block, which reads token tables, C̃, a widening D and skip, the gate), the
    recurrence (8 per complex state and position), the norm and gate's elementwise work (≈ 10 per value);
    bytes: the weights the call reads (each once), the first block's table rows per event, the state row
    (`row_floats` float32 values: the streamer's `layout.size`, window slots included) read and written. Positions shrink by the stride at each pooling block (ceil(n / S^k), at least one)."""
    flops, weights, m = 0, 0, n
    for stage, layer, _, h_in, h_out, p, stride in cfg.block_plan():
        p = cfg.stored_state_size(p)
        first = stage == 0 and layer == 0
        m_out = -(-m // stride)
        b = 0 if first else h_in * 2 * p
        d = h_in * h_out if h_in != h_out else h_in
        skip = h_in * h_out if h_in != h_out else 0
        flops += 2 * m * b + 8 * m * p + 2 * m_out * (2 * p * h_out + d + h_out * h_out + skip)
        flops += 10 * (m * h_in * (not first) + m_out * h_out)
        weights += b + 2 * p * h_out + d + h_out * h_out + skip
        m = m_out
    width = cfg.output_hidden_size
    if head == "classification":
        flops += 2 * width * cfg.num_labels
        weights += width * cfg.num_labels
    else:
        outputs = cfg.vocab_size + 3 * cfg.num_mixture_components
        flops += 2 * n * width * outputs
        weights += width * outputs
    p0 = cfg.stored_state_size(cfg.block_plan()[0][5])
    return flops, 4 * (weights + n * (2 * p0 + 2 * cfg.hidden_size) + 2 * row_floats)


class CpuStreamKernel:
    """The packed weights of one model for `_step`; call with numpy arrays (see `__call__`)."""

    def __init__(self, cfg, constants: dict, layout, head: str):
        pieces, size = [], 0

        def put(array) -> int:  # offset of a float32 copy of `array` in the packed weights
            nonlocal size
            pieces.append(np.ascontiguousarray(np.asarray(array, np.float32)).ravel())
            size += pieces[-1].size
            return size - pieces[-1].size

        variables = constants["variables"]
        params = variables["params"]
        backbone = params["eventssm"]
        offsets = jax.tree_util.tree_unflatten(layout.treedef, [entry[0] for entry in layout.entries])
        state_stages, readout = offsets
        affine = cfg.norm == "batch"
        blocks = []
        for stage, layer, name, h_in, h_out, p, stride in cfg.block_plan():
            c = constants["blocks"][name]
            p_local = np.asarray(c["lam_step"]).shape[-1]
            if affine:  # (x − μ)·rsqrt(σ² + ε)·scale + bias = x·a + (bias − μ·a)
                stats = variables["batch_stats"]["eventssm"][name]["norm"]
                norm = backbone[name]["norm"]
                a = np.asarray(norm["scale"], np.float64) / np.sqrt(np.asarray(stats["var"], np.float64) + cfg.batchnorm_eps)
                ns, nb = a, np.asarray(norm["bias"], np.float64) - np.asarray(stats["mean"], np.float64) * a
            else:
                ns, nb = backbone[name]["norm"]["scale"], backbone[name]["norm"]["bias"]
            gate = backbone[name]["gate"]
            skip = backbone[name].get("skip_proj")
            d = np.asarray(c["D"])
            blocks.append([
                put(c["B"]), put(c["C"]), put(d), int(d.ndim == 2), put(c["lam_step"]), put(ns), put(nb),
                put(gate["kernel"]), put(gate["bias"]),
                put(skip["kernel"]) if skip is not None else -1, put(skip["bias"]) if skip is not None else -1,
                h_in, h_out, p_local, stride, stage, layer, state_stages[stage].ssm_states[layer],
            ])
        stages = [[st.window_inputs, st.window_time_deltas, st.window_count, st.window_projected] for st in state_stages]
        g = np.zeros(31, np.int64)
        g[TABLE_U], g[TABLE_BU] = put(constants["table_u"]), put(constants["table_bu"])
        g[EMB] = put(backbone["embed"]["embedding"])
        g[NUM_BLOCKS], g[NUM_STAGES] = len(blocks), cfg.num_stages
        g[NORM_AFFINE], g[POOL_MODE] = int(affine), POOL_MODES[cfg.pooling_mode]
        g[KEEP_FIRST], g[READOUT_REF] = int(cfg.pooling_keep == "first"), int(cfg.readout_convention == "reference")
        g[HIDDEN], g[WIDTH], g[TOTAL_STRIDE] = cfg.hidden_size, cfg.output_hidden_size, cfg.total_stride
        g[RO_SUM], g[RO_WEIGHT], g[RO_LAST], g[RO_TIME] = (readout.weighted_sum, readout.weight, readout.last_hidden,
                                                           readout.total_time)
        g[VOCAB] = cfg.vocab_size
        self.head, self.row_size = head, layout.size
        if head == "classification":
            g[CLS_POOL], g[NUM_LABELS] = CLS_POOLS[cfg.classifier_pooling], cfg.num_labels
            g[CLS_W], g[CLS_B] = put(params["classifier"]["kernel"]), put(params["classifier"]["bias"])
        else:
            h = params["next_event_head"]
            g[HEAD_NEXT], g[MIXTURE] = 1, cfg.num_mixture_components
            if "local_proj" in h:
                g[LOCAL_W], g[LOCAL_B] = put(h["local_proj"]["kernel"]), put(h["local_proj"]["bias"])
            g[HN_SCALE], g[HN_BIAS] = put(h["norm"]["scale"]), put(h["norm"]["bias"])
            g[TOK_W], g[TOK_B] = put(h["token_logits"]["kernel"]), put(h["token_logits"]["bias"])
            g[GAP_W], g[GAP_B] = put(h["gap_params"]["kernel"]), put(h["gap_params"]["bias"])
        self.weights = np.concatenate(pieces)
        self.globals = g
        self.blocks = np.asarray(blocks, np.int64)
        self.stages = np.asarray(stages, np.int64)
        self.eps = np.array([cfg.layer_norm_eps, cfg.timepool_eps, *GAP_LOG_SCALE_RANGE], np.float64)

    def __call__(self, buffer, logits, tokens, dt, counts):
        """(outputs, new buffer, new logits) for a chunk: buffer (B, N) float32 state rows, logits (B,
        labels) the current prediction (classification) or None, tokens (B, L) ids, dt (B, L) float32
        Δt, counts (B,) valid events per row (the first ones). Outputs: the logits (B, labels), or the
        next-event (logits (B, L, V), mixture logits, log means, log scales (B, L, K)), zero at invalid
        events. Rows with no valid event keep their state and prediction."""
        buffer = np.asarray(buffer, np.float32)
        tokens = np.ascontiguousarray(tokens, np.int64)
        dt = np.ascontiguousarray(dt, np.float32)
        counts = np.ascontiguousarray(counts, np.int64)
        batch, length = tokens.shape
        g = self.globals
        if self.head == "classification":
            new_logits = np.array(logits, np.float32)  # a copy: rows without events keep theirs
            next_out = np.zeros((batch, 0, 0), np.float32)
        else:
            new_logits = np.zeros((batch, 0), np.float32)
            k = int(g[MIXTURE])
            next_out = np.zeros((batch, length, int(g[VOCAB]) + 3 * k), np.float32)
        if buffer.shape != (batch, self.row_size) or counts.shape != (batch,):
            raise ValueError(f"the CPU streaming kernel got a state buffer {buffer.shape} and counts {counts.shape} "
                             f"for a chunk of {batch} stream(s); start a new state with init_stream(model, {batch})")
        with one_blas_thread():
            bad, new = _step(self.weights, g, self.blocks, self.stages, self.eps, buffer, tokens, dt, counts,
                             new_logits, next_out)
        if bad >= 0:
            raise ValueError(f"stream {bad}: its state or chunk holds an index outside the model's tables (a damaged "
                             "stream state?); start a new state with init_stream(model, batch_size)")
        if self.head == "classification":
            return new_logits, new, new_logits
        v, k = int(g[VOCAB]), int(g[MIXTURE])
        outs = (next_out[..., :v], next_out[..., v:v + k], next_out[..., v + k:v + 2 * k], next_out[..., v + 2 * k:])
        return outs, new, logits
