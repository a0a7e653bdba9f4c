"""MobileNet-V1 (Howard et al. 2017) with a width multiplier.

With ``conv='wks'`` (or 'ks') the pointwise 1x1 convs become kernel-sharing convs while the
depthwise 3x3 convs stay depthwise: the WKSC + depthwise-separable network of the KSC thesis.
"""

from __future__ import annotations

from flax import nnx

from fsjax.models.layers import ConvBN, ConvFactory, classifier

__all__ = ["MobileNetV1"]

# (pointwise output channels, depthwise stride)
_CFG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
        (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class DepthwiseSeparable(nnx.Module):
    def __init__(self, factory, name, cin, cout, stride, rngs):
        self.dw = ConvBN(factory, f"{name}.dw", cin, cin, 3, strides=stride,
                         feature_group_count=cin, rngs=rngs)
        self.pw = ConvBN(factory, f"{name}.pw", cin, cout, 1, rngs=rngs)

    def __call__(self, x):
        return self.pw(self.dw(x))


class MobileNetV1(nnx.Module):
    """``stem_stride`` 2 for ImageNet (224 px), 1 for CIFAR (32 px: 2x2 final maps)."""

    def __init__(self, num_classes, *, width=1.0, stem_stride=1, in_channels=3,
                 factory=ConvFactory(), rngs):
        if width <= 0:
            raise ValueError(f"MobileNet width multiplier must be > 0; got {width}")

        def w(c):
            return max(8, int(c * width))

        self.stem = ConvBN(factory, "stem", in_channels, w(32), 3, strides=stem_stride, rngs=rngs)
        c, blocks = w(32), []
        for i, (out, stride) in enumerate(_CFG):
            blocks.append(DepthwiseSeparable(factory, f"block{i + 1}", c, w(out), stride, rngs))
            c = w(out)
        self.blocks = nnx.List(blocks)
        # the last block at each resolution (before a stride-2 block, and the final one)
        self.stage_ends = tuple(i for i in range(len(_CFG))
                                if i == len(_CFG) - 1 or _CFG[i + 1][1] == 2)
        self.stage_channels = tuple(w(_CFG[i][0]) for i in self.stage_ends)
        self.fc = classifier(factory, c, num_classes, rngs)

    def feature_maps(self, x) -> list:
        """The output at each resolution, finest first (SSD-MobileNet taps block11, block13)."""
        x, out = self.stem(x), []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in self.stage_ends:
                out.append(x)
        return out

    def __call__(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.fc(x.mean(axis=(1, 2)))
