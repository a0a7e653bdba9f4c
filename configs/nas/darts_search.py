"""DFSNet NAS: first-order DARTS search on CIFAR-10 (JPEG copy), every conv a DFSConv.

``configs/nas/darts_search.py:<rho>`` (default 4): the DARTS settings: 8 cells, 16 channels,
batch 64, 50 epochs, weights SGD lr 0.025 cosine (momentum 0.9, wd 3e-4), alphas Adam 3e-4
(wd 1e-3); DFS locations share the architecture half of the data. Command::

    python -m train.main --config configs/nas/darts_search.py:4 --workdir runs/nas-search
    python -m train.nas --workdir runs/nas-search        # genotype.json + cells.png

``configs/nas/darts_search.py:cpu[,dense][,<seed>]``: the search that fits the 2-core CPU (the
fast table's NAS rows, docs/results.md): 3 cells, 16 channels, the candidate ops none,
max_pool_3x3, skip_connect, sep_conv_3x3, dil_conv_3x3, PC-DARTS partial channels (K=4) with
edge normalisation, 12,000 training images (6,000 pairs: weights on one image of each,
architecture on the other; the first two records used 16,000), 5 epochs of batch 64, weights
SGD lr 0.05 cosine, the architecture waiting for the first 2 epochs (PC-DARTS's warm-up),
DARTS-'s auxiliary skip decaying from 1 to 0; ``dense``: the same supernet with dense convs
(the DFS-vs-dense comparison). Derive with ``python -m train.nas --workdir DIR --max-skips 2
--max-free 2`` (P-DARTS's cap of 2 skips, extended to every parameter-free op of the normal
cell: this search collapses to max-pooling, which the skip cap does not touch).
``arch_lr=<lr>``: the architecture's Adam lr (default 6e-4). ``free_drop=<p>``: dropout of rate
p on the outputs of the parameter-free candidates while searching (P-DARTS's op-level dropout,
extended from skips to pooling; **default 0.5** since both seeds of the DFS supernet ranked 5-6
of 8 normal-cell edges parametric with it against 3 of 8 without; ``free_drop=0`` is the search
of the records ``nas-search-s0/s1/dense/alr``, whose commands say ``cpu,<seed>`` from before
this default). Measured without it (seed 0, DFS supernet, revision 9e31b8d, docs/results.md
"DFSNet NAS on the CPU"): 72 minutes on one core of the 2-core CPU next to the test suite on
the other (5 epochs at 10-11 images/s, 2.4 min compile), peak host memory 5.7 GB; the searched
cells still collapsed, to max-pooling this time (normal cell 3 of 8 edges parametric, reduction
cell 0 of 8): over 3 architecture epochs at this lr the softmax weights moved at most 0.018
from uniform, so small early differences in favour of parameter-free ops decide the genotype.
With ``arch_lr=6e-3`` (10x; 68.5 min): normal cell 4 of 8 parametric, reduction 0 of 8, still
max-pooling: not a remedy by itself. At 12,000 images (revision e939f09/0df1dd0, one core each,
docs/results.md): seed 0 46 min (0.77 device-hours, next to the test suite; peak host memory
5.3 GB), seed 1 61 min (next to tests and benchmarks on the other core), the dense supernet 45
min (4.9 GB): the <= 60 min budget holds on an unshared core. All three supernets still rank 3
of 8 normal-cell edges parametric (max-pooling leads); the derivation cap ``--max-free 2``
makes it 6 of 8. With ``free_drop=0.5`` (seed 0, revision a0ab628, 53.5 min on one core next to
a training run; 5.7 GB): 5 of 8 ranked parametric in the normal cell (reduction 1 of 8), the
first setting that moves the supernet itself; seed 1 (revision 3255b12, 64 min on one core next
to a training run; 5.5 GB): 6 of 8 ranked parametric, the target met without the derivation cap
(reduction 1 of 8). Command of the default search (about an hour on one core)::

    python -m train.main --config configs/nas/darts_search.py:cpu,1 --workdir runs/search
    python -m train.nas --workdir runs/search --max-skips 2 --max-free 2 --cells 3 --channels 16
"""

from train.configlib import base


def get_config(arg: str = "4"):
    opts = arg.split(",")
    c = base()
    c.dataset = "cifar10"
    c.model = "darts_search"
    c.model_kw.cells = 8
    c.model_kw.channels = 16
    c.conv.kind = "dfs"
    c.conv.compression = 4.0
    c.nas.search = True
    c.num_epochs = 50
    c.batch_size = 64
    c.optimizer.lr = 0.025
    c.optimizer.weight_decay = 3e-4
    c.optimizer.grad_clip = 5.0
    c.schedule.name = "cosine"
    c.schedule.final_lr_fraction = 0.04
    c.locations.optimizer = "adam"
    c.locations.lr = 3e-4
    if opts[0] != "cpu":
        c.conv.compression = float(opts[0])
        return c
    bad = [o for o in opts[1:] if o != "dense" and not o.isdigit()
           and _opt(o, "arch_lr") is None and _opt(o, "free_drop") is None]
    if bad:
        raise ValueError(f"darts_search.py:cpu options are 'dense', a seed, arch_lr=<lr > 0> and"
                         f" free_drop=<rate in [0, 1)>; got {bad[0]!r}")
    if "dense" in opts:
        c.conv.kind = "dense"
    c.seed = next((int(o) for o in opts[1:] if o.isdigit()), 0)
    c.model_kw.cells, c.model_kw.channels = 3, 16
    c.model_kw.primitives = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3",
                             "dil_conv_3x3")
    c.model_kw.partial_channels, c.model_kw.edge_norm = 4, True
    c.data_limit, c.eval_limit = 12000, 2000  # 6,000 pairs: the <= 60 min budget
    c.num_epochs = 5
    c.optimizer.lr = 0.05
    c.nas.warmup_epochs = 2.0
    c.nas.aux_skip = True
    c.nas.arch_lr = next((_opt(o, "arch_lr") for o in opts[1:] if _opt(o, "arch_lr")), 6e-4)
    c.model_kw.free_dropout = next(
        (_opt(o, "free_drop") for o in opts[1:] if _opt(o, "free_drop") is not None), 0.5)
    return c


def _opt(opt: str, key: str) -> float | None:
    """``<key>=<v>`` -> v if valid (arch_lr: > 0; free_drop: in [0, 1)), else None."""
    name, _, v = opt.partition("=")
    try:
        x = float(v) if name == key else None
    except ValueError:
        return None
    ok = x is not None and (0 <= x < 1 if key == "free_drop" else x > 0)
    return x if ok else None
