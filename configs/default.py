"""Embedded default: a small FS ResNet (ResNet-14, widths 16/32/64, rho=4) on Fashion-MNIST.

Command (also what ``python -m train.main`` runs with no arguments)::

    python -m train.main --config configs/default.py --workdir runs/default

Needs the Debian package ``dataset-fashion-mnist`` (``make data`` installs it).
Result: see the README ("Default run"), measured on the 2-core development CPU.
"""

from train.configlib import base


def get_config():
    c = base()
    c.dataset = "fashion_mnist"
    c.model = "resnet14"
    c.conv.kind = "fs"
    c.conv.compression = 4.0
    c.num_epochs = 3
    c.batch_size = 128
    c.optimizer.lr = 0.1
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "onecycle"
    c.augment.crop_padding = 2
    c.augment.flip = True
    c.label_smoothing = 0.1
    return c
