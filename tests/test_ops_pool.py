"""Max pooling's CPU forms (fsjax.ops.max_pool_blocks, 'pool_blocks'; fsjax.ops.max_pool_windows,
'pool_windows') against slow NumPy references, and the models' pooling with and without
them."""

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


def _windows_ref(x, window, strides, pads, w):
    """Max pooling with -inf padding by a loop, and the gradient of ``sum(out * w)``: each
    window's share split evenly between its equal maxima."""
    (wh, ww), (sh, sw) = window, strides
    xp = np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-np.inf)
    oh, ow = (xp.shape[1] - wh) // sh + 1, (xp.shape[2] - ww) // sw + 1
    out = np.empty((x.shape[0], oh, ow, x.shape[3]), x.dtype)
    gp = np.zeros(xp.shape)
    for b, i, j, k in np.ndindex(out.shape):
        blk = xp[b, i * sh:i * sh + wh, j * sw:j * sw + ww, k]
        out[b, i, j, k] = blk.max()
        hits = np.argwhere(blk == blk.max())
        for a, d in hits:
            gp[b, i * sh + a, j * sw + d, k] += w[b, i, j, k] / len(hits)
    (top, _), (left, _) = pads
    return out, gp[:, top:top + x.shape[1], left:left + x.shape[2]]


@pytest.mark.parametrize("window,strides,padding", [
    ((3, 3), (1, 1), "SAME"),           # DARTS's max_pool_3x3, normal cell
    ((3, 3), (2, 2), "SAME"),           # ... reduction cell; ResNet's ImageNet stem
    ((3, 2), (2, 3), ((1, 0), (2, 1))),
    ((2, 2), (1, 1), "VALID"),
    ((1, 1), (2, 2), "VALID"),          # strides larger than the window
])
def test_max_pool_windows_matches_numpy_and_flax(window, strides, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 8, 3)).astype(np.float32)
    x[0, :3, :3, 0] = 1.5  # ties inside windows
    pads = (jax.lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
            if isinstance(padding, str) else padding)
    got = ops.max_pool_windows(jnp.asarray(x), window, strides, padding)
    w = rng.standard_normal(got.shape).astype(np.float32)
    want, want_grad = _windows_ref(x, window, strides, pads, w)
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(
        nnx.max_pool(jnp.asarray(x), window, strides, padding)))
    grad = jax.jit(jax.grad(lambda t: (ops.max_pool_windows(t, window, strides, padding)
                                       * w).sum()))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-6, atol=1e-6)


def test_max_pool_windows_bad_window_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        ops.max_pool_windows(jnp.ones((1, 2, 2, 1)), (3, 3), (1, 1), "VALID")
    with pytest.raises(ValueError, match="positive"):
        ops.max_pool_windows(jnp.ones((1, 4, 4, 1)), (0, 3), (1, 1), "SAME")


GENOTYPE = {"normal": [["max_pool_3x3", 0], ["sep_conv_3x3", 1], ["dil_conv_3x3", 0],
                       ["max_pool_3x3", 2], ["skip_connect", 0], ["sep_conv_3x3", 3],
                       ["max_pool_3x3", 1], ["sep_conv_3x3", 4]],
            "reduce": [["max_pool_3x3", 0], ["skip_connect", 1], ["max_pool_3x3", 1],
                       ["max_pool_3x3", 2], ["dil_conv_3x3", 0], ["max_pool_3x3", 3],
                       ["max_pool_3x3", 1], ["sep_conv_3x3", 4]],
            "concat": [2, 3, 4, 5]}


DARTS_KW = dict(genotype=GENOTYPE, cells=3, channels=4, auxiliary=False, drop_path=0.0)


@pytest.mark.parametrize("name,kw,form", [
    ("airbench", dict(widths=(8, 8, 8)), "pool_blocks"),
    ("vgg16", dict(widths=(4,) * 13), "pool_blocks"),
    ("darts_eval", DARTS_KW, "pool_windows"),
    ("darts_eval", DARTS_KW, "pointwise_dot"),
])
def test_models_same_with_and_without_the_cpu_form(name, kw, form):
    """The form on and off, the other forms on (VGG-16's last BatchNorms see 2 values per
    channel here, where any change in summation order is amplified: bn_sums is compared
    with its default in test_ops_norm instead)."""
    model = models.create(name, **kw)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 32, 32, 3)), jnp.float32)

    graphdef, state = nnx.split(model)

    def loss(st, t):
        return (nnx.merge(graphdef, st)(t) ** 2).sum()

    outs = []
    for forms in (ops.CPU_FORMS, [f for f in ops.CPU_FORMS if f != form]):
        with ops.cpu_forms(*forms):
            val, grads = jax.jit(jax.value_and_grad(loss))(state, x)
            outs.append((val, jax.tree.leaves(grads)))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-5)
    # float rounding, on each leaf's scale (1e-4: on an AVX2 CPU pointwise_dot moved a DARTS
    # gradient leaf by 3.4e-5 where the earlier CI machine stayed under 1e-5; a wrong form is
    # off by the gradient's own size)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(b).max())))


def test_pool_layer_is_flax_pool_outside_the_cpu():
    x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
    with ops.inference_trace():
        jaxpr = str(jax.make_jaxpr(lambda t: max_pool(t, (2, 2)))(x))
    assert "reduce_window_max" in jaxpr and "platform_index" not in jaxpr
