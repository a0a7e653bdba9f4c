"""Dropout / drop path whose randomness comes from a key given per call
(``with dropout_key(key): model(x)``), not from RNG state stored in the model.

Stored RNG counters would make a model's state change on every training step and, under
``jax.grad`` inside ``jit``, trip NNX's trace-level checks; an explicit key keeps the
training step a pure function of (params, batch, key) and resumes exact.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["Dropout", "dropout_key"]

_KEY: contextvars.ContextVar = contextvars.ContextVar("fsjax_dropout_key", default=None)


@contextlib.contextmanager
def dropout_key(key):
    """Dropout layers called inside draw from ``key`` (each call folds in a counter)."""
    token = _KEY.set([key, 0])
    try:
        yield
    finally:
        _KEY.reset(token)


class Dropout(nnx.Module):
    """``rate`` dropout; ``broadcast_dims=(1, 2, 3)`` on NHWC drops whole examples' paths
    (drop path). Identity when ``deterministic`` (set by ``model.eval()``)."""

    def __init__(self, rate: float, *, broadcast_dims=(), deterministic: bool = False):
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate must be in [0, 1); got {rate}")
        self.rate, self.broadcast_dims, self.deterministic = rate, tuple(broadcast_dims), \
            deterministic

    def __call__(self, x):
        if self.deterministic or self.rate == 0:
            return x
        state = _KEY.get()
        if state is None:
            raise ValueError("Dropout in training mode needs a key: call the model inside "
                             "`with fsjax.nn.dropout_key(key):` (or call model.eval())")
        key = jax.random.fold_in(state[0], state[1])
        state[1] += 1
        shape = tuple(1 if i in self.broadcast_dims else d for i, d in enumerate(x.shape))
        keep = jax.random.bernoulli(key, 1 - self.rate, shape)
        return jnp.where(keep, x / (1 - self.rate), jnp.zeros_like(x))
