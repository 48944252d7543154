"""EventSSM numerics against float64 numpy written independently here (sequential, event by event).

One S5 layer and one whole block (pre-norm → S5 → gated GELU → + skip, with and without pooling) for
zoh / dirac / async and conj_sym on / off, on random inputs with zero gaps and very large gaps, with
padding: ≤ 1e-5 relative error in float32. Pooling against a numpy reference for every mode.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig
from eventlm.models.eventssm.modeling_flax_eventssm import (
    EventSSMBlock,
    compute_time_deltas,
    event_states,
    hippo_legs_diagonal,
    pool_windows,
    window_end_states,
)

RTOL = 1e-5
H_IN, STATE, LENGTH, STRIDE = 6, 8, 23, 4  # 23 events: the stride does not divide the length
LENGTHS = (23, 14, 1)  # valid events per sample (the rest is padding)


def rel_err(got, want):
    got, want = np.asarray(got), np.asarray(want)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


# ---------------------------------------------------------------------------------------------
# float64 numpy references
# ---------------------------------------------------------------------------------------------


def np_ssm_states(p, cfg, u, dt):
    """Sequential S5 recurrence of one sample over its valid events: states (n, P) complex128."""
    lam = np.minimum(p["Lambda_re"], -1e-4) if cfg.clip_eigs else p["Lambda_re"].astype(np.float64)
    lam = lam + 1j * p["Lambda_im"]
    s = cfg.step_rescale * np.exp(p["log_step"].astype(np.float64))
    b = p["B"][..., 0] + 1j * p["B"][..., 1]
    x = np.zeros(lam.shape, np.complex128)
    states = []
    for k in range(len(dt)):
        lam_bar = np.exp(lam * s * dt[k])
        if cfg.discretization == "zoh":
            gamma = (lam_bar - 1.0) / lam
        elif cfg.discretization == "dirac":
            gamma = np.ones_like(lam)
        else:  # async: the input gain of a unit step
            gamma = (np.exp(lam * s) - 1.0) / lam
        x = lam_bar * x + gamma * (b @ u[k])
        states.append(x)
    return np.array(states).reshape(len(dt), -1)


def np_ssm_output(p, cfg, x, u):
    c = p["C"][..., 0] + 1j * p["C"][..., 1]
    y = (x @ c.T).real * (2.0 if cfg.conj_sym else 1.0)
    d = p["D"].astype(np.float64)
    return y + (u * d if d.ndim == 1 else u @ d.T)


def np_windows(n, stride):
    return [list(range(j, min(j + stride, n))) for j in range(0, n, stride)]


def np_pool(x, dt, n, stride, mode, keep, eps):
    """Window summaries over the valid events 0..n-1 of one sample: (ceil(n/stride), F)."""
    out = []
    for w in np_windows(n, stride):
        if mode == "last":
            out.append(x[w[0] if keep == "first" else w[-1]])
        elif mode == "avg":
            out.append(np.mean(x[w], axis=0))
        else:
            weight = dt[w] + eps
            out.append(np.sum(x[w] * weight[:, None], axis=0) / np.sum(weight))
    return np.array(out).reshape(-1, x.shape[-1])


def np_layer_norm(x, p, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def np_block(p, cfg, x, dt, n, stride, h_out):
    """One block on one sample's n valid events: (outputs at kept events, ssm outputs)."""
    x, dt = x[:n].astype(np.float64), dt[:n].astype(np.float64)
    u = np_layer_norm(x, p["norm"], cfg.layer_norm_eps)
    states = np_ssm_states(p["ssm"], cfg, u, dt)
    if stride == 1:
        y = np_ssm_output(p["ssm"], cfg, states, u)
        skip = x
    else:
        keep = [w[0] if cfg.pooling_keep == "first" else w[-1] for w in np_windows(n, stride)]
        pooled_u = np_pool(u, dt, n, stride, cfg.pooling_mode, cfg.pooling_keep, cfg.timepool_eps)
        y = np_ssm_output(p["ssm"], cfg, states[keep], pooled_u)
        skip = np_pool(x, dt, n, stride, cfg.pooling_mode, cfg.pooling_keep, cfg.timepool_eps)
    ssm_out = y
    gate = np_gelu_tanh(y) @ p["gate"]["kernel"] + p["gate"]["bias"]
    y = y / (1 + np.exp(-gate))
    if "skip_proj" in p:
        skip = skip @ p["skip_proj"]["kernel"] + p["skip_proj"]["bias"]
    return skip + y, ssm_out


# ---------------------------------------------------------------------------------------------
# inputs and the flax block under test
# ---------------------------------------------------------------------------------------------


def random_gaps(rng, shape):
    """Gaps with zeros (simultaneous events), ordinary ones and a few huge ones (model units)."""
    gaps = rng.exponential(0.7, shape)
    gaps[rng.random(shape) < 0.3] = 0.0
    gaps[rng.random(shape) < 0.08] = 1e4
    gaps[..., 5] = 3e5
    return gaps


def perturbed(params, rng):
    """Random values for every parameter (no constant init can hide a wrong formula)."""

    def new(path, leaf):
        name = path[-1].key
        shape = leaf.shape
        if name == "Lambda_re":
            return -rng.uniform(0.02, 1.0, shape)
        if name == "Lambda_im":
            return rng.uniform(-5, 5, shape)
        if name == "log_step":
            return rng.uniform(np.log(0.01), np.log(1.0), shape)
        if name == "scale":
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0, 0.5, shape)

    return jax.tree_util.tree_map_with_path(lambda pth, v: np.asarray(new(pth, v), np.float32), params)


CASES = [
    # discretization, conj_sym, stride, pooling_mode, pooling_keep, widen, scan (sequential on CPU by default)
    ("zoh", False, 1, "avg", "last", False, "auto"),
    ("zoh", True, STRIDE, "avg", "last", True, "auto"),
    ("dirac", False, STRIDE, "timepool", "last", False, "auto"),
    ("dirac", True, 1, "last", "last", False, "auto"),
    ("async", False, STRIDE, "last", "first", True, "auto"),
    ("async", True, STRIDE, "last", "last", False, "auto"),
    ("async", False, 1, "timepool", "last", True, "auto"),
    ("zoh", True, STRIDE, "timepool", "first", False, "auto"),
    ("zoh", False, 1, "avg", "last", False, "associative"),  # the parallel scan used on accelerators
    ("async", True, STRIDE, "avg", "first", True, "associative"),
]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "-".join(map(str, c)))
def block_case(request):
    disc, conj, stride, mode, keep, widen, scan = request.param
    cfg = EventSSMConfig(
        vocab_size=10, pad_token_id=None, bos_token_id=None, eos_token_id=None, hidden_size=H_IN,
        state_size=STATE, num_ssm_blocks=2, num_stages=1, num_layers_per_stage=1, pooling_stride=stride,
        pooling_mode=mode, pooling_keep=keep, discretization=disc, conj_sym=conj, clip_eigs=True,
        dropout=0.0, norm="layer", scan_implementation=scan,
    )  # fmt: skip
    h_out = 2 * H_IN if widen else H_IN
    block = EventSSMBlock(cfg, H_IN, h_out, STATE, stride)
    rng = np.random.default_rng(CASES.index(request.param))
    x = rng.normal(0, 1, (len(LENGTHS), LENGTH, H_IN)).astype(np.float32)
    mask = np.arange(LENGTH)[None] < np.array(LENGTHS)[:, None]
    dt = np.where(mask, random_gaps(rng, mask.shape), 0.0).astype(np.float32)
    dt[:, 0] = 0.0
    x_garbage = np.where(mask[..., None], x, 1e3)  # padding content must not matter
    shapes = jax.eval_shape(block.init, jax.random.PRNGKey(0), x, dt, mask)["params"]
    params = perturbed(shapes, rng)  # random values for every parameter, nothing compiled for init
    apply = jax.jit(lambda p, x, dt, m: block.apply({"params": p}, x, dt, m, capture_intermediates=True))
    (out, dt_out, mask_out), inter = apply(params, x_garbage, dt, mask)
    ssm_out = inter["intermediates"]["ssm"]["__call__"][0]
    return cfg, stride, h_out, params, x, dt, mask, out, ssm_out, dt_out, mask_out


def test_ssm_layer_matches_sequential_float64(block_case):
    cfg, stride, _, params, x, dt, _, _, ssm_out, _, _ = block_case
    for i, n in enumerate(LENGTHS):
        _, want = np_block(jax.tree_util.tree_map(np.asarray, params), cfg, x[i], dt[i], n, stride, None)
        got = np.asarray(ssm_out)[i, : len(want)]
        assert rel_err(got, want) <= RTOL, f"sample {i}: relative error {rel_err(got, want):.2e}"


def test_block_matches_sequential_float64(block_case):
    cfg, stride, h_out, params, x, dt, mask, out, _, dt_out, mask_out = block_case
    np_params = jax.tree_util.tree_map(np.asarray, params)
    for i, n in enumerate(LENGTHS):
        want, _ = np_block(np_params, cfg, x[i], dt[i], n, stride, h_out)
        got = np.asarray(out)[i]
        assert rel_err(got[: len(want)], want) <= RTOL, f"sample {i}: {rel_err(got[: len(want)], want):.2e}"
        assert np.all(got[len(want):] == 0), "outputs past the valid positions must be zero"
        windows = np_windows(n, stride)
        assert np.asarray(mask_out)[i].sum() == len(windows)
        want_dt = [dt[i, w].sum() for w in windows]
        np.testing.assert_allclose(np.asarray(dt_out)[i, : len(windows)], want_dt, rtol=1e-6)


def test_sequential_reference_is_not_trivial(block_case):
    """Guard: the references differ between discretizations (so the comparison can fail)."""
    cfg, stride, _, params, x, dt, *_ = block_case
    p = jax.tree_util.tree_map(np.asarray, params)["ssm"]
    u = x[0, :8].astype(np.float64)
    a = np_ssm_states(p, cfg, u, dt[0, :8].astype(np.float64))
    b = np_ssm_states(p, cfg, u, 2 * dt[0, :8].astype(np.float64) + 0.1)
    assert rel_err(a, b) > 1e-3


@pytest.mark.parametrize("method", ["sequential", "associative"])
def test_recurrences_continue_from_an_initial_state(method):
    """event_states / window_end_states from a given x_{-1} (what a stream carries between chunks)."""
    rng = np.random.default_rng(3)
    lam = -rng.uniform(0.1, 1, 4) + 1j * rng.uniform(-3, 3, 4)
    dt = random_gaps(rng, (2, 9)) % 5
    bu = rng.normal(size=(2, 9, 4)) + 1j * rng.normal(size=(2, 9, 4))
    x0 = rng.normal(size=(2, 4)) + 1j * rng.normal(size=(2, 4))

    def discretize(d):  # zoh
        return jnp.exp(lam.astype(np.complex64) * d), jnp.expm1(lam.astype(np.complex64) * d) / lam.astype(np.complex64)

    want, x = [], x0
    for k in range(9):
        x = np.exp(lam * dt[:, k, None]) * x + np.expm1(lam * dt[:, k, None]) / lam * bu[:, k]
        want.append(x)
    want = np.stack(want, axis=1)
    args = (jnp.asarray(dt, jnp.float32), jnp.asarray(bu, jnp.complex64))
    got = jax.jit(lambda d, b, x0: event_states(discretize, d, b, method, x0))(*args, jnp.asarray(x0, jnp.complex64))
    assert rel_err(got, want) <= RTOL
    ends = jax.jit(lambda d, b, x0: window_end_states(discretize, d, b, 4, 0, method, x0))(*args, jnp.asarray(x0, jnp.complex64))
    assert rel_err(ends, want[:, [3, 7, 8]]) <= RTOL


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["last", "avg", "timepool"])
@pytest.mark.parametrize("keep", ["last", "first"])
def test_pooling_matches_numpy(mode, keep):
    rng = np.random.default_rng(7)
    lengths, length, stride, feat = (11, 8, 3, 0), 11, 4, 5
    x = rng.normal(size=(len(lengths), length, feat)).astype(np.float32)
    mask = np.arange(length)[None] < np.array(lengths)[:, None]
    dt = np.where(mask, random_gaps(rng, mask.shape) % 7, 0).astype(np.float32)
    got = np.asarray(pool_windows(jnp.asarray(np.where(mask[..., None], x, 9.0)), dt, mask, stride, mode, keep, 1e-6))
    assert got.shape == (len(lengths), 3, feat)
    for i, n in enumerate(lengths):
        want = np_pool(x[i].astype(np.float64), dt[i].astype(np.float64), n, stride, mode, keep, 1e-6)
        np.testing.assert_allclose(got[i, : len(want)], want, rtol=1e-5, atol=1e-6)
        assert np.all(got[i, len(want):] == 0)


# ---------------------------------------------------------------------------------------------
# time deltas and the HiPPO init
# ---------------------------------------------------------------------------------------------


def test_time_deltas_int64_host_and_traced():
    big = 2**40  # µs timestamps beyond int32
    ts = np.array([[big, big + 1500, big + 1500, big + 4000, 0], [7, 9, 0, 0, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    dt = compute_time_deltas(ts, mask, 1000.0)
    assert dt.dtype == np.float32
    np.testing.assert_array_equal(dt, np.float32([[0, 1.5, 0, 2.5, 0], [0, 0.002, 0, 0, 0]]))
    small = ts - ts[:, :1] * mask  # traced path: the integer dtype of the trace (int32 without x64)
    traced = jax.jit(lambda t, m: compute_time_deltas(t, m, 1000.0))(small.astype(np.int32), mask)
    np.testing.assert_allclose(np.asarray(traced), dt, rtol=1e-6)


def test_hippo_legs_eigenvalues():
    """Λ are the eigenvalues of the normal HiPPO-LegS part: S V = V diag(Λ)."""
    n = 8
    lam, v = hippo_legs_diagonal(n)
    q = np.sqrt(2 * np.arange(n) + 1.0)
    a = -(np.tril(np.outer(q, q)) - np.diag(np.arange(n)))
    s = a + np.outer(np.sqrt(np.arange(n) + 0.5), np.sqrt(np.arange(n) + 0.5))
    np.testing.assert_allclose(s @ v, v @ np.diag(lam), atol=1e-9)
    np.testing.assert_allclose(lam.real, -0.5)
