"""Layer description shared by the NNX and Linen front ends.

:class:`ConvSpec` validates a conv layer's options once, knows its HWIO kernel shape and stored
size, and applies a materialised kernel through :func:`fsjax.ops.conv2d`. Both front ends (and
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

from fsjax import ops

KINDS = ("dense", "fs", "dfs", "ks", "wks")

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
    """Static description of one conv layer (hashable; no arrays).

    ``kind`` is one of :data:`KINDS`; ``length``/``offsets`` are set for fs/dfs, ``groups``
    (kernel-sharing groups) and ``alpha_mode`` for ks/wks.
    """

    kind: str
    in_features: int
    out_features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Any = "SAME"
    dilation: tuple[int, int] = (1, 1)
    feature_group_count: int = 1
    use_bias: bool = True
    name: str = ""
    compression: float = 1.0
    length: int = 0
    offsets: tuple[int, ...] = ()
    groups: int = 0
    alpha_mode: str = "input"

    @staticmethod
    def make(kind, in_features, out_features, kernel_size, *, strides=1, padding="SAME",
             kernel_dilation=1, feature_group_count=1, use_bias=True, name="",
             compression=None, offsets=None, groups=None, alpha_mode="input") -> ConvSpec:
        where = f"{kind} conv {name!r}" if name else f"{kind} conv"
        if kind not in KINDS:
            raise ValueError(f"{where}: unknown conv kind {kind!r}; valid: {', '.join(KINDS)}")
        for label, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{where}: {label} must be a positive int; got {v!r}")
        fgc = int(feature_group_count)
        if fgc <= 0 or in_features % fgc or out_features % fgc:
            raise ValueError(
                f"{where}: feature_group_count {feature_group_count} must divide in_features "
                f"{in_features} and out_features {out_features}")
        kh, kw = ops.pair(kernel_size, f"{where}: kernel_size")
        ops.canonical_padding(padding, (kh, kw), (1, 1))
        spec = dict(kind=kind, in_features=int(in_features), out_features=int(out_features),
                    kernel_size=(kh, kw), strides=ops.pair(strides, f"{where}: strides"),
                    padding=padding if isinstance(padding, (str, int)) else tuple(
                        tuple(p) if not isinstance(p, int) else p for p in padding),
                    dilation=ops.pair(kernel_dilation, f"{where}: kernel_dilation"),
                    feature_group_count=fgc, use_bias=bool(use_bias), name=name)
        kshape = (kh, kw, int(in_features) // fgc, int(out_features))
        if kind in ("fs", "dfs"):
            compression = 4.0 if compression is None else compression
            try:
                length = ops.fs_length(kshape, compression)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
            if offsets is None:
                offsets = ops.fs_offsets(kshape, length)
            offsets = tuple(int(o) for o in np.asarray(offsets).reshape(-1))
            if len(offsets) != kshape[3] or min(offsets) < 0 or max(offsets) >= length:
                raise ValueError(f"{where}: offsets must be {kshape[3]} ints in [0, {length})")
            spec.update(compression=float(compression), length=length, offsets=offsets)
        if kind in ("ks", "wks"):
            if fgc != 1:
                raise ValueError(f"{where}: kernel sharing needs feature_group_count=1; got {fgc}")
            groups = 1 if groups is None else groups
            ops.ks_check(int(in_features), groups, where)
            if alpha_mode not in ("input", "pair"):
                raise ValueError(f"{where}: alpha_mode must be 'input' or 'pair'; got {alpha_mode!r}")
            spec.update(groups=int(groups), alpha_mode=alpha_mode,
                        compression=float(in_features // groups))
        return ConvSpec(**spec)

    # --- shapes and sizes -------------------------------------------------------------------
    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        """Dense-equivalent HWIO kernel shape."""
        kh, kw = self.kernel_size
        return (kh, kw, self.in_features // self.feature_group_count, self.out_features)

    @property
    def stored_kernel_shape(self) -> tuple[int, ...]:
        kh, kw, _, cout = self.kernel_shape
        if self.kind in ("fs", "dfs"):
            return (self.length,)
        if self.kind in ("ks", "wks"):
            return (kh, kw, self.groups, cout)
        return self.kernel_shape

    def alpha_shape(self) -> tuple[int, ...] | None:
        if self.kind != "wks":
            return None
        if self.alpha_mode == "pair":
            return (self.in_features, self.out_features)
        return (self.in_features,)

    @property
    def fan_in(self) -> int:
        kh, kw, cin, _ = self.kernel_shape
        return kh * kw * cin

    def stored_params(self) -> int:
        """Trainable parameters this layer stores (kernel/FS, locations, alpha, bias)."""
        n = int(np.prod(self.stored_kernel_shape))
        if self.kind == "dfs":
            n += self.out_features
        if self.alpha_shape():
            n += int(np.prod(self.alpha_shape()))
        return n + (self.out_features if self.use_bias else 0)

    def dense_params(self) -> int:
        return int(np.prod(self.kernel_shape)) + (self.out_features if self.use_bias else 0)

    def np_offsets(self) -> np.ndarray:
        return np.asarray(self.offsets, np.int32)

    # --- forward ----------------------------------------------------------------------------
    def conv_kwargs(self, precision=None) -> dict:
        return dict(strides=self.strides, padding=self.padding, dilation=self.dilation,
                    precision=precision)

    def apply(self, x, kernel, bias, alpha=None, *, dtype=None, precision=None):
        """Run the layer: ``x (..., H, W, cin)`` -> ``(..., H', W', cout)``.

        ``kernel`` is the materialised HWIO kernel, or for ks/wks the ``(kh, kw, groups, cout)``
        shared kernel (with ``alpha``). Everything is cast to ``dtype`` (default: promotion of
        the input and parameter dtypes, as in Flax).
        """
        if x.ndim < 3:
            raise ValueError(f"conv {self.name!r}: expects an input (..., H, W, "
                             f"{self.in_features}) (NHWC); got shape {tuple(x.shape)}")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"conv {self.name!r}: expected {self.in_features} input channels; "
                             f"got input of shape {x.shape}")
        if dtype is None:
            dtype = jnp.result_type(x.dtype, kernel.dtype)
        x = x.astype(dtype)
        kernel = kernel.astype(dtype)
        bias = None if bias is None else bias.astype(dtype)
        kw = self.conv_kwargs(precision)
        if self.kind in ("ks", "wks"):
            a = None if alpha is None else alpha.astype(dtype)
            y = ops.ks_conv(x, kernel, a, bias, **kw)
        else:
            y = ops.conv2d(x, kernel, bias, feature_group_count=self.feature_group_count, **kw)
        calls = _RECORDER.get()
        if calls is not None:
            calls.append((self, x, y))
        return y

    def materialize(self, stored, locations=None) -> jax.Array:
        """Dense HWIO kernel from the stored array (FS vector, shared kernel, or dense)."""
        if self.kind == "fs":
            return ops.fs_kernel(stored, self.kernel_shape, self.np_offsets())
        if self.kind == "dfs":
            return ops.dfs_kernel(stored, self.kernel_shape, locations)
        return stored

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["offsets"] = list(self.offsets)
        return d

    @staticmethod
    def from_dict(d: dict) -> ConvSpec:
        d = dict(d)
        for k in ("kernel_size", "strides", "dilation", "offsets"):
            d[k] = tuple(d[k])
        if isinstance(d["padding"], list):
            d["padding"] = tuple(tuple(p) if isinstance(p, list) else p for p in d["padding"])
        return ConvSpec(**d)


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
