"""Conv kinds (fsjax.kinds): a sixth kind, defined in this file alone, trains, reports,
quantizes, exports, deploys to ONNX and converts (NNX and Linen models) through fsjax's
public API without a change to fsjax.

The toy kind is a low-rank conv: the ``(fan_in, cout)`` kernel matrix is ``U @ V`` with rank
``r = ceil(min(fan_in, cout) / compression)``; ``U`` and ``V`` are stored as one flat vector.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import fsjax.linen
from fsjax import deploy, export, kinds, models, quant, report
from fsjax.models import ConvFactory
from fsjax.nn import ConvBase, convert, layer_class
from fsjax.spec import ConvSpec


class LowRank(kinds.ConvKind):
    name = "lowrank"
    step_option = "compression"

    def options(self, where, kshape, in_features, fgc, *, compression, **_):
        compression = 4.0 if compression is None else float(compression)
        if compression < 1:
            raise ValueError(f"{where}: compression must be >= 1; got {compression}")
        rank = math.ceil(min(math.prod(kshape[:-1]), kshape[-1]) / compression)
        return dict(compression=compression, length=rank)

    def stored_kernel_shape(self, spec):
        return ((spec.fan_in + spec.out_features) * spec.length,)

    def label(self, compression):
        return f"lowrank rho={compression:g}"

    def step_value(self, v):
        return float(v) if v is not None and v >= 1 else None

    def materialize(self, spec, stored, locations=None, alpha=None):
        f, r = spec.fan_in, spec.length
        u, v = stored[:f * r].reshape(f, r), stored[f * r:].reshape(r, spec.out_features)
        return (u @ v).reshape(spec.kernel_shape)

    def init_from_dense(self, spec, dense):
        return self.project(spec, dense)["kernel"]

    def project(self, spec, dense):
        u, s, vt = jnp.linalg.svd(dense.reshape(spec.fan_in, spec.out_features),
                                  full_matrices=False)
        root = jnp.sqrt(s[:spec.length])
        return {"kernel": jnp.concatenate([(u[:, :spec.length] * root).ravel(),
                                           (root[:, None] * vt[:spec.length]).ravel()])}

    def quant_groups(self, spec, shape):
        return np.zeros(shape, np.int32)  # one range for the whole vector

    def layer_options(self, in_features, opts):
        return dict(compression=opts["compression"])

    def spec_options(self, spec):
        return dict(compression=spec.compression)


class LowRankConv(ConvBase):
    kind = "lowrank"

    def __init__(self, in_features, out_features, kernel_size, strides=1, *,
                 compression=4.0, **kwargs):
        super().__init__(in_features, out_features, kernel_size, strides,
                         compression=compression, **kwargs)


class LinenLowRankConv(fsjax.linen.ConvBase):
    compression: float = 4.0
    kind = "lowrank"

    def _opts(self):
        return dict(compression=self.compression)


@pytest.fixture
def lowrank():
    kinds.register(LowRank())
    yield
    kinds.unregister("lowrank")


def _net(compression=4.0, seed=0):
    return models.create("resnet8", conv=ConvFactory(kind="lowrank", compression=compression),
                         seed=seed)


def test_sixth_kind_builds_and_reports(lowrank):
    net = _net()
    convs = [n for _, n in nnx.iter_graph(net) if isinstance(n, LowRankConv)]
    assert len(convs) == 9 and layer_class("lowrank") is LowRankConv
    rows = report.layer_rows(net, (16, 16, 3))
    totals = report.summarize(rows)
    assert {r.kind for r in rows} == {"lowrank", "bn", "fc"}
    assert sum(r.kind == "lowrank" for r in rows) == 9
    # a 3x3x64 -> 64 conv at rho=4: rank 16, (576 + 64) * 16 weights (no bias)
    spec = next(c.spec for c in convs if c.spec.kernel_shape == (3, 3, 64, 64))
    assert spec.stored_params() == (576 + 64) * 16
    assert totals["stored_params"] < totals["dense_params"] / 2
    with pytest.raises(ValueError, match="compression must be >= 1"):
        ConvSpec.make("lowrank", 8, 8, (3, 3), compression=0.5)


def test_sixth_kind_trains(lowrank):
    net = _net()
    rs = np.random.RandomState(0)
    x, y = jnp.asarray(rs.randn(32, 16, 16, 3), jnp.float32), jnp.asarray(rs.randint(0, 10, 32))
    opt = nnx.Optimizer(net, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(net, opt):
        def loss_fn(net):
            return optax.softmax_cross_entropy_with_integer_labels(net(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(net)
        opt.update(net, grads)
        return loss

    losses = [float(step(net, opt)) for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_sixth_kind_exports_and_quantizes(lowrank, tmp_path):
    net = _net(seed=1)
    net.eval()
    x = jnp.asarray(np.random.RandomState(1).randn(2, 16, 16, 3), jnp.float32)
    meta = dict(model="resnet8", num_classes=10, conv=dict(kind="lowrank", compression=4.0))
    export.save(str(tmp_path / "m"), net, meta)
    back, _ = export.load(str(tmp_path / "m"))
    back.eval()
    np.testing.assert_allclose(back(x), net(x), rtol=1e-5, atol=1e-5)
    entries = quant.quantize_model(back, quant.QuantConfig(bits=8, per_channel=True))
    assert any(e.path[-1] == "kernel" and e.groups is not None and e.groups.ndim == 1
               for e in entries)
    assert float(jnp.abs(back(x) - net(x)).max()) < 0.1 * float(jnp.abs(net(x)).max())


def test_sixth_kind_deploys_to_onnx(lowrank, tmp_path):
    net = _net(seed=2)
    net.eval()
    x = np.random.RandomState(2).randn(3, 16, 16, 3).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    info = deploy.export_onnx(net, (16, 16, 3), path)
    assert info["folded"] == []  # the kind does not say its stored vector folds a BatchNorm
    np.testing.assert_allclose(deploy.run_onnx(deploy.onnx_session(path), x), net(x),
                               atol=1e-4, rtol=0)


def test_sixth_kind_converts_a_flax_model(lowrank):
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Conv(3, 16, (3, 3), rngs=rngs)
            self.b = nnx.Conv(16, 32, (3, 3), rngs=rngs)

        def __call__(self, x):
            return self.b(nnx.relu(self.a(x)))

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    net = Net(nnx.Rngs(0))
    before = net(x)
    done = convert(net, "lowrank", compression=1.0, min_params=0)  # full rank: same function
    assert list(done) == ["a", "b"] and isinstance(net.b, LowRankConv)
    np.testing.assert_allclose(net(x), before, rtol=1e-4, atol=1e-4)
    small = Net(nnx.Rngs(0))
    convert(small, "lowrank", compression=4.0, min_params=0)
    assert small.b.spec.stored_params() < 16 * 9 * 32


def test_sixth_kind_compresses_a_linen_model(lowrank):
    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(32, (3, 3), name="b")(nn.relu(nn.Conv(16, (3, 3), name="a")(x)))

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    variables = CNN().init(jax.random.key(1), x)
    small, new_vars = fsjax.linen.compress(CNN(), variables, x, kind="lowrank",
                                           compression=1.0, min_params=0)
    assert small.converted == ["a", "b"] and new_vars["params"]["b"]["kernel"].ndim == 1
    np.testing.assert_allclose(small.apply(new_vars, x), CNN().apply(variables, x), rtol=1e-4,
                               atol=1e-4)


def test_unknown_kind_is_one_line_error():
    with pytest.raises(ValueError, match=r"unknown conv kind 'lowrank'; valid: dense, fs, dfs"):
        kinds.get("lowrank")
    with pytest.raises(ValueError, match=r"conv kind 'nope' is not valid; valid: dense, fs"):
        ConvFactory(kind="nope")
