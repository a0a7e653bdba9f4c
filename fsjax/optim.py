"""Optimiser pieces for fsjax models, as optax transforms and pure functions.

- :func:`train_until`: an optax transform whose updates stop after a number of steps (a
  parameter trained for the first epochs only, e.g. airbench's whitening bias).
- :func:`lookahead_sync`: airbench's lookahead / EMA of the weights (and BatchNorm statistics):
  every ``every`` steps the slow copy moves towards the fast weights and the fast weights are
  reset to it; at the last step the weights become the slow copy.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["train_until", "lookahead_decay", "lookahead_sync"]


class _UntilState(NamedTuple):
    inner: optax.OptState
    count: jax.Array


def train_until(inner: optax.GradientTransformation, steps: int) -> optax.GradientTransformation:
    """``inner``'s updates for the first ``steps`` calls, zeros afterwards (the parameters are
    frozen from then on, weight decay included; ``steps=0``: never updated)."""

    def init(params):
        return _UntilState(inner.init(params), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        new, inner_state = inner.update(updates, state.inner, params)
        keep = state.count < steps
        new = jax.tree.map(lambda u: jnp.where(keep, u, jnp.zeros_like(u)), new)
        return new, _UntilState(inner_state, state.count + 1)

    return optax.GradientTransformation(init, update)


def lookahead_decay(step, total: int, base: float = 0.95 ** 5, power: float = 3.0):
    """airbench's decay of the slow weights at ``step`` of ``total``: ``base (step/total)^power``
    (0 at the start: the slow copy follows the weights; about ``base`` at the end)."""
    return base * (jnp.asarray(step, jnp.float32) / total) ** power


def lookahead_sync(slow, fast, step, total: int, every: int, base: float = 0.95 ** 5,
                   power: float = 3.0):
    """One step of the lookahead after training step ``step`` (1-based) of ``total``.

    At every ``every``-th step ``slow <- d slow + (1 - d) fast`` with
    ``d = lookahead_decay(step, total, base, power)`` and ``fast <- slow``; at ``step >= total``
    also ``fast <- slow`` (the result of training is the slow copy). Other steps change
    nothing. ``slow`` and ``fast`` are trees of float arrays of the same structure (jit-safe:
    ``step`` may be traced).

    Returns:
      ``(slow, fast)``.
    """
    step = jnp.asarray(step)
    sync = step % every == 0
    d = lookahead_decay(step, total, base, power)
    slow = jax.tree.map(lambda s, f: jnp.where(sync, d * s + (1 - d) * f, s).astype(s.dtype),
                        slow, fast)
    take = sync | (step >= total)
    fast = jax.tree.map(lambda s, f: jnp.where(take, s, f), slow, fast)
    return slow, fast
