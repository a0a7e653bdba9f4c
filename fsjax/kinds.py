"""Conv kinds: one class per way a conv layer stores its kernel.

A kind says, in one place, how a layer of that kind validates its options, stores its
parameters, builds the dense kernel, applies it, projects a dense kernel onto its stored form,
counts MACs, groups its weights for quantization, is sliced by the pruner and is named in
reports. :class:`fsjax.spec.ConvSpec` keeps the kind's name (a string: specs are hashable and
saved as JSON) and asks :func:`get` for the kind; the layers, the model factory and the tools
(export, deploy, quant, prune, report, convert, linen) ask the kind instead of comparing
names. The math itself is in :mod:`fsjax.ops`.

The five kinds: :class:`Dense`, :class:`FS` (FSNet), :class:`DFS` (DFSNet), :class:`KS` (KSC)
and :class:`WKS` (WKSC). A new kind is a subclass of :class:`ConvKind` passed to
:func:`register`, plus an NNX layer class (a subclass of :class:`fsjax.nn.ConvBase` whose
``kind`` names it); ``tests/test_kinds.py`` adds a low-rank kind that way, in the test alone.

Arrays follow the spec: the dense kernel is ``(*kernel_size, in // feature_groups, out)``
(HWIO); ``stored`` has :meth:`ConvKind.stored_kernel_shape`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fsjax import ops

__all__ = ["ConvKind", "Dense", "FS", "DFS", "KS", "WKS", "register", "unregister", "get",
           "names", "convertible"]


class ConvKind:
    """The protocol of a conv kind (this base class is the dense conv's behaviour).

    Attributes:
      name: the kind's string (``conv.kind`` in configs, ``spec.kind``).
      param: the stored weight's parameter name (``'kernel'`` or ``'fs'``).
      compressed: the stored form is not simply the dense kernel (False for :class:`Dense`).
      learns_locations: the layer trains where its filters sit (DFS): the pruner needs them
        frozen first, and the trainer's ``locations`` options apply.
      frozen: the kind a layer of this kind is saved as once its layout is fixed (FS and DFS:
        ``'fs'``, rebuilt from the recorded offsets); None where the spec fixes the layout.
      folds_batchnorm: a per-output-channel scale (a folded BatchNorm) can be applied to the
        last axis of the stored ``kernel`` (dense, KS, WKS; not FS, whose filters share
        entries; False unless a kind says so).
      dense_at_inference: inference is faster with the materialised dense kernel
        (:func:`fsjax.nn.materialize`; FS/DFS) than in the stored form.
      official_layout: accepts ``layout='official'`` (the official FSNet code's filter
        starts; FS only).
      step_option: the option a ``train.compress`` step ``<kind>:<value>`` sets
        (``'compression'`` or ``'group_size'``); None: not a conversion target.
    """

    name = "dense"
    param = "kernel"
    compressed = True
    learns_locations = False
    frozen: str | None = None
    folds_batchnorm = False
    dense_at_inference = False
    official_layout = False
    step_option: str | None = None

    # --- options and shapes --------------------------------------------------------------
    def options(self, where: str, kshape: tuple, in_features: int, fgc: int, *,
                compression, offsets, groups, alpha_mode, layout) -> dict:
        """Validate the kind's own options; return the :class:`fsjax.spec.ConvSpec` fields
        they set (``kshape``: the dense kernel shape). Options of other kinds are ignored."""
        return {}

    def stored_kernel_shape(self, spec) -> tuple[int, ...]:
        return spec.kernel_shape

    def alpha_shape(self, spec) -> tuple[int, ...] | None:
        """Shape of the per-channel sharing weights (WKSC), or None."""
        return None

    def extra_params(self, spec) -> int:
        """Stored parameters besides the kernel, alpha and bias (DFS: one location per
        filter)."""
        return 0

    def label(self, compression: float) -> str:
        """The kind as reports name it (``'fs rho=4'``)."""
        return self.name

    def step_value(self, v):
        """A ``train.compress`` step's value as this kind's option, or None if invalid."""
        return None

    # --- kernels ---------------------------------------------------------------------------
    def init_from_dense(self, spec, dense: jax.Array) -> jax.Array:
        """Initial stored array from a dense kernel drawn by a Flax initialiser: each stored
        entry takes the value of the first dense weight that reads it."""
        return dense

    def project(self, spec, dense: jax.Array) -> dict[str, jax.Array]:
        """Least-squares stored parameters for a dense kernel: ``{param name: array}`` (KS
        resets WKSC weights to 1; DFS locations are left where they are)."""
        return {self.param: dense}

    def materialize(self, spec, stored, locations=None, alpha=None) -> jax.Array:
        """Dense kernel from the stored array."""
        return stored

    def apply(self, spec, x, stored, bias, *, locations, alpha, dtype, **conv_kw) -> jax.Array:
        """The forward pass when the stored arrays may be cast first (Flax's default
        ``promote_dtype``, no mask): ``x (*batch, *spatial, cin)`` already in ``dtype``."""
        kernel = self.materialize(spec, stored.astype(dtype))
        return ops.conv(x, kernel, bias, feature_group_count=spec.feature_group_count,
                        **conv_kw)

    # --- tools -------------------------------------------------------------------------------
    def macs(self, spec, pix_in: int, pix_out: int) -> tuple[int, int]:
        """``(MACs, effective MACs)`` of one image: the dense conv's count, and what remains
        when computations shared by the stored form are done once (FS: reused products)."""
        taps = int(np.prod(spec.kernel_size))
        cin_g, cout = spec.kernel_shape[-2:]
        dense = pix_out * taps * cin_g * cout
        return dense, dense

    def quant_groups(self, spec, shape) -> np.ndarray:
        """Per-channel quantization groups of the stored kernel (one id per entry)."""
        return ops.channel_groups(tuple(shape))

    def input_share(self, spec) -> int:
        """Input channels that share one kernel (the pruner keeps them together)."""
        return 1

    def slice_outputs(self, spec, params: dict, kept) -> dict | None:
        """The pruner's filter slice in the stored form (``params``: ``{'kernel', 'alpha'}``),
        or None to slice the dense kernel and project it."""
        return None

    def slice_inputs(self, spec, params: dict, kept, kept_groups, scale) -> dict | None:
        """The pruner's input-channel slice (rescaled by ``scale``, one per kept group) in the
        stored form, or None to slice the dense kernel and project it."""
        return None

    def layer_options(self, in_features: int, opts: dict) -> dict:
        """The layer class's own keyword arguments from a model's conv options
        (``compression``, ``group_size``, ``location_mode``, ``alpha_mode``, ``layout``)."""
        return {}

    def spec_options(self, spec) -> dict:
        """The layer class's own keyword arguments that rebuild ``spec`` exactly."""
        return {}

    def convert_skip(self, in_features: int, fgc: int, group_size: int) -> str | None:
        """Why a converter leaves a conv dense for this kind, or None."""
        return None

    def zoo_skip(self, in_features: int, fgc: int, group_size: int) -> bool:
        """The model factory keeps a layer dense (it does not fit this kind)."""
        return False

    def unapplied_hint(self, in_features: list[int], group_size: int) -> str:
        """What to change when this kind fit no layer of a model (besides ``min_params``)."""
        return ""


class Dense(ConvKind):
    """A plain conv: the stored array is the dense kernel."""

    compressed = False
    folds_batchnorm = True


class FS(ConvKind):
    """FSNet: the filters are overlapping, circularly wrapped segments of one stored vector of
    length ``L = max(K, floor(K * cout / rho))`` (``K`` the filter size)."""

    name = "fs"
    param = "fs"
    dense_at_inference = True
    official_layout = True
    frozen = "fs"
    step_option = "compression"

    def options(self, where, kshape, in_features, fgc, *, compression, offsets, groups,
                alpha_mode, layout):
        compression = 4.0 if compression is None else compression
        out = {}
        try:
            length = ops.fs_length(kshape, compression)
            if layout == "official":  # its L = int(K*cout/rho), with no floor at K
                ops.fs_official_index(kshape, int(ops.filter_size(kshape) * kshape[-1]
                                                  / compression))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if layout == "official":
            offsets = ops.fs_official_starts(kshape[-1], length).astype(np.int64) % length
            out["layout"] = layout
        if offsets is None:
            offsets = ops.fs_offsets(kshape, length)
        offsets = tuple(int(o) for o in np.asarray(offsets).reshape(-1))
        if len(offsets) != kshape[-1] or min(offsets) < 0 or max(offsets) >= length:
            raise ValueError(f"{where}: offsets must be {kshape[-1]} ints in [0, {length})")
        return dict(out, compression=float(compression), length=length, offsets=offsets)

    def stored_kernel_shape(self, spec):
        return (spec.length,)

    def label(self, compression):
        return f"{self.name} rho={compression:g}"

    def step_value(self, v):
        return float(v) if v is not None and v >= 1 else None

    def init_from_dense(self, spec, dense):
        return ops.fs_from_dense(dense, spec.length, index=spec.fs_table())

    def project(self, spec, dense):
        return {"fs": ops.fs_project(dense, spec.length, index=spec.fs_table())}

    def materialize(self, spec, stored, locations=None, alpha=None):
        if spec.layout == "official":
            return ops.fs_official_kernel(stored, spec.kernel_shape)
        return ops.fs_kernel(stored, spec.kernel_shape, spec.np_offsets())

    def macs(self, spec, pix_in, pix_out):
        dense, _ = super().macs(spec, pix_in, pix_out)
        idx = spec.fs_table()
        cin_g = spec.kernel_shape[-2]
        distinct = sum(len(np.unique(idx[..., c, :])) for c in range(cin_g))
        # each input pixel of each channel meets at most `distinct` FS entries over all taps
        return dense, min(dense, pix_in * distinct * spec.feature_group_count)

    def quant_groups(self, spec, shape):
        return ops.fs_chunk_groups(spec.length, spec.offsets)

    def layer_options(self, in_features, opts):
        return dict(compression=opts["compression"], layout=opts.get("layout", "fsjax"))

    def spec_options(self, spec):
        where = dict(layout=spec.layout) if spec.layout == "official" else dict(
            offsets=spec.offsets)
        return dict(compression=spec.compression, **where)


class DFS(FS):
    """DFSNet: an FS layer whose segment locations are parameters (linear interpolation)."""

    name = "dfs"
    learns_locations = True
    official_layout = False

    def extra_params(self, spec):
        return spec.out_features

    def materialize(self, spec, stored, locations=None, alpha=None):
        return ops.dfs_kernel(stored, spec.kernel_shape, locations)

    def apply(self, spec, x, stored, bias, *, locations, alpha, dtype, **conv_kw):
        # the interpolation (and its gradient) in the parameters' dtype, then the cast
        kernel = self.materialize(spec, stored, locations).astype(dtype)
        return ops.conv(x, kernel, bias, feature_group_count=spec.feature_group_count,
                        **conv_kw)

    def layer_options(self, in_features, opts):
        return dict(compression=opts["compression"],
                    location_mode=opts.get("location_mode", "wrap"))

    def spec_options(self, spec):
        return dict(compression=spec.compression, offsets=spec.offsets)


class KS(ConvKind):
    """KSC: ``groups`` contiguous input-channel groups, each sharing one kernel
    (``g = in_features // groups`` channels per kernel)."""

    name = "ks"
    step_option = "group_size"
    folds_batchnorm = True
    weighted = False

    def options(self, where, kshape, in_features, fgc, *, compression, offsets, groups,
                alpha_mode, layout):
        groups = fgc if groups is None else groups
        ops.ks_check(int(in_features), groups, where)
        if groups % fgc:
            raise ValueError(f"{where}: groups {groups} must be a multiple of "
                             f"feature_group_count {fgc} (a sharing group cannot straddle "
                             f"two feature groups)")
        if alpha_mode not in ("input", "pair"):
            raise ValueError(f"{where}: alpha_mode must be 'input' or 'pair'; got {alpha_mode!r}")
        return dict(groups=int(groups), alpha_mode=alpha_mode,
                    compression=float(in_features // groups))

    def stored_kernel_shape(self, spec):
        return spec.kernel_size + (spec.groups // spec.feature_group_count, spec.out_features)

    def step_value(self, v):
        return int(v) if v is not None and v == int(v) and v >= 2 else None

    def init_from_dense(self, spec, dense):
        return dense[..., ::spec.in_features // spec.groups, :]

    def project(self, spec, dense):
        out = {"kernel": ops.ks_project(dense, spec.groups, spec.feature_group_count)}
        if self.alpha_shape(spec):
            out["alpha"] = jnp.ones(self.alpha_shape(spec), dense.dtype)
        return out

    def materialize(self, spec, stored, locations=None, alpha=None):
        return ops.ks_dense_kernel(stored, alpha, spec.in_features, spec.feature_group_count)

    def apply(self, spec, x, stored, bias, *, locations, alpha, dtype, **conv_kw):
        a = None if alpha is None else alpha.astype(dtype)
        return ops.ks_conv(x, stored.astype(dtype), a, bias,
                           feature_group_count=spec.feature_group_count, **conv_kw)

    def macs(self, spec, pix_in, pix_out):
        if spec.alpha_mode != "input":
            return super().macs(spec, pix_in, pix_out)
        taps = int(np.prod(spec.kernel_size))
        shared_in = spec.groups // spec.feature_group_count
        macs = pix_in * spec.in_features + pix_out * taps * shared_in * spec.out_features
        return macs, macs

    def input_share(self, spec):
        return spec.in_features // spec.groups

    def slice_outputs(self, spec, params, kept):
        out = {"kernel": params["kernel"][..., kept]}
        a = params.get("alpha")
        if a is not None:
            out["alpha"] = a[:, kept] if a.ndim == 2 else a
        return out

    def slice_inputs(self, spec, params, kept, kept_groups, scale):
        k = params["kernel"][..., kept_groups, :]
        out = {"kernel": k * jnp.asarray(scale).astype(k.dtype)[:, None]}
        if params.get("alpha") is not None:
            out["alpha"] = params["alpha"][kept]
        return out

    def layer_options(self, in_features, opts):
        return dict(groups=in_features // opts["group_size"], weighted=self.weighted,
                    alpha_mode=opts.get("alpha_mode", "input"))

    def spec_options(self, spec):
        return dict(groups=spec.groups, weighted=self.weighted, alpha_mode=spec.alpha_mode)

    def convert_skip(self, in_features, fgc, group_size):
        if (in_features // fgc) % group_size:
            return (f"its {in_features // fgc} input channels per feature group are not a "
                    f"multiple of group_size {group_size}")
        return None

    def zoo_skip(self, in_features, fgc, group_size):
        return fgc != 1 or in_features % group_size or in_features <= group_size

    def unapplied_hint(self, in_features, group_size):
        ok = sorted({d for c in in_features for d in range(2, c) if c % d == 0})
        return (f"no input channel count ({', '.join(map(str, in_features))}) is a multiple "
                f"of group_size={group_size} greater than it; group sizes that fit some "
                f"layer: {', '.join(map(str, ok[:12]))}")


class WKS(KS):
    """WKSC: KSC with a trained weight per input channel (``alpha_mode='input'``) or per
    (input, output) pair (``'pair'``)."""

    name = "wks"
    weighted = True

    def alpha_shape(self, spec):
        if spec.alpha_mode == "pair":
            return (spec.in_features // spec.feature_group_count, spec.out_features)
        return (spec.in_features,)


_KINDS: dict[str, ConvKind] = {}


def register(kind: ConvKind) -> ConvKind:
    """Make ``kind`` known by its name (to specs, the model factory, configs and the
    converters); returns it. Registering a name again replaces the kind."""
    if not isinstance(kind, ConvKind) or not isinstance(kind.name, str) or not kind.name:
        raise ValueError(f"register needs a ConvKind instance with a name; got {kind!r}")
    _KINDS[kind.name] = kind
    return kind


def get(name: str) -> ConvKind:
    """The kind called ``name``; ValueError listing the valid names otherwise.

    >>> k = get("fs")
    >>> k.param, k.label(4.0), get("wks").step_option
    ('fs', 'fs rho=4', 'group_size')
    >>> names()
    ('dense', 'fs', 'dfs', 'ks', 'wks')
    """
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown conv kind {name!r}; valid: {', '.join(_KINDS)}") from None


def unregister(name: str) -> None:
    """Forget the kind called ``name`` (e.g. a kind registered by a test)."""
    get(name)
    del _KINDS[name]


def names() -> tuple[str, ...]:
    """Every registered kind's name, in registration order."""
    return tuple(_KINDS)


def convertible() -> tuple[str, ...]:
    """The kinds a dense conv can be converted to (every kind with a ``step_option``)."""
    return tuple(n for n, k in _KINDS.items() if k.step_option)


for _k in (Dense(), FS(), DFS(), KS(), WKS()):
    register(_k)
