"""``fsjax.ops`` BatchNorm math against NumPy and its gradient against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsjax import ops

EPS = 1e-5


def _np_bn(x, scale, bias):
    x = x.astype(np.float64)
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    return (x - mean) / np.sqrt(var + EPS) * scale + bias, mean, var


def _loss_np(x, scale, bias, w):
    return float((np.tanh(_np_bn(x, scale, bias)[0]) * w).sum())


def _loss(x, scale, bias, w):
    mean, var = ops.batch_stats(x)
    return (jnp.tanh(ops.batch_norm(x, mean, var, scale, bias, EPS)) * w).sum()


def _inputs(shape=(4, 5, 3, 6)):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=shape) * 2 + 3).astype(np.float32)
    c = shape[-1]
    return (x, rng.uniform(0.5, 2, c).astype(np.float32), rng.normal(size=c).astype(np.float32),
            rng.normal(size=shape).astype(np.float32))


def test_batch_norm_matches_numpy():
    x, scale, bias, _ = _inputs()
    mean, var = jax.jit(ops.batch_stats)(x)
    y = jax.jit(lambda *a: ops.batch_norm(*a, EPS))(x, mean, var, scale, bias)
    y0 = jax.jit(lambda *a: ops.batch_norm(*a, epsilon=EPS))(x, mean, var)
    ref, rmean, rvar = _np_bn(x, scale, bias)
    np.testing.assert_allclose(mean, rmean, rtol=1e-6)
    np.testing.assert_allclose(var, rvar, rtol=1e-5)
    np.testing.assert_allclose(y, ref, atol=2e-5)
    np.testing.assert_allclose(y0, (ref - bias) / scale, atol=2e-5)


def test_batch_norm_gradient_finite_differences():
    x, scale, bias, w = _inputs()
    grads = jax.jit(jax.grad(_loss, argnums=(0, 1, 2)))(x, scale, bias, w)
    rng = np.random.default_rng(1)
    h = 1e-4
    for i, (arg, g) in enumerate(zip((x, scale, bias), grads, strict=True)):
        for _ in range(6):
            idx = tuple(rng.integers(0, n) for n in arg.shape)
            args = [a.astype(np.float64) for a in (x, scale, bias)]
            args[i][idx] += h
            up = _loss_np(*args, w)
            args[i][idx] -= 2 * h
            down = _loss_np(*args, w)
            np.testing.assert_allclose(g[idx], (up - down) / (2 * h), rtol=2e-3, atol=2e-4)


def test_cpu_forms_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown CPU form.*valid"):
        with ops.cpu_forms("bn_dot"):
            pass
