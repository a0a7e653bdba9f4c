"""The ThiNet VGG-16 table's rows: the published architectures' counts, heads (FC / GAP),
pruning the last conv into the head, the pruner's targets, and training a pruned
architecture from scratch (``config.arch_from``)."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fsjax import export
from fsjax.prune import thinet
from train import configlib


@pytest.mark.parametrize("name,params_m,gflops", [
    ("vgg16", 138.34, 30.94),
    ("vgg16_thinet_gap", 8.32, 9.34),
    ("vgg16_thinet_tiny", 1.32, 2.01),
])
def test_vgg16_rows_counts(name, params_m, gflops):
    """The paper's VGG-16 table (ImageNet input; ThiNet-Conv and the train-from-scratch row
    share one architecture, checked in test_thinet_prune.py)."""
    model = export.build(thinet.published_architecture(name))
    params, flops = thinet.paper_counts(model, (224, 224, 3))
    assert round(params / 1e6, 2) == params_m
    assert round(flops / 1e9, 2) == gflops


def test_tiny_widths_are_the_released_prototxt():
    assert thinet.target_widths("thinet_tiny") == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128,
                                                   128, 128, 256]
    assert thinet.target_widths("thinet_gap")[9:] == [256, 512, 512, 512]
    with pytest.raises(ValueError, match="valid: thinet_conv"):
        thinet.target_widths("thinet_small")


def _meta(head, widths=(8,) * 13):
    return dict(model="vgg16", num_classes=10, model_kw=dict(widths=widths, head=head),
                conv=dict(kind="dense"))


def test_heads_share_the_conv_trunk():
    """'gap' skips pool5 and averages conv5_3; 'linear' (the CIFAR default) pools first."""
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    lin = export.build(_meta(None))
    gap = export.build(_meta("gap"))
    export.copy_matching(gap, lin)
    for m in (lin, gap):
        m.eval()
    f_lin, f_gap = lin.features(x), gap.features(x)
    trunk = x
    for i, layer in enumerate(gap.layers):
        trunk = layer(trunk)
        if i in (1, 3, 6, 9):
            trunk = jax.lax.reduce_window(trunk, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                          (1, 2, 2, 1), "VALID")
    np.testing.assert_allclose(f_gap[:, 0], trunk.mean((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f_lin[:, 0], trunk.max((1, 2)), rtol=1e-5, atol=1e-6)
    assert export.build(_meta("fc")).head[0].kernel.shape == (8, 512)


@pytest.mark.parametrize("head", ["fc", "gap"])
def test_prune_last_conv_into_the_head(head):
    """conv5_3 -> FC: keeping every channel reproduces the model; keeping half, ThiNet's
    least-squares rescaled head reconstructs the logits better than random channels."""
    meta = _meta(head, widths=(16,) * 13)
    model = export.build(meta)
    model.eval()
    x = jax.random.normal(jax.random.key(1), (64, 32, 32, 3))
    y = model(x)
    pair = thinet.prunable_pairs(meta, ["conv5_3"])[0]
    assert pair.consumer == "head"
    same, _, kept = thinet.prune_pair(model, meta, pair, x, 0.0, "thinet")
    same.eval()
    assert len(kept) == 16
    np.testing.assert_allclose(same(x), y, rtol=1e-4, atol=1e-4)
    err = {}
    for crit in ("thinet", "random"):
        new, new_meta, kept = thinet.prune_pair(model, meta, pair, x, 0.5, crit)
        new.eval()
        assert new_meta["model_kw"]["widths"][12] == 8 and len(kept) == 8
        err[crit] = float(jnp.linalg.norm(new(x) - y) / jnp.linalg.norm(y))
    assert err["thinet"] < err["random"]


def test_replace_head_keeps_the_trunk():
    meta = _meta("fc")
    model = export.build(meta)
    new, new_meta = thinet.replace_head(model, meta, "gap")
    assert new_meta["model_kw"]["head"] == "gap" and len(new.head) == 1
    np.testing.assert_array_equal(new.layers[4].conv.kernel[...], model.layers[4].conv.kernel[...])
    with pytest.raises(ValueError, match="vgg16"):
        thinet.replace_head(model, dict(meta, model="resnet20"), "gap")


def _config(widths):
    c = configlib.base()
    c.dataset, c.data_limit = "synthetic", 128
    c.model = "vgg16"
    c.model_kw.widths = widths
    c.model_kw.head, c.model_kw.fc_width = "fc", 16
    c.conv.kind = "dense"
    c.num_epochs, c.batch_size, c.eval_batch_size = 1, 32, 64
    c.progress = False
    return c


def test_prune_to_tiny_then_train_from_scratch(tmp_path):
    """train.prune with prune.target='thinet_tiny' replaces the FC head by GAP and prunes
    every conv wider than the target (here conv5_2 and conv5_3, the others already are);
    train.main with config.arch_from builds the result with fresh weights and trains."""
    from train.eval import restore
    from train.prune import prune
    from train.trainer import run

    base = (8,) * 13
    c = _config((2,) * 11 + (4, 8))
    c.prune = ml_collections.ConfigDict(dict(
        source="", target="thinet_tiny", base_widths=base, ratio=0.5, criterion="thinet",
        layers=(), samples_per_class=2, samples_per_image=10, head_epochs=1,
        finetune_epochs=1, finetune_lr=0.01, final_epochs=1, final_lr=0.01))
    wd = str(tmp_path / "tiny")
    rows = prune(c, wd)
    assert [r["stage"] for r in rows] == ["dense", "head-gap", "conv5_2", "conv5_3", "final"]
    pruned, meta = restore(os.path.join(wd, "final"), "latest")
    assert list(meta["model_kw"]["widths"]) == thinet.target_widths("thinet_tiny", base)
    assert meta["model_kw"]["head"] == "gap"

    s = _config((64,) * 13)  # arch_from replaces the widths and head
    s.arch_from = wd
    res = run(s, str(tmp_path / "scratch"))
    assert 0 <= res["accuracy"] <= 1 and res["epochs"] == 1
    scratch, smeta = restore(str(tmp_path / "scratch"), "latest")
    assert list(smeta["model_kw"]["widths"]) == list(meta["model_kw"]["widths"])
    assert smeta["model_kw"]["head"] == "gap"
    fresh = export.build(smeta)  # fresh init, not the pruned weights
    a = np.asarray(scratch.layers[0].conv.kernel[...])
    assert not np.allclose(a, np.asarray(pruned.layers[0].conv.kernel[...]))
    assert a.shape == fresh.layers[0].conv.kernel[...].shape
    with open(os.path.join(str(tmp_path / "scratch"), "config.json")) as f:
        assert json.load(f)["arch_from"] == wd


def test_arch_from_errors(tmp_path):
    from train import arch

    c = _config((8,) * 13)
    c.arch_from = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="neither a training or pruning workdir"):
        arch.apply(c)
    export.save(str(tmp_path / "m"), export.build(dict(model="resnet20", num_classes=10,
                                                       conv=dict(kind="dense"))),
                dict(model="resnet20", num_classes=10, conv=dict(kind="dense"), model_kw={}))
    c.arch_from = str(tmp_path / "m")
    with pytest.raises(ValueError, match="holds a resnet20; config.model is 'vgg16'"):
        arch.apply(c)
    c.init_weights = str(tmp_path / "m")
    with pytest.raises(ValueError, match="fresh weights"):
        arch.apply(c)


def test_target_source_narrower_than_target(tmp_path):
    from train.prune import _plan

    p = ml_collections.ConfigDict(dict(target="thinet_conv", base_widths=(), ratio=0.5,
                                       layers=()))
    meta = dict(model="vgg16", model_kw=dict(widths=(8,) * 13))
    with pytest.raises(ValueError, match="conv1_1 has 8 filters, fewer than the target's 32"):
        _plan(p, meta)
    head, plan = _plan(p, dict(model="vgg16", model_kw={}))
    assert head is None and [q.producer for q, _ in plan] == list(thinet.VGG_DEFAULT)
    assert all(abs(r - 0.5) < 1e-12 for _, r in plan)
