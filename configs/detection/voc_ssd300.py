"""The FSNet paper's detection recipe: SSD300 with a VGG-16 backbone on PASCAL VOC 2007
(trainval -> test), for users with the data and a GPU. Not run by this project yet (no GPU in
the sessions so far); the paper's figures are in docs/results.md ("Detection").

``configs/detection/voc_ssd300.py:<variant>`` (dense, fs<rho>, ...). SSD300 (Liu et al.
2016): 300x300 input, conv4_3 (L2-normalised) / fc7 / 4 extra maps (38/19/10/5/3/1 in the paper;
fsjax's VGG pools with floor and its extras use SAME padding: 37/18/9/5/3/2),
aspect ratios 2 and 3, SGD lr 1e-3 momentum 0.9 weight decay 5e-4, batch 32, 120k
iterations. The paper fine-tunes from an ImageNet VGG-16; start from one with
``--config.init_weights=<fsjax export>``. Data: ``--config.data_dir`` is the folder holding
``VOCdevkit/VOC2007`` (``VOCtrainval_06-Nov-2007.tar`` and ``VOCtest_06-Nov-2007.tar``
untarred there). Command::

    python -m train.main --config configs/detection/voc_ssd300.py:fs4 \\
        --config.data_dir=/data/voc --workdir runs/ssd300-fs4
"""

from configs.variants import apply_variant
from train.configlib import base


def get_config(variant: str = "dense"):
    c = base()
    c.dataset = "voc"
    c.model = "ssd"
    c.model_kw.backbone = "vgg16"
    c.model_kw.backbone_kw = {"variant": "imagenet"}
    c.model_kw.extras = (512, 256, 256, 256)
    c.model_kw.aspect_ratios = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
    c.model_kw.min_scale = 0.2
    c.model_kw.max_scale = 0.9
    apply_variant(c, variant or "dense")
    c.detection.image_size = 300
    c.detection.max_objects = 0  # all objects of an image
    c.detection.min_crop = 0.3
    c.batch_size = 32
    c.eval_batch_size = 32
    c.num_epochs = 232  # 120k iterations of 32 on VOC07 trainval (5,011 images)
    c.optimizer.lr = 1e-3
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "step"
    c.schedule.decay_points = (0.667, 0.833)
    return c
