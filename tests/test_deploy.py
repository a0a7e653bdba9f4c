"""Deployment exports: BatchNorm folding (math vs NumPy), StableHLO and ONNX round trips for
every layer kind in 1-D/2-D/3-D and the zoo families, int8 QDQ, the CLI and its errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fsjax import deploy, models, ops, quant
from fsjax.models.layers import ConvBN, ConvFactory

pytest.importorskip("jax2onnx", reason="the deploy extra (make test installs it)")
KINDS = ("dense", "fs", "dfs", "ks", "wks")


def _randomize_bn(model, seed=0):
    """Non-trivial running statistics and affine parameters, so folding is really tested."""
    rs = np.random.RandomState(seed)
    for _, n in nnx.iter_graph(model):
        if isinstance(n, models.layers.BatchNorm):
            c = n.num_features
            n.mean.set_value(jnp.asarray(rs.randn(c) * 0.2, jnp.float32))
            n.var.set_value(jnp.asarray(rs.uniform(0.5, 2.0, c), jnp.float32))
            if n.scale is not None:
                n.scale[...] = jnp.asarray(rs.uniform(0.5, 1.5, c), jnp.float32)
                n.bias[...] = jnp.asarray(rs.randn(c) * 0.1, jnp.float32)


def test_fold_batch_norm_matches_numpy():
    rs = np.random.RandomState(0)
    x = rs.randn(2, 6, 6, 4)
    k = rs.randn(3, 3, 4, 5)
    b = rs.randn(5)
    mean, var, scale, beta = rs.randn(5), rs.uniform(0.1, 2, 5), rs.randn(5), rs.randn(5)
    # slow reference: direct conv ('SAME', stride 1), then BN
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.zeros((2, 6, 6, 5))
    for i in range(6):
        for j in range(6):
            y[:, i, j] = np.einsum("nhwc,hwco->no", xp[:, i:i + 3, j:j + 3], k)
    want = (y + b - mean) / np.sqrt(var + 1e-5) * scale + beta
    kf, bf = ops.fold_batch_norm(k, b, mean, var, scale, beta, 1e-5)
    got = ops.conv(jnp.asarray(x, jnp.float32), kf, bf)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    kf, bf = ops.fold_batch_norm(k, None, mean, var)  # no conv bias, no BN affine
    got = ops.conv(jnp.asarray(x, jnp.float32), kf, bf)
    np.testing.assert_allclose(got, (y - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)


class Tiny(nnx.Module):
    """Two conv-BN-ReLU blocks of one kind and rank, global mean, FC."""

    def __init__(self, kind, rank, cin=8, rngs=None):
        rngs = rngs or nnx.Rngs(0)
        f = ConvFactory(kind=kind, compression=2.0, group_size=2)
        ks = (3,) * rank
        self.a = ConvBN(f, "a", cin, 8, ks, rngs=rngs)
        self.b = ConvBN(f, "b", 8, 8, ks, strides=2, rngs=rngs)
        self.fc = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        y = self.b(self.a(x))
        return self.fc(y.mean(axis=tuple(range(1, y.ndim - 1))))


def _shape(rank):
    return {1: (16, 8), 2: (8, 8, 8), 3: (6, 6, 6, 8)}[rank]


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_every_kind(kind, rank, tmp_path):
    m = Tiny(kind, rank)
    _randomize_bn(m)
    m.eval()
    shape = _shape(rank)
    x = np.random.RandomState(1).randn(3, *shape).astype(np.float32)
    want = np.asarray(m(jnp.asarray(x)))
    im, info = deploy.inference_model(m)
    assert len(info["folded"]) == 2 and info["batchnorm_kept"] == 0
    assert len(info["materialised"]) == (2 if kind in ("fs", "dfs") else 0)
    hlo = str(tmp_path / "m.stablehlo")
    deploy.export_stablehlo(m, shape, hlo)
    fn = deploy.load_stablehlo(hlo)
    np.testing.assert_allclose(fn(jnp.asarray(x)), want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(fn(jnp.asarray(x[:1])), want[:1], atol=1e-4, rtol=0)  # any batch
    onx = str(tmp_path / "m.onnx")
    res = deploy.export_onnx(m, shape, onx, meta={"mean": "[0.5]"})
    sess = deploy.onnx_session(onx)
    np.testing.assert_allclose(deploy.run_onnx(sess, x), want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(deploy.run_onnx(sess, x[:2]), want[:2], atol=1e-4, rtol=0)
    assert res["bytes"] == os.path.getsize(onx)
    if kind in ("ks", "wks"):  # factored form kept: a channel-group sum, then a small conv
        import onnx

        g = onnx.load(onx).graph
        assert any(n.op_type == "ReduceSum" for n in g.node)
        sizes = [int(np.prod(i.dims)) for i in g.initializer]
        assert 3 ** rank * 4 * 8 in sizes and 3 ** rank * 8 * 8 not in sizes  # 4 = 8 / g
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


GENOTYPE = {  # every op kind the DARTS search space has, except 'none'
    "normal": [["sep_conv_3x3", 0], ["sep_conv_5x5", 1], ["dil_conv_3x3", 0],
               ["skip_connect", 1], ["dil_conv_5x5", 1], ["avg_pool_3x3", 0],
               ["max_pool_3x3", 0], ["sep_conv_3x3", 2]],
    "reduce": [["max_pool_3x3", 0], ["avg_pool_3x3", 1], ["skip_connect", 2],
               ["sep_conv_3x3", 1], ["max_pool_3x3", 0], ["skip_connect", 2],
               ["skip_connect", 2], ["dil_conv_3x3", 1]],
    "concat": [2, 3, 4, 5],
}
ZOO = [
    ("resnet20", dict(widths=(4, 8, 8), depth=8), "wks"),
    ("resnet50", dict(widths=(4, 8, 8, 8), depths=(1, 1, 1, 1)), "fs"),
    ("vgg16", dict(widths=[4] * 13, fc_width=8), "dense"),
    ("mobilenet_v1", dict(width=0.125), "dense"),
    ("densenet_bc100", dict(depth=10, growth=4), "fs"),
    ("darts_eval", dict(cells=2, channels=4, auxiliary=False), "dfs"),
]


@pytest.mark.parametrize("name,kw,kind", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_round_trip(name, kw, kind, tmp_path):
    if name == "darts_eval":
        kw = dict(kw, genotype=GENOTYPE)
    m = models.create(name, conv=ConvFactory(kind=kind, group_size=2), **kw)
    _randomize_bn(m)
    m.eval()
    x = np.random.RandomState(2).randn(2, 32, 32, 3).astype(np.float32)
    want = np.asarray(deploy.logits_of(m(jnp.asarray(x))))
    fn_path, onx = str(tmp_path / "m.stablehlo"), str(tmp_path / "m.onnx")
    deploy.export_stablehlo(m, (32, 32, 3), fn_path)
    np.testing.assert_allclose(deploy.load_stablehlo(fn_path)(jnp.asarray(x)), want, atol=1e-4,
                               rtol=1e-5)
    deploy.export_onnx(m, (32, 32, 3), onx)
    got = deploy.run_onnx(deploy.onnx_session(onx), x)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def test_pruned_widths_export(tmp_path):
    """A ThiNet-pruned ResNet (inner convs narrower than the block width) exports at its
    pruned widths: the ONNX weights have the pruned shapes."""
    import onnx

    m = models.create("resnet20", depth=8, widths=(8, 8, 16), conv="dense",
                      mid_widths=((3,), (5,), (7,)))
    _randomize_bn(m)
    m.eval()
    x = np.random.RandomState(3).randn(2, 32, 32, 3).astype(np.float32)
    onx = str(tmp_path / "m.onnx")
    deploy.export_onnx(m, (32, 32, 3), onx)
    np.testing.assert_allclose(deploy.run_onnx(deploy.onnx_session(onx), x), m(jnp.asarray(x)),
                               atol=1e-4)
    outs = [i.dims[-1] for i in onnx.load(onx).graph.initializer if len(i.dims) == 4]  # HWIO
    assert outs.count(3) == 1 and outs.count(5) == 1 and outs.count(7) == 1, outs


def _trained_tiny():
    """A small conv net trained for a few hundred steps on a synthetic 4-class task (which
    quadrant of an 8x8 image is brightest), so int8 accuracy has a meaning."""
    import optax

    rs = np.random.RandomState(0)
    n = 1024
    x = rs.randn(n, 8, 8, 3).astype(np.float32) * 0.5
    y = rs.randint(0, 4, n)
    for i, c in enumerate(y):
        r, s = divmod(int(c), 2)
        x[i, 4 * r:4 * r + 4, 4 * s:4 * s + 4] += 1.0
    m = Tiny("fs", 2, cin=3)
    opt = nnx.Optimizer(m, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(m, opt, xb, yb):
        def loss(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(xb), yb).mean()

        g = nnx.grad(loss)(m)
        opt.update(m, g)

    m.train()
    for k in range(200):
        i = (k * 64) % n
        step(m, opt, jnp.asarray(x[i:i + 64]), jnp.asarray(y[i:i + 64] % 3))
    m.eval()
    return m, x, y % 3


def test_int8_onnx_close_to_fake_quant(tmp_path):
    m, x, y = _trained_tiny()
    q = quant.QuantConfig(bits=8, per_channel=False)
    quant.quantize_model(m, q)  # PTQ: the model now holds fsjax's quantized weights
    fq = float((np.asarray(m(jnp.asarray(x))).argmax(-1) == y).mean())
    path = str(tmp_path / "m.int8.onnx")
    res = deploy.export_onnx(m, (8, 8, 3), path, int8=True, calibration=x[:256])
    import onnx

    g = onnx.load(path).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in g.node}
    int8_weights = [i for i in g.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 3  # both convs and the FC hold int8 weights
    got = float((deploy.run_onnx(deploy.onnx_session(path), x).argmax(-1) == y).mean())
    assert fq > 0.6, fq  # the task was learned
    assert abs(got - fq) <= 0.03, (got, fq)  # stated tolerance: 3 points of top-1
    assert 0 < res["int8_weight_change"] < 0.01


def test_bad_inputs(tmp_path, monkeypatch):
    m = Tiny("dense", 2)
    with pytest.raises(ValueError, match="calibration"):
        deploy.export_onnx(m, (8, 8, 8), str(tmp_path / "a.onnx"), int8=True)
    with pytest.raises(ValueError, match="platform 'gpu' is not valid"):
        deploy.export_stablehlo(m, (8, 8, 8), str(tmp_path / "a.hlo"), platforms=("gpu",))
    with pytest.raises(FileNotFoundError, match="missing"):
        deploy.load_stablehlo(str(tmp_path / "none.hlo"))
    (tmp_path / "junk.hlo").write_bytes(b"not an export")
    with pytest.raises(ValueError, match="not a serialized"):
        deploy.load_stablehlo(str(tmp_path / "junk.hlo"))
    import builtins

    real = builtins.__import__

    def no_onnx(name, *a, **k):
        if name.startswith("jax2onnx"):
            raise ImportError("no", name="jax2onnx")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ImportError, match=r"deploy extra .*pip install -e '\.\[deploy\]'"):
        deploy.export_onnx(m, (8, 8, 8), str(tmp_path / "b.onnx"))


def test_eval_cli_deploy(tmp_path, capsys):
    from tests.test_train_run import tiny_config
    from train import eval as ev
    from train.trainer import run

    wd = str(tmp_path / "run")
    run(tiny_config(num_epochs=1, **{"conv.kind": "fs"}), wd)
    capsys.readouterr()
    for args, needle in [
            (["--deploy", "onnx"], "needs --out"),
            (["--int8", "--out", "x"], "go with --deploy"),
            (["--deploy", "stablehlo", "--int8", "--out", "x"], "--int8 is for --deploy onnx"),
            (["--deploy", "onnx", "--out", "x", "--export", "y"], "separate runs"),
    ]:
        assert ev.main(["--workdir", wd, *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (args, err)
    with pytest.raises(SystemExit):
        ev.main(["--workdir", wd, "--deploy", "tflite", "--out", "x"])
    capsys.readouterr()
    for fmt, extra in [("stablehlo", []), ("onnx", []), ("onnx", ["--int8", "--calib", "64"])]:
        out = str(tmp_path / f"m.{fmt}{len(extra)}")
        assert ev.main(["--workdir", wd, "--deploy", fmt, "--out", out, *extra]) == 0
        res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert res["bytes"] == os.path.getsize(out)
        if extra:
            assert 0 <= res["int8_accuracy"] <= 1 and "fsjax_fake_quant_accuracy" in res
        else:
            assert res["max_abs_diff"] <= 1e-4


def test_inference_trace_skips_cpu_barrier():
    x = jnp.ones((1, 4, 4, 2))
    k = jnp.ones((3, 3, 2, 2))
    assert "platform_index" in str(jax.make_jaxpr(lambda a: ops.conv(a, k))(x))
    with ops.inference_trace():
        assert "platform_index" not in str(jax.make_jaxpr(lambda a: ops.conv(a, k))(x))
    assert "platform_index" in str(jax.make_jaxpr(lambda a: ops.conv(a, k))(x))


@pytest.mark.parametrize("padding", ["SAME", "VALID", [(1, 2), (0, 1), (2, 0)]])
@pytest.mark.parametrize("strides,dil,groups", [((1, 1, 1), (1, 1, 1), 1), ((2, 1, 2), (1, 2, 1), 2)])
def test_conv3d_as_2d_equals_3d_conv(padding, strides, dil, groups):
    rs = np.random.RandomState(0)
    x = jnp.asarray(rs.randn(2, 7, 6, 5, 4), jnp.float32)
    k = jnp.asarray(rs.randn(3, 2, 3, 4 // groups, 6), jnp.float32)
    dn = jax.lax.ConvDimensionNumbers((0, 4, 1, 2, 3), (4, 3, 0, 1, 2), (0, 4, 1, 2, 3))
    want = jax.lax.conv_general_dilated(x, k, strides, padding, (1, 1, 1), dil, dn,
                                        feature_group_count=groups)
    got = ops.conv3d_as_2d(x, k, strides, padding, (1, 1, 1), dil, dn,
                           feature_group_count=groups)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="input_dilation must be 1"):
        ops.conv3d_as_2d(x, k, strides, padding, (2, 1, 1), dil, dn)


def test_linen_model_exports_as_a_function(tmp_path):
    """A Linen model (fsjax's Linen FS/DFS/WKS layers) exports as ``lambda x: apply(v, x)``:
    the FS filters are built inside the graph from the summary (a gather), nothing folded."""
    import flax.linen as nn

    import fsjax.linen as fl

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(fl.FSConv(8, (3, 3), compression=2.0)(x))
            x = nn.relu(fl.DFSConv(8, (3, 3), compression=2.0)(x))
            x = fl.KSConv(8, (3, 3), groups=4, weighted=True)(x)
            return nn.Dense(3)(x.mean((1, 2)))

    net = Net()
    x = np.random.RandomState(4).randn(2, 8, 8, 4).astype(np.float32)
    v = net.init(jax.random.key(0), jnp.asarray(x))
    fn = lambda a: net.apply(v, a)  # noqa: E731
    want = np.asarray(fn(jnp.asarray(x)))
    p = str(tmp_path / "l.onnx")
    res = deploy.export_onnx(fn, (8, 8, 4), p)
    assert res["folded"] is None
    np.testing.assert_allclose(deploy.run_onnx(deploy.onnx_session(p), x), want, atol=1e-4)
    h = str(tmp_path / "l.stablehlo")
    deploy.export_stablehlo(fn, (8, 8, 4), h)
    np.testing.assert_allclose(deploy.load_stablehlo(h)(jnp.asarray(x)), want, atol=1e-4)
    with pytest.raises(TypeError, match="NNX module or a function"):
        deploy.export_stablehlo(3, (8, 8, 4), h)
