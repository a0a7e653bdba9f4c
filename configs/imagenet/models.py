"""ImageNet configs: ``configs/imagenet/models.py:<model>,<variant>[,folder]`` with model
resnet50 | vgg16 and variant dense | fs<rho> | dfs<rho> | ks<g> | wks<g> (configs/variants.py).

The official FSNet ImageNet runs: ResNet-50 dense, fs2 and fs3.7; ThiNet prunes VGG-16. The data
stream from disk (``fsjax.data.stream``, grain worker processes): TFDS ``imagenet2012`` prepared
as ArrayRecord in ``config.data_dir`` (the TFDS data dir), or with ``,folder`` a JPEG folder
(``data_dir/train/<wnid>/*.JPEG``, ``data_dir/val`` in class folders or flat with
``data_dir/val_labels.txt``). Training: random-resized crop 224 + flip; evaluation: resize 256,
centre crop 224. A checkpoint every 1,000 steps inside an epoch too (a killed run resumes at the
same example). How to prepare the data and the commands for one GPU, 8 GPUs and several hosts:
docs/training.md ("ImageNet"). Not run by this project (no ImageNet, no GPU here).

Command (one host, all its GPUs)::

    python -m train.main --config configs/imagenet/models.py:resnet50,fs3.7 \
        --config.data_dir=$TFDS_DATA_DIR --config.stream.workers=8 --workdir runs/in-r50-fs3.7
"""

from configs.variants import apply_variant
from train.configlib import base


def get_config(arg: str = "resnet50,dense"):
    name, _, rest = arg.partition(",")
    variant, _, source = rest.partition(",")
    if source not in ("", "tfds", "folder"):
        raise ValueError(f"data source {source!r}; valid: tfds (default), folder")
    if name not in ("resnet50", "vgg16"):
        raise ValueError(f"model {name!r} has no ImageNet config; valid: resnet50, vgg16")
    c = base()
    c.dataset = "folder" if source == "folder" else "tfds:imagenet2012"
    c.stream.enabled = "on"
    c.stream.image_size = 224
    c.stream.workers = 8
    c.checkpoint_every_steps = 1000
    c.model = name
    if name == "resnet50":
        c.model_kw.stem = "imagenet"
        c.model_kw.stride_on = "1x1"
    else:
        c.model_kw.variant = "imagenet"
    apply_variant(c, variant or "dense")
    c.num_epochs = 90
    c.batch_size = 256
    c.optimizer.lr = 0.1
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "step"
    c.schedule.decay_points = (1 / 3, 2 / 3, 8 / 9)
    c.augment.crop_padding, c.augment.flip = 0, False  # the stream crops and flips
    c.label_smoothing = 0.0
    return c
