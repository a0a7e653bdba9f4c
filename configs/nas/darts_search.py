"""DFSNet NAS: first-order DARTS search on CIFAR-10 (JPEG copy), every conv a DFSConv.

``configs/nas/darts_search.py:<rho>`` (default 4). DARTS settings: 8 cells, 16 channels,
batch 64, 50 epochs, weights SGD lr 0.025 cosine (momentum 0.9, wd 3e-4), alphas Adam 3e-4
(wd 1e-3); DFS locations share the architecture half of the data. Command::

    python -m train.main --config configs/nas/darts_search.py:4 --workdir runs/nas-search
    python -m train.nas --workdir runs/nas-search        # genotype.json + cells.png

Result: docs/results.md (the real-size search was not run: no GPU in this session).
"""

from train.configlib import base


def get_config(rho: str = "4"):
    c = base()
    c.dataset = "cifar10"
    c.model = "darts_search"
    c.model_kw.cells = 8
    c.model_kw.channels = 16
    c.conv.kind = "dfs"
    c.conv.compression = float(rho)
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
    return c
