"""fsjax.nn.convert carries every Flax argument over, computes what the model computed at
compression 1, and never raises on a conv it cannot represent (it lists it with the reason)."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import fsjax.nn as fnn


class Odd(nnx.Conv):
    """A user's conv whose call fsjax cannot know."""

    def __call__(self, x):
        return super().__call__(x) * 2


class Mixed(nnx.Module):
    def __init__(self, r):
        self.a = nnx.Conv(3, 8, (3, 3), rngs=r)
        self.masked = nnx.Conv(8, 8, (3, 3), mask=jnp.ones((3, 3, 8, 8)).at[0].set(0), rngs=r)
        self.dilated_in = nnx.Conv(8, 8, (3, 3), input_dilation=2, padding=(1, 2), rngs=r)
        self.reflect = nnx.Conv(8, 8, (3, 3), padding="REFLECT", kernel_dilation=2, rngs=r)
        self.grouped = nnx.Conv(8, 8, (3, 3), feature_group_count=2, rngs=r)
        self.b = nnx.Conv(8, 16, (3, 3), strides=None, precision="highest", rngs=r)
        self.odd = Odd(16, 16, (1, 1), rngs=r)
        self.one_d = nnx.Conv(4, 8, 3, padding="CAUSAL", rngs=r)  # an int kernel_size is 1-D
        self.three_d = nnx.Conv(2, 8, (3, 3, 3), strides=(1, 2, 1), rngs=r)

    def __call__(self, x, seq, vol):
        x = self.dilated_in(self.masked(self.a(x)))
        x = self.odd(self.b(self.grouped(self.reflect(x))))
        return x, self.one_d(seq), self.three_d(vol)


INPUTS = (jax.random.normal(jax.random.key(1), (2, 9, 9, 3)),
          jax.random.normal(jax.random.key(2), (2, 11, 4)),
          jax.random.normal(jax.random.key(3), (5, 6, 7, 2)))  # unbatched 3-D


def _same(a, b):
    return all(bool(jnp.array_equal(u, v)) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("kind,kw", [("fs", dict(compression=1.0)), ("dfs", dict(compression=1.0)),
                                     ("ks", dict(group_size=1)), ("wks", dict(group_size=1))])
def test_round_trip_is_exact_and_reasons_are_given(kind, kw):
    m = Mixed(nnx.Rngs(0))
    want = m(*INPUTS)
    out = fnn.convert(m, kind, min_params=0, **kw)
    assert sorted(out) == ["a", "b", "dilated_in", "masked", "one_d", "reflect", "three_d"]
    reasons = dict(out.skipped)
    assert set(reasons) == {"grouped", "odd"}
    assert "feature_group_count=2" in reasons["grouped"] and "__call__" in reasons["odd"]
    assert m.masked.mask is not None and m.dilated_in.input_dilation == 2
    assert m.b.precision == "highest" and m.one_d.kernel_size == (3,)
    assert _same(m(*INPUTS), want)  # bit for bit


def test_grouped_convs_convert_when_picked():
    m = Mixed(nnx.Rngs(0))
    want = m(*INPUTS)
    out = fnn.convert(m, "ks", group_size=1, predicate=lambda p, c: p != ("odd",))
    assert "grouped" in out and isinstance(m.grouped, fnn.KSConv)
    assert _same(m(*INPUTS), want)


def test_ks_reasons_and_materialize():
    m = Mixed(nnx.Rngs(0))
    out = fnn.convert(m, "wks", group_size=3, min_params=0)
    reasons = dict(out.skipped)
    assert "not a multiple of group_size 3" in reasons["b"]
    m = Mixed(nnx.Rngs(0))
    fnn.convert(m, "fs", compression=2.0, min_params=0)
    want = m(*INPUTS)
    assert sorted(fnn.materialize(m))[:2] == ["a", "b"]
    assert isinstance(m.three_d, fnn.Conv) and m.masked.mask is not None
    for u, v in zip(m(*INPUTS), want, strict=True):
        assert jnp.allclose(u, v, atol=1e-5)
