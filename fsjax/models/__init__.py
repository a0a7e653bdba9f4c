"""Model zoo. ``create(name, num_classes=..., conv=ConvFactory(...) | kind, **model_kw)``.

Names (``MODELS``): resnet8/14/20/32/44/56/110 (CIFAR, basic; ``widths``, ``depth``),
resnet164 (CIFAR, bottleneck), resnet18/34/50 (``stem='imagenet'|'cifar'``, ``depths``,
``widths``; resnet50 ``stride_on='1x1'`` Caffe / ``'3x3'`` torchvision), vgg16
(``variant='cifar'|'imagenet'``, ``widths``), mobilenet_v1 (``width``, ``stem_stride``),
densenet_bc100 (``depth``, ``growth``), darts_search (``cells``, ``channels``), darts_eval
(``genotype``, ``cells``, ``channels``, ``auxiliary``, ``drop_path``).
"""

from __future__ import annotations

from flax import nnx

from fsjax.models.darts import DartsEval, DartsSearch
from fsjax.models.densenet import DenseNetBC
from fsjax.models.layers import ConvBN, ConvFactory, batch_norm
from fsjax.models.mobilenet import MobileNetV1
from fsjax.models.resnet import ResNet
from fsjax.models.vgg import VGG

__all__ = ["MODELS", "create", "ConvFactory", "ConvBN", "batch_norm", "ResNet", "VGG",
           "MobileNetV1", "DenseNetBC"]


def _cifar_resnet(default_depth, bottleneck=False):
    def build(num_classes, shortcut="B", widths=(16, 32, 64), depth=default_depth, **kw):
        per = 9 if bottleneck else 6
        if depth < per + 2 or (depth - 2) % per:
            raise ValueError(f"CIFAR ResNet depth must be {per}n+2; got {depth}")
        if bottleneck:
            n = (depth - 2) // 9
            return ResNet("bottleneck", (n,) * 3, tuple(widths), num_classes, stem="cifar",
                          shortcut=shortcut, **kw)
        n = (depth - 2) // 6
        return ResNet("basic", (n,) * 3, tuple(widths), num_classes, stem="cifar",
                      shortcut=shortcut, **kw)
    return build


def _resnet(block, default_depths):
    def build(num_classes, stem="cifar", depths=default_depths, widths=(64, 128, 256, 512), **kw):
        return ResNet(block, tuple(depths), tuple(widths), num_classes, stem=stem, **kw)
    return build


MODELS = {
    "resnet8": _cifar_resnet(8),
    "resnet14": _cifar_resnet(14),
    "resnet20": _cifar_resnet(20),
    "resnet32": _cifar_resnet(32),
    "resnet44": _cifar_resnet(44),
    "resnet56": _cifar_resnet(56),
    "resnet110": _cifar_resnet(110),
    "resnet164": _cifar_resnet(164, bottleneck=True),
    "resnet18": _resnet("basic", (2, 2, 2, 2)),
    "resnet34": _resnet("basic", (3, 4, 6, 3)),
    "resnet50": _resnet("bottleneck", (3, 4, 6, 3)),
    "vgg16": lambda num_classes, **kw: VGG(num_classes, **kw),
    "mobilenet_v1": lambda num_classes, **kw: MobileNetV1(num_classes, **kw),
    "darts_search": lambda num_classes, **kw: DartsSearch(num_classes, **kw),
    "darts_eval": lambda num_classes, **kw: DartsEval(num_classes, **kw),
    "densenet_bc100": lambda num_classes, depth=100, growth=12, **kw: DenseNetBC(
        num_classes, depth=depth, growth=growth, **kw),
}


def create(name: str, *, num_classes: int = 10, conv: ConvFactory | str = "dense", seed: int = 0,
           rngs: nnx.Rngs | None = None, **model_kw) -> nnx.Module:
    """Build a zoo model. ``conv``: a :class:`ConvFactory` or a conv kind string."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    factory = ConvFactory(kind=conv) if isinstance(conv, str) else conv
    try:
        return MODELS[name](num_classes, factory=factory, rngs=rngs or nnx.Rngs(seed), **model_kw)
    except TypeError as e:
        raise ValueError(f"model {name!r}: bad option ({e})") from None
