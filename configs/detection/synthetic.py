"""SSD on the synthetic detection scenes (Fashion-MNIST items on textured backgrounds, 64x64,
up to 4 objects; :func:`fsjax.data.detection.synthetic_scenes`), offline, sized for the CPU.

``configs/detection/synthetic.py:<variant>[,dense_heads]`` with variant dense (default),
fs<rho>, dfs<rho>, ks<g> or wks<g>: every conv of the detector (backbone, extra layers, heads)
takes it, or every conv but the prediction heads with ``dense_heads``. Detector:
ResNet-8 backbone (widths 16/32/64, stride-2 stem), maps 16/8/4/2/1, 1,524 default boxes.
Recipe: 8,000 training scenes, random crop (side >= 0.5) + flip, batch 64, SGD momentum 0.9
(Nesterov) lr 0.05 one-cycle, weight decay 5e-4. Command::

    python -m train.main --config configs/detection/synthetic.py:fs4 --workdir runs/det-fs4

Results: docs/results.md ("Detection").
"""

from configs.variants import apply_variant
from train.configlib import base


def get_config(arg: str = "dense"):
    variant, _, heads = arg.partition(",")
    if heads not in ("", "dense_heads"):
        raise ValueError(f"configs/detection/synthetic.py:{arg}: the second part must be "
                         f"'dense_heads' or absent; got {heads!r}")
    c = base()
    c.dataset = "synthetic_detection"
    c.model = "ssd"
    c.model_kw.backbone = "resnet"
    apply_variant(c, variant or "dense")
    if heads:
        c.conv.overrides = {"head*": "dense"}
    c.num_epochs = 20
    c.batch_size = 64
    c.eval_batch_size = 250
    c.optimizer.lr = 0.05
    c.optimizer.nesterov = True
    c.optimizer.weight_decay = 5e-4
    c.optimizer.grad_clip = 5.0
    c.schedule.name = "onecycle"
    c.schedule.warmup_epochs = 1.0
    c.augment.flip = True
    c.detection.image_size = 64
    c.detection.max_objects = 4
    return c
