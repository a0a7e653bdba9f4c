"""``fsjax.ops`` BatchNorm math against NumPy and its gradient against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsjax import ops
from fsjax.ops.norm import channel_sums

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


def _assert_finite_differences(grads, inputs, w, seed):
    """``grads`` of ``sum(tanh(bn(x)) * w)`` against central differences of the float64
    NumPy loss, at 6 random entries of each input."""
    rng = np.random.default_rng(seed)
    h = 1e-4
    for i, (arg, g) in enumerate(zip(inputs, grads, strict=True)):
        for _ in range(6):
            idx = tuple(rng.integers(0, n) for n in arg.shape)
            args = [a.astype(np.float64) for a in inputs]
            args[i][idx] += h
            up = _loss_np(*args, w)
            args[i][idx] -= 2 * h
            down = _loss_np(*args, w)
            np.testing.assert_allclose(g[idx], (up - down) / (2 * h), rtol=2e-3, atol=2e-4)


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
    _assert_finite_differences(grads, (x, scale, bias), w, seed=1)


def test_cpu_forms_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown CPU form.*valid"):
        with ops.cpu_forms("bn_dot"):
            pass


@pytest.mark.parametrize("forms", [(), ("bn_sums",)], ids=["default", "bn_sums"])
def test_batch_norm_train_matches_numpy_and_finite_differences(forms):
    """Both formulations (the CPU one has its own gradient) against NumPy in float64."""
    x, scale, bias, w = _inputs()

    def loss(x, scale, bias):
        with ops.cpu_forms(*forms):
            y, _, _ = ops.batch_norm_train(x, scale, bias, EPS)
        return (jnp.tanh(y) * w).sum()

    with ops.cpu_forms(*forms):
        y, mean, var = jax.jit(lambda *a: ops.batch_norm_train(*a, epsilon=EPS))(x, scale, bias)
    ref, rmean, rvar = _np_bn(x, scale, bias)
    np.testing.assert_allclose(y, ref, atol=2e-5)
    np.testing.assert_allclose(mean, rmean, rtol=1e-6)
    np.testing.assert_allclose(var, rvar, rtol=1e-5)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, scale, bias)
    _assert_finite_differences(grads, (x, scale, bias), w, seed=2)


def test_bn_sums_gradient_equals_autodiff_through_statistics_and_without_affine():
    """The custom gradient also carries the statistics' own cotangents (a loss that reads
    the batch mean and variance) and handles no scale / no bias; bfloat16 stays bfloat16."""
    x, scale, bias, w = _inputs((3, 4, 2, 5))

    def loss(forms, x, *affine):
        with ops.cpu_forms(*forms):
            y, mean, var = ops.batch_norm_train(x, *affine, epsilon=EPS)
        return (jnp.sin(y) * w).sum() + (mean * 0.7).sum() + jnp.cos(var).sum()

    for affine in [(scale, bias), (None, bias), (None, None)]:
        want = jax.jit(jax.grad(lambda *a: loss((), *a), argnums=(0, 1, 2)))(x, *affine)
        got = jax.jit(jax.grad(lambda *a: loss(("bn_sums",), *a), argnums=(0, 1, 2)))(
            x, *affine)
        assert len(jax.tree.leaves(got)) == 1 + sum(a is not None for a in affine)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with ops.cpu_forms("bn_sums"):
        yb, mb, _ = jax.jit(ops.batch_norm_train)(jnp.asarray(x, jnp.bfloat16))
    assert yb.dtype == jnp.bfloat16 and mb.dtype == jnp.float32


@pytest.mark.parametrize("shape", [(1024, 1024, 3), (7, 31, 5), (97, 2)])
def test_channel_sums_accuracy_does_not_grow_with_the_rows(shape):
    """Split into sqrt-sized row blocks, the float32 sums stay near XLA's own reduction's
    error; one matrix-vector product over all rows was 1.3e-5 relative off at 2^17 rows
    already. An odd count (217 = 7 x 31) splits too; a prime one (97) takes one product."""
    a = (np.random.default_rng(0).normal(size=shape) + 3).astype(np.float32)
    want = a.astype(np.float64).reshape(-1, shape[-1]).sum(0)
    got = np.asarray(jax.jit(channel_sums)(a), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_bn_sums_gradient_precision_at_a_training_batch():
    """At 256x32x32 positions (a training batch's BatchNorm) the CPU form's gradient is as
    precise as autodiff of the default form against float64: about 1e-6 of the largest
    entry (one product over all rows was 3e-5 off, 100x the default form's error)."""
    x, scale, bias, w = _inputs((256, 32, 32, 4))

    def grads(forms):
        def loss(x, scale, bias):
            with ops.cpu_forms(*forms):
                y, _, _ = ops.batch_norm_train(x, scale, bias, EPS)
            return (jnp.tanh(y) * w).sum()
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, scale, bias)

    # float64 reference: the textbook BatchNorm gradient of sum(tanh(y) w)
    y, mean, var = _np_bn(x, scale, bias)
    r, m = 1 / np.sqrt(var + EPS), x.size // x.shape[-1]
    xhat = (x - mean) * r
    dy = w * (1 - np.tanh(y) ** 2)
    s_dy, s_dyx = dy.sum((0, 1, 2)), (dy * xhat).sum((0, 1, 2))
    want = (scale * r * (dy - (s_dy + xhat * s_dyx) / m), s_dyx, s_dy)
    for forms in [(), ("bn_sums",)]:
        for g, ref in zip(grads(forms), want, strict=True):
            err = np.abs(np.asarray(g, np.float64) - ref).max() / np.abs(ref).max()
            assert err < 3e-6, (forms, err)
