"""Train a derived DFSNet-NAS network: ``configs/nas/darts_eval.py:<genotype.json>[,<variant>]``
with variant fs<rho> (default fs4) or dfs<rho>, dense. DARTS evaluation settings: 20 cells,
36 channels, 600 epochs, batch 96, lr 0.025 cosine, cutout 16, auxiliary head 0.4,
drop path 0.2. Command::

    python -m train.main --config configs/nas/darts_eval.py:runs/nas-search/genotype.json,fs4

Result: docs/results.md.
"""

import json

from configs.variants import apply_variant
from train.configlib import base


def get_config(arg: str):
    path, _, variant = arg.partition(",")
    with open(path) as f:
        genotype = json.load(f)["genotype"]
    c = base()
    c.dataset = "cifar10"
    c.model = "darts_eval"
    c.model_kw.genotype = genotype
    c.model_kw.cells = 20
    c.model_kw.channels = 36
    c.model_kw.auxiliary = True
    c.model_kw.drop_path = 0.2
    apply_variant(c, variant or "fs4")
    c.num_epochs = 600
    c.batch_size = 96
    c.optimizer.lr = 0.025
    c.optimizer.weight_decay = 3e-4
    c.optimizer.grad_clip = 5.0
    c.schedule.name = "cosine"
    c.augment.cutout = 16
    return c
