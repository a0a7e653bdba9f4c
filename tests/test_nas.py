"""DFSNet NAS: genotype derivation on hand-made alphas; a tiny search, derive and evaluation
end to end on the CPU."""

import json
import os

import jax
import numpy as np
import pytest

from fsjax import ops
from fsjax.models.darts import EDGES, PRIMITIVES, derive_genotype
from tests.test_train_run import tiny_config
from train.nas import derive
from train.trainer import run as _run


def run(c, workdir):
    """The trainer, traced without fsjax's CPU-only program forms: a supernet has hundreds of
    small ops, each form a ``platform_dependent`` whose tracing, linearization and compilation
    doubled these tests' time (tiny dense search 200 -> 103 s on one core); the forms are
    tested per op and in the other trainer tests."""
    with ops.cpu_forms():
        return _run(c, workdir)


def test_derive_on_hand_made_alphas():
    a = np.zeros((EDGES, len(PRIMITIVES)))
    P = PRIMITIVES.index
    # node 0 (edges 0,1): both inputs; edge 1 strongest sep_conv_3x3, edge 0 max pool
    a[0, P("max_pool_3x3")] = 3
    a[1, P("sep_conv_3x3")] = 5
    # node 1 (edges 2,3,4): 'none' dominates edge 2's softmax, so its best real op (skip) is
    # weak (as in DARTS, weights come from the softmax over all ops): edges 3 and 4 win
    a[2, P("none")] = 9
    a[2, P("skip_connect")] = 4
    a[3, P("avg_pool_3x3")] = 1
    a[4, P("dil_conv_5x5")] = 6
    # nodes 2, 3: edge weights from a strongest op each
    a[5:9, P("sep_conv_5x5")] = [2, 7, 1, 6]       # node 2: inputs 1 and 3
    a[9:14, P("dil_conv_3x3")] = [1, 1, 8, 1, 9]   # node 3: inputs 2 and 4
    g = derive_genotype(a, a)
    assert g["normal"] == [["max_pool_3x3", 0], ["sep_conv_3x3", 1],
                           ["avg_pool_3x3", 1], ["dil_conv_5x5", 2],
                           ["sep_conv_5x5", 1], ["sep_conv_5x5", 3],
                           ["dil_conv_3x3", 2], ["dil_conv_3x3", 4]]
    assert g["concat"] == [2, 3, 4, 5]


def test_free_cap_replaces_the_weakest_pooling_by_its_edge_best_conv():
    """A normal cell collapsed to pooling (the CPU search's failure): ``max_free=2`` keeps the
    2 strongest parameter-free ops and gives every other chosen edge its strongest conv; the
    reduction cell keeps its pooling; the edges chosen do not change."""
    from fsjax.models.darts import parametric_edges

    a = np.zeros((EDGES, len(PRIMITIVES)))
    P = PRIMITIVES.index
    a[:, P("max_pool_3x3")] = np.linspace(3, 4, EDGES)      # pooling wins every edge
    a[:, P("skip_connect")] = 2.5
    a[::2, P("dil_conv_3x3")] = 1                            # the runner-up conv per edge
    a[1::2, P("sep_conv_5x5")] = 1
    plain = derive_genotype(a, a)
    assert all(op == "max_pool_3x3" for op, _ in plain["normal"])
    g = derive_genotype(a, a, max_free=2)
    assert [i for _, i in g["normal"]] == [i for _, i in plain["normal"]]
    assert parametric_edges(g["normal"]) == 6 and g["reduce"] == plain["reduce"]
    kept = [op for op, _ in g["normal"] if op == "max_pool_3x3"]
    assert len(kept) == 2 and g["normal"][-1][0] == "max_pool_3x3"  # the strongest (edge 13)
    first = derive_genotype(a, a, max_free=0)["normal"][0]        # edge 0: its dil conv
    assert first == ["dil_conv_3x3", 0]
    with pytest.raises(ValueError, match="max_free needs a parametric"):
        derive_genotype(a[:, :4], a[:, :4], PRIMITIVES[:4], max_free=2)


def test_full_search_space_builds():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from fsjax import models

    m = models.create("darts_search", conv=models.ConvFactory(kind="dfs"), cells=3, channels=4)
    assert m.alpha_normal.shape == (EDGES, len(PRIMITIVES))
    g, s = nnx.split(m)
    out = jax.eval_shape(lambda s: nnx.merge(g, s)(jnp.zeros((2, 32, 32, 3))), s)
    assert out.shape == (2, 10)


def test_tiny_search_derive_and_evaluate(tmp_path):
    wd = str(tmp_path / "search")
    over = {"model": "darts_search", "nas.search": True, "conv.kind": "dfs",
            "conv.compression": 2.0, "batch_size": 16, "eval_batch_size": 32,
            "data_limit": 128, "num_epochs": 1}
    c = tiny_config(**over)
    c.model_kw.depth = None
    c.model_kw.widths = None
    c.model_kw.cells = 3  # cell 0 normal, cells 1 and 2 reduction
    c.model_kw.channels = 4
    # a subset of the DARTS ops keeps the CPU compile short; the full set is traced below
    c.model_kw.primitives = ("none", "skip_connect", "sep_conv_3x3")
    r = run(c, wd)
    assert np.isfinite(r["accuracy"])
    out = derive(wd, eval_cells=3, eval_channels=4)
    assert len(out["genotype"]["normal"]) == 8 and out["search_device_hours"] > 0
    assert out["search_device"].endswith(jax.devices()[0].device_kind)  # e.g. "1x cpu"
    assert out["dfs_locations"]  # the supernet's learned DFS locations are recorded
    assert os.path.exists(os.path.join(wd, "cells.png"))
    with open(os.path.join(wd, "genotype.json")) as f:
        genotype = json.load(f)["genotype"]
    e = tiny_config(**{"model": "darts_eval", "conv.kind": "fs", "batch_size": 16,
                       "eval_batch_size": 32, "data_limit": 128, "num_epochs": 1})
    e.model_kw.depth = None
    e.model_kw.widths = None
    e.model_kw.genotype = genotype
    e.model_kw.cells = 3
    e.model_kw.channels = 4
    e.model_kw.auxiliary = True
    e.model_kw.drop_path = 0.2
    e.augment.cutout = 8
    r2 = run(e, str(tmp_path / "eval"))
    assert np.isfinite(r2["accuracy"]) and r2["stored_params"] > 0


def _collapse_search(tmp_path, name, **over):
    """A supernet built to collapse: the candidate ops none / skip / sep_conv_3x3 on tiny
    synthetic data, a few steps and an architecture lr 100x DARTS's, so the untrained convs
    lose to the identity on most edges."""
    c = tiny_config(**{"model": "darts_search", "nas.search": True, "conv.kind": "dense",
                       "batch_size": 32, "eval_batch_size": 64, "data_limit": 512,
                       "num_epochs": 3, "nas.arch_lr": 3e-2, "quiet": True, **over})
    c.model_kw.depth = None
    c.model_kw.widths = None
    c.model_kw.cells, c.model_kw.channels = 3, 8
    c.model_kw.primitives = ("none", "skip_connect", "sep_conv_3x3")
    wd = str(tmp_path / name)
    run(c, wd)
    return wd


def test_remedies_against_collapse(tmp_path):
    """Without a remedy skip connections win most of the normal cell; P-DARTS's cap of 2 skips
    (train.nas --max-skips, the default of the CPU search's derivation) makes at least 6 of the
    8 edges parametric. The search logs the architecture per epoch (plotted). DARTS-'s
    auxiliary skip is not asserted here: on this tiny case it did not change the count (1 vs 2
    parametric edges in one try), so only the cap's effect is a tested claim."""
    from fsjax.models.darts import parametric_edges

    base = _collapse_search(tmp_path, "base")
    plain = derive(base, 3, 8)["genotype"]["normal"]
    # collapsed: at least half the edges are skips (5 before bn_sums changed BatchNorm's float
    # rounding on the CPU, 4 since: the tiny search's outcome moves with rounding)
    assert sum(op == "skip_connect" for op, _ in plain) >= 4
    capped = derive(base, 3, 8, max_skips=2)
    assert sum(op == "skip_connect" for op, _ in capped["genotype"]["normal"]) <= 2
    assert capped["parametric_edges"]["normal"] >= 6
    assert capped["parametric_edges_uncapped"]["normal"] == parametric_edges(plain)
    free = derive(base, 3, 8, max_skips=2, max_free=2)   # the CPU search's derivation
    assert free["parametric_edges"]["normal"] >= 6 and free["max_free"] == 2
    assert np.asarray(free["arch_weights"]["normal"]).shape == (EDGES, 3)
    assert os.path.exists(os.path.join(base, "arch_evolution.png"))


def test_shared_edges_counts_same_op_input_and_node_in_either_order():
    from fsjax.models.darts import shared_edges

    a = [["sep_conv_3x3", 0], ["max_pool_3x3", 1], ["dil_conv_3x3", 0], ["skip_connect", 2],
         ["sep_conv_3x3", 1], ["sep_conv_3x3", 3], ["dil_conv_3x3", 2], ["dil_conv_3x3", 4]]
    b = [["max_pool_3x3", 1], ["sep_conv_3x3", 0],   # node 0: the same two, swapped: 2
         ["dil_conv_3x3", 1], ["skip_connect", 2],   # node 1: one input differs: 1
         ["dil_conv_3x3", 1], ["sep_conv_3x3", 3],   # node 2: one op differs: 1
         ["dil_conv_3x3", 2], ["dil_conv_3x3", 3]]   # node 3: one input differs: 1
    assert shared_edges(a, a) == 8 and shared_edges(a, b) == shared_edges(b, a) == 5
    # the same (op, input) into a different node does not count
    assert shared_edges(a[:2] + a[2:4], a[2:4] + a[:2]) == 0
    with pytest.raises(ValueError, match="equal length"):
        shared_edges(a, a[:6])


def test_pool_bn_keeps_a_max_pool_cell_on_the_convs_scale():
    """A genotype of max-pools only (the collapsed reduction cell): DARTS's plain pools stack
    maxima, so the classifier's features drift far above zero (the fast recipe diverged on
    them); with ``pool_bn`` every op's output has batch mean 0, and so do the features."""
    import jax.numpy as jnp
    from flax import nnx

    from fsjax import models

    pools = [["max_pool_3x3", i] for i in (0, 1, 0, 2, 1, 3, 2, 4)]
    genotype = {"normal": pools, "reduce": pools, "concat": [2, 3, 4, 5]}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 16, 16, 3)), jnp.float32)
    feats, means = {}, {}

    class Tap(nnx.Module):  # the classifier, recording its input
        def __init__(self, fc):
            self.fc = fc

        def __call__(self, f):
            feats["f"] = f
            return self.fc(f)

    for pool_bn in (False, True):
        m = models.create("darts_eval", genotype=genotype, cells=3, channels=4,
                          auxiliary=False, drop_path=0.0, pool_bn=pool_bn)
        m.fc = Tap(m.fc)
        m(x)
        means[pool_bn] = float(jnp.abs(feats["f"].mean(0)).max())
    assert means[True] < 1e-3 and means[False] > 1.0, means


def test_free_dropout_drops_only_the_parameter_free_candidates():
    """``free_dropout`` (P-DARTS's op-level dropout, extended to pooling): in training the
    skip's and the pool's outputs lose about the rate's share of their entries (the rest scaled
    by 1/(1-p)), the conv's output and the mixture's other terms are untouched; evaluation
    mode drops nothing."""
    import jax.numpy as jnp

    from fsjax import models
    from fsjax.nn import dropout_key

    prims = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
    m = models.create("darts_search", cells=3, channels=4, primitives=prims, free_dropout=0.5)
    cell = m.cells[0]
    assert cell.free == (False, True, True, False)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 4)), jnp.float32)
    with dropout_key(jax.random.key(0)):
        outs = [cell._op(0, j, x) for j in range(len(prims))]
    ref = [cell.edges[0][j](x) for j in range(len(prims))]
    np.testing.assert_array_equal(outs[3], ref[3])            # the conv: untouched
    for j in (1, 2):                                          # pool and skip: dropped
        dropped = np.asarray(outs[j] == 0) & np.asarray(ref[j] != 0)
        assert 0.4 < dropped.mean() < 0.6
        kept = ~np.asarray(outs[j] == 0)
        np.testing.assert_allclose(np.asarray(outs[j])[kept], 2 * np.asarray(ref[j])[kept],
                                   rtol=1e-6)
    m.eval()
    np.testing.assert_array_equal(cell._op(0, 2, x), x)       # evaluation: no dropout
    with pytest.raises(ValueError, match="dropout rate"):
        models.create("darts_search", cells=3, channels=4, primitives=prims, free_dropout=1.0)
