"""Program forms chosen when a program is lowered for the CPU (XLA:CPU runs some ops far
slower than their arithmetic needs; docs/performance.md), and the inference trace that leaves
them out.

:func:`cpu_form` picks a CPU-only formulation with ``lax.platform_dependent``: a GPU or TPU
program lowers only the default formulation, so it is unchanged. Each form computes the same
values as the default up to float rounding (tested per op).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import warnings

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["CPU_FORMS", "CPU_COMPILER_OPTIONS", "compiler_options", "cpu_form", "cpu_forms",
           "inference_trace", "materialize_on_cpu", "conv3d_as_2d_on"]

# the CPU-only program forms (docs/performance.md): "materialize" (conv inputs written once),
# "depthwise_slices" (depthwise 2-D convs as multiply-adds of strided slices), "pointwise_dot"
# (1x1 convs as matrix products), "pool_blocks" (non-overlapping max pooling as a reshape and
# a max), "pool_windows" (other max pooling as a max of strided slices, with its own
# gradient) and "bn_sums" (training BatchNorm's
# per-channel sums as matrix-vector products, in a custom gradient); none inside
# inference_trace
CPU_FORMS = ("materialize", "depthwise_slices", "pointwise_dot", "pool_blocks", "pool_windows", "bn_sums")
_CPU_FORMS = contextvars.ContextVar("fsjax_cpu_forms", default=frozenset(CPU_FORMS))
_CONV3D_AS_2D = contextvars.ContextVar("fsjax_conv3d_as_2d", default=False)

# XLA:CPU compiler options for fsjax's programs (docs/performance.md, "YNNPACK fusions"): XLA's
# own loops and convolutions instead of YNNPACK's (jax 0.10: the CIFAR ResNet-20 training
# step 523 vs 677 ms; 3x3 convs up to 2x faster)
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options(backend: str | None = None) -> dict:
    """XLA compiler options for ``jax.jit(..., compiler_options=...)`` of a program run on
    ``backend`` (default: JAX's default backend): :data:`CPU_COMPILER_OPTIONS` on the CPU when
    this jaxlib knows them, else ``{}`` (GPU and TPU programs are compiled as without them).
    The trainer's steps use it; pass it to your own ``jax.jit`` for the same CPU speed."""
    return dict(_supported(backend or jax.default_backend()))


@functools.cache
def _supported(backend: str) -> tuple:
    if backend != "cpu":
        return ()
    try:  # a jaxlib that does not know an option rejects it at compile time
        x = jax.device_put(jnp.zeros(()), jax.devices("cpu")[0])
        jax.jit(lambda t: t + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(x).compile()
    except Exception as e:  # noqa: BLE001 - any rejection: compile without them
        warnings.warn(f"fsjax: this jaxlib rejects the CPU compiler options "
                      f"{CPU_COMPILER_OPTIONS} ({str(e).splitlines()[0][:120]}); programs "
                      f"compile without them (slower on the CPU)", stacklevel=3)
        return ()
    return tuple(CPU_COMPILER_OPTIONS.items())


@contextlib.contextmanager
def inference_trace(conv3d_as_2d: bool = False):
    """Trace inside this context for an inference-only program (deployment exports): convs
    then skip :func:`materialize_on_cpu`, which only helps a backward pass and which ONNX
    converters cannot read (``platform_dependent``), nor any other CPU-only form.
    ``conv3d_as_2d``: 3-D convs are traced as ``fsjax.ops.conv.conv3d_as_2d`` (for converters
    whose conv handles 1-D and 2-D only). Values are the same up to float rounding."""
    tokens = _CPU_FORMS.set(frozenset()), _CONV3D_AS_2D.set(conv3d_as_2d)
    try:
        yield
    finally:
        _CPU_FORMS.reset(tokens[0])
        _CONV3D_AS_2D.reset(tokens[1])


@contextlib.contextmanager
def cpu_forms(*names: str):
    """Trace inside this context with only the named CPU-only forms (of :data:`CPU_FORMS`);
    for measuring what each one is worth (``benchmarks.cpu_forms``; jit a new function object
    inside it: jit caches a function's traces without the context). Values are the same up
    to float rounding."""
    bad = set(names) - set(CPU_FORMS)
    if bad:
        raise ValueError(f"unknown CPU form(s) {sorted(bad)}; valid: {list(CPU_FORMS)}")
    token = _CPU_FORMS.set(frozenset(names))
    try:
        yield
    finally:
        _CPU_FORMS.reset(token)


def cpu_form(name: str, cpu, default, *args):
    """``cpu(*args)`` in a program lowered for the CPU, ``default(*args)`` elsewhere (only the
    default is lowered for a GPU or TPU, so their programs are unchanged), inside
    :func:`inference_trace` (converters cannot read ``platform_dependent``) and when the form
    ``name`` is switched off by :func:`cpu_forms`. Both must compute the same values up to
    float rounding."""
    if name not in _CPU_FORMS.get():
        return default(*args)
    return lax.platform_dependent(*args, cpu=cpu, default=default)


def materialize_on_cpu(x: jax.Array) -> jax.Array:
    """:func:`_materialize` when lowered for the CPU, the identity elsewhere (the GPU and TPU
    programs are unchanged) and inside :func:`inference_trace`."""
    return cpu_form("materialize", _materialize, lambda t: t, x)


def _materialize(x: jax.Array) -> jax.Array:
    """``x`` unchanged, passed through an identity ``lax.cond`` on a runtime predicate so that
    XLA must write it to memory once instead of fusing the elementwise ops that produced it
    into each consumer.

    Why (XLA:CPU only; docs/performance.md, "Recomputed activations"): the weight gradient of a
    conv reads its input transposed to ``(cin, *spatial, batch)``, and XLA:CPU fuses the whole
    chain of BatchNorm/ReLU/residual-add ops behind that input into the transposing loop,
    recomputing it with cache-hostile strides - up to 95 ms per transpose, about a third of a
    CIFAR ResNet-20 training step in all. ``lax.optimization_barrier`` does not help: XLA:CPU removes
    barriers before fusion. Values are unchanged: the second branch (taken when ``x[0]`` is
    NaN) multiplies by one, which is exact; JAX drops a cond whose branches are identical.
    """
    if x.size == 0:
        return x
    v = x.reshape(-1)[0]
    return lax.cond(v == v, lambda t: t, lambda t: t * jnp.ones((), t.dtype), x)


def conv3d_as_2d_on() -> bool:
    """Whether 3-D convs are to be traced as sums of 2-D convs (inside
    ``inference_trace(conv3d_as_2d=True)``)."""
    return _CONV3D_AS_2D.get()
