"""CPU-only handling in ``fsjax.ops.conv`` (docs/performance.md, "Recomputed activations")."""

import jax
import jax.numpy as jnp
import numpy as np

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
