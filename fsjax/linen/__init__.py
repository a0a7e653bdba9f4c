"""Flax Linen drop-ins: ``FSConv``, ``DFSConv``, ``KSConv`` mirroring ``flax.linen.Conv``.

Fields are ``flax.linen.Conv``'s, in its order, with its defaults and meanings (``features,
kernel_size, strides, padding, input_dilation, kernel_dilation, feature_group_count, use_bias,
mask, dtype, param_dtype, precision, kernel_init, bias_init, promote_dtype,
conv_general_dilated, conv_general_dilated_cls``), then fsjax's (``init_scale``) and each
layer's options. An int ``kernel_size`` is a 1-D kernel, as in Flax; any rank works. Given the
same dense kernel the output is Flax's bit for bit. ``kernel_init=None`` is fsjax's
per-weight fan-in init (Flax's ``lecun_normal`` distribution at ``init_scale=1``); a Flax
initialiser is called on the dense kernel shape and mapped onto the stored array
(:meth:`fsjax.spec.ConvSpec.init_stored`). :func:`compress` converts an existing Linen model.
Parameter names match the NNX layers (``fs``, ``locations``, ``kernel``, ``alpha``, ``bias``),
and so do the math (:mod:`fsjax.ops`) and option checks (:class:`fsjax.spec.ConvSpec`).
DFS locations and WKSC weights live in the ``params`` collection like everything else; select
them by name (``locations``/``alpha``) for a separate optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen import dtypes as linen_dtypes

from fsjax import ops
from fsjax.spec import ConvSpec, check_dtypes

_LAYERS: dict[str, type] = {}  # conv kind -> its Linen layer class (ConvBase.__init_subclass__)

__all__ = ["FSConv", "DFSConv", "KSConv", "dense_kernel", "compress", "Compressed",
           "layer_class"]


class ConvBase(nn.Module):
    # flax.linen.Conv's fields, in its order and with its defaults (kernel_init: see module doc)
    features: int
    kernel_size: int | Sequence[int]
    strides: None | int | Sequence[int] = 1
    padding: Any = "SAME"
    input_dilation: None | int | Sequence[int] = 1
    kernel_dilation: None | int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    mask: Any = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Any = None
    bias_init: Any = nn.initializers.zeros_init()
    promote_dtype: Any = linen_dtypes.promote_dtype
    conv_general_dilated: Any = None
    conv_general_dilated_cls: Any = None
    # fsjax's own
    init_scale: float = 1.0

    kind = "dense"

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if isinstance(cls.__dict__.get("kind"), str):
            _LAYERS[cls.__dict__["kind"]] = cls

    def _opts(self) -> dict:
        return {}

    def init_extra(self, spec: ConvSpec) -> dict:
        """Initial values of the parameters beyond the stored kernel and the kind's
        projection (DFS: ``locations``), for a layer made from a dense one."""
        return {}

    def spec(self, in_features: int) -> ConvSpec:
        check_dtypes(self.dtype, self.param_dtype, f"{type(self).__name__} {self.name or ''}")
        return ConvSpec.make(
            self.kind, in_features, self.features, self.kernel_size, strides=self.strides,
            padding=self.padding, input_dilation=self.input_dilation,
            kernel_dilation=self.kernel_dilation, feature_group_count=self.feature_group_count,
            use_bias=self.use_bias, name=self.name or "", **self._opts())

    def _extra(self, spec: ConvSpec, stored, scope: nn.Module) -> dict:
        """Keyword arguments of :meth:`ConvSpec.apply` beyond the stored kernel, with their
        parameters created in ``scope``."""
        return {}

    def _extra_of(self, spec: ConvSpec, params: dict) -> dict:
        """The same, read from a layer's ``params``."""
        return {}

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        return layer_forward(self, self, inputs)


def layer_forward(layer: ConvBase, scope: nn.Module, inputs: jax.Array) -> jax.Array:
    """``layer``'s computation, with its parameters created in ``scope`` (``layer`` itself, or
    an ``nn.Conv`` being replaced by :func:`compress`)."""
    spec = layer.spec(inputs.shape[-1])
    stored = scope.param(spec.conv_kind.param, lambda key, *_: spec.init_stored(
        key, layer.kernel_init, layer.param_dtype, layer.init_scale))
    bias = (scope.param("bias", layer.bias_init, (spec.out_features,), layer.param_dtype)
            if spec.use_bias else None)
    if layer.promote_dtype is linen_dtypes.promote_dtype:
        promote = None
    else:
        def promote(args, dtype=None):
            return tuple(layer.promote_dtype(*args, dtype=dtype))
    if layer.conv_general_dilated_cls is not None:
        conv_fn = layer.conv_general_dilated_cls()
    else:
        conv_fn = layer.conv_general_dilated
    return spec.apply(inputs, stored, bias, mask=layer.mask, dtype=layer.dtype,
                      promote_dtype=promote, precision=layer.precision,
                      conv_general_dilated=conv_fn, **layer._extra(spec, stored, scope))


class FSConv(ConvBase):
    """FSNet conv (Linen): ``flax.linen.Conv``'s fields, then ``compression`` (rho, default
    4: about 4x fewer stored weights), ``offsets`` (segment starts; default evenly spaced) and
    ``layout`` (``'fsjax'`` or ``'official'``), as :class:`fsjax.nn.FSConv`. Parameters:
    ``fs`` (L,) and ``bias``.

    >>> import jax, jax.numpy as jnp
    >>> conv = FSConv(32, (3, 3), compression=4.0)
    >>> params = conv.init(jax.random.key(0), jnp.ones((1, 8, 8, 16)))["params"]
    >>> params["fs"].shape, conv.apply({"params": params}, jnp.ones((2, 8, 8, 16))).shape
    ((1152,), (2, 8, 8, 32))
    """

    compression: float = 4.0
    offsets: Any = None
    layout: str = "fsjax"
    kind = "fs"

    def _opts(self):
        return dict(compression=self.compression, offsets=self.offsets, layout=self.layout)


class DFSConv(ConvBase):
    """DFSNet conv (Linen): an FS conv whose segment locations are parameters too
    (``locations``, one per output channel; ``location_mode`` ``'wrap'`` or ``'sigmoid'``), as
    :class:`fsjax.nn.DFSConv`. Select them by name for their own optimizer.

    >>> import jax, jax.numpy as jnp
    >>> params = DFSConv(32, (3, 3)).init(jax.random.key(0), jnp.ones((1, 8, 8, 16)))["params"]
    >>> sorted(params), params["locations"].shape
    (['bias', 'fs', 'locations'], (32,))
    """

    compression: float = 4.0
    location_mode: str = "wrap"
    kind = "dfs"

    def _opts(self):
        return dict(compression=self.compression)

    def _extra(self, spec, stored, scope):
        raw = scope.param("locations", lambda _k: self.init_locations(spec))
        return self._extra_of(spec, {"locations": raw})

    def _extra_of(self, spec, params):
        return {"locations": ops.dfs_locations(params["locations"], spec.length,
                                               self.location_mode)}

    def init_extra(self, spec):
        return {"locations": np.asarray(self.init_locations(spec))}

    def init_locations(self, spec: ConvSpec) -> jax.Array:
        """The raw locations at the spec's offsets (the FSNet layout)."""
        return jnp.asarray(ops.dfs_init_raw(spec.np_offsets(), spec.length, self.location_mode))


class KSConv(ConvBase):
    """Kernel-sharing conv (Linen): ``groups`` contiguous input-channel groups share one kernel
    each; ``weighted=True`` for WKSC (a weight ``alpha`` per input channel, ``alpha_mode=
    'input'``, or per (input, output) pair, ``'pair'``), as :class:`fsjax.nn.KSConv`.

    >>> import jax, jax.numpy as jnp
    >>> conv = KSConv(32, (3, 3), groups=4, weighted=True)
    >>> params = conv.init(jax.random.key(0), jnp.ones((1, 8, 8, 16)))["params"]
    >>> params["kernel"].shape, params["alpha"].shape
    ((3, 3, 4, 32), (16,))
    """

    groups: int | None = None
    weighted: bool = False
    alpha_mode: str = "input"

    @property
    def kind(self):  # type: ignore[override]
        return "wks" if self.weighted else "ks"

    def _opts(self):
        return dict(groups=self.groups, alpha_mode=self.alpha_mode)

    def _extra(self, spec, stored, scope):
        shape = spec.alpha_shape()
        alpha = scope.param("alpha", nn.initializers.ones, shape, self.param_dtype) if shape else None
        return {"alpha": alpha}

    def _extra_of(self, spec, params):
        return {"alpha": params.get("alpha")}


def dense_kernel(module: ConvBase, params: dict, in_features: int) -> jax.Array:
    """The dense ``(*kernel_size, in // feature_groups, out)`` kernel of a bound-free fsjax Linen
    conv, from its ``params`` (``{'fs' | 'kernel', 'locations'?, 'alpha'?, 'bias'?}``)."""
    spec = module.spec(in_features)
    return spec.materialize(params[spec.conv_kind.param], **module._extra_of(spec, params))


_LAYERS["ks"] = _LAYERS["wks"] = KSConv


def layer_class(kind: str) -> type[ConvBase]:
    """The Linen layer class of a conv kind (``'fs'`` -> :class:`FSConv`; ``'ks'`` and
    ``'wks'`` -> :class:`KSConv`): a :class:`ConvBase` subclass whose ``kind`` names it."""
    if kind not in _LAYERS:
        raise ValueError(f"conv kind {kind!r} has no Linen layer class; valid: "
                         f"{', '.join(_LAYERS)}")
    return _LAYERS[kind]


from fsjax.linen.compress import Compressed, compress  # noqa: E402  (uses the layers above)
