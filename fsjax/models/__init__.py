"""Model zoo. ``create(name, num_classes=..., conv=ConvFactory(...) | kind, **model_kw)``.

Names (``MODELS``): resnet8/14/20/32/44/56/110 (CIFAR, basic; ``widths``, ``depth``),
resnet164 (CIFAR, bottleneck), resnet18/34/50 (``stem='imagenet'|'cifar'``, ``depths``,
``widths``; resnet50 ``stride_on='1x1'`` Caffe / ``'3x3'`` torchvision), vgg16
(``variant='cifar'|'imagenet'``, ``widths``, ``head='fc'|'linear'|'gap'``, ``fc_width``),
airbench (the fast wide CIFAR network of airbench94: ``widths``, ``logit_scale``, ...;
:class:`AirbenchNet`),
mobilenet_v1 (``width``, ``stem_stride``), densenet_bc100 (``depth``, ``growth``),
darts_search (``cells``, ``channels``), darts_eval (``genotype``, ``cells``, ``channels``,
``auxiliary``, ``drop_path``, ``pool_bn``), ssd (detector: ``backbone``, ``backbone_kw``, ``image_size``,
``extras``, ``aspect_ratios``, ``min_scale``, ``max_scale``; :class:`SSD`).
"""

from __future__ import annotations

from flax import nnx

from fsjax import kinds
from fsjax.models.airbench import AirbenchNet
from fsjax.models.darts import DartsEval, DartsSearch
from fsjax.models.densenet import DenseNetBC
from fsjax.models.layers import ConvBN, ConvFactory, batch_norm
from fsjax.models.mobilenet import MobileNetV1
from fsjax.models.resnet import ResNet
from fsjax.models.ssd import SSD
from fsjax.models.vgg import VGG

__all__ = ["MODELS", "MODEL_CLASSES", "create", "arch_name", "model_options", "ConvFactory",
           "ConvBN", "batch_norm", "ResNet", "VGG", "MobileNetV1", "DenseNetBC", "SSD",
           "AirbenchNet"]


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
    "airbench": lambda num_classes, **kw: AirbenchNet(num_classes, **kw),
    "mobilenet_v1": lambda num_classes, **kw: MobileNetV1(num_classes, **kw),
    "darts_search": lambda num_classes, **kw: DartsSearch(num_classes, **kw),
    "ssd": lambda num_classes, **kw: SSD(num_classes, **kw),
    "darts_eval": lambda num_classes, **kw: DartsEval(num_classes, **kw),
    "densenet_bc100": lambda num_classes, depth=100, growth=12, **kw: DenseNetBC(
        num_classes, depth=depth, growth=growth, **kw),
}


# the class each zoo builder constructs (its keyword options and defaults are the model's)
MODEL_CLASSES = {**{n: ResNet for n in MODELS if n.startswith("resnet")}, "vgg16": VGG,
                 "airbench": AirbenchNet, "mobilenet_v1": MobileNetV1,
                 "darts_search": DartsSearch, "ssd": SSD, "darts_eval": DartsEval,
                 "densenet_bc100": DenseNetBC}
_NOT_OPTIONS = ("num_classes", "factory", "rngs", "in_channels")


def model_options() -> tuple[str, ...]:
    """Every keyword option some zoo model takes (its builder's, and its class's keyword-only
    ones), sorted: the keys of a trainer config's ``model_kw``."""
    import inspect

    names = set()
    for name, build in MODELS.items():
        names |= {p.name for p in inspect.signature(build).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        names |= {p.name for p in inspect.signature(MODEL_CLASSES[name].__init__).parameters
                  .values() if p.kind == p.KEYWORD_ONLY}
    return tuple(sorted(names - set(_NOT_OPTIONS)))


def create(name: str, *, num_classes: int = 10, conv: ConvFactory | str = "dense", seed: int = 0,
           rngs: nnx.Rngs | None = None, **model_kw) -> nnx.Module:
    """Build a zoo model. ``conv``: a :class:`ConvFactory` or a conv kind string."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    factory = ConvFactory(kind=conv) if isinstance(conv, str) else conv
    try:
        model = MODELS[name](num_classes, factory=factory, rngs=rngs or nnx.Rngs(seed),
                             **model_kw)
    except TypeError as e:
        raise ValueError(f"model {name!r}: bad option ({e})") from None
    _check_applied(model, name, factory)
    return model


def _check_applied(model, name: str, factory: ConvFactory) -> None:
    """A compressed kind that no layer took (e.g. KS with a group size that divides no input
    channel count) is an error, not a silently dense model."""
    from fsjax.nn.conv import ConvBase

    asked = {factory.kind} | {o.get("kind", factory.kind) if isinstance(o, dict) else o
                              for o in dict(factory.overrides or ()).values()}
    if not any(kinds.get(k).compressed for k in asked):
        return
    convs = [n for _, n in nnx.iter_graph(model) if isinstance(n, ConvBase)]
    if not convs or any(c.spec.conv_kind.compressed for c in convs):
        return
    cins = sorted({c.spec.in_features for c in convs if c.spec.feature_group_count == 1})
    why = f"min_params={factory.min_params}" if factory.min_params else ""
    why = kinds.get(factory.kind).unapplied_hint(cins, factory.group_size) or why
    raise ValueError(f"conv kind {factory.kind!r} was applied to no conv layer of {name}: {why}"
                     f" (every layer would stay dense)")


_CIFAR_RESNETS = {n for n in MODELS if n.startswith("resnet") and n[6:].isdigit()
                  and n not in ("resnet18", "resnet34", "resnet50")}  # named by their depth


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        return "/".join(_fmt(x) for x in v)
    return str(v)


_NO = object()


def _same(a, b) -> bool:
    norm = lambda v: tuple(v) if isinstance(v, (list, tuple)) else v
    return a is not _NO and norm(a) == norm(b)


def _defaults(name: str) -> dict:
    """Default options of the zoo builder (and of the class it calls), e.g. depth=56 (the CIFAR
    ResNet builders' default depth)."""
    import inspect

    out = {}
    targets = [MODELS.get(name), MODEL_CLASSES[name].__init__ if name in MODEL_CLASSES else None]
    for t in filter(None, targets):
        for p in inspect.signature(t).parameters.values():
            if p.default is not inspect.Parameter.empty:
                out.setdefault(p.name, p.default)
    return out


def arch_name(name: str, model_kw: dict | None = None) -> str:
    """The architecture that ``create(name, **model_kw)`` builds, named by its resolved options:
    ``arch_name('resnet56', {'depth': 8})`` is ``'resnet8'``; other non-default options follow
    in brackets (``'resnet8(widths=4/8/8)'``). ``in_channels`` (set by the data) is left out."""
    defaults = _defaults(name)
    kw = {k: v for k, v in (model_kw or {}).items()
          if v is not None and k != "in_channels" and not _same(defaults.get(k, _NO), v)}
    base = name
    if name in _CIFAR_RESNETS and "depth" in kw:
        depth = int(kw.pop("depth"))
        base = f"resnet{depth}"
        if name == "resnet164" and depth != 164:
            base += "-bottleneck"
    opts = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(kw.items()))
    return f"{base}({opts})" if opts else base
