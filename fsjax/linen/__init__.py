"""Flax Linen drop-ins: ``FSConv``, ``DFSConv``, ``KSConv`` mirroring ``flax.linen.Conv``.

Fields follow ``nn.Conv`` (``features, kernel_size, strides, padding, kernel_dilation,
feature_group_count, use_bias, dtype, param_dtype, precision``) plus each layer's options.
Parameter names match the NNX layers (``fs``, ``locations``, ``kernel``, ``alpha``, ``bias``),
and so do the math (:mod:`fsjax.ops`) and option checks (:class:`fsjax.spec.ConvSpec`).
DFS locations and WKSC weights live in the ``params`` collection like everything else; select
them by name (``locations``/``alpha``) for a separate optimizer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from fsjax import ops
from fsjax.spec import ConvSpec, check_dtypes

__all__ = ["FSConv", "DFSConv", "KSConv"]


class _Conv(nn.Module):
    features: int
    kernel_size: Any
    strides: Any = 1
    padding: Any = "SAME"
    kernel_dilation: Any = 1
    feature_group_count: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    init_scale: float = 1.0
    kernel_init: Any = None
    bias_init: Any = nn.initializers.zeros_init()

    kind = "dense"

    def _opts(self) -> dict:
        return {}

    def spec(self, in_features: int) -> ConvSpec:
        check_dtypes(self.dtype, self.param_dtype, f"{type(self).__name__} {self.name or ''}")
        return ConvSpec.make(
            self.kind, in_features, self.features, self.kernel_size, strides=self.strides,
            padding=self.padding, kernel_dilation=self.kernel_dilation,
            feature_group_count=self.feature_group_count, use_bias=self.use_bias,
            name=self.name or "", **self._opts())

    def _stored(self, spec: ConvSpec):
        if self.kernel_init is not None:
            init = self.kernel_init
        else:
            def init(key, shape, dtype):
                return ops.fan_in_normal(key, shape, spec.fan_in, self.init_scale, dtype)
        name = "fs" if spec.kind in ("fs", "dfs") else "kernel"
        return self.param(name, init, spec.stored_kernel_shape, self.param_dtype)

    def _kernel(self, spec, stored, dtype):
        return stored.astype(dtype), None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        spec = self.spec(x.shape[-1])
        stored = self._stored(spec)
        bias = (self.param("bias", self.bias_init, (spec.out_features,), self.param_dtype)
                if spec.use_bias else None)
        dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
        kernel, alpha = self._kernel(spec, stored, dtype)
        return spec.apply(x, kernel, bias, alpha, dtype=dtype, precision=self.precision)


class FSConv(_Conv):
    """FSNet conv (Linen). ``compression`` rho (default 4); optional ``offsets``."""

    compression: float = 4.0
    offsets: Any = None
    kind = "fs"

    def _opts(self):
        return dict(compression=self.compression, offsets=self.offsets)

    def _kernel(self, spec, stored, dtype):
        return spec.materialize(stored.astype(dtype)), None


class DFSConv(_Conv):
    """DFSNet conv (Linen): FS conv with learned locations (``'wrap'`` or ``'sigmoid'``)."""

    compression: float = 4.0
    location_mode: str = "wrap"
    kind = "dfs"

    def _opts(self):
        return dict(compression=self.compression)

    def _kernel(self, spec, stored, dtype):
        raw = self.param("locations", lambda _k: jnp.asarray(
            ops.dfs_init_raw(spec.np_offsets(), spec.length, self.location_mode)))
        loc = ops.dfs_locations(raw, spec.length, self.location_mode)
        # interpolation (and the locations' gradient) in the parameters' float32, then cast
        return spec.materialize(stored, loc).astype(dtype), None


class KSConv(_Conv):
    """Kernel-sharing conv (Linen); ``weighted=True`` for WKSC (``alpha_mode`` input|pair)."""

    groups: int = 1
    weighted: bool = False
    alpha_mode: str = "input"

    @property
    def kind(self):  # type: ignore[override]
        return "wks" if self.weighted else "ks"

    def _opts(self):
        return dict(groups=self.groups, alpha_mode=self.alpha_mode)

    def _kernel(self, spec, stored, dtype):
        shape = spec.alpha_shape()
        alpha = self.param("alpha", nn.initializers.ones, shape, self.param_dtype) if shape else None
        return stored.astype(dtype), alpha
