"""One jitted training step for every model family x conv kind at tiny size.

Tiny = small widths and, for the deep models, fewer blocks of the same kind (compile time on
the CPU grows with depth); the full-depth models are traced by tests/test_models.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train import configlib
from train.model_fn import ModelFn, make_train_step
from train.optim import make_optimizer
from train.trainer import build_model

TINY = {
    "resnet56": dict(widths=(4, 8, 8), depth=14),
    "resnet164": dict(widths=(2, 4, 4), depth=11),          # bottleneck CIFAR ResNet
    "resnet18": dict(stem="cifar", depths=(1, 1, 1, 1), widths=(4, 4, 8, 8)),
    "resnet50": dict(stem="imagenet", stride_on="1x1", depths=(1, 1, 1, 1), widths=(2, 2, 4, 4)),
    "vgg16": dict(widths=(4,) * 13),
    "mobilenet_v1": dict(width=0.125),
    "densenet_bc100": dict(growth=2, depth=10),
}


def _tiny(name):
    return dict(TINY[name])


def one_step(name, kind, image=16):
    c = configlib.base()
    c.model, c.conv.kind, c.conv.group_size = name, kind, 2
    for k, v in _tiny(name).items():
        c.model_kw[k] = v
    c.locations.lr = 0.1
    model, _ = build_model(c, 10, 3, jnp.float32)
    fn = ModelFn.create(model)
    tx, _ = make_optimizer(c, model, 10)
    p, s = ModelFn.initial(model)
    ts = dict(params=p, stats=s, opt=tx.init(p), step=jnp.zeros((), jnp.int32))
    step = jax.jit(make_train_step(fn, tx, c, (0.5,) * 3, (0.25,) * 3, jnp.float32))
    x = jax.random.randint(jax.random.key(0), (4, image, image, 3), 0, 256).astype(jnp.uint8)
    y = jnp.arange(4) % 10
    new, m = step(ts, x, y, jax.random.key(1))
    return ts, new, m


@pytest.mark.parametrize("kind", ["dense", "fs", "dfs", "ks", "wks"])
@pytest.mark.parametrize("name", list(TINY))
def test_one_step(name, kind):
    old, new, m = one_step(name, kind, image=32 if name in ("vgg16", "resnet50") else 16)
    assert np.isfinite(float(m["loss"]))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old["params"], new["params"])
    assert any(jax.tree.leaves(changed))
    if kind == "dfs":
        locs = [bool(jnp.any(a != b)) for (pa, a), (_, b) in zip(
            jax.tree_util.tree_flatten_with_path(old["params"])[0],
            jax.tree_util.tree_flatten_with_path(new["params"])[0], strict=True)
            if "locations" in jax.tree_util.keystr(pa)]
        assert locs and any(locs), "DFS locations must receive gradient updates"
