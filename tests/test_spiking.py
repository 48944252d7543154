"""Spiking neurons (eventlm.spiking) and event frames (spike_driven_transformer.frames) against independent
numpy versions written from SpikingJelly's definitions, on random inputs (never zeros)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventlm.models.spike_driven_transformer.frames import events_to_frames, frames_left_empty
from eventlm.spiking import multistep_lif, spike


def lif_numpy(x, tau=2.0, v_th=1.0, v_reset=0.0, decay_input=True, v0=None):
    """SpikingJelly's MultiStepLIFNode (torch backend) step by step, float32 as it computes."""
    x = np.asarray(x, np.float32)
    v = np.full(x.shape[1:], v_reset, np.float32) if v0 is None else np.asarray(v0, np.float32).copy()
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        if decay_input:
            h = v + (x[t] - (v - np.float32(v_reset))) / np.float32(tau)
        else:
            h = v - (v - np.float32(v_reset)) / np.float32(tau) + x[t]
        s = (h - np.float32(v_th) >= 0).astype(np.float32)
        v = h * (1 - s) + np.float32(v_reset) * s
        out[t] = s
    return out, v


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_th", [1.0, 0.5])
def test_lif_matches_spikingjelly_step_by_step(decay_input, v_th):
    rng = np.random.default_rng(0)
    x = rng.normal(0.6, 1.2, (16, 3, 50)).astype(np.float32)
    x[3, 0, :5] = 2.0 * v_th  # from V = 0: H = x/2 = v_th exactly, a spike at threshold (≥)
    v0 = rng.normal(0, 0.3, (3, 50)).astype(np.float32)
    ref, v_ref = lif_numpy(x, v_th=v_th, decay_input=decay_input, v0=v0)
    got, v = jax.jit(lambda a, b: multistep_lif(a, b, v_threshold=v_th, decay_input=decay_input))(x, v0)
    np.testing.assert_array_equal(np.asarray(got), ref)
    np.testing.assert_array_equal(np.asarray(v), v_ref)
    assert 0.05 < ref.mean() < 0.95  # the case exercises both spikes and silences
    # carrying the state: two halves give the whole
    a, va = multistep_lif(jnp.asarray(x[:7]), jnp.asarray(v0), v_threshold=v_th, decay_input=decay_input)
    b, vb = multistep_lif(jnp.asarray(x[7:]), va, v_threshold=v_th, decay_input=decay_input)
    np.testing.assert_array_equal(np.concatenate([a, b]), ref)


def test_threshold_spike_and_surrogate_gradient():
    x = jnp.asarray([-1.0, -1e-7, 0.0, 1e-7, 0.3], jnp.float32)
    np.testing.assert_array_equal(np.asarray(spike(x, 4.0)), [0, 0, 1, 1, 1])
    g = np.asarray(jax.grad(lambda a: jnp.sum(spike(a, 4.0) * jnp.arange(1.0, 6.0)))(x))
    s = 1 / (1 + np.exp(-4.0 * np.asarray(x, np.float64)))
    np.testing.assert_allclose(g, np.arange(1.0, 6.0) * 4.0 * s * (1 - s), rtol=1e-6)


def test_detach_reset_changes_only_the_gradient():
    x = jnp.asarray(np.random.default_rng(1).normal(0.8, 1.0, (10, 7)), jnp.float32)
    loss = lambda a, d: jnp.sum(multistep_lif(a, detach_reset=d)[0] * jnp.arange(70.0).reshape(10, 7))  # noqa
    np.testing.assert_array_equal(multistep_lif(x, detach_reset=True)[0], multistep_lif(x, detach_reset=False)[0])
    g_detached, g_full = jax.grad(loss)(x, True), jax.grad(loss)(x, False)
    assert np.all(np.isfinite(g_detached)) and not np.allclose(g_detached, g_full)


def _lif_unrolled(x, v0, inv_tau, v_th, decay_input, detach_reset, valid):
    """The recurrence written out step by step (no scan, no hand-written backward): autodiff of it is the
    reference for multistep_lif's custom VJP."""
    v, out = v0, []
    for t in range(x.shape[0]):
        h = v + (x[t] - v) * inv_tau if decay_input else v - v * inv_tau + x[t]
        s = spike(h - v_th, 4.0)
        r = jax.lax.stop_gradient(s) if detach_reset else s
        v_new = h * (1.0 - r)
        if valid is not None:
            v_new, s = jnp.where(valid[t][:, None], v_new, v), s * valid[t][:, None]
        v = v_new
        out.append(s)
    return jnp.stack(out), v


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("detach_reset", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("parametric", [False, True])
def test_lif_backward_equals_autodiff_of_the_recurrence(decay_input, detach_reset, masked, parametric):
    """multistep_lif's hand-written backward (it keeps only H) against autodiff of the unrolled recurrence, in
    float64, for inputs, the initial membrane and a ParametricLIF's w, with random output and state cotangents."""
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(0.7, 1.3, (9, 4, 6)))
        v0 = jnp.asarray(rng.normal(0.2, 0.5, (4, 6)))
        valid = jnp.asarray(rng.random((9, 4)) < 0.7) if masked else None
        g_s, g_v = jnp.asarray(rng.normal(size=x.shape)), jnp.asarray(rng.normal(size=v0.shape))

        def loss(f, x, v0, w):
            inv_tau = jax.nn.sigmoid(w) if parametric else 0.5
            s, v = f(x, v0, inv_tau, valid)
            return jnp.sum(s * g_s) + jnp.sum(v * g_v), s

        ours = lambda x, v0, k, m: multistep_lif(x, v0, inv_tau=k, v_threshold=0.9, decay_input=decay_input,  # noqa
                                                detach_reset=detach_reset, valid=m)
        ref = lambda x, v0, k, m: _lif_unrolled(x, v0, k, 0.9, decay_input, detach_reset, m)  # noqa
        args = (x, v0, jnp.asarray(0.4))
        (_, s1), g1 = jax.value_and_grad(lambda *a: loss(ours, *a), (0, 1, 2), has_aux=True)(*args)
        (_, s2), g2 = jax.value_and_grad(lambda *a: loss(ref, *a), (0, 1, 2), has_aux=True)(*args)
        np.testing.assert_array_equal(np.asarray(s1), np.asarray(s2))
        assert 0.1 < float(jnp.mean(s1)) < 0.9
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)
        assert float(jnp.max(jnp.abs(g1[0]))) > 0.1 and (not parametric or abs(float(g1[2])) > 1e-3)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("binary", [True, False])
def test_max_pool_backward_routes_to_the_first_maximum_as_torch(stride, binary):
    """The SDT's max-pool (hand-written backward) against torch.nn.functional.max_pool2d's gradient (the
    reference's op): binary spikes tie in most windows, so the routing rule (first maximum) is what is tested."""
    torch = pytest.importorskip("torch")
    from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import _max_pool

    rng = np.random.default_rng(4)
    x = (rng.random((3, 11, 10, 4)) < 0.35).astype(np.float32) if binary else rng.normal(size=(3, 11, 10, 4))
    x = x.astype(np.float32)
    out, vjp = jax.vjp(lambda a: _max_pool(a, 3, stride), jnp.asarray(x))
    g = rng.normal(size=out.shape).astype(np.float32)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 3, stride, padding=1)
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(np.asarray(out), yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]), xt.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel,cin", [(3, 12), (1, 16), (3, 2)])
def test_conv_backward_equals_torch(kernel, cin):
    """The SDT's stride-1 'same' convolution (its weight gradient by hand: one matmul per kernel offset; thin
    inputs keep XLA's) against torch.nn.functional.conv2d's output and gradients, spiking and real inputs."""
    torch = pytest.importorskip("torch")
    import flax.linen as nn

    from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import _flax_conv

    rng = np.random.default_rng(5)
    for x in ((rng.random((3, 9, 7, cin)) < 0.3).astype(np.float32), rng.normal(size=(3, 9, 7, cin)).astype(np.float32)):
        conv = nn.Conv(6, (kernel, kernel), padding=kernel // 2, use_bias=False, conv_general_dilated=_flax_conv)
        w = rng.normal(size=(kernel, kernel, cin, 6)).astype(np.float32)
        g = rng.normal(size=(3, 9, 7, 6)).astype(np.float32)
        out, vjp = jax.vjp(lambda p, a: conv.apply({"params": {"kernel": p}}, a), jnp.asarray(w), jnp.asarray(x))
        g_w, g_x = vjp(jnp.asarray(g))
        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
        yt = torch.nn.functional.conv2d(xt, wt, padding=kernel // 2)
        yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
        np.testing.assert_allclose(np.asarray(out), yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(g_w), wt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(g_x), xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- frames


def spikingjelly_frames(x, y, p, t, W, H, T, split_by):
    """cal_fixed_frames_number_segment_index + integrate_events_segment_to_frame, as SpikingJelly writes
    them (loops over segments; np.bincount per polarity)."""
    N = t.size
    j_l, j_r = np.zeros(T, int), np.zeros(T, int)
    if split_by == "number":
        di = N // T
        for i in range(T):
            j_l[i] = i * di
            j_r[i] = j_l[i] + di
        j_r[-1] = N
    else:
        dt = (t[-1] - t[0]) // T
        idx = np.arange(N)
        for i in range(T):
            t_l = dt * i + t[0]
            t_r = t_l + dt
            m = idx[(t >= t_l) & (t < t_r)]
            j_l[i] = m[0]  # SpikingJelly fails on an empty segment (IndexError)
            j_r[i] = m[-1] + 1
        j_r[-1] = N
    frames = np.zeros((T, 2, H * W))
    for i in range(T):
        xs, ys, ps = x[j_l[i]:j_r[i]].astype(int), y[j_l[i]:j_r[i]].astype(int), p[j_l[i]:j_r[i]]
        for c, m in enumerate((ps == 0, ps != 0)):
            counts = np.bincount(ys[m] * W + xs[m])
            frames[i, c, :counts.size] += counts
    return frames.reshape(T, 2, H, W)


def _stream(rng, n, W, H):
    t = np.sort(rng.integers(0, 50_000, n))
    return rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n), t


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_frames_equal_spikingjelly_on_random_streams(split_by):
    W, H, T = 7, 5, 4
    rng = np.random.default_rng(2)
    lengths = [0, 1, 3, 4, 5, 37, 200] if split_by == "number" else [37, 200, 513]
    L = max(lengths) + 3
    ids = np.full((len(lengths), L), W * H * 2, np.int64)  # the pad token
    ts = np.zeros((len(lengths), L), np.int64)
    valid = np.zeros((len(lengths), L), bool)
    refs = []
    for b, n in enumerate(lengths):
        x, y, p, t = _stream(rng, n, W, H)
        ids[b, 1:n + 1], ts[b, 1:n + 1], valid[b, :n + 2] = p * W * H + y * W + x, t, True  # bos + events + eos
        ids[b, 0], ids[b, n + 1] = W * H * 2 + 1, W * H * 2 + 2
        ts[b, 0], ts[b, n + 1] = (t[0], t[-1]) if n else (0, 0)
        ts[b, n + 2:] = ts[b, n + 1]
        refs.append(spikingjelly_frames(x, y, p, t, W, H, T, split_by) if n else np.zeros((T, 2, H, W)))
    got = np.asarray(jax.jit(lambda i, t, v: events_to_frames(i, t, v, (W, H, 2), T, split_by))(
        ids.astype(np.int32), ts.astype(np.int32), valid))
    np.testing.assert_array_equal(got, np.stack(refs))
    counts = valid.sum(1) - 2
    assert list(frames_left_empty(np.maximum(counts, 0), ts[:, 1:], T, split_by)) == \
        [bool(np.any(r.sum(axis=(1, 2, 3)) == 0)) for r in refs]
