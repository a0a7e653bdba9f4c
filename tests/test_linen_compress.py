"""fsjax.linen.compress: a Linen CNN written here (its class untouched) compressed in one call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import fsjax.linen as fl


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(16, (3, 3), strides=2, use_bias=False)(x))
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(nn.Conv(32, (3, 3), padding="REFLECT", name="body")(x))
        x = nn.Conv(32, (3, 3), feature_group_count=4)(x)
        x = nn.Conv(32, (1, 1), mask=jnp.ones((1, 1, 32, 32)).at[0, 0, 0].set(0))(x)
        return nn.Dense(10)(x.mean((1, 2)))


class Seq(nn.Module):
    @nn.compact
    def __call__(self, s):
        return nn.Conv(8, 5, padding="CAUSAL")(s)  # 1-D (an int kernel_size is 1-D in Flax)


X = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))


@pytest.mark.parametrize("kind,kw", [("fs", dict(compression=1.0)), ("dfs", dict(compression=1.0)),
                                     ("wks", dict(group_size=1))])
def test_exact_at_no_compression(kind, kw):
    model = CNN()
    v = model.init(jax.random.key(0), X)
    want = model.apply(v, X)
    comp, v2 = fl.compress(model, v, X, kind=kind, min_params=0, **kw)
    assert comp.converted == ["Conv_0", "body", "Conv_2"]
    assert dict(comp.skipped) == {"Conv_1": "grouped (feature_group_count=4)"}
    np.testing.assert_array_equal(comp.apply(v2, X), want)
    assert "kernel" not in v2["params"]["body"] or kind == "wks"


def test_compressed_trains_and_reports():
    model = CNN()
    v = model.init(jax.random.key(0), X)
    comp, v2 = fl.compress(model, v, X, kind="fs", compression=4.0)
    assert v2["params"]["body"]["fs"].shape == (3 * 3 * 16 * 32 // 4,)
    assert v2["params"]["Dense_0"]["kernel"] is not None
    assert [p for p, _ in comp.skipped] == ["Conv_0", "Conv_1"]  # Conv_0: 432 < min_params

    def loss(p):
        y, _ = comp.apply({**v2, "params": p}, X, train=True, mutable=["batch_stats"])
        return jnp.mean(y ** 2)

    g = jax.grad(loss)(v2["params"])
    assert g["body"]["fs"].shape == v2["params"]["body"]["fs"].shape
    assert float(jnp.abs(g["body"]["fs"]).sum()) > 0
    fresh = comp.init(jax.random.key(3), X)  # from scratch
    assert fresh["params"]["body"]["fs"].shape == v2["params"]["body"]["fs"].shape


def test_one_d_model():
    s = jax.random.normal(jax.random.key(2), (3, 20, 4))
    v = Seq().init(jax.random.key(0), s)
    comp, v2 = fl.compress(Seq(), v, s, kind="fs", compression=1.0, min_params=0)
    assert comp.converted == ["Conv_0"]
    np.testing.assert_array_equal(comp.apply(v2, s), Seq().apply(v, s))
