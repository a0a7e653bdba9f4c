"""``fsjax.ops`` BatchNorm math against NumPy, its gradient against finite differences, and
its CPU form (sums as dot products) against the form other backends lower."""

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


@pytest.mark.parametrize("forms", [ops.CPU_FORMS, ()])
def test_batch_norm_matches_numpy(forms):
    x, scale, bias, _ = _inputs()
    with ops.cpu_forms(*forms):
        mean, var = jax.jit(ops.batch_stats)(x)
        y = jax.jit(lambda *a: ops.batch_norm(*a, EPS))(x, mean, var, scale, bias)
        y0 = jax.jit(lambda *a: ops.batch_norm(*a, epsilon=EPS))(x, mean, var)
    ref, rmean, rvar = _np_bn(x, scale, bias)
    np.testing.assert_allclose(mean, rmean, rtol=1e-6)
    np.testing.assert_allclose(var, rvar, rtol=1e-5)
    np.testing.assert_allclose(y, ref, atol=2e-5)
    np.testing.assert_allclose(y0, (ref - bias) / scale, atol=2e-5)


@pytest.mark.parametrize("forms", [ops.CPU_FORMS, ()])
def test_batch_norm_gradient_finite_differences(forms):
    x, scale, bias, w = _inputs()
    with ops.cpu_forms(*forms):
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


def test_cpu_form_equals_default_form():
    """Training-mode forward and gradient of both forms agree to float32 rounding, at a
    ResNet-like size."""
    x, scale, bias, w = _inputs((16, 8, 8, 32))
    out = {}
    for forms in (ops.CPU_FORMS, ()):
        with ops.cpu_forms(*forms):
            f = jax.jit(jax.value_and_grad(_loss, argnums=(0, 1, 2)))
            out[forms] = f(x, scale, bias, w)
    for a, b in zip(jax.tree.leaves(out[ops.CPU_FORMS]), jax.tree.leaves(out[()]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_dot_sums_only_in_the_cpu_program():
    """Only the CPU lowering has the dot products; a GPU program and an inference trace keep
    the plain reductions."""
    x, scale, bias, w = _inputs()
    f = jax.jit(jax.grad(_loss, argnums=(0, 1, 2)))
    for plat, dots in (("cuda", False), ("cpu", True)):
        text = f.trace(x, scale, bias, w).lower(lowering_platforms=(plat,)).as_text()
        assert ("stablehlo.dot_general" in text) == dots, plat
    with ops.inference_trace():
        text = jax.jit(_loss).trace(x, scale, bias, w).lower().as_text()
    assert "dot_general" not in text and "platform_index" not in text


def test_cpu_forms_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown CPU form.*valid"):
        with ops.cpu_forms("bn_dot"):
            pass
