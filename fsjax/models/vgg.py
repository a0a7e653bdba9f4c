"""VGG-16: ImageNet (conv biases, no BN) and CIFAR (BN after each conv) variants, each with
one of three heads: ``fc`` (pool5, flatten, two hidden FC layers with dropout), ``linear``
(pool5, one FC) or ``gap`` (no pool5: global average pooling of conv5_3, one FC; ThiNet-GAP
and ThiNet-Tiny)."""

from __future__ import annotations

import jax
from flax import nnx

from fsjax.models.layers import ConvBN, ConvFactory, classifier, max_pool
from fsjax.nn import Dropout

__all__ = ["VGG", "VGG16_CFG", "VGG16_WIDTHS", "VGG_HEADS", "vgg_conv_names"]

# channels per conv, 'M' = 2x2 max-pool; layer names follow Caffe (conv1_1 ... conv5_3).
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M")
VGG16_WIDTHS = tuple(v for v in VGG16_CFG if v != "M")  # conv1_1 .. conv5_3
VGG_HEADS = ("fc", "linear", "gap")


def vgg_conv_names(cfg=VGG16_CFG):
    names, stage, idx = [], 1, 1
    for v in cfg:
        if v == "M":
            stage, idx = stage + 1, 1
        else:
            names.append(f"conv{stage}_{idx}")
            idx += 1
    return names


class _ConvBias(nnx.Module):
    """conv (+bias) -> ReLU, for the BN-free ImageNet VGG."""

    def __init__(self, factory, name, cin, cout, rngs):
        self.conv = factory(name, cin, cout, 3, use_bias=True, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.conv(x))


class VGG(nnx.Module):
    """VGG-16. ``variant='cifar'``: BN convs; ``'imagenet'``: conv biases. ``head``: ``'fc'``
    (pool5 -> flatten -> FC ``fc_width`` x2 with ReLU and dropout -> classes; the ImageNet
    default, 25088-4096-4096-classes at 224x224 input), ``'linear'`` (pool5 -> FC; the CIFAR
    default) or ``'gap'`` (conv5_3 -> global average pool -> FC, no pool5). ``fc_width``:
    hidden FC width (default 4096 ImageNet, 512 CIFAR). ``widths`` overrides the per-conv
    channel counts (ThiNet-pruned architectures). The ``fc`` head flattens pool5's 7x7
    (ImageNet, 224x224 input) or 1x1 (CIFAR, 32x32) map."""

    def __init__(self, num_classes, *, variant="cifar", widths=None, in_channels=3,
                 dropout=0.5, head=None, fc_width=None, factory=ConvFactory(), rngs):
        if variant not in ("cifar", "imagenet"):
            raise ValueError(f"VGG variant must be 'cifar' or 'imagenet'; got {variant!r}")
        head = head or ("fc" if variant == "imagenet" else "linear")
        if head not in VGG_HEADS:
            raise ValueError(f"VGG head must be one of {', '.join(VGG_HEADS)}; got {head!r}")
        names = vgg_conv_names()
        widths = list(widths if widths is not None else VGG16_WIDTHS)
        if len(widths) != len(names):
            raise ValueError(f"VGG widths must list {len(names)} conv widths; got {len(widths)}")
        self.variant, self.head_kind = variant, head
        layers, c, i = [], in_channels, 0
        plan = ["M" if v == "M" else "C" for v in VGG16_CFG]
        self.plan = tuple(plan[:-1] if head == "gap" else plan)
        for v in VGG16_CFG:
            if v == "M":
                continue
            w = widths[i]
            if variant == "cifar":
                layers.append(ConvBN(factory, names[i], c, w, 3, rngs=rngs))
            else:
                layers.append(_ConvBias(factory, names[i], c, w, rngs))
            c, i = w, i + 1
        self.layers = nnx.List(layers)
        ends = [sum(1 for v in VGG16_CFG[:e] if v != "M") - 1
                for e, v in enumerate(VGG16_CFG) if v == "M"]
        self.stage_channels = tuple(widths[i] for i in ends)
        if head == "fc":
            hidden = fc_width or (4096 if variant == "imagenet" else 512)
            flat = c * (49 if variant == "imagenet" else 1)
            self.head = nnx.List([classifier(factory, flat, hidden, rngs),
                                  classifier(factory, hidden, hidden, rngs),
                                  classifier(factory, hidden, num_classes, rngs)])
            self.dropout = Dropout(dropout)
        else:
            self.head = nnx.List([classifier(factory, c, num_classes, rngs)])

    def feature_maps(self, x) -> list:
        """The last conv output of each of the five stages (before its pool), finest first:
        ``conv1_2, conv2_2, conv3_3, conv4_3, conv5_3`` (SSD taps conv4_3 and conv5_3)."""
        out, i = [], 0
        for p in (["C" if v != "M" else "M" for v in VGG16_CFG]):
            if p == "M":
                out.append(x)
                if len(out) == 5:
                    break
                x = max_pool(x, (2, 2))
            else:
                x = self.layers[i](x)
                i += 1
        return out

    def features(self, x):
        """The head's input: ``(N, S, C)`` with S = the flattened pool5 positions (``fc``)
        or 1 (``linear``, ``gap``); the first FC layer's kernel reshapes to ``(S, C, out)``."""
        i = 0
        for p in self.plan:
            if p == "M":
                x = max_pool(x, (2, 2))
            else:
                x = self.layers[i](x)
                i += 1
        if self.head_kind == "fc":
            return x.reshape(x.shape[0], -1, x.shape[-1])
        return x.mean(axis=(1, 2))[:, None, :]

    def __call__(self, x):
        f = self.features(x)
        f = f.reshape(f.shape[0], -1)
        if self.head_kind != "fc":
            return self.head[0](f)
        x = self.dropout(jax.nn.relu(self.head[0](f)))
        x = self.dropout(jax.nn.relu(self.head[1](x)))
        return self.head[2](x)
