"""CPU-only handling in ``fsjax.ops.conv`` (docs/performance.md, "Recomputed activations")."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsjax import ops


def test_conv_input_materialized_only_on_cpu():
    """``ops.conv`` routes its input through an identity conditional (on ``x[0] == x[0]``) on
    the CPU only; for a GPU only the constant platform switch of ``lax.platform_dependent``
    is left, which XLA folds away."""
    x, k = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4))
    for plat, has_compare in (("cuda", False), ("cpu", True)):
        text = jax.jit(lambda x, k: ops.conv(x, k)).trace(x, k).lower(
            lowering_platforms=(plat,)).as_text()
        assert ("stablehlo.compare" in text) == has_compare, plat
    np.testing.assert_array_equal(jax.jit(ops.conv)(x, k), jax.lax.conv_general_dilated(
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))


def test_compiler_options_cpu_only(monkeypatch):
    """The CPU compiler options are given for the CPU only, and a jaxlib that rejects them
    gets none (with a warning) instead of a program that cannot compile."""
    assert ops.compiler_options("cpu") == ops.CPU_COMPILER_OPTIONS
    assert ops.compiler_options("gpu") == {} and ops.compiler_options("tpu") == {}
    x = jnp.linspace(-1, 1, 2 * 8 * 8 * 4).reshape(2, 8, 8, 4)
    k = jnp.linspace(-1, 1, 3 * 3 * 4 * 5).reshape(3, 3, 4, 5)
    f = lambda x, k: jax.nn.relu(ops.conv(x, k)).sum((1, 2))
    np.testing.assert_allclose(jax.jit(f, compiler_options=ops.compiler_options())(x, k),
                               jax.jit(f)(x, k), rtol=1e-5, atol=1e-5)
    cpu = __import__("fsjax.ops.cpu", fromlist=["_supported"])
    monkeypatch.setattr(cpu, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option": "1"})
    cpu._supported.cache_clear()
    try:
        with pytest.warns(UserWarning, match="rejects the CPU compiler options"):
            assert ops.compiler_options("cpu") == {}
    finally:
        cpu._supported.cache_clear()


def _np_pointwise(x, k, strides):
    """``y[..., o] = sum_c x[..., ::s, c] k[0.., c, o]`` in float64."""
    x = np.asarray(x, np.float64)
    lead = x.ndim - len(strides) - 1
    x = x[(slice(None),) * lead + tuple(slice(None, None, s) for s in strides)]
    return x @ np.asarray(k, np.float64).reshape(k.shape[-2:])


@pytest.mark.parametrize("x_shape,k_shape,strides,padding", [
    ((3, 8, 8, 5), (1, 1, 5, 4), 1, "SAME"),
    ((3, 9, 7, 5), (1, 1, 5, 4), 2, "SAME"),       # DARTS's FactorizedReduce: odd sizes, ceil
    ((3, 9, 7, 5), (1, 1, 5, 4), (2, 3), "VALID"),
    ((2, 6, 6, 5), (1, 1, 5, 2), 1, [(0, 0), (0, 0)]),
    ((2, 2, 6, 6, 5), (1, 1, 5, 2), 1, "SAME"),    # two batch dims, flattened as Flax does
    ((6, 6, 5), (1, 1, 5, 2), 1, "SAME"),          # unbatched
    ((2, 7, 5), (1, 5, 3), 2, "VALID"),            # 1-D
    ((2, 4, 5, 6, 3), (1, 1, 1, 3, 2), 2, "SAME"),  # 3-D
])
def test_pointwise_conv_is_a_matrix_product_with_the_same_values_and_gradients(
        x_shape, k_shape, strides, padding):
    """1x1 convs take the CPU form ``pointwise_dot``: the NumPy product's values, and the
    gradients of XLA's conv (forms off)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=x_shape), jnp.float32)
    k = jnp.asarray(np.random.default_rng(1).normal(size=k_shape), jnp.float32)
    f = lambda x, k: ops.conv(x, k, strides=strides, padding=padding)
    rank = len(k_shape) - 2
    s = (strides,) * rank if isinstance(strides, int) else strides
    np.testing.assert_allclose(jax.jit(f)(x, k), _np_pointwise(x, k, s), rtol=1e-5, atol=1e-5)
    loss = lambda x, k: jnp.sum(jnp.sin(f(x, k)))
    got = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, k)
    with ops.cpu_forms():
        want = jax.jit(jax.grad(lambda x, k: loss(x, k), argnums=(0, 1)))(x, k)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_pointwise_form_only_for_unpadded_ungrouped_1x1_convs():
    x = jnp.ones((2, 6, 6, 4))
    jaxpr = lambda f: str(jax.make_jaxpr(f)(x))
    assert "dot_general" in jaxpr(lambda t: ops.conv(t, jnp.ones((1, 1, 4, 3))))
    for f in (lambda t: ops.conv(t, jnp.ones((1, 1, 4, 3)), padding=1),          # padded
              lambda t: ops.conv(t, jnp.ones((1, 1, 2, 4)), feature_group_count=2),
              lambda t: ops.conv(t, jnp.ones((1, 1, 4, 3)), input_dilation=2, padding=0),
              lambda t: ops.conv(t, jnp.ones((3, 3, 4, 3)))):
        assert "dot_general" not in jaxpr(f)
    with ops.inference_trace():  # exports keep XLA's conv
        assert "dot_general" not in jaxpr(lambda t: ops.conv(t, jnp.ones((1, 1, 4, 3))))
