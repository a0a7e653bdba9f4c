"""DFSNet training: locations move, freeze to FS mid-run, resume after freezing, report."""

import os

import jax
import numpy as np

from fsjax import export, report
from fsjax.nn import DFSConv, FSConv
from tests.test_train_run import params_of, tiny_config
from train.eval import restore
from train.trainer import run


def test_freeze_turns_dfs_into_fs_and_resumes(tmp_path):
    over = {"conv.kind": "dfs", "locations.freeze_epoch": 1, "locations.lr": 0.5}
    wd = str(tmp_path / "f")
    run(tiny_config(num_epochs=1, **over), wd)
    m1, _ = restore(wd, "latest")
    assert any(isinstance(n, DFSConv) for _, n in export.conv_layers(m1))
    rows = report.location_rows(m1)
    assert rows and max(r["max_moved"] for r in rows) > 0  # locations were trained
    run(tiny_config(num_epochs=2, **over), wd)   # resumes at epoch 1, freezes, trains on
    m2, meta = restore(wd, "latest")
    kinds = {layer.spec.kind for _, layer in export.conv_layers(m2)}
    assert kinds == {"fs"}
    assert all(isinstance(n, FSConv) for _, n in export.conv_layers(m2))
    # learned (rounded) offsets, not the uniform layout, in at least one layer
    uniform = [tuple(FSConv(n.spec.in_features, n.spec.out_features, n.spec.kernel_size,
                            compression=n.spec.compression, rngs=__import__("flax").nnx.Rngs(0)
                            ).spec.offsets) for _, n in export.conv_layers(m2)]
    assert any(n.spec.offsets != u for (_, n), u in zip(export.conv_layers(m2), uniform,
                                                         strict=True))
    run(tiny_config(num_epochs=3, **over), wd)   # resume after the freeze
    st = params_of(wd, 3)
    assert not any("locations" in jax.tree_util.keystr(p)
                   for p, _ in jax.tree_util.tree_flatten_with_path(st["params"])[0])
    assert os.path.exists(os.path.join(wd, "results.json"))
    np.testing.assert_equal(meta["layers"][0]["kind"], "fs")
