"""ResNets: CIFAR variants (20/56/110/164, He et al. 2016) and ResNet-18/34/50.

``torch_padding=True`` pads each conv by ``k//2`` on both sides, as PyTorch ResNets do
(``padding=1`` for 3x3); it differs from Flax's ``'SAME'`` (extra pad at the end) only in
stride-2 convs, and is what PyTorch checkpoints (:mod:`fsjax.models.official`) need.

Shortcuts: ``'B'`` (1x1 conv + BN projection where the shape changes; the official FSNet code)
or ``'A'`` (parameter-free: stride-2 subsampling + zero-padded channels). ResNet-50's
downsampling stride sits on the first 1x1 conv (``stride_on='1x1'``, the original Caffe release
used by the ThiNet and FSNet papers) or on the 3x3 (``'3x3'``, torchvision).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fsjax.models.layers import ConvBN, ConvFactory, classifier, max_pool

__all__ = ["ResNet", "BasicBlock", "Bottleneck"]


def _pad(torch_padding: bool, k: int):
    return ((k // 2, k // 2),) * 2 if torch_padding else "SAME"


class Shortcut(nnx.Module):
    def __init__(self, factory, name, cin, cout, stride, kind, rngs):
        self.stride, self.pad = stride, cout - cin
        needs = (stride != 1 or cin != cout) and kind == "B"
        self.proj = (ConvBN(factory, name, cin, cout, 1, strides=stride, act=False, rngs=rngs)
                     if needs else None)

    def __call__(self, x):
        if self.proj is not None:
            return self.proj(x)
        if self.stride != 1:
            x = x[:, :: self.stride, :: self.stride, :]
        if self.pad:
            x = jnp.pad(x, [(0, 0)] * 3 + [(0, self.pad)])
        return x


class BasicBlock(nnx.Module):
    expansion = 1
    n_mid = 1

    def __init__(self, factory, name, cin, width, stride, shortcut="B", stride_on=None, mid=None,
                 torch_padding=False, *, rngs):
        cout = width
        (m1,) = mid or (width,)
        p = _pad(torch_padding, 3)
        self.conv1 = ConvBN(factory, f"{name}.conv1", cin, m1, 3, strides=stride, padding=p,
                            rngs=rngs)
        self.conv2 = ConvBN(factory, f"{name}.conv2", m1, cout, 3, padding=p, act=False,
                            rngs=rngs)
        self.shortcut = Shortcut(factory, f"{name}.shortcut", cin, cout, stride, shortcut, rngs)

    def __call__(self, x):
        return jax.nn.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nnx.Module):
    expansion = 4
    n_mid = 2

    def __init__(self, factory, name, cin, width, stride, shortcut="B", stride_on="3x3", mid=None,
                 torch_padding=False, *, rngs):
        cout = width * 4
        m1, m2 = mid or (width, width)
        s1, s2 = (stride, 1) if stride_on == "1x1" else (1, stride)
        self.conv1 = ConvBN(factory, f"{name}.conv1", cin, m1, 1, strides=s1, rngs=rngs)
        self.conv2 = ConvBN(factory, f"{name}.conv2", m1, m2, 3, strides=s2,
                            padding=_pad(torch_padding, 3), rngs=rngs)
        self.conv3 = ConvBN(factory, f"{name}.conv3", m2, cout, 1, act=False, rngs=rngs)
        self.shortcut = Shortcut(factory, f"{name}.shortcut", cin, cout, stride, shortcut, rngs)

    def __call__(self, x):
        return jax.nn.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class ResNet(nnx.Module):
    """Generic ResNet.

    Args:
      block: 'basic' or 'bottleneck'; depths: blocks per stage; widths: stage widths.
      stem: 'cifar' (3x3/1 conv) or 'imagenet' (7x7/2 conv + 3x3/2 max-pool).
      shortcut: 'A' or 'B'; stride_on: '1x1' or '3x3' (bottleneck only).
      mid_widths: per block, the inner conv widths (basic: [conv1]; bottleneck: [conv1, conv2]);
        ThiNet-pruned architectures. Default: the stage width.
      torch_padding: pad ``k//2`` on both sides (PyTorch) instead of ``'SAME'``.
      stem_stride: stride of the 'cifar' stem conv (2 halves every feature map: detection
        backbones on larger images).
    """

    def __init__(self, block, depths, widths, num_classes, *, stem="cifar", stem_width=None,
                 shortcut="B", stride_on="3x3", in_channels=3, mid_widths=None,
                 torch_padding=False, stem_stride=1, factory=ConvFactory(), rngs):
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck'; got {block!r}")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet'; got {stem!r}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B'; got {shortcut!r}")
        if stride_on not in ("1x1", "3x3"):
            raise ValueError(f"stride_on must be '1x1' or '3x3'; got {stride_on!r}")
        cls = BasicBlock if block == "basic" else Bottleneck
        c = stem_width or widths[0]
        if stem == "cifar":
            self.stem = ConvBN(factory, "stem", in_channels, c, 3, strides=stem_stride,
                               padding=_pad(torch_padding, 3), rngs=rngs)
        else:
            self.stem = ConvBN(factory, "stem", in_channels, c, 7, strides=2,
                               padding=_pad(torch_padding, 7), rngs=rngs)
        self.pool_stem = stem == "imagenet"
        blocks = []
        n_blocks = sum(depths)
        if mid_widths is not None and (len(mid_widths) != n_blocks or any(
                len(m) != cls.n_mid for m in mid_widths)):
            raise ValueError(f"mid_widths must list {n_blocks} blocks of {cls.n_mid} widths")
        for s, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            for b in range(depth):
                stride = 2 if (s > 0 and b == 0) else 1
                mid = tuple(mid_widths[len(blocks)]) if mid_widths is not None else None
                blocks.append(cls(factory, f"stage{s + 1}.block{b}", c, width, stride, shortcut,
                                  stride_on, mid, torch_padding, rngs=rngs))
                c = width * cls.expansion
        self.blocks = nnx.List(blocks)
        self.stage_ends = tuple(int(sum(depths[:s + 1])) - 1 for s in range(len(depths)))
        self.stage_channels = tuple(w * cls.expansion for w in widths)
        self.fc = classifier(factory, c, num_classes, rngs)

    def feature_maps(self, x) -> list:
        """Each stage's output (NHWC), finest first: the taps of a detection head."""
        x = self.stem(x)
        if self.pool_stem:
            x = max_pool(x, (3, 3), (2, 2), "SAME")
        out = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.stage_ends:
                out.append(x)
        return out

    def features(self, x):
        x = self.stem(x)
        if self.pool_stem:
            x = max_pool(x, (3, 3), (2, 2), "SAME")
        for blk in self.blocks:
            x = blk(x)
        return x.mean(axis=(1, 2))

    def __call__(self, x):
        return self.fc(self.features(x))
