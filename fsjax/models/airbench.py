"""A fast, wide CIFAR-10 network of the airbench94 shape (Jordan, arXiv 2404.00498).

``whiten`` (2x2 conv 3 -> 24, no padding, bias; GELU) -> three blocks ``conv3x3 -> maxpool 2 ->
BatchNorm -> GELU -> conv3x3 -> BatchNorm -> GELU`` of widths 64/256/256 -> maxpool 3 ->
linear 256 -> classes (no bias) -> logits x ``logit_scale`` (1/9). About 118M MACs per 32x32
image and 1.97M weights dense.

Every 3x3 conv (``block1.conv1`` ... ``block3.conv2``) comes from the conv factory, so it can be
dense / fs / dfs / ks / wks like any other zoo model's. The whitening conv is always a dense
conv: its 288 weights are not learned but set from the training images by
:meth:`AirbenchNet.init_from_data` (:func:`fsjax.ops.whitening_kernel`); the recipe
(``configs/cifar10/fast.py``) keeps them frozen. BatchNorm has no scale (``norm_scale``; a
scale after a conv is redundant with the conv's own), momentum 0.6 and eps 1e-12, as in
airbench. Convs start from a partial identity (``identity_init``: the first ``min(cin, cout)``
filters are replaced by filters that pass their input channel through,
:func:`fsjax.ops.identity_kernel`; the others keep their random init), fitted by each kind's
least-squares projection (``layer.load_dense``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from fsjax import ops
from fsjax.models.layers import ConvFactory, max_pool
from fsjax.nn import BatchNorm, Conv

__all__ = ["AirbenchNet"]


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)


class ConvPoolBN(nnx.Module):
    """conv (-> maxpool 2 if ``pool``) -> BatchNorm -> GELU; ``conv``/``bn`` as in
    :class:`fsjax.models.ConvBN`, so the pruner finds them."""

    def __init__(self, factory, name, cin, cout, pool, norm, identity_init, rngs):
        self.conv = factory(name, cin, cout, 3, rngs=rngs)
        self.bn = norm(cout)
        self.pool = pool
        if identity_init:
            n = min(cin, cout)
            k = self.conv.dense_kernel()
            eye = ops.identity_kernel(self.conv.spec.kernel_shape, k.dtype)
            self.conv.load_dense(k.at[..., :n].set(eye[..., :n]))

    def __call__(self, x):
        x = self.conv(x)
        if self.pool:
            x = max_pool(x, (2, 2))
        return _gelu(self.bn(x))


class AirbenchNet(nnx.Module):
    """The airbench94-shaped CIFAR network (module docstring).

    Args:
      num_classes: outputs.
      widths: the three blocks' channels (airbench94: 64, 256, 256), or six: one per conv
        (``block1.conv1, block1.conv2, ..., block3.conv2``; ThiNet-pruned networks).
      whiten_width: outputs of the 2x2 whitening conv; ``2 * 4 * in_channels`` (24 for RGB)
        is what :meth:`init_from_data` fills.
      logit_scale: the logits are multiplied by it (airbench: 1/9).
      norm_scale: BatchNorm with a trainable scale (airbench: no).
      norm_momentum, norm_eps: BatchNorm running-average momentum (Flax convention: the weight
        of the old value) and epsilon.
      identity_init: start each 3x3 conv from a partial identity (module docstring).
      conv_init_scale: the convs' init variance is ``conv_init_scale / fan_in`` (1/3: PyTorch's
        default conv init, which airbench uses); replaces the factory's ``init_scale``.
      in_channels: image channels.
    """

    def __init__(self, num_classes=10, *, widths=(64, 256, 256), whiten_width=None,
                 logit_scale=1 / 9, norm_scale=False, norm_momentum=0.6, norm_eps=1e-12,
                 identity_init=True, conv_init_scale=1 / 3, in_channels=3,
                 factory=ConvFactory(), rngs):
        widths = tuple(int(w) for w in widths)
        if len(widths) not in (3, 6):
            raise ValueError(f"airbench widths must list 3 block widths or 6 conv widths; got "
                             f"{widths}")
        if len(widths) == 3:
            widths = tuple(w for w in widths for _ in range(2))
        factory = dataclasses.replace(factory, init_scale=conv_init_scale)
        cw = whiten_width or 8 * in_channels
        self.whiten = Conv(in_channels, cw, (2, 2), padding="VALID", use_bias=True,
                           init_scale=conv_init_scale, dtype=factory.dtype,
                           param_dtype=factory.param_dtype, name="whiten", rngs=rngs)
        norm = lambda c: BatchNorm(c, momentum=norm_momentum, epsilon=norm_eps,
                                   use_scale=norm_scale, dtype=factory.dtype,
                                   param_dtype=factory.param_dtype, rngs=rngs)
        layers, c = [], cw
        for i, w in enumerate(widths):
            layers.append(ConvPoolBN(factory, f"block{i // 2 + 1}.conv{i % 2 + 1}", c, w,
                                     i % 2 == 0, norm, identity_init, rngs))
            c = w
        self.layers = nnx.List(layers)
        init = nnx.initializers.variance_scaling(conv_init_scale, "fan_in", "uniform")
        self.head = nnx.List([nnx.Linear(c, num_classes, use_bias=False, kernel_init=init,
                                         dtype=factory.dtype, param_dtype=factory.param_dtype,
                                         rngs=rngs)])
        self.logit_scale = float(logit_scale)
        self.stage_channels = widths[1::2]

    def init_from_data(self, images: jax.Array, eps: float = 5e-4) -> None:
        """Set the whitening conv's weights from training images ``(N, H, W, C)``, normalised as
        the model's input (:func:`fsjax.ops.whitening_kernel`; the bias is set to 0)."""
        k = ops.whitening_kernel(images, self.whiten.spec.kernel_size, eps)
        if k.shape[-1] != self.whiten.spec.out_features:
            raise ValueError(f"init_from_data fills 2*4*C = {k.shape[-1]} whitening filters; "
                             f"this model has whiten_width={self.whiten.spec.out_features}")
        self.whiten.load_dense(k)
        self.whiten.bias[...] = jnp.zeros_like(self.whiten.bias[...])

    def features(self, x):
        """The head's input ``(N, S, C)``: the last block's map after the 3x3 max-pool,
        flattened (S = 1 at 32x32 input); the head's kernel reshapes to ``(S, C, out)``."""
        x = _gelu(self.whiten(x))
        for layer in self.layers:
            x = layer(x)
        x = max_pool(x, (3, 3))
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def __call__(self, x):
        f = self.features(x)
        return self.head[0](f.reshape(f.shape[0], -1)) * self.logit_scale
