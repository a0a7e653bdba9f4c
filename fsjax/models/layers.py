"""The ``conv`` factory shared by every model, and small building blocks.

Architectures are written once; :class:`ConvFactory` decides, per layer name, which conv kind
(dense | fs | dfs | ks | wks, or any kind registered with :func:`fsjax.kinds.register`) and
options each conv gets.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax import kinds, ops
from fsjax.nn import BatchNorm
from fsjax.nn.conv import layer_class
from fsjax.ops.cpu import cpu_form

__all__ = ["ConvFactory", "ConvBN", "batch_norm", "max_pool"]

_OPTION_KEYS = ("kind", "compression", "group_size", "location_mode", "alpha_mode", "min_params",
                "layout")


@dataclasses.dataclass(frozen=True)
class ConvFactory:
    """Builds every conv of a model.

    Attributes:
      kind: default conv kind for all layers.
      compression: FS/DFS rho.
      group_size: KS/WKS channels per shared kernel ``g`` (``groups = cin // g``). A layer
        whose input channels are not a multiple of ``g`` larger than ``g`` (e.g. an RGB stem),
        or a grouped/depthwise conv, stays dense; the report shows it.
      location_mode, alpha_mode: DFS / WKS options (see :mod:`fsjax.nn`).
      min_params: layers whose dense kernel has fewer weights stay dense (0: convert all,
        as the official FSNet code does).
      layout: FS filter starts, ``'fsjax'`` or ``'official'`` (the official FSNet code's; see
        :class:`fsjax.nn.FSConv`). FS layers only.
      overrides: ``{glob pattern on the layer name: kind string or dict of the options
        above}``; later patterns win. E.g. ``{"stem": "dense", "stage3.*": {"compression": 8}}``.
      init_scale: fan-in init scale (2.0 = He, for ReLU nets).
      dtype, param_dtype: compute and parameter dtypes.
    """

    kind: str = "dense"
    compression: float = 4.0
    group_size: int = 4
    location_mode: str = "wrap"
    alpha_mode: str = "input"
    min_params: int = 0
    layout: str = "fsjax"
    overrides: Any = ()
    init_scale: float = 2.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def __post_init__(self):
        if self.kind not in kinds.names():
            raise ValueError(f"conv kind {self.kind!r} is not valid; valid: "
                             f"{', '.join(kinds.names())}")
        overrides = dict(self.overrides)
        for pat, opts in overrides.items():
            opts = {"kind": opts} if isinstance(opts, str) else dict(opts)
            bad = set(opts) - set(_OPTION_KEYS)
            if bad:
                raise ValueError(f"override {pat!r}: unknown option(s) {sorted(bad)}; "
                                 f"valid: {', '.join(_OPTION_KEYS)}")
            if opts.get("kind", self.kind) not in kinds.names():
                raise ValueError(f"override {pat!r}: conv kind {opts['kind']!r} is not valid; "
                                 f"valid: {', '.join(kinds.names())}")
        object.__setattr__(self, "overrides", tuple(overrides.items()))

    def options(self, name: str) -> dict:
        opts = {k: getattr(self, k) for k in _OPTION_KEYS}
        for pat, o in self.overrides:
            if fnmatch.fnmatchcase(name, pat):
                opts.update({"kind": o} if isinstance(o, str) else o)
        return opts

    def __call__(self, name, cin, cout, kernel_size, *, strides=1, padding="SAME",
                 feature_group_count=1, use_bias=False, dilation=1,
                 rngs: nnx.Rngs) -> nnx.Module:
        o = self.options(name)
        kind = o["kind"]
        # the zoo's int kernel_size is square (2-D); fsjax layers read an int as 1-D, like Flax
        kernel_size = (kernel_size,) * 2 if isinstance(kernel_size, int) else tuple(kernel_size)
        if int(np.prod(kernel_size)) * (cin // feature_group_count) * cout < o["min_params"]:
            kind = "dense"
        g = o["group_size"]
        if kinds.get(kind).zoo_skip(cin, feature_group_count, g):
            kind = "dense"
        common = dict(strides=strides, padding=padding, feature_group_count=feature_group_count,
                      kernel_dilation=dilation,
                      use_bias=use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                      init_scale=self.init_scale, name=name, rngs=rngs)
        return layer_class(kind)(cin, cout, kernel_size, **kinds.get(kind).layer_options(cin, o),
                                 **common)


def batch_norm(features: int, factory: ConvFactory, rngs: nnx.Rngs, zero_init=False):
    """BatchNorm as in PyTorch defaults (momentum 0.1 -> Flax 0.9, eps 1e-5)."""
    bn = BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=factory.dtype,
                   param_dtype=factory.param_dtype, rngs=rngs)
    if zero_init:
        bn.scale[...] = jnp.zeros_like(bn.scale[...])
    return bn


class ConvBN(nnx.Module):
    """conv -> BatchNorm (-> ReLU if ``act``)."""

    def __init__(self, factory: ConvFactory, name, cin, cout, kernel_size, *, strides=1,
                 padding="SAME", feature_group_count=1, dilation=1, act=True, zero_init=False,
                 rngs):
        self.conv = factory(name, cin, cout, kernel_size, strides=strides, padding=padding,
                            feature_group_count=feature_group_count, dilation=dilation,
                            rngs=rngs)
        self.bn = batch_norm(cout, factory, rngs, zero_init)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.bn(self.conv(x))
        return jax.nn.relu(y) if self.act else y


def classifier(factory: ConvFactory, cin: int, num_classes: int, rngs) -> nnx.Linear:
    """Dense FC head (the official FSNet code keeps FC layers dense)."""
    return nnx.Linear(cin, num_classes, dtype=factory.dtype, param_dtype=factory.param_dtype,
                      rngs=rngs)


def max_pool(x: jax.Array, window: tuple[int, int] = (2, 2), strides: tuple[int, int] | None = None,
             padding: str = "VALID") -> jax.Array:
    """2-D max pooling of NHWC ``x`` (``strides`` default: the window): ``nnx.max_pool`` in
    GPU/TPU programs and exports; in a program lowered for the CPU, non-overlapping pools are
    :func:`fsjax.ops.max_pool_blocks` (the CPU form ``pool_blocks``: 4-5x faster forward +
    backward on XLA:CPU) and the others :func:`fsjax.ops.max_pool_windows` (``pool_windows``:
    4.0-4.7x for DARTS's 3x3 pools). The same values; docs/performance.md."""
    window = tuple(window)
    strides = window if strides is None else tuple(strides)

    def default(t):
        return nnx.max_pool(t, window_shape=window, strides=strides, padding=padding)

    if strides == window and padding == "VALID":
        return cpu_form("pool_blocks", lambda t: ops.max_pool_blocks(t, window), default, x)
    return cpu_form("pool_windows", lambda t: ops.max_pool_windows(t, window, strides, padding),
                    default, x)
