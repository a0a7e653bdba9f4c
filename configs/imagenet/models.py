"""ImageNet configs (for users who have ImageNet prepared for TFDS):
``configs/imagenet/models.py:<model>,<variant>`` with model resnet50 | vgg16.

The official FSNet ImageNet runs: ResNet-50 dense, fs2 and fs3.7. The data stream from the host
(``on_device=False``); ``data_dir`` is the TFDS data dir holding ``imagenet2012`` (prepared with
TensorFlow from the manual-download archives). Not run by this project (no ImageNet here).

Command::

    python -m train.main --config configs/imagenet/models.py:resnet50,fs3.7 \\
        --config.data_dir=$TFDS_DATA_DIR --workdir runs/in-r50-fs3.7
"""

from configs.variants import apply_variant
from train.configlib import base


def get_config(arg: str = "resnet50,dense"):
    name, _, variant = arg.partition(",")
    if name not in ("resnet50", "vgg16"):
        raise ValueError(f"model {name!r} has no ImageNet config; valid: resnet50, vgg16")
    c = base()
    c.dataset = "tfds:imagenet2012"
    c.model = name
    if name == "resnet50":
        c.model_kw.stem = "imagenet"
        c.model_kw.stride_on = "1x1"
    else:
        c.model_kw.variant = "imagenet"
    apply_variant(c, variant or "dense")
    c.on_device = False
    c.num_epochs = 90
    c.batch_size = 256
    c.optimizer.lr = 0.1
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "step"
    c.schedule.decay_points = (1 / 3, 2 / 3, 8 / 9)
    c.augment.crop_padding = 0
    c.label_smoothing = 0.0
    return c
