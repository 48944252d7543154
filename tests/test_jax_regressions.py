"""Guards against a known XLA CPU miscompile that would silently corrupt pooled EventSSM outputs.

jaxlib 0.10.2 on CPU miscompiles two fused window reductions sum(x * w) in one jitted program when the
batch is 1 (values up to 1e37); 0.10.1 is correct, so constraints.txt pins it and setup.py excludes
0.10.2. This test fails loudly if an install ever picks the broken compiler again.
"""

import numpy as np
import jax
import jax.numpy as jnp


def _pool(x, w, stride=16):
    B, L, F = x.shape
    return jnp.sum(x.reshape(B, -1, stride, F) * w.reshape(B, -1, stride)[..., None], axis=2)


def test_two_fused_window_reductions_match_float64_numpy_at_batch_one():
    rng = np.random.default_rng(0)
    u, x = (rng.normal(size=(1, 512, 128)).astype(np.float32) for _ in range(2))
    w = rng.uniform(0.5, 1.0, (1, 512)).astype(np.float32)
    got = np.asarray(jax.jit(lambda u, x, w: _pool(u, w) + _pool(x, w))(u, x, w))
    ref = ((u.astype(np.float64) + x) .reshape(1, 32, 16, 128) * w.reshape(1, 32, 16, 1)).sum(axis=2)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
