"""DenseNet-BC (Huang et al. 2017), CIFAR variant; DenseNet-BC-100 has growth 12."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from fsjax.models.layers import ConvFactory, batch_norm, classifier

__all__ = ["DenseNetBC"]


class _BNConv(nnx.Module):
    """BN -> ReLU -> conv (pre-activation)."""

    def __init__(self, factory, name, cin, cout, k, rngs):
        self.bn = batch_norm(cin, factory, rngs)
        self.conv = factory(name, cin, cout, k, rngs=rngs)

    def __call__(self, x):
        return self.conv(jax.nn.relu(self.bn(x)))


class _DenseLayer(nnx.Module):
    def __init__(self, factory, name, cin, growth, rngs):
        self.a = _BNConv(factory, f"{name}.conv1", cin, 4 * growth, 1, rngs)
        self.b = _BNConv(factory, f"{name}.conv2", 4 * growth, growth, 3, rngs)

    def __call__(self, x):
        return jnp.concatenate([x, self.b(self.a(x))], axis=-1)


class DenseNetBC(nnx.Module):
    """``depth`` = 6n+4 layers (n bottleneck layers per block), compression 0.5."""

    def __init__(self, num_classes, *, depth=100, growth=12, reduction=0.5, in_channels=3,
                 factory=ConvFactory(), rngs):
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n+4; got {depth}")
        n = (depth - 4) // 6
        c = 2 * growth
        self.stem = factory("stem", in_channels, c, 3, rngs=rngs)
        layers = []
        for b in range(3):
            for i in range(n):
                layers.append(_DenseLayer(factory, f"dense{b + 1}.layer{i}", c, growth, rngs))
                c += growth
            if b < 2:
                out = int(c * reduction)
                layers.append(_BNConv(factory, f"trans{b + 1}", c, out, 1, rngs))
                c = out
        self.layers = nnx.List(layers)
        self.n = n
        self.bn = batch_norm(c, factory, rngs)
        self.fc = classifier(factory, c, num_classes, rngs)

    def __call__(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
            if isinstance(layer, _BNConv):  # transition: conv then 2x2 average pool
                x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        return self.fc(jax.nn.relu(self.bn(x)).mean(axis=(1, 2)))
