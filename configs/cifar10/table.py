"""The CPU CIFAR-10 table (docs/results.md, "CIFAR-10 on the CPU"): one recipe, every conv kind.

``configs/cifar10/table.py:<variant>[,<seed>]`` with variant dense, fs<rho>, dfs<rho>, ks<g> or
wks<g> (configs/variants.py) and seed 0 by default; ``compress,<step>`` is the dense recipe with
one ``train.compress`` step (``thinet:0.5``, ``fs:4``, ``quant:8``, ``quant:4``) that fine-tunes
``FINETUNE_EPOCHS`` at lr 0.01 (cosine); ThiNet also fine-tunes 1 epoch after each layer.
``darts,<genotype.json>`` trains a DFSNet-NAS genotype (``python -m train.nas``) with the same
recipe: a DARTS evaluation network of 5 cells, 16 channels, no auxiliary head or drop path,
every conv FS rho=4 (the searched supernet's DFS locations rounded, as DFSNet does).

Recipe, chosen to fit the 2-core CPU: CIFAR ResNet-8 (widths 16/32/64, 78k dense parameters;
ResNet-20 trains at 200 images/s there, 62 min per 15-epoch run, too slow for ten variants),
the full CIFAR-10 JPEG train and test sets, random crop (pad 4) + flip, batch 128, float32,
15 epochs of one-cycle (2 warm-up epochs to lr 0.1, cosine to 0), SGD momentum 0.9 (Nesterov),
weight decay 5e-4. DFS locations: Adam 1e-3, rounded to FS (frozen) for the last 3 epochs.

Command (the whole table, two runs at a time, resumable: ``python -m benchmarks.cifar_table``)::

    python -m train.main --config configs/cifar10/table.py:fs4 --workdir runs/table/fs4-s0
    python -m train.compress --config configs/cifar10/table.py:compress,thinet:0.5 \
        --config.compress.source=runs/table/dense-s0 --workdir runs/table/thinet50

Result: docs/results.md ("CIFAR-10 on the CPU").
"""

from configs.compress.models import add_compress
from configs.variants import apply_variant
from train.configlib import base

EPOCHS = 15
FINETUNE_EPOCHS = 5
# The derived network, at the search's size: 3 cells, 8 channels (8,576 stored parameters with
# FS rho=4). At 5 cells and 16 channels (about ResNet-8's size) a training step of batch 128
# took 2.4 s on one core (54 img/s, after the depthwise-conv speed-up; 33 img/s before): 15
# epochs would take 3.9 hours, beyond the table's CPU budget. 3x8 trains at 145 img/s.
NAS_CELLS, NAS_CHANNELS = 3, 8


def get_config(arg: str = "dense"):
    variant, _, seed = arg.partition(",")
    if variant == "compress":
        return add_compress(get_config("dense"), (seed,), FINETUNE_EPOCHS, 0.01)
    if variant == "darts":
        import json

        with open(seed) as f:
            genotype = json.load(f)["genotype"]
        c = get_config("fs4")
        c.model = "darts_eval"
        c.model_kw.genotype = genotype
        c.model_kw.cells, c.model_kw.channels = NAS_CELLS, NAS_CHANNELS
        c.model_kw.auxiliary, c.model_kw.drop_path = False, 0.0
        return c
    c = base()
    c.dataset = "cifar10"
    c.model = "resnet8"
    apply_variant(c, variant or "dense")
    c.seed = int(seed or 0)
    c.num_epochs = EPOCHS
    c.batch_size = 128
    c.optimizer.lr = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "onecycle"
    c.schedule.warmup_epochs = 2.0
    c.schedule.final_lr_fraction = 0.0
    c.augment.crop_padding = 4
    c.augment.flip = True
    if c.conv.kind == "dfs":
        c.locations.freeze_epoch = EPOCHS - 3
    return c
