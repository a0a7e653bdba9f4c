"""One-call conversion of an NNX model's dense convs into FS / DFS / KS layers."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from flax import nnx

from fsjax import kinds
from fsjax.nn.conv import Conv, ConvBase, DFSConv, copy_bias, kernel_of, layer_class, like_conv
from fsjax.spec import ConvSpec, check_convert_args, convert_skip_reason

__all__ = ["convert", "dense_convs", "freeze_dfs", "materialize", "Converted"]


def dense_convs(model: nnx.Module) -> list[tuple[tuple, nnx.Module]]:
    """``(path, layer)`` of every ``nnx.Conv`` or fsjax dense :class:`Conv` in ``model``."""
    out = []
    for path, node in nnx.iter_graph(model):
        if isinstance(node, (nnx.Conv, Conv)) and path:
            out.append((tuple(path), node))
    return out


def set_at(model, path, value):
    """Replace the submodule of ``model`` at ``path`` (attribute names and list indices, as
    ``nnx.iter_graph`` gives them) by ``value``."""
    parent = model
    for p in path[:-1]:
        parent = parent[p] if isinstance(p, int) else getattr(parent, p)
    if isinstance(path[-1], int):
        parent[path[-1]] = value
    else:
        setattr(parent, path[-1], value)


class Converted(list):
    """The converted layer paths (a list, as before), with ``skipped``: ``(path, reason)`` for
    every conv that was left as it is."""

    def __init__(self, done=(), skipped=()):
        super().__init__(done)
        self.skipped: list[tuple[str, str]] = list(skipped)


@functools.cache
def _plain_metadata() -> dict:
    return nnx.Param(np.zeros(1)).get_metadata()


def _extra_metadata(param) -> dict:
    """Metadata of a Param beyond what every ``nnx.Param`` carries (e.g. sharding names)."""
    if param is None:
        return {}
    base = _plain_metadata()
    return {k: v for k, v in param.get_metadata().items() if k not in base or base[k] != v}


def _why_not(conv, kind: str) -> str | None:
    """Why ``conv`` cannot become a ``kind`` layer computing what it computes, or None."""
    if isinstance(conv, ConvBase):
        return None
    if type(conv).__call__ is not nnx.Conv.__call__:
        return (f"{type(conv).__name__} overrides nnx.Conv.__call__; fsjax cannot know what it "
                f"computes")
    extra = _extra_metadata(conv.kernel)
    param = kinds.get(kind).param
    if param != "kernel" and extra:
        return (f"its kernel carries metadata {sorted(extra)}, which has no meaning for the "
                f"{kind} layer's stored {param!r}")
    try:
        ConvSpec.make("dense", conv.in_features, conv.out_features, conv.kernel_size,
                      strides=conv.strides, padding=conv.padding,
                      input_dilation=conv.input_dilation, kernel_dilation=conv.kernel_dilation,
                      feature_group_count=conv.feature_group_count, use_bias=conv.use_bias)
    except (ValueError, TypeError) as e:
        return f"its arguments are not valid for a conv ({e})"
    return None


def convert(model: nnx.Module, kind: str = "fs", *, compression: float = 4.0, group_size: int = 4,
            predicate: Callable[[tuple, nnx.Module], bool] | None = None,
            min_params: int = 1024, from_dense: bool = True, seed: int = 0,
            **layer_kw) -> Converted:
    """Replace dense convs of ``model`` in place; returns the converted layer paths, with
    ``.skipped``: ``(path, reason)`` for each conv left as it is. It never raises on a layer it
    cannot represent (a subclass overriding ``__call__``, sharding metadata on a kernel that
    would become a 1-D summary, channels not divisible into sharing groups, ...).

    Every Flax argument of a replaced conv is carried over (any rank, strides, every padding
    mode, input/kernel dilation, feature groups, mask, dtypes, precision, conv function,
    ``promote_dtype``, ``preferred_element_type``, bias metadata); at ``compression=1`` with
    ``from_dense`` (FS/DFS), or ``group_size=1`` (KS/WKS), the converted model computes
    exactly what the original computed.

    Args:
      kind: 'fs', 'dfs', 'ks' or 'wks'.
      group_size: KS/WKS channels per shared kernel ``g``; layers whose input channels are not
        a multiple of ``g`` are left dense.
      predicate: ``(path, conv) -> bool`` picks the layers; default: every conv whose dense
        kernel has at least ``min_params`` weights and no feature groups (depthwise convs are
        left dense).
      from_dense: initialise from the trained dense kernels (FS/DFS: least-squares projection
        :func:`fsjax.ops.fs_project`; KS: the mean kernel of each channel group, alpha = 1),
        otherwise a fresh initialisation.
      layer_kw: extra layer options (e.g. ``location_mode``, ``alpha_mode``).

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> class Net(nnx.Module):
    ...     def __init__(self, rngs):
    ...         self.a = nnx.Conv(3, 16, (3, 3), rngs=rngs)
    ...         self.b = nnx.Conv(16, 32, (3, 3), rngs=rngs)
    ...     def __call__(self, x):
    ...         return self.b(nnx.relu(self.a(x)))
    >>> net = Net(nnx.Rngs(0))
    >>> x = jnp.ones((1, 8, 8, 3))
    >>> before = net(x)
    >>> done = convert(net, "fs", compression=1.0)   # rho = 1: the same function
    >>> list(done), done.skipped
    (['b'], [('a', 'fewer than min_params=1024 weights')])
    >>> bool(jnp.array_equal(net(x), before))
    True
    """
    check_convert_args("convert", kind, group_size)
    k = kinds.get(kind)
    rngs = nnx.Rngs(seed)
    done = Converted()
    for path, conv in dense_convs(model):
        name = ".".join(str(p) for p in path)
        fgc = conv.feature_group_count
        why = _why_not(conv, kind)
        if why is None:
            why = convert_skip_reason(
                kind, conv.in_features, conv.kernel_shape, fgc,
                picked=None if predicate is None else bool(predicate(path, conv)),
                min_params=min_params, group_size=group_size)
        if why is not None:
            done.skipped.append((name, why))
            continue
        meta = {"bias_metadata": _extra_metadata(getattr(conv, "bias", None))}
        if k.param == "kernel":
            meta["kernel_metadata"] = _extra_metadata(conv.kernel)
        opts = k.layer_options(conv.in_features, dict(compression=compression,
                                                      group_size=group_size))
        layer = like_conv(layer_class(kind), conv, rngs, name=name, **meta,
                          **{**opts, **layer_kw})
        if from_dense:
            layer.load_dense(kernel_of(conv))
            copy_bias(conv, layer)
        set_at(model, path, layer)
        done.append(name)
    return done


def materialize(model: nnx.Module) -> list[str]:
    """For inference: replace every layer whose kind is faster as its dense kernel (FS/DFS:
    :attr:`fsjax.kinds.ConvKind.dense_at_inference`) by a dense :class:`Conv` holding its
    materialised kernel, so filters are built once, not on every call (KS/WKS layers stay:
    their factored form is cheaper than the dense kernel). Returns the replaced paths.

    >>> from flax import nnx
    >>> from fsjax import models
    >>> net = models.create("resnet8", conv="fs")
    >>> len(materialize(net)), type(net.blocks[0].conv1.conv).__name__
    (9, 'Conv')
    """
    done = []
    for path, node in list(nnx.iter_graph(model)):
        if isinstance(node, ConvBase) and node.spec.conv_kind.dense_at_inference and path:
            dense = like_conv(Conv, node, None)
            dense.kernel[...] = node.dense_kernel()
            copy_bias(node, dense)
            set_at(model, tuple(path), dense)
            done.append(".".join(map(str, path)))
    return done


def freeze_dfs(model: nnx.Module) -> list[str]:
    """Replace every DFS layer by its frozen FS layer (locations rounded to integer offsets,
    :meth:`DFSConv.to_fs`): export a trained DFS model as an FS model. Returns the paths.

    >>> from fsjax import models
    >>> net = models.create("resnet8", conv="dfs")
    >>> len(freeze_dfs(net)), net.blocks[0].conv1.conv.spec.kind
    (9, 'fs')
    """
    done = []
    for path, node in list(nnx.iter_graph(model)):
        if isinstance(node, DFSConv) and path:
            set_at(model, tuple(path), node.to_fs())
            done.append(".".join(map(str, path)))
    return done
