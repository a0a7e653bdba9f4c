"""StableHLO export (:mod:`jax.export`): the inference function, weights embedded, batch
dimension symbolic, serialized to one file; :func:`load_stablehlo` needs only ``jax``.

    exp = fsjax.deploy.export_stablehlo(model, (32, 32, 3), "model.stablehlo")
    fn = fsjax.deploy.load_stablehlo("model.stablehlo")   # any JAX >= 0.4.30, no fsjax
    logits = fn(images_nhwc_normalised)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from fsjax import ops
from fsjax.deploy.fold import forward_of

__all__ = ["export_stablehlo", "load_stablehlo", "PLATFORMS"]

PLATFORMS = ("cpu", "cuda")


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def export_stablehlo(model: nnx.Module | Callable, input_shape, path: str, *, platforms=PLATFORMS,
                     fold: bool = True, meta: dict | None = None) -> dict:
    """Serialize ``model``'s eval-mode forward (an NNX module, or any function ``x -> logits``
    such as a Linen ``apply`` with its variables bound) for inputs ``(batch, *input_shape)`` float32
    (normalised as in training), ``batch`` symbolic, to ``path``; a JSON sidecar
    ``path + '.json'`` records the input shape, the platforms and ``meta`` (e.g. mean/std).
    Returns the sidecar's contents (with the file's size and the folding info)."""
    bad = [p for p in platforms if p not in ("cpu", "cuda", "rocm", "tpu")]
    if bad:
        raise ValueError(f"platform {bad[0]!r} is not valid; valid: cpu, cuda, rocm, tpu")
    forward, info = forward_of(model, fold)
    (b,) = jax.export.symbolic_shape("batch")
    spec = jax.ShapeDtypeStruct((b, *tuple(input_shape)), jnp.float32)
    with ops.inference_trace():
        exp = jax.export.export(jax.jit(forward), platforms=tuple(platforms))(spec)
    _write(path, bytes(exp.serialize()))
    side = dict(meta or {}, format="stablehlo", input_shape=list(input_shape),
                platforms=list(platforms), bytes=os.path.getsize(path), **info)
    _write(path + ".json", json.dumps(side, indent=1).encode())
    return side


def load_stablehlo(path: str):
    """The exported function: ``fn(x (batch, *input_shape) float32) -> logits``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"StableHLO export {path} is missing")
    with open(path, "rb") as f:
        data = f.read()
    try:
        exp = jax.export.deserialize(bytearray(data))
    except Exception as e:  # noqa: BLE001 - any failure means the file is not an export
        raise ValueError(f"{path} is not a serialized jax.export module ({type(e).__name__})"
                         ) from None
    return exp.call
