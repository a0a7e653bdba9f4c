"""One-call conversion of an NNX model's dense convs into FS / DFS / KS layers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flax import nnx

from fsjax import ops
from fsjax.nn.conv import Conv, DFSConv, FSConv, KSConv, _Conv, _copy_bias, _kernel_of, _like

__all__ = ["convert", "dense_convs", "freeze_dfs", "materialize"]


def dense_convs(model: nnx.Module) -> list[tuple[tuple, nnx.Module]]:
    """``(path, layer)`` of every ``nnx.Conv`` or fsjax dense :class:`Conv` in ``model``."""
    out = []
    for path, node in nnx.iter_graph(model):
        if isinstance(node, (nnx.Conv, Conv)) and path:
            out.append((tuple(path), node))
    return out


def _set(model, path, value):
    parent = model
    for p in path[:-1]:
        parent = parent[p] if isinstance(p, int) else getattr(parent, p)
    if isinstance(path[-1], int):
        parent[path[-1]] = value
    else:
        setattr(parent, path[-1], value)


def _geometry(conv):
    if isinstance(conv, _Conv):
        return conv.spec.kernel_shape
    kh, kw = conv.kernel_size
    return (kh, kw, conv.in_features // conv.feature_group_count, conv.out_features)


def convert(model: nnx.Module, kind: str = "fs", *, compression: float = 4.0, group_size: int = 4,
            predicate: Callable[[tuple, nnx.Module], bool] | None = None,
            min_params: int = 1024, from_dense: bool = True, seed: int = 0,
            **layer_kw) -> list[str]:
    """Replace dense convs of ``model`` in place; returns the converted layer paths.

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
    """
    if kind not in ("fs", "dfs", "ks", "wks"):
        raise ValueError(f"convert: kind must be 'fs', 'dfs', 'ks' or 'wks'; got {kind!r}")

    def default(path, conv):
        return conv.feature_group_count == 1 and int(np.prod(_geometry(conv))) >= min_params

    pick = predicate or default
    if kind in ("ks", "wks") and (not isinstance(group_size, int) or group_size <= 0):
        raise ValueError(f"convert: group_size must be a positive int; got {group_size!r}")
    rngs = nnx.Rngs(seed)
    done = []
    for path, conv in dense_convs(model):
        if not pick(path, conv):
            continue
        if kind in ("ks", "wks") and (conv.in_features % group_size or conv.feature_group_count > 1):
            continue
        name = ".".join(str(p) for p in path)
        if kind in ("fs", "dfs"):
            cls = FSConv if kind == "fs" else DFSConv
            layer = _like(cls, conv, rngs, compression=compression, name=name, **layer_kw)
            if from_dense:
                fs = ops.fs_project(_kernel_of(conv), layer.spec.length, layer.spec.np_offsets())
                layer.fs[...] = fs.astype(layer.param_dtype)
        else:
            groups = conv.in_features // group_size
            layer = _like(KSConv, conv, rngs, weighted=kind == "wks", groups=groups, name=name,
                          **layer_kw)
            if from_dense:
                shared = ops.ks_project(_kernel_of(conv), groups)
                layer.kernel[...] = shared.astype(layer.param_dtype)
        if from_dense:
            _copy_bias(conv, layer)
        _set(model, path, layer)
        done.append(name)
    return done


def materialize(model: nnx.Module) -> list[str]:
    """For inference: replace every FS/DFS layer by a dense :class:`Conv` holding its
    materialised kernel, so filters are built once, not on every call (KS/WKS layers stay:
    their factored form is cheaper than the dense kernel). Returns the replaced paths."""
    done = []
    for path, node in list(nnx.iter_graph(model)):
        if isinstance(node, (FSConv, DFSConv)) and path:
            s = node.spec
            dense = Conv(s.in_features, s.out_features, s.kernel_size, strides=s.strides,
                         padding=s.padding, kernel_dilation=s.dilation,
                         feature_group_count=s.feature_group_count, use_bias=s.use_bias,
                         dtype=node.dtype, param_dtype=node.param_dtype,
                         precision=node.precision, name=s.name, rngs=nnx.Rngs(0))
            dense.kernel[...] = node.dense_kernel()
            _copy_bias(node, dense)
            _set(model, tuple(path), dense)
            done.append(".".join(map(str, path)))
    return done


def freeze_dfs(model: nnx.Module) -> list[str]:
    """Replace every DFS layer by its frozen FS layer (locations rounded to integer offsets,
    :meth:`DFSConv.to_fs`): export a trained DFS model as an FS model. Returns the paths."""
    done = []
    for path, node in list(nnx.iter_graph(model)):
        if isinstance(node, DFSConv) and path:
            _set(model, tuple(path), node.to_fs())
            done.append(".".join(map(str, path)))
    return done
