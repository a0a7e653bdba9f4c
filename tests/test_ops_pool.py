"""Non-overlapping max pooling (fsjax.ops.max_pool_blocks, the CPU form 'pool_blocks')
against slow NumPy references, and the models' pooling with and without the CPU form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fsjax import models, ops
from fsjax.models.layers import max_pool


def _pool_ref(x, wh, ww):
    n, h, w, c = x.shape
    out = np.empty((n, h // wh, w // ww, c), x.dtype)
    grad = np.zeros_like(x)  # gradient of out.sum(): 1 at each block's (unique) maximum
    for b in range(n):
        for i in range(h // wh):
            for j in range(w // ww):
                for k in range(c):
                    blk = x[b, i * wh:(i + 1) * wh, j * ww:(j + 1) * ww, k]
                    out[b, i, j, k] = blk.max()
                    a, d = np.unravel_index(np.argmax(blk), blk.shape)
                    grad[b, i * wh + a, j * ww + d, k] = 1.0
    return out, grad


@pytest.mark.parametrize("shape,window", [((2, 8, 8, 3), (2, 2)), ((1, 7, 9, 2), (3, 3)),
                                          ((3, 4, 6, 1), (2, 3)), ((1, 4, 4, 5), (3, 3))])
def test_max_pool_blocks_matches_numpy(shape, window):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want, want_grad = _pool_ref(x, *window)
    got = ops.max_pool_blocks(jnp.asarray(x), window)
    np.testing.assert_array_equal(np.asarray(got), want)
    grad = jax.grad(lambda t: ops.max_pool_blocks(t, window).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(grad), want_grad)
    flax_out = nnx.max_pool(jnp.asarray(x), window_shape=window, strides=window)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(flax_out))


def test_ties_split_the_gradient_evenly():
    x = jnp.ones((1, 2, 2, 1))
    g = jax.grad(lambda t: ops.max_pool_blocks(t, (2, 2)).sum())(x)
    np.testing.assert_allclose(np.asarray(g), 0.25)


def test_window_larger_than_input_is_an_error():
    with pytest.raises(ValueError, match="window"):
        ops.max_pool_blocks(jnp.ones((1, 2, 2, 1)), (3, 3))


@pytest.mark.parametrize("name,kw", [("airbench", dict(widths=(8, 8, 8))),
                                     ("vgg16", dict(widths=(4,) * 13))])
def test_models_same_with_and_without_the_cpu_form(name, kw):
    """pool_blocks on and off, the other forms on (VGG-16's last BatchNorms see 2 values per
    channel here, where any change in summation order is amplified: bn_sums is compared
    with its default in test_ops_norm instead)."""
    model = models.create(name, **kw)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 32, 32, 3)), jnp.float32)

    graphdef, state = nnx.split(model)

    def loss(st, t):
        return (nnx.merge(graphdef, st)(t) ** 2).sum()

    outs = []
    for forms in (ops.CPU_FORMS, [f for f in ops.CPU_FORMS if f != "pool_blocks"]):
        with ops.cpu_forms(*forms):
            val, grads = jax.jit(jax.value_and_grad(loss))(state, x)
            outs.append((val, jax.tree.leaves(grads)))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-5)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_pool_layer_is_flax_pool_outside_the_cpu():
    x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
    with ops.inference_trace():
        jaxpr = str(jax.make_jaxpr(lambda t: max_pool(t, (2, 2)))(x))
    assert "reduce_window_max" in jaxpr and "platform_index" not in jaxpr
