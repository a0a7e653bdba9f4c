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

from flax import nnx

from fsjax import ops

__all__ = ["jit"]


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
    programs: list = []  # (static values, compiled), the last used first

    @functools.wraps(fun)
    def call(*args, **kwargs):
        fixed = (tuple(a for i, a in enumerate(args) if i in static),
                 tuple(sorted((k, v) for k, v in kwargs.items() if k in names)))
        dyn = [a for i, a in enumerate(args) if i not in static]  # a program takes these
        dyn_kw = {k: v for k, v in kwargs.items() if k not in names}
        for i, (values, compiled) in enumerate(programs):
            if values != fixed:
                continue
            try:  # jax checks the arguments' structure, shapes and dtypes before running
                out = compiled(*dyn, **dyn_kw)
            except (TypeError, ValueError) as e:
                if "does not match" in str(e) or "mismatch" in str(e):
                    continue
                raise
            programs.insert(0, programs.pop(i))
            return out
        compiled = jitted.lower(*args, **kwargs).compile(opts)
        programs.insert(0, (fixed, compiled))
        return compiled(*dyn, **dyn_kw)

    call.lower = jitted.lower
    call.compiled_count = lambda: len(programs)
    return call
