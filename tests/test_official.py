"""The official FSNet layout (layout='official') and the importer of its PyTorch state dicts,
against a NumPy transcription of the official ResNet_Cifar_dws forward (NCHW, OIHW)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from fsjax import export, linen, ops
from fsjax.models.official import infer_compression, load_official_resnet
from fsjax.nn import DFSConv, FSConv

# --- a NumPy transcription of the official code ----------------------------------------------


def _filters(fm, cin, cout, k):
    """Conv2d_dws.extract_filters: OIHW filters read from the doubled summary."""
    R = fm.shape[0]
    step = R / (cout - 1)
    ids0 = np.arange(k * k * cin, dtype=np.float32)
    ids = np.concatenate([ids0 + np.float32(c * step) for c in range(cout)]).astype(np.int64)
    return np.concatenate([fm, fm])[ids].reshape(cout, cin, k, k)


def _conv(x, w, stride, pad):
    """F.conv2d (NCHW, OIHW, symmetric zero padding), by summing shifted slices."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for y in range(k):
        for z in range(k):
            patch = xp[:, :, y:y + stride * ho:stride, z:z + stride * wo:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, y, z])
    return out


def _bn(x, sd, name):
    g, b, m, v = (sd[f"{name}.{t}"] for t in ("weight", "bias", "running_mean", "running_var"))
    return ((x - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * g[:, None, None]
            + b[:, None, None])


def _official_state_dict(rng, block, n, rho, dense=(), widths=(16, 32, 64), classes=10):
    """Random arrays with the names and shapes ResNet_Cifar_dws (or its dense counterpart for
    the convs in ``dense``) would save."""
    sd = {}

    def conv(name, cin, cout, k):
        total = cout * cin * k * k
        if name in dense:
            sd[f"{name}.weight"] = rng.normal(0, (2 / (k * k * cin)) ** 0.5, (cout, cin, k, k))
        else:
            sd[f"{name}.filtermap"] = rng.normal(0, (2 / (k * k * cin)) ** 0.5, int(total / rho))

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c)
        sd[f"{name}.num_batches_tracked"] = np.asarray(100)

    conv("conv1", 3, 16, 3)
    bn("bn1", 16)
    cin, exp = 16, 4 if block == "bottleneck" else 1
    for s, w in enumerate(widths, 1):
        for b in range(n):
            p = f"layer{s}.{b}"
            mids = [(3, cin, w), (3, w, w)] if exp == 1 else [(1, cin, w), (3, w, w), (1, w, 4 * w)]
            for j, (k, ci, co) in enumerate(mids, 1):
                conv(f"{p}.conv{j}", ci, co, k)
                bn(f"{p}.bn{j}", co)
            if (s > 1 and b == 0) or cin != w * exp:
                conv(f"{p}.downsample.0", cin, w * exp, 1)
                bn(f"{p}.downsample.1", w * exp)
            cin = w * exp
    sd["fc.weight"] = rng.normal(0, 0.1, (classes, cin))
    sd["fc.bias"] = rng.normal(0, 0.1, classes)
    return {k: np.asarray(v, np.float32 if v.ndim else np.int64) for k, v in sd.items()}


def _official_forward(sd, x, block, n):
    """ResNet_Cifar(_dws).forward in eval mode (NCHW)."""
    def conv(name, h, stride, pad, k):
        w = sd.get(f"{name}.weight")
        if w is None:
            bn = name.replace("conv", "bn").replace("downsample.0", "downsample.1")
            w = _filters(sd[f"{name}.filtermap"], h.shape[1], sd[f"{bn}.weight"].shape[0], k)
        return _conv(h, w.astype(np.float64), stride, pad)

    relu = lambda v: np.maximum(v, 0)
    h = relu(_bn(conv("conv1", x, 1, 1, 3), sd, "bn1"))
    for s in (1, 2, 3):
        for b in range(n):
            p, stride = f"layer{s}.{b}", 2 if s > 1 and b == 0 else 1
            if block == "basic":
                o = relu(_bn(conv(f"{p}.conv1", h, stride, 1, 3), sd, f"{p}.bn1"))
                o = _bn(conv(f"{p}.conv2", o, 1, 1, 3), sd, f"{p}.bn2")
            else:
                o = relu(_bn(conv(f"{p}.conv1", h, 1, 0, 1), sd, f"{p}.bn1"))
                o = relu(_bn(conv(f"{p}.conv2", o, stride, 1, 3), sd, f"{p}.bn2"))
                o = _bn(conv(f"{p}.conv3", o, 1, 0, 1), sd, f"{p}.bn3")
            if f"{p}.downsample.1.weight" in sd:
                h = _bn(conv(f"{p}.downsample.0", h, stride, 0, 1), sd, f"{p}.downsample.1")
            h = relu(o + h)
    feat = h.mean(axis=(2, 3))  # AvgPool2d(8) on the 8x8 map
    return feat @ sd["fc.weight"].T.astype(np.float64) + sd["fc.bias"]


# --- the importer ------------------------------------------------------------------------------


@pytest.mark.parametrize("block,n,rho,dense", [
    ("basic", 1, 4.0, ()),                                    # resnet_cifar_fm8-like
    ("basic", 2, 1.3, ("conv1", "layer2.0.downsample.0")),   # a dense stem and a dense shortcut
    ("bottleneck", 1, 2.0, ()),                               # resnet_cifar_fm164's block
])
def test_import_matches_official_forward(block, n, rho, dense):
    rng = np.random.default_rng(0)
    sd = _official_state_dict(rng, block, n, rho, dense)
    sd = {f"module.{k}": v for k, v in sd.items()}  # as DataParallel saves it
    model, meta = load_official_resnet({"state_dict": sd, "epoch": 3})
    assert meta["conv"]["compression"] == rho
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
    want = _official_forward({k[7:]: v for k, v in sd.items()}, x.astype(np.float64), block, n)
    got = np.asarray(model(jnp.asarray(x.transpose(0, 2, 3, 1))))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the metadata rebuilds the same architecture, and fsjax's export round-trips it
    rebuilt = export.build(meta)
    assert [s.to_dict() for s in (layer.spec for _, layer in export.conv_layers(rebuilt))] == \
        [s.to_dict() for s in (layer.spec for _, layer in export.conv_layers(model))]


def test_importer_refuses_what_it_cannot_place():
    rng = np.random.default_rng(1)
    sd = _official_state_dict(rng, "basic", 1, 4.0)
    with pytest.raises(ValueError, match="compression 2.0 gives"):
        load_official_resnet(sd, compression=2.0)
    extra = dict(sd, **{"layer1.0.conv1.bias": np.zeros(16, np.float32)})
    with pytest.raises(ValueError, match=r"no place .*layer1\.0\.conv1\.bias"):
        load_official_resnet(extra)
    missing = {k: v for k, v in sd.items() if k != "layer2.0.bn2.running_var"}
    with pytest.raises(ValueError, match="layer2.0.bn2.running_var"):
        load_official_resnet(missing)
    with pytest.raises(ValueError, match="expected stages layer1..3"):
        load_official_resnet({"fc.weight": np.zeros((10, 64))})


@pytest.mark.parametrize("rho", [1.1, 1.2, 1.3, 2.0, 3.7, 4.0, 8.0])
def test_infer_compression_recovers_the_published_ratios(rho):
    shapes = [(3, 3, 3, 16), (3, 3, 16, 16), (3, 3, 16, 32), (1, 1, 16, 32), (3, 3, 64, 64)]
    lengths = {str(s): (int(np.prod(s)), int(np.prod(s) / rho)) for s in shapes}
    assert infer_compression(lengths) == rho


# --- the layers ---------------------------------------------------------------------------------


def test_official_layer_nnx_and_linen_read_the_published_layout():
    shape = (3, 3, 8, 12)
    layer = FSConv(8, 12, (3, 3), compression=3.0, layout="official", use_bias=False,
                   rngs=nnx.Rngs(0))
    L = layer.spec.length
    assert L == int(np.prod(shape) / 3.0)
    fs = np.random.default_rng(2).normal(size=L).astype(np.float32)
    layer.fs[...] = jnp.asarray(fs)
    want = _filters(fs, 8, 12, 3).transpose(2, 3, 1, 0)  # OIHW -> HWIO
    np.testing.assert_array_equal(layer.dense_kernel(), want)
    x = jax.random.normal(jax.random.key(0), (2, 9, 9, 8))
    y = linen.FSConv(12, (3, 3), compression=3.0, layout="official", use_bias=False).apply(
        {"params": {"fs": jnp.asarray(fs)}}, x)
    np.testing.assert_array_equal(y, layer(x))
    ref = nn.Conv(12, (3, 3), use_bias=False).apply({"params": {"kernel": want}}, x)
    np.testing.assert_array_equal(y, ref)
    # projection in the official layout inverts materialisation where no entry is shared twice
    proj = ops.fs_project(jnp.asarray(want), L, index=layer.spec.fs_table())
    np.testing.assert_allclose(ops.fs_official_kernel(proj, shape), want, rtol=1e-6)


def test_official_layout_errors():
    with pytest.raises(ValueError, match="layout='official' is for FS layers"):
        DFSConv(8, 12, (3, 3), layout="official", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="with offsets"):
        FSConv(8, 12, (3, 3), layout="official", offsets=list(range(12)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="layout must be one of fsjax, official"):
        FSConv(8, 12, (3, 3), layout="torch", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="shorter than a filter"):  # int(27*4/8) = 13 < K = 27
        FSConv(3, 4, (3, 3), compression=8.0, layout="official", rngs=nnx.Rngs(0))
