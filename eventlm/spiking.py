"""Spiking neurons for eventlm's spiking models, with SpikingJelly's semantics (what the reference models ran).

Multi-step LIF over a leading time axis T, per neuron (SpikingJelly `MultiStepLIFNode`, torch backend):
    H_t = V_{t−1} + (X_t − (V_{t−1} − V_reset)) / τ        charge, decay_input=True
    H_t = V_{t−1} − (V_{t−1} − V_reset) / τ + X_t          charge, decay_input=False
    S_t = Θ(H_t − V_th),  Θ(x) = 1 for x ≥ 0               fire (a spike exactly at threshold)
    V_t = H_t·(1 − S_t) + V_reset·S_t                      hard reset (S_t detached with detach_reset)
    V_0 = V_reset (a fresh state per sample, as functional.reset_net)
ParametricLIF: 1/τ = sigmoid(w), w learned (init w = −log(τ_init − 1)). Surrogate gradient of Θ:
SpikingJelly's Sigmoid(α): dΘ/dx ≈ α·σ(αx)·(1 − σ(αx)).

Why not spyx (looked at first, as the house asks): spyx 1.0's LIF is V ← βV + x − S·θ with the spike taken
from the previous V (soft reset by subtraction, no decay_input, one step of lag) and its modules are Flax
NNX; the reference models need the hard, detached reset and decay_input above, inside linen modules.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def spike(x, alpha: float = 4.0):
    """Θ(x) = 1 where x ≥ 0 (SpikingJelly's heaviside), with the Sigmoid(α) surrogate gradient."""
    return (x >= 0).astype(x.dtype)


def _spike_fwd(x, alpha):
    return spike(x, alpha), x


def _spike_bwd(alpha, x, g):
    s = jax.nn.sigmoid(alpha * x)
    return (g * s * (1.0 - s) * alpha,)


spike.defvjp(_spike_fwd, _spike_bwd)


def multistep_lif(x, v0=None, *, inv_tau=0.5, v_threshold: float = 1.0, v_reset: float = 0.0,
                  decay_input: bool = True, detach_reset: bool = True, alpha: float = 4.0, valid=None):
    """Spikes (T, ...) and the last membrane V_T (...) of LIF neurons driven by x (T, ...) from V_0 = v0
    (default V_reset). inv_tau: 1/τ (a float, or sigmoid(w) of a ParametricLIF: a scalar array, differentiated).
    τ = 2 gives 1/τ = 0.5 exactly, so x / τ and x·(1/τ) round alike (SpikingJelly divides by τ).
    valid: optional (T, ...) broadcastable bool; at a step where it is False the membrane is kept and no spike
    is emitted (streaming's padding frames).

    The backward pass is written by hand (`_lif`'s custom VJP): it keeps only the charged membranes H (T, ...)
    from the forward pass and rebuilds spikes and membranes from them, where autodiff of the scan would keep
    several (T, ...) arrays per layer (the training step's memory; tests hold it to autodiff of the plain
    recurrence)."""
    v0 = jnp.full(x.shape[1:], v_reset, x.dtype) if v0 is None else jnp.asarray(v0, x.dtype)
    if valid is not None:
        valid = jnp.asarray(valid, bool)
        valid = valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim))
    static = (float(v_threshold), float(v_reset), bool(decay_input), bool(detach_reset), float(alpha))
    if isinstance(inv_tau, (int, float)):
        return _lif(static + (float(inv_tau),), x, v0, None, valid)
    return _lif(static + (None,), x, v0, jnp.asarray(inv_tau, x.dtype), valid)


def _charge(v, x_t, k, v_reset, decay_input):
    return v + (x_t - (v - v_reset)) * k if decay_input else v - (v - v_reset) * k + x_t


def _lif_forward(static, x, v0, k_arr, valid):
    v_threshold, v_reset, decay_input, _, alpha, k_static = static
    k = k_static if k_arr is None else k_arr

    def step(v, inputs):
        x_t, ok = inputs
        h = _charge(v, x_t, k, v_reset, decay_input)
        s = spike(h - v_threshold, alpha)
        v_new = h * (1.0 - s) + v_reset * s
        if ok is not None:
            v_new, s = jnp.where(ok, v_new, v), s * ok
        return v_new, (s, h)

    v, (spikes, h) = jax.lax.scan(step, v0, (x, valid))
    return (spikes, v), h


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lif(static, x, v0, k_arr, valid):
    return _lif_forward(static, x, v0, k_arr, valid)[0]


def _lif_fwd(static, x, v0, k_arr, valid):
    out, h = _lif_forward(static, x, v0, k_arr, valid)
    return out, (h, v0, k_arr, valid)


def _lif_bwd(static, residuals, cotangents):
    v_threshold, v_reset, decay_input, detach_reset, alpha, k_static = static
    h, v0, k_arr, valid = residuals
    g_spikes, g_v_last = cotangents
    k = k_static if k_arr is None else k_arr
    s = (h - v_threshold >= 0).astype(h.dtype)
    fired = h * (1.0 - s) + v_reset * s
    if valid is not None:  # the membrane before each step, rebuilt from H (kept where a step is masked)
        def keep(v, inputs):
            f, ok = inputs
            v_new = jnp.where(ok, f, v)
            return v_new, v_new
        _, after = jax.lax.scan(keep, v0, (fired, valid))
    else:
        after = fired
    before = jnp.concatenate([v0[None], after[:-1]], axis=0)

    def step(g_v, inputs):
        h_t, s_t, v_prev, g_s, ok = inputs
        sig = jax.nn.sigmoid(alpha * (h_t - v_threshold))
        surrogate = alpha * sig * (1.0 - sig)
        g_new, g_keep = (g_v, 0.0) if ok is None else (g_v * ok, g_v * (1.0 - ok))
        g_s = g_s if ok is None else g_s * ok
        dv_dh = 1.0 - s_t if detach_reset else 1.0 - s_t + (v_reset - h_t) * surrogate
        g_h = g_s * surrogate + g_new * dv_dh
        g_x = g_h * k if decay_input else g_h
        # ∂H/∂(1/τ): x − (V − V_reset) = (H − V)/(1/τ) with decay_input, −(V − V_reset) without
        dh_dk = (h_t - v_prev) / k if decay_input else -(v_prev - v_reset)
        g_k = jnp.sum(g_h * dh_dk) if k_arr is not None else 0.0
        return g_keep + g_h * (1.0 - k), (g_x, g_k)

    okf = None if valid is None else valid.astype(h.dtype)
    g_v0, (g_x, g_k) = jax.lax.scan(step, g_v_last, (h, s, before, g_spikes, okf), reverse=True)
    g_k = None if k_arr is None else jnp.sum(g_k).reshape(k_arr.shape).astype(k_arr.dtype)
    return g_x, g_v0, g_k, None


_lif.defvjp(_lif_fwd, _lif_bwd)


__all__ = ["spike", "multistep_lif", "SpikeSum"]


class SpikeSum(nn.Module):
    """Σ of binary spikes over one axis (kept): the accumulate-only additions of spike-driven attention, a
    module of its own so that `eventlm.energy` counts them (one addition per spike, i.e. SOPs = the input's
    firing rate × its size). No parameters."""

    axis: int

    def __call__(self, spikes):
        return jnp.sum(spikes, axis=self.axis, keepdims=True)
