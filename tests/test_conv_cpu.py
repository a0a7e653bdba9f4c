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
