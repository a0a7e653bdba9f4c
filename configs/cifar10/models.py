"""CIFAR-10 (JPEG copy) configs: ``configs/cifar10/models.py:<model>,<variant>``.

Models: resnet18 (CIFAR stem), resnet56, resnet110, resnet164, vgg16, mobilenet_v1,
densenet_bc100. Variants: dense, fs<rho>, dfs<rho>, ks<g>, wks<g> (configs/variants.py).

Recipe (FSNet paper): SGD momentum 0.9, weight decay 5e-4 (1e-4 for the deep CIFAR ResNets and
DenseNet), batch 128, lr 0.1 divided by 10 at 50% and 75% of 200 epochs (300 for DenseNet),
random crop (pad 4) + flip. ResNet-18 uses the fast recipe of docs/results.md (batch 512, 30
epochs, one-cycle, label smoothing 0.1, flip TTA, bf16 on GPU).

Command::

    python -m train.main --config configs/cifar10/models.py:resnet56,fs4 --workdir runs/r56-fs4

Results: docs/results.md lists what has been run, with hardware and wall time; rows that could
not be run say why.
"""

from configs.variants import apply_variant
from train.configlib import base

MODELS = {
    "resnet18": dict(model_kw=dict(stem="cifar"), epochs=30, fast=True),
    "resnet56": dict(epochs=200, wd=1e-4),
    "resnet110": dict(epochs=200, wd=1e-4),
    "resnet164": dict(epochs=200, wd=1e-4),
    "vgg16": dict(epochs=200),
    "mobilenet_v1": dict(model_kw=dict(stem_stride=1), epochs=200, wd=4e-5),
    "densenet_bc100": dict(epochs=300, wd=1e-4, batch=64),
}


def get_config(arg: str = "resnet56,fs4"):
    name, _, variant = arg.partition(",")
    if name not in MODELS:
        raise ValueError(f"model {name!r} has no CIFAR-10 config; valid: {', '.join(MODELS)}")
    m = MODELS[name]
    c = base()
    c.dataset = "cifar10"
    c.model = name
    for k, v in m.get("model_kw", {}).items():
        c.model_kw[k] = v
    apply_variant(c, variant or "dense")
    c.num_epochs = m["epochs"]
    c.batch_size = m.get("batch", 128)
    c.optimizer.weight_decay = m.get("wd", 5e-4)
    c.schedule.name = "step"
    if m.get("fast"):
        c.batch_size = 512
        c.optimizer.lr = 0.4
        c.optimizer.nesterov = True
        c.schedule.name = "onecycle"
        c.schedule.warmup_epochs = 6
        c.label_smoothing = 0.1
        c.tta = 1
    return c
