"""Model zoo: official FSNet parameter counts, every model x conv kind runs, report CLI."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fsjax import models
from fsjax.report import __main__ as report_cli
from fsjax.report import report


def n_params(m):
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(m, nnx.Param)))


@pytest.mark.parametrize("name,rho,want", [
    ("resnet56", None, 855_770), ("resnet56", 4.0, 217_622), ("resnet56", 1.1, 778_391),
    ("resnet110", None, 1_730_714), ("resnet110", 4.0, 439_382),
    ("resnet164", None, 1_704_154), ("resnet164", 4.0, 446_806),
])
def test_official_fsnet_counts(name, rho, want):
    conv = "dense" if rho is None else models.ConvFactory(kind="fs", compression=rho)
    m = models.create(name, conv=conv)
    assert n_params(m) == want
    _, totals = report(m, (32, 32, 3))
    assert totals["stored_params"] == want


@pytest.mark.parametrize("name,kw", [
    ("resnet20", dict(shortcut="A")), ("resnet20", {}), ("resnet164", {}),
    ("resnet18", dict(stem="cifar")), ("resnet50", dict(stride_on="1x1")),
    ("vgg16", {}), ("mobilenet_v1", dict(width=0.25)), ("densenet_bc100", {}),
])
@pytest.mark.parametrize("kind", ["dense", "fs", "dfs", "ks", "wks"])
def test_every_model_and_kind_runs(name, kw, kind):
    m = models.create(name, conv=models.ConvFactory(kind=kind, group_size=4), **kw)
    graphdef, state = nnx.split(m)
    out = jax.eval_shape(lambda s: nnx.merge(graphdef, s)(jnp.zeros((2, 32, 32, 3))), state)
    assert out.shape == (2, 10)


def test_small_forward_values():
    m = models.create("resnet20", conv=models.ConvFactory(kind="fs", compression=4.0))
    y = m(jnp.ones((2, 16, 16, 3)))
    assert y.shape == (2, 10) and bool(jnp.all(jnp.isfinite(y)))


def test_overrides_and_min_params():
    f = models.ConvFactory(kind="fs", overrides={"stem": "dense",
                                                 "stage3.*": {"compression": 8.0}})
    m = models.create("resnet20", conv=f)
    assert type(m.stem.conv).__name__ == "Conv"
    assert m.blocks[-1].conv1.conv.spec.compression == 8.0
    assert m.blocks[0].conv1.conv.spec.compression == 4.0
    with pytest.raises(ValueError, match="unknown option"):
        models.ConvFactory(kind="fs", overrides={"stem": {"rho": 2}})
    with pytest.raises(ValueError, match="valid: dense, fs, dfs, ks, wks"):
        models.ConvFactory(kind="fsx")
    with pytest.raises(ValueError, match="unknown model 'resnet57'"):
        models.create("resnet57")


def test_report_cli(capsys):
    assert report_cli.main(["--model", "resnet56", "--conv", "fs", "--compression", "4",
                            "--input", "32x32x3", "--json"]) == 0
    out = capsys.readouterr().out
    assert "217,622" in out and "855,770" in out and "MACs" in out
    assert report_cli.main(["--model", "nope"]) == 2
