"""``fsjax.nn.jit``: ``flax.nnx.jit`` with fsjax's XLA:CPU compiler options.

``nnx.jit`` (flax 0.12) takes no ``compiler_options``, so an NNX training step compiled by it
on the CPU gets XLA's defaults, whose YNNPACK fusions made a ResNet-20 step about 1.25x slower
(docs/performance.md). ``fsjax.nn.jit(step)`` is ``nnx.jit(step)`` that compiles each new
input signature ahead of time with :func:`fsjax.ops.compiler_options` (``.lower(...)
.compile(options)``, nnx's own AOT path, so modules and optimizers passed in are updated as
with ``nnx.jit``). On GPU/TPU the options are empty and it is ``nnx.jit`` itself. Nothing
global changes: only the functions wrapped get the options.

    @fsjax.nn.jit
    def train_step(model, optimizer, x, y):
        ...

With ``jax.jit`` pass them yourself: ``jax.jit(step, compiler_options=fsjax.ops.compiler_options())``.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from flax import nnx

from fsjax import ops

__all__ = ["jit"]


def _signature(args, kwargs, static: frozenset, static_names: frozenset):
    """A hashable key of what a compiled program depends on: the tree structure (modules and
    optimizers included: nnx objects are pytrees), array shapes and dtypes, Python scalars'
    types, and static arguments' values."""
    parts = []
    for i, a in enumerate(args):
        parts.append(("static", a) if i in static else _abstract(a))
    for k in sorted(kwargs):
        parts.append((k, ("static", kwargs[k]) if k in static_names else _abstract(kwargs[k])))
    return tuple(parts)


def _abstract(tree):
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(
        (tuple(x.shape), str(x.dtype), getattr(x, "weak_type", False))
        if isinstance(x, (jax.Array, np.ndarray, np.generic)) else type(x) for x in leaves)


def jit(fun=None, *, compiler_options: dict | None = None, **nnx_jit_kwargs):
    """``nnx.jit(fun, **nnx_jit_kwargs)`` compiled with ``compiler_options`` (default:
    :func:`fsjax.ops.compiler_options` of the default backend; ``{}`` on GPU/TPU, where the
    result is plain ``nnx.jit``). Usable as ``@jit`` or ``@jit(donate_argnums=...)``."""
    if fun is None:
        return functools.partial(jit, compiler_options=compiler_options, **nnx_jit_kwargs)
    opts = ops.compiler_options() if compiler_options is None else dict(compiler_options)
    jitted = nnx.jit(fun, **nnx_jit_kwargs)
    if not opts:
        return jitted
    static = nnx_jit_kwargs.get("static_argnums") or ()
    static = frozenset((static,) if isinstance(static, int) else static)
    names = nnx_jit_kwargs.get("static_argnames") or ()
    names = frozenset((names,) if isinstance(names, str) else names)
    cache: dict = {}

    @functools.wraps(fun)
    def call(*args, **kwargs):
        key = _signature(args, kwargs, static, names)
        compiled = cache.get(key)
        if compiled is None:
            compiled = cache[key] = jitted.lower(*args, **kwargs).compile(opts)
        # a compiled program takes the dynamic arguments only
        dyn = [a for i, a in enumerate(args) if i not in static]
        return compiled(*dyn, **{k: v for k, v in kwargs.items() if k not in names})

    call.lower = jitted.lower
    call.compiled_count = lambda: len(cache)
    return call
