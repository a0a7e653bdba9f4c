"""Flax NNX conv layers: dense ``Conv``, ``FSConv``, ``DFSConv`` and ``KSConv`` (KSC / WKSC).

Constructors mirror ``flax.nnx.Conv`` (``in_features, out_features, kernel_size, *, strides,
padding, kernel_dilation, feature_group_count, use_bias, dtype, param_dtype, precision, rngs``)
plus each layer's own options. ``kernel_size`` may be an int (square) or a pair. The math is in
:mod:`fsjax.ops`; option handling in :class:`fsjax.spec.ConvSpec`.

Variable types: FS vectors and kernels are ``nnx.Param``; DFS locations are :class:`Location`
and WKSC weights :class:`ShareWeight` (both ``nnx.Param`` subclasses, so the usual
``nnx.Param`` filters train them, and an optimizer can single them out by type).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax import ops
from fsjax.spec import ConvSpec, check_dtypes

__all__ = ["Conv", "FSConv", "DFSConv", "KSConv", "Location", "ShareWeight"]


class Location(nnx.Param):
    """Raw (unconstrained) DFS segment locations, shape ``(cout,)``."""


class ShareWeight(nnx.Param):
    """WKSC per-input (or per input-output pair) channel weights."""


def _init_kernel(spec: ConvSpec, rngs, kernel_init, init_scale, param_dtype):
    shape = spec.stored_kernel_shape
    if kernel_init is not None:
        return kernel_init(rngs.params(), shape, param_dtype)
    return ops.fan_in_normal(rngs.params(), shape, spec.fan_in, init_scale, param_dtype)


class _Conv(nnx.Module):
    kind = "dense"

    def __init__(self, in_features, out_features, kernel_size, *, strides=1, padding="SAME",
                 kernel_dilation=1, feature_group_count=1, use_bias=True, dtype=None,
                 param_dtype=jnp.float32, precision=None, kernel_init=None, init_scale=1.0,
                 bias_init=nnx.initializers.zeros_init(), name="", rngs: nnx.Rngs, **opts):
        self.spec = ConvSpec.make(
            self.kind, in_features, out_features, kernel_size, strides=strides, padding=padding,
            kernel_dilation=kernel_dilation, feature_group_count=feature_group_count,
            use_bias=use_bias, name=name, **opts)
        check_dtypes(dtype, param_dtype, f"{type(self).__name__} {name}".strip())
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self._init_params(rngs, kernel_init, init_scale)
        self.bias = (nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype))
                     if use_bias else None)

    def _init_params(self, rngs, kernel_init, init_scale):
        self.kernel = nnx.Param(
            _init_kernel(self.spec, rngs, kernel_init, init_scale, self.param_dtype))

    @property
    def in_features(self) -> int:
        return self.spec.in_features

    @property
    def out_features(self) -> int:
        return self.spec.out_features

    def dense_kernel(self) -> jax.Array:
        """The equivalent dense HWIO kernel (for export, tests and inference)."""
        return self.kernel[...]

    def _forward_kernel(self, dtype):
        return self.dense_kernel().astype(dtype), None

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
        kernel, alpha = self._forward_kernel(dtype)
        bias = None if self.bias is None else self.bias[...]
        return self.spec.apply(x, kernel, bias, alpha, dtype=dtype, precision=self.precision)


class Conv(_Conv):
    """Dense conv (same as ``nnx.Conv``), reporting itself to :mod:`fsjax.report`."""


class FSConv(_Conv):
    """FSNet conv: filters are overlapping, circularly wrapped segments of one FS vector.

    Options: ``compression`` (rho, default 4; FS length ``max(K, floor(K*cout/rho))``),
    ``offsets`` (segment starts; default the uniform layout of :func:`fsjax.ops.fs_offsets`).
    Parameters: ``fs`` (L,) and ``bias``.
    """

    kind = "fs"

    def _init_params(self, rngs, kernel_init, init_scale):
        self.fs = nnx.Param(_init_kernel(self.spec, rngs, kernel_init, init_scale,
                                         self.param_dtype))

    def dense_kernel(self):
        return self.spec.materialize(self.fs[...])

    def _forward_kernel(self, dtype):
        # Cast the (short) FS before gathering: the gather is exact, so this equals casting the
        # materialised kernel while moving rho x fewer bytes.
        return self.spec.materialize(self.fs[...].astype(dtype)), None

    @classmethod
    def from_dense(cls, conv, compression=4.0, *, rngs=None, **kw) -> FSConv:
        """Least-squares FS layer (:func:`fsjax.ops.fs_project`) from a dense conv's kernel."""
        layer = _like(cls, conv, rngs, compression=compression, **kw)
        layer.fs[...] = ops.fs_project(_kernel_of(conv), layer.spec.length,
                                       layer.spec.np_offsets()).astype(layer.param_dtype)
        _copy_bias(conv, layer)
        return layer


class DFSConv(_Conv):
    """DFSNet conv: FS conv whose segment locations are learned by gradient.

    ``location_mode``: ``'wrap'`` (default; ``loc = raw mod L``, gradient 1 everywhere, the
    natural parameterisation of segments on a circle) or ``'sigmoid'`` (``loc = sigmoid(raw)*L``,
    the official draft; saturates near the ends). Both start at the FSNet layout.
    Parameters: ``fs`` (L,), ``locations`` (:class:`Location`, cout) and ``bias``.
    """

    kind = "dfs"

    def __init__(self, *args, location_mode: str = "wrap", **kw):
        if location_mode not in ("wrap", "sigmoid"):
            raise ValueError(f"location_mode must be 'wrap' or 'sigmoid'; got {location_mode!r}")
        self.location_mode = location_mode
        super().__init__(*args, **kw)

    def _init_params(self, rngs, kernel_init, init_scale):
        self.fs = nnx.Param(_init_kernel(self.spec, rngs, kernel_init, init_scale,
                                         self.param_dtype))
        raw = ops.dfs_init_raw(self.spec.np_offsets(), self.spec.length, self.location_mode)
        self.locations = Location(jnp.asarray(raw, jnp.float32))

    def location_values(self) -> jax.Array:
        """Segment starts in [0, L), shape (cout,)."""
        return ops.dfs_locations(self.locations[...], self.spec.length, self.location_mode)

    def dense_kernel(self):
        return self.spec.materialize(self.fs[...], self.location_values())

    def _forward_kernel(self, dtype):
        # interpolation (and the locations' gradient) in the parameters' float32, then cast
        return self.spec.materialize(self.fs[...], self.location_values()).astype(dtype), None

    def rounded_offsets(self) -> np.ndarray:
        """Locations rounded to the nearest integer segment start, wrapped into [0, L)."""
        loc = np.asarray(jax.device_get(self.location_values()), np.float64)
        return (np.floor(loc + 0.5).astype(np.int64) % self.spec.length).astype(np.int32)

    def to_fs(self) -> FSConv:
        """Freeze: an :class:`FSConv` with rounded offsets and this layer's FS and bias."""
        s = self.spec
        layer = FSConv(s.in_features, s.out_features, s.kernel_size, strides=s.strides,
                       padding=s.padding, kernel_dilation=s.dilation,
                       feature_group_count=s.feature_group_count, use_bias=s.use_bias,
                       dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision,
                       name=s.name, compression=s.compression, offsets=self.rounded_offsets(),
                       rngs=nnx.Rngs(0))
        layer.fs[...] = self.fs[...]
        _copy_bias(self, layer)
        return layer


class KSConv(_Conv):
    """Kernel-sharing conv (KSC); ``weighted=True`` gives WKSC.

    ``groups``: number of contiguous input-channel groups whose channels share one kernel
    (``g = in_features // groups`` channels each; ``groups=in_features`` is a dense conv).
    ``alpha_mode`` (WKSC): ``'input'`` (a weight per input channel; computed as a weighted
    channel-group sum followed by a ``groups``-input conv, so MACs drop by about g) or
    ``'pair'`` (a weight per (input, output); only weights drop). ``alpha`` starts at 1.
    Parameters: ``kernel`` (kh, kw, groups, cout), ``alpha`` (:class:`ShareWeight`), ``bias``.
    """

    kind = "ks"

    def __init__(self, *args, weighted: bool = False, groups: int = 1, alpha_mode="input", **kw):
        self.kind = "wks" if weighted else "ks"
        super().__init__(*args, groups=groups, alpha_mode=alpha_mode, **kw)

    def _init_params(self, rngs, kernel_init, init_scale):
        super()._init_params(rngs, kernel_init, init_scale)
        shape = self.spec.alpha_shape()
        self.alpha = ShareWeight(jnp.ones(shape, self.param_dtype)) if shape else None

    def dense_kernel(self):
        alpha = None if self.alpha is None else self.alpha[...]
        return ops.ks_dense_kernel(self.kernel[...], alpha, self.spec.in_features)

    def _forward_kernel(self, dtype):
        alpha = None if self.alpha is None else self.alpha[...]
        return self.kernel[...].astype(dtype), alpha


def _kernel_of(conv) -> jax.Array:
    if isinstance(conv, _Conv):
        return conv.dense_kernel()
    return conv.kernel[...]


def _copy_bias(src, dst):
    if dst.bias is not None and getattr(src, "bias", None) is not None:
        dst.bias[...] = src.bias[...].astype(dst.param_dtype)


def _like(cls, conv, rngs, **kw):
    """A new ``cls`` layer with the geometry of ``conv`` (an ``nnx.Conv`` or fsjax conv)."""
    if isinstance(conv, _Conv):
        s = conv.spec
        geo = dict(strides=s.strides, padding=s.padding, kernel_dilation=s.dilation,
                   feature_group_count=s.feature_group_count, use_bias=s.use_bias, name=s.name)
        cin, cout, ks = s.in_features, s.out_features, s.kernel_size
    else:
        geo = dict(strides=1 if conv.strides is None else conv.strides, padding=conv.padding,
                   kernel_dilation=1 if conv.kernel_dilation is None else conv.kernel_dilation,
                   feature_group_count=conv.feature_group_count, use_bias=conv.use_bias)
        cin, cout, ks = conv.in_features, conv.out_features, conv.kernel_size
    geo.update(dtype=conv.dtype, param_dtype=conv.param_dtype, precision=conv.precision)
    geo.update(kw)
    return cls(cin, cout, ks, rngs=rngs or nnx.Rngs(0), **geo)
