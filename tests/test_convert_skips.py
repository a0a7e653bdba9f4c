"""fsjax.nn.convert never raises on a conv it cannot represent and never changes what a model
computes: such layers are left as they are and listed with the reason."""

import jax
import jax.numpy as jnp
from flax import nnx

import fsjax.nn as fnn


class Mixed(nnx.Module):
    def __init__(self, r):
        self.a = nnx.Conv(3, 8, (3, 3), rngs=r)
        self.one_d = nnx.Conv(8, 8, 3, rngs=r)  # an int kernel_size is 1-D in Flax
        self.three_d = nnx.Conv(8, 8, (3, 3, 3), rngs=r)
        self.masked = nnx.Conv(8, 8, (3, 3), mask=jnp.ones((3, 3, 8, 8)).at[0].set(0), rngs=r)
        self.dilated_in = nnx.Conv(8, 8, (3, 3), input_dilation=2, rngs=r)
        self.reflect = nnx.Conv(8, 8, (3, 3), padding="REFLECT", rngs=r)
        self.grouped = nnx.Conv(8, 8, (3, 3), feature_group_count=2, rngs=r)
        self.b = nnx.Conv(8, 16, (3, 3), strides=None, rngs=r)

    def __call__(self, x):
        x = self.masked(self.a(x))
        x = self.reflect(x)  # (Flax itself cannot run input_dilation with SAME padding)
        return self.b(self.grouped(x))


def test_convert_skips_with_reasons_and_keeps_outputs():
    m = Mixed(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 9, 9, 3))
    want = m(x)
    out = fnn.convert(m, "fs", compression=1.0, min_params=0)
    assert list(out) == ["a", "b"]
    reasons = dict(out.skipped)
    assert set(reasons) == {"one_d", "three_d", "masked", "dilated_in", "reflect", "grouped"}
    assert "not 2-D" in reasons["one_d"] and "not 2-D" in reasons["three_d"]
    assert "mask" in reasons["masked"] and "input_dilation=2" in reasons["dilated_in"]
    assert "REFLECT" in reasons["reflect"] and "feature_group_count=2" in reasons["grouped"]
    assert isinstance(m.masked, nnx.Conv) and isinstance(m.a, fnn.FSConv)
    assert jnp.array_equal(m(x), want)  # rho = 1 with projection: bit for bit


def test_convert_ks_reasons():
    m = Mixed(nnx.Rngs(0))
    out = fnn.convert(m, "wks", group_size=3, min_params=0)
    reasons = dict(out.skipped)
    assert "not a multiple of group_size 3" in reasons["b"]
    assert "feature_group_count=2" in reasons["grouped"]
