"""ThiNet pruning of models: exactness on a constructed case, reload, published counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsjax import export
from fsjax.prune import thinet


def _meta(name, **kw):
    return dict(model=name, num_classes=10, model_kw=dict(kw), conv=dict(kind="dense"))


def _kill_channels(model, producer, dead):
    """Zero the producer's filters for ``dead`` channels and make their BN output negative,
    so after the ReLU they contribute nothing to the consumer."""
    _, node = thinet._find(model, producer)
    k = node.conv.kernel[...]
    dead = jnp.asarray(dead)
    node.conv.kernel[...] = k.at[..., dead].set(0.0)
    node.bn.bias[...] = node.bn.bias[...].at[dead].set(-1.0)
    node.bn.scale[...] = node.bn.scale[...].at[dead].set(1.0)


@pytest.mark.parametrize("name,kw,pair_index", [
    ("vgg16", dict(widths=(8,) * 13), 2),
    ("resnet56", dict(widths=(8, 8, 8), depth=8), 0),
])
@pytest.mark.parametrize("criterion", ["thinet", "thinet_stepwise"])
def test_removed_dead_channels_keep_outputs(name, kw, pair_index, criterion):
    meta = _meta(name, **kw)
    model = export.build(meta)
    pair = thinet.prunable_pairs(meta)[pair_index]
    dead = [1, 4, 6, 7]
    _kill_channels(model, pair.producer, dead)
    x = jax.random.normal(jax.random.key(0), (6, 32, 32, 3))
    model.eval()
    want = model(x)
    new, new_meta, kept = thinet.prune_pair(model, meta, pair, x, ratio=0.5, criterion=criterion)
    assert kept.tolist() == [0, 2, 3, 5]
    new.eval()
    np.testing.assert_allclose(new(x), want, rtol=1e-4, atol=1e-4)
    _, prod = thinet._find(new, pair.producer)
    assert prod.conv.spec.out_features == 4
    # the pruned architecture rebuilds from its metadata alone
    again = export.build(new_meta)
    export.copy_matching(again, new)
    again.eval()
    np.testing.assert_array_equal(again(x), new(x))


@pytest.mark.parametrize("criterion", ["random", "weight_sum", "apoz"])
def test_baselines_produce_smaller_models(criterion):
    meta = _meta("vgg16", widths=(8,) * 13)
    model = export.build(meta)
    pair = thinet.prunable_pairs(meta)[0]
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    new, new_meta, kept = thinet.prune_pair(model, meta, pair, x, 0.5, criterion)
    assert len(kept) == 4 and new_meta["model_kw"]["widths"][0] == 4
    assert bool(jnp.all(jnp.isfinite(new(x))))


def test_pairs_follow_the_papers():
    vgg = [p.producer for p in thinet.prunable_pairs(_meta("vgg16"))]
    assert vgg[0] == "conv1_1" and vgg[-1] == "conv4_3" and len(vgg) == 10
    r = thinet.prunable_pairs(_meta("resnet56", depth=8))
    assert [p.producer for p in r] == ["stage1.block0.conv1", "stage2.block0.conv1",
                                       "stage3.block0.conv1"]
    b = thinet.prunable_pairs(_meta("resnet164", depth=11))
    assert [p.producer.rsplit(".", 1)[1] for p in b] == ["conv1", "conv2"] * 3


@pytest.mark.parametrize("name,params_m,gflops", [
    ("vgg16_thinet_conv", 131.44, 9.58),
    ("resnet50_thinet70", 16.94, 4.88),
    ("resnet50_thinet50", 12.38, 3.41),
    ("resnet50_thinet30", 8.66, 2.20),
])
def test_published_architecture_counts(name, params_m, gflops):
    model = export.build(thinet.published_architecture(name))
    params, flops = thinet.paper_counts(model, (224, 224, 3))
    assert round(params / 1e6, 2) == params_m
    # ThiNet-30 counts 2.19498 GFLOPs here and 2.20 in the paper: equal up to the last rounding
    assert abs(flops / 1e9 - gflops) < 0.0055


def test_caffe_vs_torchvision_resnet50():
    caffe = export.build(dict(model="resnet50", num_classes=1000, conv=dict(kind="dense"),
                              model_kw=dict(stem="imagenet", stride_on="1x1")))
    tv = export.build(dict(model="resnet50", num_classes=1000, conv=dict(kind="dense"),
                           model_kw=dict(stem="imagenet", stride_on="3x3")))
    p1, f1 = thinet.paper_counts(caffe, (224, 224, 3))
    p2, f2 = thinet.paper_counts(tv, (224, 224, 3))
    assert round(p1 / 1e6, 2) == 25.56 and round(f1 / 1e9, 2) == 7.72
    assert p1 == p2 and f2 > f1


@pytest.mark.parametrize("compression", [1.0, 2.0])
def test_pruned_fs_model_equals_dense_equivalent(compression):
    """An FS model prunes like its dense equivalent (same channels, same rescaled kernels) up
    to the reported projection error of the rebuilt, shorter summaries (zero at rho=1)."""
    fs_meta = dict(model="vgg16", num_classes=10, model_kw=dict(widths=(8,) * 13),
                   conv=dict(kind="fs", compression=compression))
    fs_model = export.build(fs_meta)
    dense_meta = dict(fs_meta, conv=dict(kind="dense"))
    dense = export.build(dense_meta)
    export.copy_matching(dense, fs_model)
    for (_, d), (_, f) in zip(export.conv_layers(dense), export.conv_layers(fs_model),
                              strict=True):
        d.kernel[...] = f.dense_kernel()
    x = jax.random.normal(jax.random.key(0), (6, 32, 32, 3))
    pair = thinet.prunable_pairs(fs_meta)[2]
    new_fs, meta_fs, kept_fs = thinet.prune_pair(fs_model, fs_meta, pair, x, 0.5)
    new_d, _, kept_d = thinet.prune_pair(dense, dense_meta, pair, x, 0.5)
    assert kept_fs.tolist() == kept_d.tolist()
    errors = meta_fs["projection_error"]
    assert set(errors) == {pair.producer, pair.consumer}
    for name, err in errors.items():
        got = thinet._find(new_fs, name)[1].conv
        want = thinet._find(new_d, name)[1].conv.kernel[...]
        assert got.spec.kind == "fs" and got.spec.compression == compression
        rel = float(jnp.linalg.norm(got.dense_kernel() - want) / jnp.linalg.norm(want))
        assert rel == pytest.approx(err, rel=1e-4, abs=1e-7)
        assert (err < 1e-6) if compression == 1.0 else (err > 1e-3)
    if compression == 1.0:
        new_fs.eval()
        new_d.eval()
        np.testing.assert_allclose(new_fs(x), new_d(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["wks", "ks"])
def test_kernel_sharing_model_prunes_whole_groups(kind):
    """A KS/WKSC consumer keeps whole channel groups: killing two of four groups of the
    producer's channels, ThiNet keeps the other two, the outputs do not change, and the
    pruned layers are still kernel-sharing (groups halved, WKSC weights following)."""
    meta = dict(model="vgg16", num_classes=10, model_kw=dict(widths=(8,) * 13),
                conv=dict(kind=kind, group_size=2))
    model = export.build(meta)
    pair = thinet.prunable_pairs(meta)[2]
    _, cons = thinet._find(model, pair.consumer)
    if kind == "wks":  # non-trivial channel weights
        cons.conv.alpha[...] = jnp.linspace(0.5, 1.5, cons.conv.alpha[...].size)
    _kill_channels(model, pair.producer, [2, 3, 6, 7])
    x = jax.random.normal(jax.random.key(0), (6, 32, 32, 3))
    model.eval()
    want = model(x)
    new, new_meta, kept = thinet.prune_pair(model, meta, pair, x, ratio=0.5)
    assert kept.tolist() == [0, 1, 4, 5]
    new.eval()
    np.testing.assert_allclose(new(x), want, rtol=1e-4, atol=1e-4)
    _, prod = thinet._find(new, pair.producer)
    _, ncons = thinet._find(new, pair.consumer)
    assert prod.conv.spec.kind == kind and prod.conv.spec.out_features == 4
    assert ncons.conv.spec.kind == kind and ncons.conv.spec.groups == 2
    if kind == "wks":
        np.testing.assert_array_equal(ncons.conv.alpha[...], cons.conv.alpha[...][kept])


def test_dfs_layers_say_what_to_do():
    meta = dict(model="vgg16", num_classes=10, model_kw=dict(widths=(8,) * 13),
                conv=dict(kind="dfs", compression=2.0))
    model = export.build(meta)
    pair = thinet.prunable_pairs(meta)[2]
    with pytest.raises(ValueError, match="freeze its locations first"):
        thinet.prune_pair(model, meta, pair, jnp.ones((2, 32, 32, 3)), 0.5)
