"""Compress an existing Flax Linen model without editing its class.

:func:`compress` runs the model once under ``flax.linen.intercept_methods`` to find every
``nn.Conv`` call, decides per conv (the same rules as :func:`fsjax.nn.convert`), projects the
trained dense kernels (FS/DFS: least-squares summary; KS/WKS: group means, alpha = 1), and
returns a :class:`Compressed` model whose ``init``/``apply`` run the original module with the
chosen convs replaced by fsjax layers (same Flax arguments, parameters at the same paths:
``fs`` or a shared ``kernel``, plus ``bias``, ``locations`` or ``alpha``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import linen as nn
from flax.core import unfreeze

from fsjax import kinds, ops
from fsjax.spec import check_convert_args, convert_skip_reason

__all__ = ["compress", "Compressed"]

_FIELDS = ("kernel_size", "strides", "padding", "input_dilation", "kernel_dilation",
           "feature_group_count", "use_bias", "mask", "dtype", "param_dtype", "precision",
           "bias_init", "promote_dtype", "conv_general_dilated", "conv_general_dilated_cls")


@dataclasses.dataclass
class Compressed:
    """``model`` with the convs at ``layers`` (path -> fsjax Linen layer) replaced.

    ``converted``: the replaced paths ("a/b/Conv_0"); ``skipped``: ``(path, reason)`` for every
    other ``nn.Conv``. ``init``, ``init_with_output`` and ``apply`` take ``model``'s arguments.
    """

    model: nn.Module
    layers: dict
    skipped: list

    @property
    def converted(self) -> list[str]:
        return ["/".join(p) for p in self.layers]

    def _intercept(self, next_fun, args, kwargs, context):
        m = context.module
        if context.method_name == "__call__" and isinstance(m, nn.Conv):
            layer = self.layers.get(tuple(m.scope.path))
            if layer is not None:
                from fsjax.linen import layer_forward

                return layer_forward(layer, m, *args, **kwargs)
        return next_fun(*args, **kwargs)

    def init(self, *args, **kwargs):
        with nn.intercept_methods(self._intercept):
            return self.model.init(*args, **kwargs)

    def init_with_output(self, *args, **kwargs):
        with nn.intercept_methods(self._intercept):
            return self.model.init_with_output(*args, **kwargs)

    def apply(self, *args, **kwargs):
        with nn.intercept_methods(self._intercept):
            return self.model.apply(*args, **kwargs)


def _why_not(conv: nn.Conv, kind: str, params: dict) -> str | None:
    if type(conv).__call__ is not nn.Conv.__call__:
        return f"{type(conv).__name__} overrides nn.Conv.__call__; fsjax cannot know what it computes"
    if not conv.shared_weights:
        return "it is not a shared-weight conv (ConvLocal)"
    if "kernel" not in params:
        return "its kernel is not in the given params"
    return None


def compress(model: nn.Module, variables: dict, *args, kind: str = "fs",
             compression: float = 4.0, group_size: int = 4, min_params: int = 1024,
             predicate: Callable[[tuple, nn.Conv], bool] | None = None, from_dense: bool = True,
             apply_kwargs: dict | None = None, **layer_kw: Any) -> tuple[Compressed, dict]:
    """Replace the ``nn.Conv`` layers of a Linen ``model`` by fsjax layers.

    Args:
      model, variables: the model and its trained variables (``{'params': ..., ...}``).
      args: example inputs for one forward pass (a small batch is enough), ``apply_kwargs``
        its keyword arguments (e.g. ``train=False``).
      kind: 'fs', 'dfs', 'ks' or 'wks'; ``compression`` (FS/DFS rho), ``group_size`` (KS/WKS
        channels per shared kernel), ``min_params`` / ``predicate(path, conv)`` pick the
        layers as in :func:`fsjax.nn.convert` (grouped convs are left dense by default).
      from_dense: project the trained kernels; otherwise new layers start from their init
        (call ``Compressed.init``).
      layer_kw: extra layer options (``location_mode``, ``alpha_mode``, ``init_scale``).
    Returns:
      ``(compressed, new_variables)``: at ``compression=1`` (or ``group_size=1``) with
      ``from_dense``, ``compressed.apply(new_variables, ...)`` equals ``model.apply(variables,
      ...)`` bit for bit.

    >>> import jax, jax.numpy as jnp
    >>> from flax import linen as nn
    >>> class CNN(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         x = nn.relu(nn.Conv(16, (3, 3), name="a")(x))
    ...         return nn.Conv(32, (3, 3), name="b")(x)
    >>> x = jnp.ones((1, 8, 8, 3))
    >>> variables = CNN().init(jax.random.key(0), x)
    >>> small, new_vars = compress(CNN(), variables, x, kind="fs", compression=4.0)
    >>> small.converted, new_vars["params"]["b"]["fs"].shape
    (['b'], (1152,))
    >>> small.apply(new_vars, x).shape
    (1, 8, 8, 32)
    """
    from fsjax.linen import layer_class

    check_convert_args("compress", kind, group_size)
    found: dict[tuple, tuple[nn.Conv, int]] = {}

    def record(next_fun, a, kw, context):
        m = context.module
        if context.method_name == "__call__" and isinstance(m, nn.Conv):
            found.setdefault(tuple(m.scope.path), (m.clone(parent=None), a[0].shape[-1]))
        return next_fun(*a, **kw)

    with nn.intercept_methods(record):
        # eagerly (not traced): attributes built inside the model (e.g. a mask) stay concrete
        model.apply(variables, *args, **(apply_kwargs or {}), mutable=True)
    params = unfreeze(variables["params"]) if "params" in variables else {}
    new_vars = jax.tree.map(lambda x: x, unfreeze(dict(variables)))
    layers, skipped = {}, []
    for path, (conv, cin) in found.items():
        name = "/".join(path)
        p = params
        for k in path:
            p = p.get(k, {})
        why = _why_not(conv, kind, p)
        if why is None:
            fgc = conv.feature_group_count
            kshape = ops.kernel_size_tuple(conv.kernel_size) + (cin // fgc, conv.features)
            why = convert_skip_reason(
                kind, cin, kshape, fgc,
                picked=None if predicate is None else bool(predicate(path, conv)),
                min_params=min_params, group_size=group_size)
        if why is not None:
            skipped.append((name, why))
            continue
        fields = {f: getattr(conv, f) for f in _FIELDS}
        opts = kinds.get(kind).layer_options(cin, dict(compression=compression,
                                                        group_size=group_size))
        layer = layer_class(kind)(conv.features, **fields, parent=None, **{**opts, **layer_kw})
        layers[path] = layer
        if from_dense:
            _project(layer, cin, p, new_vars["params"], path)
    return Compressed(model, layers, skipped), new_vars


def _project(layer, cin: int, old: dict, new_params: dict, path: tuple) -> None:
    spec = layer.spec(cin)
    kernel = old["kernel"]
    if layer.mask is not None:
        kernel = kernel * layer.mask
    target = new_params
    for k in path:
        target = target[k]
    entry = {k: v for k, v in target.items() if k not in ("kernel",)}
    for name, value in spec.conv_kind.project(spec, kernel).items():
        entry[name] = value.astype(kernel.dtype)
    entry.update(layer.init_extra(spec))
    target.clear()
    target.update(entry)
