"""NNX / Linen layers: dense equivalence, front-end equivalence, converter, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

import fsjax.linen as fl
import fsjax.nn as fnn

X = jax.random.normal(jax.random.key(0), (2, 9, 9, 8))

GEOMETRIES = [
    dict(padding="SAME"),
    dict(padding="VALID", strides=2),
    dict(padding="CIRCULAR", kernel_dilation=2),
    dict(padding=1, strides=(2, 1)),
    dict(padding=((2, 0), (1, 1)), kernel_dilation=(1, 2)),
    dict(padding="SAME", feature_group_count=2),
    dict(padding="SAME_LOWER", strides=2),
]


def _ref(layer, geo):
    ref = nnx.Conv(8, 6, (3, 3), rngs=nnx.Rngs(0), **geo)
    ref.kernel[...] = layer.dense_kernel()
    ref.bias[...] = layer.bias[...] + 0.1
    layer.bias[...] = ref.bias[...]
    return ref


@pytest.mark.parametrize("geo", GEOMETRIES)
@pytest.mark.parametrize("cls", [fnn.Conv, fnn.FSConv, fnn.DFSConv])
def test_compression_one_matches_nnx_conv(cls, geo):
    kw = {} if cls is fnn.Conv else dict(compression=1.0)
    layer = cls(8, 6, (3, 3), rngs=nnx.Rngs(1), **kw, **geo)
    ref = _ref(layer, geo)
    np.testing.assert_allclose(layer(X), ref(X), rtol=1e-5, atol=1e-5)
    lin = linen.Conv(6, (3, 3), **geo)
    out = lin.apply({"params": {"kernel": layer.dense_kernel(), "bias": layer.bias[...]}}, X)
    np.testing.assert_allclose(layer(X), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("geo", GEOMETRIES[:5])
@pytest.mark.parametrize("weighted,mode", [(False, "input"), (True, "input"), (True, "pair")])
def test_ks_matches_dense_kernel(geo, weighted, mode):
    layer = fnn.KSConv(8, 6, (3, 3), groups=4, weighted=weighted, alpha_mode=mode, rngs=nnx.Rngs(2),
                       **geo)
    if weighted:
        layer.alpha[...] = jax.random.normal(jax.random.key(3), layer.alpha.shape)
    ref = _ref(layer, geo)
    np.testing.assert_allclose(layer(X), ref(X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("nnx_cls,linen_cls,kw", [
    (fnn.FSConv, fl.FSConv, dict(compression=3.0)),
    (fnn.DFSConv, fl.DFSConv, dict(compression=2.0, location_mode="sigmoid")),
    (fnn.KSConv, fl.KSConv, dict(groups=2, weighted=True)),
    (fnn.KSConv, fl.KSConv, dict(groups=4, weighted=True, alpha_mode="pair")),
])
def test_nnx_linen_equivalence(nnx_cls, linen_cls, kw):
    a = nnx_cls(8, 5, (3, 3), strides=2, padding="CIRCULAR", rngs=nnx.Rngs(0), **kw)
    b = linen_cls(5, (3, 3), strides=2, padding="CIRCULAR", **kw)
    params = b.init(jax.random.key(1), X)["params"]
    nnx_params = {k: v[...] for k, v in nnx.state(a, nnx.Param).items()}
    assert set(params) == set(nnx_params)
    for k in params:
        assert params[k].shape == nnx_params[k].shape, k
    np.testing.assert_allclose(b.apply({"params": nnx_params}, X), a(X), rtol=1e-6, atol=1e-6)


def test_init_variance_matches_dense():
    layer = fnn.FSConv(256, 256, (3, 3), compression=4.0, init_scale=2.0, rngs=nnx.Rngs(0))
    k = layer.dense_kernel()
    np.testing.assert_allclose(float(k.std()), (2.0 / (9 * 256)) ** 0.5, rtol=0.05)


def test_dfs_round_to_fs_preserves_outputs():
    layer = fnn.DFSConv(8, 6, (3, 3), compression=2.0, rngs=nnx.Rngs(0))
    layer.locations[...] = layer.locations[...] + jnp.arange(6, dtype=jnp.float32)  # integral
    fs = layer.to_fs()
    assert isinstance(fs, fnn.FSConv)
    np.testing.assert_array_equal(fs(X), layer(X))
    layer.locations[...] = layer.locations[...] + 0.3
    assert list(layer.rounded_offsets()) == list(fs.spec.offsets)


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.c1 = nnx.Conv(8, 16, (3, 3), rngs=rngs)
        self.blocks = nnx.List([nnx.Conv(16, 16, (3, 3), strides=2, rngs=rngs),
                                nnx.Conv(16, 16, (1, 1), feature_group_count=16, rngs=rngs)])

    def __call__(self, x):
        x = self.c1(x)
        for b in self.blocks:
            x = b(x)
        return x


@pytest.mark.parametrize("kind", ["fs", "dfs", "ks", "wks"])
def test_converter_round_trip(kind):
    net = _Net(nnx.Rngs(0))
    want = net(X)
    opts = dict(compression=1.0) if kind in ("fs", "dfs") else dict(group_size=1)
    done = fnn.convert(net, kind, min_params=0, **opts)
    assert sorted(done) == ["blocks.0", "c1"]  # the depthwise conv is left alone
    np.testing.assert_allclose(net(X), want, rtol=1e-5, atol=1e-5)
    assert isinstance(net.blocks[1], nnx.Conv)


def test_converter_compresses_and_projects():
    net = _Net(nnx.Rngs(0))
    fnn.convert(net, "fs", compression=4.0, predicate=lambda p, c: p == ("c1",))
    assert isinstance(net.c1, fnn.FSConv) and net.c1.spec.length == 9 * 8 * 16 // 4
    assert isinstance(net.blocks[0], nnx.Conv)


@pytest.mark.parametrize("make,msg", [
    (lambda: fnn.FSConv(8, 4, (3, 3), compression=0, rngs=nnx.Rngs(0)), "compression"),
    (lambda: fnn.FSConv(8, 4, (3, 3), compression=-2, rngs=nnx.Rngs(0)), "compression"),
    (lambda: fnn.KSConv(8, 4, (3, 3), groups=3, rngs=nnx.Rngs(0)), "not divisible by groups 3"),
    (lambda: fnn.KSConv(8, 4, (3, 3), groups=2, feature_group_count=4, rngs=nnx.Rngs(0)),
     "feature_group_count"),
    (lambda: fnn.Conv(8, 4, (3, 3), feature_group_count=3, rngs=nnx.Rngs(0)), "feature_group_count"),
    (lambda: fnn.Conv(8, 4, (3, 3), padding="BOGUS", rngs=nnx.Rngs(0)), "padding"),
    (lambda: fnn.Conv(8, 4, (3, 0), rngs=nnx.Rngs(0)), "kernel_size"),
    (lambda: fnn.DFSConv(8, 4, (3, 3), location_mode="tanh", rngs=nnx.Rngs(0)), "location_mode"),
    (lambda: fnn.FSConv(8, 4, (3, 3), name="blk.conv", compression=0.2, rngs=nnx.Rngs(0)),
     "blk.conv"),
])
def test_errors_name_the_bad_value(make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


def test_wrong_input_channels():
    layer = fnn.FSConv(8, 4, (3, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expected 8 input channels"):
        layer(jnp.zeros((1, 5, 5, 3)))
