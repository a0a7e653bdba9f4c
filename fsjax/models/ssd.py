"""SSD (Liu et al. 2016): a single-shot detector on any zoo backbone, every conv from the factory.

The backbone's ``feature_maps`` (ResNet stages, VGG-16 stages, MobileNet-V1 resolutions) give
the first two maps; extra layers (1x1 reduce + 3x3 stride-2 ConvBN) halve the last one down to
1x1; on every map a 3x3 conv predicts ``A x 4`` box offsets and another ``A x (K + 1)`` class
logits (class 0 = background), ``A`` default boxes per cell (:func:`fsjax.ops.default_boxes`).
With ``conv='fs' | 'dfs' | 'ks' | 'wks'`` (and per-layer overrides on the names ``stem``,
``stage*``, ``conv*_*``, ``block*``, ``fc6``, ``fc7``, ``extra*``, ``head*.loc``,
``head*.cls``) the whole detector is compressed, heads included.

VGG-16 as in SSD300: conv4_3 (L2-normalised with a learned per-channel scale, initialised to
20) and ``fc7`` (pool5 3x3/1, ``fc6`` 3x3 dilation 6, ``fc7`` 1x1, on conv5_3). The paper's
SSD300 is ``backbone='vgg16'``, ``backbone_kw={'variant': 'imagenet'}``, 300x300 input,
``extras=(512, 256, 256, 256)``, aspect ratios ``((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax import ops
from fsjax.models.layers import ConvBN, ConvFactory, max_pool
from fsjax.models.mobilenet import MobileNetV1
from fsjax.models.resnet import ResNet
from fsjax.models.vgg import VGG

__all__ = ["SSD", "BACKBONES"]

BACKBONES = ("resnet", "vgg16", "mobilenet_v1")


class L2Norm(nnx.Module):
    """``x / ||x||_2`` over channels, times a learned per-channel scale (SSD's conv4_3)."""

    def __init__(self, channels: int, init: float = 20.0):
        self.scale = nnx.Param(jnp.full((channels,), init, jnp.float32))

    def __call__(self, x):
        n = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), -1, keepdims=True) + 1e-10)
        return (x / n * self.scale[...]).astype(x.dtype)


def _backbone(name, factory, in_channels, kw, rngs):
    kw = dict(kw or {})
    if name == "resnet":
        kw.setdefault("depths", (1, 1, 1))
        kw.setdefault("widths", (16, 32, 64))
        kw.setdefault("stem_stride", 2)
        return ResNet(kw.pop("block", "basic"), kw.pop("depths"), kw.pop("widths"), 1,
                      in_channels=in_channels, factory=factory, rngs=rngs, **kw)
    if name == "vgg16":
        return VGG(1, in_channels=in_channels, factory=factory, rngs=rngs, **kw)
    if name == "mobilenet_v1":
        kw.setdefault("stem_stride", 2)
        return MobileNetV1(1, in_channels=in_channels, factory=factory, rngs=rngs, **kw)
    raise ValueError(f"SSD backbone {name!r} is not valid; valid: {', '.join(BACKBONES)}")


class SSD(nnx.Module):
    """Single-shot detector.

    Args:
      num_classes: object classes ``K`` (the background is added).
      backbone: ``'resnet'`` (options ``depths``, ``widths``, ``block``, ``stem``,
        ``stem_stride``; default a ResNet-8 with a stride-2 stem), ``'vgg16'`` or
        ``'mobilenet_v1'``; ``backbone_kw`` passes options to it.
      image_size: input side (square), fixes the feature map sizes and default boxes.
      extras: channels of the extra maps after the backbone's two; default enough stride-2
        maps to reach 1x1, as wide as the last backbone map (VGG: SSD300's fc7/2 then fc7/4).
      aspect_ratios: per map, the ratios > 1 of :func:`fsjax.ops.default_boxes`; default
        ``(2,)`` on the first and last two maps and ``(2, 3)`` between.
      min_scale, max_scale: default box scales of the first and last map.
    """

    def __init__(self, num_classes, *, backbone="resnet", backbone_kw=None, image_size=64,
                 extras=None, aspect_ratios=None, min_scale=0.2, max_scale=0.9, in_channels=3,
                 factory=ConvFactory(), rngs):
        if num_classes < 1:
            raise ValueError(f"SSD num_classes must be >= 1; got {num_classes}")
        self.backbone = _backbone(backbone, factory, in_channels, backbone_kw, rngs)
        for head in ("fc", "head", "dropout"):  # the classifier is not used
            if hasattr(self.backbone, head):
                setattr(self.backbone, head, None)
        self.num_classes, self.image_size = num_classes, int(image_size)
        chans = list(self.backbone.stage_channels)
        self.taps = (3, 4) if backbone == "vgg16" else (len(chans) - 2, len(chans) - 1)
        c1, c2 = chans[self.taps[0]], chans[self.taps[1]]
        self.l2norm = L2Norm(c1) if backbone == "vgg16" else None
        if backbone == "vgg16":
            w = max(8, c2 * 2)  # fc6/fc7: 1024 for the full-width VGG-16
            self.fc6 = ConvBN(factory, "fc6", c2, w, 3, padding=((6, 6), (6, 6)), dilation=6,
                              rngs=rngs)
            self.fc7 = ConvBN(factory, "fc7", w, w, 1, rngs=rngs)
            c2 = w
        else:
            self.fc6 = self.fc7 = None
        size = self._tap_sizes(in_channels)
        last = size[-1]
        if extras is None:  # enough stride-2 maps to reach 1x1
            n = 0
            while last > 1:
                last, n = -(-last // 2), n + 1
            # VGG: SSD300's widths (fc7 / 2, then fc7 / 4); others: the last map's width
            extras = ((c2 // 2,) + (c2 // 4,) * (n - 1) if backbone == "vgg16" and n
                      else (c2,) * n)
        layers, c = [], c2
        for i, e in enumerate(extras):
            layers.append(nnx.List([
                ConvBN(factory, f"extra{i + 1}.reduce", c, max(8, e // 2), 1, rngs=rngs),
                ConvBN(factory, f"extra{i + 1}.conv", max(8, e // 2), e, 3, strides=2,
                       rngs=rngs)]))
            c = e
        self.extras = nnx.List(layers)
        maps_c = [c1, c2, *extras]
        sizes = list(size)
        for _ in extras:
            sizes.append(-(-sizes[-1] // 2))
        if aspect_ratios is None:
            m = len(maps_c)
            aspect_ratios = tuple((2,) if k == 0 or k >= m - 2 else (2, 3) for k in range(m))
        if len(aspect_ratios) != len(maps_c):
            raise ValueError(f"SSD aspect_ratios lists {len(aspect_ratios)} feature maps; the "
                             f"detector has {len(maps_c)} ({len(extras)} extra layers)")
        self.aspect_ratios = tuple(tuple(float(r) for r in a) for a in aspect_ratios)
        self.feature_sizes = tuple(int(s) for s in sizes)
        self.scales = (float(min_scale), float(max_scale))
        anchors = ops.boxes_per_cell(self.aspect_ratios)
        self.heads = nnx.List([nnx.List([
            factory(f"head{i + 1}.loc", ci, a * 4, 3, use_bias=True, rngs=rngs),
            factory(f"head{i + 1}.cls", ci, a * (num_classes + 1), 3, use_bias=True,
                    rngs=rngs)]) for i, (ci, a) in enumerate(zip(maps_c, anchors, strict=True))])

    def _tap_sizes(self, in_channels) -> tuple[int, int]:
        """Sides of the two backbone maps at ``image_size``, by abstract evaluation."""
        graphdef, state = nnx.split(self.backbone)

        def f(s, x):
            m = nnx.merge(graphdef, s)
            m.eval()
            maps = m.feature_maps(x)
            return maps[self.taps[0]], maps[self.taps[1]]

        x = jax.ShapeDtypeStruct((1, self.image_size, self.image_size, in_channels), jnp.float32)
        a, b = jax.eval_shape(f, state, x)
        return a.shape[1], b.shape[1]  # fc6/fc7 keep the size

    def priors(self) -> np.ndarray:
        """The default boxes ``(P, 4)`` cxcywh, in the order of the predictions."""
        return ops.default_boxes(self.feature_sizes, self.aspect_ratios, *self.scales)

    def maps(self, x) -> list:
        f = self.backbone.feature_maps(x)
        a, b = f[self.taps[0]], f[self.taps[1]]
        if self.l2norm is not None:
            a = self.l2norm(a)
        if self.fc6 is not None:
            b = max_pool(b, (3, 3), (1, 1), "SAME")
            b = self.fc7(self.fc6(b))
        out = [a, b]
        for reduce, conv in self.extras:
            out.append(conv(reduce(out[-1])))
        return out

    def __call__(self, x):
        """``x (B, S, S, C)`` -> ``(loc (B, P, 4), logits (B, P, K + 1))``."""
        if x.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"SSD was built for {self.image_size}x{self.image_size} images; "
                             f"got {x.shape[1]}x{x.shape[2]}")
        locs, logits = [], []
        for f, (loc, cls) in zip(self.maps(x), self.heads, strict=True):
            b = f.shape[0]
            locs.append(loc(f).reshape(b, -1, 4))
            logits.append(cls(f).reshape(b, -1, self.num_classes + 1))
        return jnp.concatenate(locs, 1), jnp.concatenate(logits, 1)

    def detect(self, x, **kw):
        """Boxes, scores, classes and valid masks ``(B, D, ...)`` of :func:`fsjax.ops.detect`
        (keyword options pass through)."""
        loc, logits = self(x)
        priors = jnp.asarray(self.priors())
        return jax.vmap(lambda lo, lg: ops.detect(lo, lg, priors, **kw))(loc, logits)
