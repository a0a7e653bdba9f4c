"""Layer description shared by the NNX and Linen front ends.

:class:`ConvSpec` validates a conv layer's options once, knows its kernel shape (any rank) and
stored size, and applies a materialised kernel through :func:`fsjax.ops.conv`. Both front ends (and
the report, pruner and quantizer) read it, so no option handling is written twice.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.nnx.nn import dtypes as nnx_dtypes

from fsjax import kinds, ops

canonicalize_dtype = nnx_dtypes.canonicalize_dtype

KINDS = kinds.names()  # the built-in kinds (kinds.names(): every registered one)
LAYOUTS = ("fsjax", "official")  # FS filter starts: exact integers | the official PyTorch code's

_RECORDER: contextvars.ContextVar[list | None] = contextvars.ContextVar("fsjax_rec", default=None)


@contextlib.contextmanager
def record_calls():
    """Collect ``(spec, input, output)`` of every fsjax conv called inside (arrays, tracers or
    shape structs). Used by :mod:`fsjax.report` under ``jax.eval_shape`` to count MACs, and by
    :mod:`fsjax.prune` to capture a layer's input."""
    calls: list = []
    token = _RECORDER.set(calls)
    try:
        yield calls
    finally:
        _RECORDER.reset(token)


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Static description of one conv layer of any rank (hashable; no arrays).

    ``kind`` names a registered :class:`fsjax.kinds.ConvKind` (:attr:`conv_kind`), which
    validates its options and builds its kernel; ``length``/``offsets`` are set for fs/dfs, ``groups``
    (kernel-sharing groups over all input channels) and ``alpha_mode`` for ks/wks. Geometry
    (``kernel_size``, ``strides``, ``dilation`` = kernel dilation, ``input_dilation``) is one
    int per spatial dim; ``padding`` is kept as given (Flax's forms). ``layout`` (fs only):
    ``'fsjax'`` (filter ``i`` starts at ``floor(i*L/cout)``) or ``'official'`` (the official
    FSNet PyTorch code's starts, :func:`fsjax.ops.fs_official_index`; ``offsets`` then holds
    ``trunc(start) mod L`` for reference only).
    """

    kind: str
    in_features: int
    out_features: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...] = (1, 1)
    padding: Any = "SAME"
    dilation: tuple[int, ...] = (1, 1)
    feature_group_count: int = 1
    use_bias: bool = True
    name: str = ""
    compression: float = 1.0
    length: int = 0
    offsets: tuple[int, ...] = ()
    groups: int = 0
    alpha_mode: str = "input"
    input_dilation: tuple[int, ...] = ()
    layout: str = "fsjax"

    @staticmethod
    def make(kind, in_features, out_features, kernel_size, *, strides=1, padding="SAME",
             input_dilation=1, kernel_dilation=1, feature_group_count=1, use_bias=True, name="",
             compression=None, offsets=None, groups=None, alpha_mode="input",
             layout="fsjax") -> ConvSpec:
        """Validate Flax-style arguments (``kernel_size`` an int = 1-D, as in Flax; strides and
        dilations None, an int or one per spatial dim) and return the spec."""
        where = f"{kind} conv {name!r}" if name else f"{kind} conv"
        try:
            k = kinds.get(kind)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        for label, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{where}: {label} must be a positive int; got {v!r}")
        fgc = feature_group_count
        if not isinstance(fgc, (int, np.integer)) or fgc <= 0 or in_features % fgc \
                or out_features % fgc:
            raise ValueError(
                f"{where}: feature_group_count {feature_group_count!r} must be a positive int "
                f"dividing in_features {in_features} and out_features {out_features}")
        fgc = int(fgc)
        try:
            ks = ops.kernel_size_tuple(kernel_size, "kernel_size")
            rank = len(ks)
            geo = dict(strides=ops.broadcast_dims(strides, rank, "strides"),
                       dilation=ops.broadcast_dims(kernel_dilation, rank, "kernel_dilation"),
                       input_dilation=ops.broadcast_dims(input_dilation, rank, "input_dilation"))
            ops.canonical_padding(padding, rank)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        spec = dict(kind=kind, in_features=int(in_features), out_features=int(out_features),
                    kernel_size=ks, padding=_hashable(padding), feature_group_count=fgc,
                    use_bias=bool(use_bias), name=name, **geo)
        kshape = ks + (int(in_features) // fgc, int(out_features))
        if layout not in LAYOUTS:
            raise ValueError(f"{where}: layout must be one of {', '.join(LAYOUTS)}; got "
                             f"{layout!r}")
        if layout == "official" and (not k.official_layout or offsets is not None):
            raise ValueError(f"{where}: layout='official' is for FS layers with the official "
                             f"filter starts (kind 'fs', no offsets); got kind {kind!r}"
                             + (" with offsets" if offsets is not None else ""))
        spec.update(k.options(where, kshape, int(in_features), fgc, compression=compression,
                              offsets=offsets, groups=groups, alpha_mode=alpha_mode,
                              layout=layout))
        return ConvSpec(**spec)

    # --- shapes and sizes -------------------------------------------------------------------
    @property
    def conv_kind(self) -> kinds.ConvKind:
        """The :class:`fsjax.kinds.ConvKind` this spec's ``kind`` names."""
        return kinds.get(self.kind)

    @property
    def rank(self) -> int:
        """Number of spatial dims (1, 2, 3, ...)."""
        return len(self.kernel_size)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        """Dense-equivalent kernel shape ``(*kernel_size, in // feature_groups, out)``."""
        return self.kernel_size + (self.in_features // self.feature_group_count,
                                   self.out_features)

    @property
    def stored_kernel_shape(self) -> tuple[int, ...]:
        """Shape of the stored kernel (FS vector, shared kernel or dense kernel)."""
        return self.conv_kind.stored_kernel_shape(self)

    def alpha_shape(self) -> tuple[int, ...] | None:
        """Shape of the WKSC sharing weights, or None."""
        return self.conv_kind.alpha_shape(self)

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.kernel_shape[:-1]))

    def stored_params(self) -> int:
        """Trainable parameters this layer stores (kernel/FS, locations, alpha, bias)."""
        n = int(np.prod(self.stored_kernel_shape)) + self.conv_kind.extra_params(self)
        if self.alpha_shape():
            n += int(np.prod(self.alpha_shape()))
        return n + (self.out_features if self.use_bias else 0)

    def dense_params(self) -> int:
        return int(np.prod(self.kernel_shape)) + (self.out_features if self.use_bias else 0)

    def np_offsets(self) -> np.ndarray:
        return np.asarray(self.offsets, np.int32)

    def fs_table(self) -> np.ndarray:
        """FS/DFS (at its initial starts): the ``(*kernel_size, in // feature_groups, out)``
        index of every kernel weight in the summary, in this layer's ``layout``."""
        if self.layout == "official":
            return ops.fs_official_index(self.kernel_shape, self.length)
        return np.asarray(ops.fs_index(self.kernel_shape, self.length, self.np_offsets()))

    def geometry(self) -> dict:
        """Flax keyword arguments of this geometry (for building a layer like this one)."""
        return dict(strides=self.strides, padding=self.padding,
                    input_dilation=self.input_dilation or 1, kernel_dilation=self.dilation,
                    feature_group_count=self.feature_group_count, use_bias=self.use_bias)

    # --- parameters -------------------------------------------------------------------------
    def init_stored(self, key, kernel_init, param_dtype, init_scale: float = 1.0) -> jax.Array:
        """Initial stored kernel (FS vector, shared kernel or dense kernel).

        ``kernel_init=None``: a truncated normal with variance ``init_scale / fan_in`` per
        materialised weight (at ``init_scale=1`` the distribution of Flax's default
        ``lecun_normal``). A Flax initialiser is called on the dense kernel shape with
        ``key`` and each stored entry takes the value of the first dense weight that reads it
        (FS: :func:`fsjax.ops.fs_from_dense`; KS: the group's first channel), so i.i.d.
        initialisers keep their per-weight distribution, constants stay constants, and at
        ``compression=1`` / ``groups=in_features`` the materialised kernel is exactly what
        ``kernel_init`` returns for the dense layer.
        """
        if kernel_init is None:
            return ops.fan_in_normal(key, self.stored_kernel_shape, self.fan_in, init_scale,
                                     param_dtype)
        dense = jnp.asarray(kernel_init(key, self.kernel_shape, param_dtype), param_dtype)
        if dense.shape != self.kernel_shape:
            raise ValueError(f"conv {self.name!r}: kernel_init returned shape {dense.shape}; "
                             f"expected the dense kernel shape {self.kernel_shape}")
        return self.conv_kind.init_from_dense(self, dense)

    # --- forward ----------------------------------------------------------------------------
    def apply(self, x, stored, bias, *, locations=None, alpha=None, mask=None, dtype=None,
              promote_dtype=None, precision=None, preferred_element_type=None,
              conv_general_dilated=None, out_sharding=None):
        """Run the layer as Flax's ``Conv.__call__`` does, with the kernel built from ``stored``.

        ``x (*batch, *spatial, cin)`` -> ``(*batch, *spatial', cout)``. Flax's order is kept:
        materialised kernel (parameter dtype) -> ``* mask`` -> ``promote_dtype((x, kernel,
        bias), dtype=dtype)`` -> conv -> ``+ bias``. ``promote_dtype=None`` is Flax's default;
        then (and without a mask) the cast is done on the stored array before the kernel is
        built (exact, and rho x fewer bytes for FS) and KS uses its factored form.
        """
        rank = self.rank
        if x.ndim < rank + 1:
            raise ValueError(f"conv {self.name!r}: a {rank}-D conv expects an input (*batch, "
                             f"{rank} spatial dims, {self.in_features}); got shape "
                             f"{tuple(x.shape)}")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"conv {self.name!r}: expected {self.in_features} input channels; "
                             f"got input of shape {x.shape}")
        kw = dict(strides=self.strides, padding=self.padding,
                  input_dilation=self.input_dilation or 1, kernel_dilation=self.dilation,
                  precision=precision, preferred_element_type=preferred_element_type,
                  conv_general_dilated=conv_general_dilated, out_sharding=out_sharding)
        n = self.feature_group_count
        if promote_dtype is None and mask is None:
            dt = canonicalize_dtype(x, stored, bias, dtype=dtype, inexact=True)
            x = jnp.asarray(x, dt)
            bias = None if bias is None else jnp.asarray(bias, dt)
            y = self.conv_kind.apply(self, x, stored, bias, locations=locations, alpha=alpha,
                                     dtype=dt, **kw)
        else:
            kernel = self.materialize(stored, locations, alpha)
            if mask is not None:
                if tuple(mask.shape) != self.kernel_shape:
                    raise ValueError(f"conv {self.name!r}: mask must have the kernel's shape "
                                     f"{self.kernel_shape}; got {tuple(mask.shape)}")
                kernel = kernel * mask
            promote = promote_dtype or _promote
            x, kernel, bias = promote((x, kernel, bias), dtype=dtype)
            y = ops.conv(x, kernel, bias, feature_group_count=n, **kw)
        calls = _RECORDER.get()
        if calls is not None:
            calls.append((self, x, y))
        return y

    def materialize(self, stored, locations=None, alpha=None) -> jax.Array:
        """Dense ``(*kernel_size, in // feature_groups, out)`` kernel from the stored array
        (FS vector, shared kernel with ``alpha``, or dense)."""
        return self.conv_kind.materialize(self, stored, locations, alpha)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["offsets"] = list(self.offsets)
        return d

    @staticmethod
    def from_dict(d: dict) -> ConvSpec:
        d = dict(d)
        for k in ("kernel_size", "strides", "dilation", "offsets", "input_dilation"):
            if k in d:
                d[k] = tuple(d[k])
        if isinstance(d["padding"], list):
            d["padding"] = _hashable(d["padding"])
        return ConvSpec(**d)


def _hashable(padding):
    if isinstance(padding, (str, int)):
        return padding
    return tuple(p if isinstance(p, int) else tuple(int(q) for q in p) for p in padding)


def _promote(args, dtype=None):
    return nnx_dtypes.promote_dtype(args, dtype=dtype)


CONVERT_KINDS = kinds.convertible()  # the built-in ones (kinds.convertible(): all)


def check_convert_args(where: str, kind, group_size) -> None:
    """The options every converter (:func:`fsjax.nn.convert`, :func:`fsjax.linen.compress`)
    takes: ValueError naming the bad one."""
    if kind not in kinds.convertible():
        raise ValueError(f"{where}: kind must be one of {', '.join(kinds.convertible())}; "
                         f"got {kind!r}")
    if kinds.get(kind).step_option == "group_size" and (
            not isinstance(group_size, int) or group_size <= 0):
        raise ValueError(f"{where}: group_size must be a positive int; got {group_size!r}")


def convert_skip_reason(kind: str, in_features: int, kernel_shape, feature_group_count: int, *,
                        picked: bool | None, min_params: int, group_size: int) -> str | None:
    """Why a converter leaves a (representable) conv dense, or None to convert it.

    ``picked``: the user predicate's answer, or None when no predicate was given; then the
    default picks ungrouped convs whose dense kernel has at least ``min_params`` weights.
    KS/WKS also need the input channels of a feature group to split into ``group_size``.
    """
    fgc = feature_group_count
    if picked is not None:
        if not picked:
            return "not selected by the predicate"
    elif fgc != 1:
        return f"grouped (feature_group_count={fgc})"
    elif int(np.prod(kernel_shape)) < min_params:
        return f"fewer than min_params={min_params} weights"
    return kinds.get(kind).convert_skip(in_features, fgc, group_size)


def check_dtypes(dtype, param_dtype, where: str = "conv") -> None:
    """Parameters must be floating point (they are trained); ``dtype`` too when given."""
    for name, dt in (("param_dtype", param_dtype), ("dtype", dtype)):
        if dt is None and name == "dtype":
            continue
        try:
            ok = jnp.issubdtype(jnp.dtype(dt), jnp.floating)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{where}: {name}={dt!r} is not valid; valid: a floating dtype "
                             f"(jnp.float32, jnp.bfloat16, jnp.float16)")
