"""The fast CIFAR-10 network and recipe (airbench94, arXiv 2404.00498): every conv kind on it.

``configs/cifar10/fast.py:<variant>[,<seed>[,<option>...]]`` with variant dense, fs<rho>,
dfs<rho>, ks<g> or wks<g> (configs/variants.py; seed 0 by default); options: ``no-whiten`` (an
ablation: the whitening conv keeps its random init and trains like the other convs) and
``epochs=<n>`` (the schedule stretched to n epochs: warm-up 23%, DFS locations frozen for the
last 2); ``compress,<step>[,<step>...]`` is the dense recipe with ``train.compress`` steps
(``thinet:0.5``, ``fs:4``, ``quant:8``, ...) that each fine-tune ``FINETUNE_EPOCHS`` epochs with
the same recipe at ``FINETUNE_LR`` of its lr;
``darts,<genotype.json>[,<variant>][,cells=<n>][,channels=<n>]`` trains a DFSNet-NAS genotype
(``python -m train.nas``) with this recipe (label smoothing, lookahead, TTA, schedule,
augmentation; lr ``NAS_LR``, no BatchNorm lr boost): a DARTS evaluation network of
``NAS_CELLS`` cells and ``NAS_CHANNELS`` channels unless given (5 cells x 16 channels: 38,454
stored weights and 25.6M MACs with FS rho=4; 3 x 16: 12,486 and 15.1M), no auxiliary head or
drop path, a BatchNorm without scale after each pooling op (``pool_bn``: with the plain pools
of DARTS's evaluation network the seed-1 genotype's max-pool reduction cells diverged at this
lr from the first step, loss 8 -> 62 -> 420; with it the loss fell 2.65 -> 2.01 in 10 steps),
every conv FS rho=4 by default (the searched supernet's DFS locations rounded, as DFSNet
does) or ``dense``.

Network: ``fsjax.models.create('airbench')`` (:class:`fsjax.models.AirbenchNet`): a 2x2
whitening conv 3->24 (set from the eigenvectors of 5,000 training images' patch covariance and
frozen; its bias trains for 3 epochs), three conv-pool-BN-GELU / conv-BN-GELU blocks of widths
64/256/256 (BatchNorm without a scale, momentum 0.6), max-pool 3, a linear head, logits x 1/9;
convs start from a partial identity. 1.97M weights, 118M MACs per image. The 3x3 convs take
the variant's kind; the whitening conv stays dense.

Recipe (airbench94's, on this repo's CIFAR-10 JPEG copy): batch 1024, 10 epochs (airbench: 9.9),
label smoothing 0.2, Nesterov SGD momentum 0.85 with airbench's decoupled lr 11.5 and weight
decay 0.0153 per 1024 examples, i.e. lr 1.5 on the mean loss and an L2 coefficient
0.0153/11.5 (BatchNorm biases at 64x the lr with the same decay per step); lr linear from 0.2x
to 1x over 23% of training, then linear to 0.07x; lookahead every 5 steps (decay
0.95^5 (t/T)^3, the weights and BatchNorm statistics; the result is the slow copy); a seeded
half of the images mirrored once and all of them on odd epochs, random 2-pixel translations of
the reflect-padded images; evaluation without TTA each epoch and with airbench's TTA (mirror +
1-pixel translations, 6 views) at the end; float32 on the CPU.

Command (the whole table, resumable: ``python -m benchmarks.cifar_table --table fast``)::

    python -m train.main --config configs/cifar10/fast.py:fs4 --workdir runs/fast/fs4-s0

Cost and result: dense 89.67% top-1, 90.61% with TTA (mean of two seeds; PyTorch, same
network and recipe: 89.85% / 90.60%); 44 minutes alone on both cores of the 2-core CPU (191
images/s), 78-90 minutes pinned to one core. ``no-whiten``: 88.76% / 89.89% (seed 0, -1.11 /
-0.76 points; 44 min). ``darts`` on the fdrop-s1 genotype, FS rho=4 (12,486 stored weights,
15.1M MACs): 67.60% / 69.91%, 76 minutes alone on both cores (119 images/s). Every row:
docs/results.md ("CIFAR-10, the fast network").
"""

from configs.compress.models import add_compress
from configs.variants import apply_variant
from train.configlib import base

EPOCHS = 10
# the derived NAS network: fewer MACs than the fast network's 118M (its own count in
# docs/results.md); a DARTS network's BatchNorm has a scale, so airbench's 64x BatchNorm-bias
# lr does not apply and the lr is the usual one for SGD at batch 1024
NAS_CELLS, NAS_CHANNELS, NAS_LR = 3, 16, 0.4
FINETUNE_EPOCHS = 3
FINETUNE_LR = 0.1   # of the recipe's peak lr
MOMENTUM = 0.85
LR_DECOUPLED, WD_DECOUPLED = 11.5, 0.0153   # airbench's, per 1024 examples


def _int_option(opt: str, minimums: dict) -> tuple[str, int] | None:
    """``key=<int>`` with key in ``minimums`` and the int at least its minimum, else None."""
    key, eq, val = opt.partition("=")
    if eq and key in minimums and val.isdigit() and int(val) >= minimums[key]:
        return key, int(val)
    return None


def get_config(arg: str = "dense"):
    variant, _, rest = arg.partition(",")
    if variant == "darts":
        import json

        path, *opts = rest.split(",")
        size = dict(cells=NAS_CELLS, channels=NAS_CHANNELS)
        kind = "fs4"
        for opt in opts:
            if kv := _int_option(opt, {"cells": 3, "channels": 4}):
                size[kv[0]] = kv[1]
            elif opt and "=" not in opt:
                kind = opt
            else:
                raise ValueError(f"fast.py: bad darts option {opt!r} in {arg!r}; valid: a conv "
                                 f"variant (fs4, dense, ...), cells=<int >= 3>, "
                                 f"channels=<int >= 4> (e.g. darts,<genotype.json>,fs4,cells=5)")
        with open(path) as f:
            genotype = json.load(f)["genotype"]
        c = get_config(kind)
        c.model = "darts_eval"
        c.model_kw.genotype = genotype
        c.model_kw.cells, c.model_kw.channels = size["cells"], size["channels"]
        c.model_kw.auxiliary, c.model_kw.drop_path, c.model_kw.pool_bn = False, 0.0, True
        c.optimizer.lr, c.optimizer.weight_decay, c.optimizer.norm_lr_scale = NAS_LR, 5e-4, 1.0
        c.optimizer.frozen = {}
        return c
    if variant == "compress":
        c = get_config("dense")
        return add_compress(c, tuple(rest.split(",")), FINETUNE_EPOCHS,
                            FINETUNE_LR * c.optimizer.lr)
    seed, *options = rest.split(",")
    epochs, no_whiten = EPOCHS, False
    for opt in options:
        if opt == "no-whiten":
            no_whiten = True
        elif kv := _int_option(opt, {"epochs": 3}):
            epochs = kv[1]
        else:
            raise ValueError(f"fast.py: unknown option {opt!r} in {arg!r}; valid: no-whiten, "
                             f"epochs=<int >= 3> (e.g. fast.py:dense,0,no-whiten,epochs=20)")
    c = base()
    c.dataset = "cifar10"
    c.model = "airbench"
    apply_variant(c, variant or "dense")
    c.seed = int(seed or 0)
    c.num_epochs = epochs
    c.batch_size = 1024
    c.eval_batch_size = 1000
    c.label_smoothing = 0.2
    c.optimizer.name = "sgd"
    c.optimizer.nesterov = True
    c.optimizer.momentum = MOMENTUM
    # airbench's decoupled form -> the mean-loss lr and the L2 coefficient of optax's SGD
    c.optimizer.lr = LR_DECOUPLED * c.batch_size / 1024 / (1 + 1 / (1 - MOMENTUM))
    c.optimizer.weight_decay = WD_DECOUPLED / LR_DECOUPLED
    c.optimizer.norm_lr_scale = 64.0
    c.optimizer.frozen = {"whiten/kernel": 0, "whiten/bias": 3}
    if no_whiten:  # the whitening conv from its random init, trained throughout
        c.data_init_examples = 0
        c.optimizer.frozen = {"whiten/bias": 3}
    c.schedule.name = "linear"
    c.schedule.warmup_epochs = 0.23 * epochs
    c.schedule.warmup_start_fraction = 0.2
    c.schedule.final_lr_fraction = 0.07
    c.lookahead.every = 5
    c.augment.crop_padding = 2
    c.augment.pad_mode = "reflect"
    c.augment.flip = True
    c.augment.alternate_flip = True
    c.tta = 2
    if c.conv.kind == "dfs":  # DFSNet: locations learned, rounded to FS for the last epochs
        c.locations.freeze_epoch = epochs - 2
    return c
