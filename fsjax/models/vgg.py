"""VGG-16: ImageNet (conv biases, no BN, two 4096 FC layers with dropout) and CIFAR (BN after
each conv, global-pool-free 512 -> classes head) variants."""

from __future__ import annotations

import jax
from flax import nnx

from fsjax.models.layers import ConvBN, ConvFactory, classifier
from fsjax.nn import Dropout

__all__ = ["VGG", "VGG16_CFG", "vgg_conv_names"]

# channels per conv, 'M' = 2x2 max-pool; layer names follow Caffe (conv1_1 ... conv5_3).
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
             512, 512, 512, "M")


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
    """VGG-16. ``variant='cifar'``: BN convs, 512 -> classes FC; ``'imagenet'``: conv biases,
    FC 25088-4096-4096-classes with dropout 0.5. ``widths`` overrides the per-conv channel
    counts (ThiNet-pruned architectures)."""

    def __init__(self, num_classes, *, variant="cifar", widths=None, in_channels=3,
                 dropout=0.5, factory=ConvFactory(), rngs):
        if variant not in ("cifar", "imagenet"):
            raise ValueError(f"VGG variant must be 'cifar' or 'imagenet'; got {variant!r}")
        names = vgg_conv_names()
        widths = list(widths) if widths is not None else [v for v in VGG16_CFG if v != "M"]
        if len(widths) != len(names):
            raise ValueError(f"VGG widths must list {len(names)} conv widths; got {len(widths)}")
        self.variant = variant
        layers, c, i = [], in_channels, 0
        self.plan = tuple("M" if v == "M" else "C" for v in VGG16_CFG)
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
        if variant == "cifar":
            self.head = nnx.List([classifier(factory, c, num_classes, rngs)])
        else:
            self.head = nnx.List([classifier(factory, c * 49, 4096, rngs),
                                  classifier(factory, 4096, 4096, rngs),
                                  classifier(factory, 4096, num_classes, rngs)])
            self.dropout = Dropout(dropout)

    def __call__(self, x):
        i = 0
        for p in self.plan:
            if p == "M":
                x = nnx.max_pool(x, (2, 2), strides=(2, 2))
            else:
                x = self.layers[i](x)
                i += 1
        if self.variant == "cifar":
            return self.head[0](x.mean(axis=(1, 2)))
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(jax.nn.relu(self.head[0](x)))
        x = self.dropout(jax.nn.relu(self.head[1](x)))
        return self.head[2](x)
