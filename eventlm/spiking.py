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
    (default V_reset). inv_tau: 1/τ (a float, or sigmoid(w) of a ParametricLIF, broadcast to the neurons).
    τ = 2 gives 1/τ = 0.5 exactly, so x / τ and x·(1/τ) round alike (SpikingJelly divides by τ).
    valid: optional (T, ...) broadcastable bool; at a step where it is False the membrane is kept and no spike
    is emitted (streaming's padding frames)."""
    v0 = jnp.full(x.shape[1:], v_reset, x.dtype) if v0 is None else v0

    def step(v, x_t):
        if decay_input:
            h = v + (x_t - (v - v_reset)) * inv_tau
        else:
            h = v - (v - v_reset) * inv_tau + x_t
        s = spike(h - v_threshold, alpha)
        s_reset = jax.lax.stop_gradient(s) if detach_reset else s
        return h * (1.0 - s_reset) + v_reset * s_reset, s

    if valid is None:
        v, spikes = jax.lax.scan(step, v0, x)
        return spikes, v

    def masked_step(v, inputs):
        x_t, ok = inputs
        v_new, s = step(v, x_t)
        return jnp.where(ok, v_new, v), s * ok

    valid = jnp.asarray(valid)
    valid = valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim))
    v, spikes = jax.lax.scan(masked_step, v0, (x, valid))
    return spikes, v


__all__ = ["spike", "multistep_lif"]
