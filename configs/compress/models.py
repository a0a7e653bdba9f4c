"""Compression pipelines (``python -m train.compress``): ``configs/compress/models.py:<name>``.

- ``resnet56`` (CIFAR-10): the trained dense ResNet-56 -> ThiNet 50% (the first conv of every
  block) -> FS rho=4 -> 8-bit PTQ;
- ``vgg16`` (CIFAR-10): dense VGG-16 -> ThiNet 50% (conv1_1..conv4_3) -> FS rho=4 -> 8-bit;
- ``resnet50`` (ImageNet, TFDS ``imagenet2012``): dense -> ThiNet 50% -> FS rho=2 -> 8-bit.

Command::

    python -m train.compress --config configs/compress/models.py:resnet56 \
        --config.compress.source=runs/r56-dense --workdir runs/compress-r56

Without ``compress.source`` the dense model is trained first (the model's full recipe). Each
step fine-tunes ``compress.finetune_epochs``. Results: docs/results.md ("Compression
pipeline"); re-running resumes.
"""

from configs.cifar10.models import get_config as cifar_config
from configs.imagenet.models import get_config as imagenet_config
from train.configlib import compress_block, prune_block

PIPELINES = {
    "resnet56": (lambda: cifar_config("resnet56,dense"), ("thinet:0.5", "fs:4", "quant:8")),
    "vgg16": (lambda: cifar_config("vgg16,dense"), ("thinet:0.5", "fs:4", "quant:8")),
    "resnet50": (lambda: imagenet_config("resnet50,dense"), ("thinet:0.5", "fs:2", "quant:8")),
}


def add_compress(c, stages, finetune_epochs=10, finetune_lr=0.01):
    """Add the ``compress`` and ``prune`` blocks that ``train.compress`` reads to ``c``
    (``train.configlib``'s one schema of each)."""
    compress_block(c, stages=tuple(stages), finetune_epochs=finetune_epochs,
                   finetune_lr=finetune_lr)
    return prune_block(c, finetune_lr=finetune_lr, final_epochs=finetune_epochs,
                       final_lr=finetune_lr)


def get_config(name: str = "resnet56"):
    if name not in PIPELINES:
        raise ValueError(f"no compression pipeline {name!r}; valid: {', '.join(PIPELINES)}")
    make, stages = PIPELINES[name]
    return add_compress(make(), stages)
