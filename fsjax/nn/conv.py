"""Flax NNX conv layers: dense ``Conv``, ``FSConv``, ``DFSConv`` and ``KSConv`` (KSC / WKSC).

Constructors take every argument of ``flax.nnx.Conv`` in its order, with its defaults and
meanings (``in_features, out_features, kernel_size, strides=1, *, padding, input_dilation,
kernel_dilation, feature_group_count, use_bias, mask, dtype, param_dtype, precision,
kernel_init, bias_init, conv_general_dilated, promote_dtype, preferred_element_type, rngs,
kernel_metadata, bias_metadata``), then each layer's own options (``init_scale``, ``name``,
``compression`` ...). As in Flax, an int ``kernel_size`` is a 1-D kernel ``(k,)``; any rank
works (1-D, 2-D, 3-D, ...), and so do unbatched inputs and several batch dims. Given the same
dense kernel the output is Flax's bit for bit. ``kernel_init=None`` (the default) draws each
stored weight from a truncated normal of variance ``init_scale / fan_in`` (Flax's
``lecun_normal`` at ``init_scale=1``); a Flax initialiser is called on the dense kernel shape
and mapped onto the stored array (:meth:`fsjax.spec.ConvSpec.init_stored`). The math is in
:mod:`fsjax.ops`; option handling in :class:`fsjax.spec.ConvSpec`.

Variable types: FS vectors and kernels are ``nnx.Param``; DFS locations are :class:`Location`
and WKSC weights :class:`ShareWeight` (both ``nnx.Param`` subclasses, so the usual
``nnx.Param`` filters train them, and an optimizer can single them out by type).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes as nnx_dtypes
from jax import lax
from typing_extensions import Required, TypedDict, Unpack

from fsjax import ops
from fsjax.spec import ConvSpec, check_dtypes

__all__ = ["ConvBase", "Conv", "FSConv", "DFSConv", "KSConv", "Location", "ShareWeight",
           "ConvArgs", "like_conv", "kernel_of", "copy_bias", "layer_class"]


class Location(nnx.Param):
    """Raw (unconstrained) DFS segment locations, shape ``(cout,)``."""


class ShareWeight(nnx.Param):
    """WKSC per-input (or per input-output pair) channel weights."""


# Flax's nnx.Conv arguments after (in_features, out_features, kernel_size), in its order; every
# fsjax layer takes them with the same defaults and stores them under the same attribute names.
FLAX_ARGS = ("strides", "padding", "input_dilation", "kernel_dilation", "feature_group_count",
             "use_bias", "mask", "dtype", "param_dtype", "precision", "kernel_init", "bias_init",
             "conv_general_dilated", "promote_dtype", "preferred_element_type")
_DEFAULT_PROMOTE = nnx_dtypes.promote_dtype
_LAYERS: dict[str, type] = {}  # conv kind -> its NNX layer class (ConvBase.__init_subclass__)


class ConvArgs(TypedDict, total=False):
    """The keyword arguments every fsjax NNX conv takes: ``flax.nnx.Conv``'s (same defaults
    and meanings) and fsjax's ``init_scale`` (fan-in variance scale of the default init: 1 is
    Flax's ``lecun_normal``, 2 He) and ``name`` (the layer's name in reports and errors)."""

    padding: Any
    input_dilation: None | int | Sequence[int]
    kernel_dilation: None | int | Sequence[int]
    feature_group_count: int
    use_bias: bool
    mask: jax.Array | None
    dtype: Any
    param_dtype: Any
    precision: Any
    kernel_init: Any
    bias_init: Any
    conv_general_dilated: Any
    promote_dtype: Any
    preferred_element_type: Any
    rngs: Required[nnx.Rngs]
    kernel_metadata: Mapping[str, Any]
    bias_metadata: Mapping[str, Any]
    init_scale: float
    name: str


class ConvBase(nnx.Module):
    """What every fsjax NNX conv kind shares: Flax's arguments (:class:`ConvArgs`), the
    :class:`fsjax.spec.ConvSpec` that computes it through :func:`fsjax.ops.conv`, the report
    hook and the dense kernel (``dense_kernel()``). Tools recognise an fsjax conv by
    ``isinstance(layer, ConvBase)`` and its kind by ``layer.spec.conv_kind``.

    A subclass that sets ``kind`` (the name of a registered :class:`fsjax.kinds.ConvKind`) is
    the layer class of that kind (:func:`layer_class`): the model factory and the converters
    build it with the kind's :meth:`~fsjax.kinds.ConvKind.layer_options`. The stored kernel
    is the parameter the kind names (``kernel`` or ``fs``)."""

    kind = "dense"

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if isinstance(cls.__dict__.get("kind"), str):
            _LAYERS[cls.__dict__["kind"]] = cls

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: None | int | Sequence[int] = 1,
        *,
        padding: Any = "SAME",
        input_dilation: None | int | Sequence[int] = 1,
        kernel_dilation: None | int | Sequence[int] = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        mask: jax.Array | None = None,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Any = None,
        bias_init: Any = nnx.initializers.zeros_init(),
        conv_general_dilated: Any = lax.conv_general_dilated,
        promote_dtype: Any = _DEFAULT_PROMOTE,
        preferred_element_type: Any = None,
        rngs: nnx.Rngs,
        kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
        bias_metadata: Mapping[str, Any] = MappingProxyType({}),
        init_scale: float = 1.0,
        name: str = "",
        **opts,
    ):
        self.spec = ConvSpec.make(
            self.kind, in_features, out_features, kernel_size, strides=strides, padding=padding,
            input_dilation=input_dilation, kernel_dilation=kernel_dilation,
            feature_group_count=feature_group_count, use_bias=use_bias, name=name, **opts)
        where = f"{type(self).__name__} {name}".strip()
        check_dtypes(dtype, param_dtype, where)
        if mask is not None and tuple(mask.shape) != self.spec.kernel_shape:
            raise ValueError(f"{where}: mask must have the dense kernel's shape "
                             f"{self.spec.kernel_shape}; got {tuple(mask.shape)}")
        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = self.spec.kernel_size
        self.kernel_shape = self.spec.kernel_shape
        self.strides = strides
        self.padding = padding
        self.input_dilation = input_dilation
        self.kernel_dilation = kernel_dilation
        self.feature_group_count = feature_group_count
        self.use_bias = use_bias
        self.mask = mask
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.kernel_init = kernel_init
        self.bias_init = bias_init
        self.conv_general_dilated = conv_general_dilated
        self.promote_dtype = promote_dtype
        self.preferred_element_type = preferred_element_type
        self.init_scale = init_scale
        stored = self.spec.init_stored(rngs.params(), kernel_init, param_dtype, init_scale)
        self._init_params(stored, dict(kernel_metadata))
        self.bias = (nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype),
                               **bias_metadata) if use_bias else nnx.data(None))

    def _init_params(self, stored, metadata):
        setattr(self, self.spec.conv_kind.param, nnx.Param(stored, **metadata))

    def _stored(self):
        return getattr(self, self.spec.conv_kind.param)[...]

    def _extra(self) -> dict:
        """Keyword arguments of :meth:`ConvSpec.apply` beyond the stored kernel."""
        return {}

    def dense_kernel(self) -> jax.Array:
        """The equivalent dense kernel ``(*kernel_size, in // feature_groups, out)`` (unmasked)."""
        return self.spec.materialize(self._stored(), **self._extra())

    def load_dense(self, kernel) -> None:
        """Set the stored weights to the least-squares fit of a dense kernel ``(*kernel_size,
        in // feature_groups, out)``: the kernel itself for a dense conv; the layer's
        projection for the compressed kinds (bias untouched)."""
        kernel = jnp.asarray(kernel)
        if tuple(kernel.shape) != self.spec.kernel_shape:
            raise ValueError(f"{type(self).__name__} {self.spec.name}: load_dense needs a kernel "
                             f"of shape {self.spec.kernel_shape}; got {tuple(kernel.shape)}")
        self._load_dense(kernel.astype(jnp.float32))

    def _load_dense(self, kernel):
        self.set_stored(self.spec.conv_kind.project(self.spec, kernel))

    def stored_arrays(self) -> dict:
        """The stored kernel by its parameter name (``'kernel'`` or ``'fs'``), with the
        WKSC weights as ``'alpha'`` (None where the layer has none): what
        :meth:`set_stored` takes back."""
        alpha = getattr(self, "alpha", None)
        return {self.spec.conv_kind.param: self._stored(),
                "alpha": None if alpha is None else alpha[...]}

    def set_stored(self, arrays: dict) -> None:
        """Set stored parameters by name (``{'kernel' | 'fs' | 'alpha': array}``), each cast
        to the parameter dtype."""
        for name, value in arrays.items():
            getattr(self, name)[...] = jnp.asarray(value).astype(self.param_dtype)

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        promote = None if self.promote_dtype is _DEFAULT_PROMOTE else self.promote_dtype
        conv_fn = (None if self.conv_general_dilated is lax.conv_general_dilated
                   else self.conv_general_dilated)
        bias = None if self.bias is None else self.bias[...]
        return self.spec.apply(
            inputs, self._stored(), bias, mask=self.mask, dtype=self.dtype,
            promote_dtype=promote, precision=self.precision,
            preferred_element_type=self.preferred_element_type, conv_general_dilated=conv_fn,
            out_sharding=out_sharding, **self._extra())

    def flax_args(self) -> dict:
        """This layer's Flax arguments (:data:`FLAX_ARGS`) plus ``name``, as given."""
        return {**{a: getattr(self, a) for a in FLAX_ARGS}, "name": self.spec.name}


class Conv(ConvBase):
    """Dense conv: ``flax.nnx.Conv``'s arguments and results, reporting itself to
    :mod:`fsjax.report` (and quantized, exported and pruned like the other kinds).

    Args:
      in_features, out_features: input and output channels.
      kernel_size: an int (a 1-D kernel, as in Flax) or one size per spatial dim.
      strides: an int or one per spatial dim.
      **kwargs: :class:`ConvArgs` (``padding``, ``use_bias``, ..., ``rngs``).

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> conv = Conv(3, 8, (3, 3), rngs=nnx.Rngs(0))
    >>> conv(jnp.ones((2, 16, 16, 3))).shape
    (2, 16, 16, 8)
    """

    kind = "dense"

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 strides: None | int | Sequence[int] = 1, **kwargs: Unpack[ConvArgs]) -> None:
        super().__init__(in_features, out_features, kernel_size, strides, **kwargs)


class FSConv(ConvBase):
    """FSNet conv: filters are overlapping, circularly wrapped segments of one FS vector.

    Options: ``compression`` (rho, default 4; FS length ``max(K, floor(K*cout/rho))``),
    ``offsets`` (segment starts; default the uniform layout of :func:`fsjax.ops.fs_offsets`),
    ``layout`` (``'fsjax'``, or ``'official'`` for the official FSNet PyTorch code's filter
    starts, to run its checkpoints: :func:`fsjax.ops.fs_official_index`; docs/layers.md).
    Parameters: ``fs`` (L,) and ``bias``.
    """

    kind = "fs"

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 strides: None | int | Sequence[int] = 1, *, compression: float = 4.0,
                 offsets: Sequence[int] | None = None, layout: str = "fsjax",
                 **kwargs: Unpack[ConvArgs]) -> None:
        """An FS conv: the dense ``(*kernel_size, in, out)`` kernel's filters are segments of
        one stored vector ``fs`` of length ``L``.

        Args:
          in_features, out_features, kernel_size, strides: as :class:`Conv`.
          compression: rho; ``L = max(K, floor(K * out / rho))`` with ``K`` the filter size
            (``kh * kw * in``): about rho x fewer stored weights.
          offsets: the ``out`` segment starts in ``[0, L)`` (default: evenly spaced,
            :func:`fsjax.ops.fs_offsets`).
          layout: ``'fsjax'`` or ``'official'`` (the official FSNet code's filter starts).
          **kwargs: :class:`ConvArgs`.

        >>> from flax import nnx
        >>> conv = FSConv(16, 32, (3, 3), compression=4.0, rngs=nnx.Rngs(0))
        >>> conv.fs.shape, conv.spec.kernel_shape
        ((1152,), (3, 3, 16, 32))
        """
        super().__init__(in_features, out_features, kernel_size, strides,
                         compression=compression, offsets=offsets, layout=layout, **kwargs)

    @classmethod
    def from_dense(cls, conv, compression=4.0, *, rngs=None, **kw) -> FSConv:
        """Least-squares FS layer (:func:`fsjax.ops.fs_project`) from a dense conv's kernel."""
        layer = like_conv(cls, conv, rngs, compression=compression, **kw)
        layer.load_dense(kernel_of(conv))
        copy_bias(conv, layer)
        return layer


class DFSConv(ConvBase):
    """DFSNet conv: FS conv whose segment locations are learned by gradient.

    ``location_mode``: ``'wrap'`` (default; ``loc = raw mod L``, gradient 1 everywhere, the
    natural parameterisation of segments on a circle) or ``'sigmoid'`` (``loc = sigmoid(raw)*L``,
    the official draft; saturates near the ends). Both start at the FSNet layout.
    Parameters: ``fs`` (L,), ``locations`` (:class:`Location`, cout) and ``bias``.
    """

    kind = "dfs"

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 strides: None | int | Sequence[int] = 1, *, compression: float = 4.0,
                 offsets: Sequence[int] | None = None, location_mode: str = "wrap",
                 **kwargs: Unpack[ConvArgs]) -> None:
        """A DFS conv: an FS conv (see :class:`FSConv`) whose ``out`` segment locations are
        trained too (``locations``, a :class:`Location`; give them their own optimizer:
        :func:`fsjax.optim.model_optimizer`).

        Args:
          in_features, out_features, kernel_size, strides, compression, offsets: as
            :class:`FSConv` (``offsets``: the starting locations).
          location_mode: ``'wrap'`` (``loc = raw mod L``) or ``'sigmoid'``
            (``loc = sigmoid(raw) * L``).
          **kwargs: :class:`ConvArgs`.

        >>> from flax import nnx
        >>> conv = DFSConv(16, 32, (3, 3), compression=4.0, rngs=nnx.Rngs(0))
        >>> conv.locations.shape, type(conv.to_fs()).__name__
        ((32,), 'FSConv')
        """
        if location_mode not in ("wrap", "sigmoid"):
            raise ValueError(f"location_mode must be 'wrap' or 'sigmoid'; got {location_mode!r}")
        self.location_mode = location_mode
        super().__init__(in_features, out_features, kernel_size, strides,
                         compression=compression, offsets=offsets, **kwargs)

    def _init_params(self, stored, metadata):
        super()._init_params(stored, metadata)
        raw = ops.dfs_init_raw(self.spec.np_offsets(), self.spec.length, self.location_mode)
        self.locations = Location(jnp.asarray(raw, jnp.float32))

    def _load_dense(self, kernel):  # at the current locations, rounded
        index = ops.fs_index(self.spec.kernel_shape, self.spec.length, self.rounded_offsets())
        self.fs[...] = ops.fs_project(kernel, self.spec.length, index=np.asarray(index)
                                      ).astype(self.param_dtype)

    def _extra(self):
        return {"locations": self.location_values()}

    def location_values(self) -> jax.Array:
        """Segment starts in [0, L), shape (cout,)."""
        return ops.dfs_locations(self.locations[...], self.spec.length, self.location_mode)

    def rounded_offsets(self) -> np.ndarray:
        """Locations rounded to the nearest integer segment start, wrapped into [0, L)."""
        loc = np.asarray(jax.device_get(self.location_values()), np.float64)
        return (np.floor(loc + 0.5).astype(np.int64) % self.spec.length).astype(np.int32)

    def to_fs(self) -> FSConv:
        """Freeze: an :class:`FSConv` with rounded offsets and this layer's FS and bias."""
        layer = like_conv(FSConv, self, None, compression=self.spec.compression,
                      offsets=self.rounded_offsets())
        layer.fs[...] = self.fs[...]
        copy_bias(self, layer)
        return layer


class KSConv(ConvBase):
    """Kernel-sharing conv (KSC); ``weighted=True`` gives WKSC.

    ``groups``: number of contiguous input-channel groups whose channels share one kernel
    (``g = in_features // groups`` channels each; ``groups=in_features`` is a dense conv).
    ``alpha_mode`` (WKSC): ``'input'`` (a weight per input channel; computed as a weighted
    channel-group sum followed by a ``groups``-input conv, so MACs drop by about g) or
    ``'pair'`` (a weight per (input, output); only weights drop). ``alpha`` starts at 1.
    Parameters: ``kernel`` (kh, kw, groups, cout), ``alpha`` (:class:`ShareWeight`), ``bias``.
    """

    kind = "ks"

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 strides: None | int | Sequence[int] = 1, *, weighted: bool = False,
                 groups: int | None = None, alpha_mode: str = "input",
                 **kwargs: Unpack[ConvArgs]) -> None:
        """A kernel-sharing conv (KSC), or WKSC with ``weighted=True``.

        Args:
          in_features, out_features, kernel_size, strides: as :class:`Conv`.
          weighted: WKSC: every input channel (``alpha_mode='input'``) or (input, output)
            pair (``'pair'``) has a trained weight ``alpha`` (a :class:`ShareWeight`, 1 at
            the start).
          groups: the contiguous input-channel groups sharing one kernel each (``g =
            in_features // groups`` channels per kernel); default ``feature_group_count``.
          **kwargs: :class:`ConvArgs`.

        >>> from flax import nnx
        >>> conv = KSConv(16, 32, (3, 3), groups=4, weighted=True, rngs=nnx.Rngs(0))
        >>> conv.kernel.shape, conv.alpha.shape
        ((3, 3, 4, 32), (16,))
        """
        self.kind = "wks" if weighted else "ks"
        super().__init__(in_features, out_features, kernel_size, strides, groups=groups,
                         alpha_mode=alpha_mode, **kwargs)

    def _init_params(self, stored, metadata):
        super()._init_params(stored, metadata)
        shape = self.spec.alpha_shape()
        self.alpha = ShareWeight(jnp.ones(shape, self.param_dtype)) if shape else nnx.data(None)

    def _extra(self):
        return {"alpha": None if self.alpha is None else self.alpha[...]}


def _signature(cls):
    """``inspect.signature(cls)`` (and of ``cls.__init__``) shows every argument: Flax's and
    fsjax's (:class:`ConvArgs`), then the class's own keyword-only options with their
    annotations and defaults, read from its ``__init__`` (nnx's metaclass would otherwise show
    ``*args, **kwargs``; the annotated ``__init__`` is what static checkers read)."""
    base = inspect.signature(ConvBase.__init__)
    params = [p for p in base.parameters.values() if p.kind != p.VAR_KEYWORD]
    if cls.__init__ is not ConvBase.__init__:
        params += [p for p in inspect.signature(cls.__init__).parameters.values()
                   if p.kind == p.KEYWORD_ONLY]
    full = base.replace(parameters=params, return_annotation=inspect.Signature.empty)
    cls.__init__.__signature__ = full
    cls.__signature__ = full.replace(parameters=params[1:])  # without self


for _cls in (Conv, FSConv, DFSConv, KSConv):
    _signature(_cls)
_LAYERS["wks"] = KSConv  # KSConv(weighted=True)


def layer_class(kind: str) -> type[ConvBase]:
    """The NNX layer class of a conv kind (``'fs'`` -> :class:`FSConv`; ``'ks'`` and
    ``'wks'`` -> :class:`KSConv`); ValueError naming the kinds that have one."""
    if kind not in _LAYERS:
        raise ValueError(f"conv kind {kind!r} has no NNX layer class; valid: "
                         f"{', '.join(_LAYERS)}")
    return _LAYERS[kind]


def kernel_of(conv) -> jax.Array:
    """Dense kernel of an fsjax or Flax conv, with its mask applied (what the layer computes
    with)."""
    k = conv.dense_kernel() if isinstance(conv, ConvBase) else conv.kernel[...]
    return k if getattr(conv, "mask", None) is None else k * conv.mask


def copy_bias(src, dst):
    """Copy ``src``'s bias (if both layers have one) into ``dst``, in ``dst``'s dtype."""
    if dst.bias is not None and getattr(src, "bias", None) is not None:
        dst.bias[...] = src.bias[...].astype(dst.param_dtype)


def flax_args(conv) -> dict:
    """The Flax arguments (:data:`FLAX_ARGS`, as given) of an ``nnx.Conv`` or fsjax conv; a
    Flax default ``kernel_init`` becomes None (fsjax's equivalent per-weight default)."""
    if isinstance(conv, ConvBase):
        return conv.flax_args()
    args = {a: getattr(conv, a) for a in FLAX_ARGS if hasattr(conv, a)}
    args["kernel_init"] = None  # the conv's own init is replaced by its trained kernel
    return args


def like_conv(cls, conv, rngs, **kw):
    """A new ``cls`` layer with every Flax argument of ``conv`` (an ``nnx.Conv`` or fsjax
    conv), overridden by ``kw``."""
    args = flax_args(conv)
    args.update(kw)
    return cls(conv.in_features, conv.out_features, conv.kernel_size, rngs=rngs or nnx.Rngs(0),
               **args)
