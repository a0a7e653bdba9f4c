"""Is the training state still finite? One fused on-device reduction per check.

The state ``ts`` (dict of params, stats, opt, step) is split into the collections a person
would name: parameters, DFS locations, batch statistics and optimizer state. The check returns,
for each collection, how many of its floating-point arrays hold a NaN or an infinity.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

COLLECTIONS = ("parameters", "DFS locations", "batch statistics", "optimizer state")


def _collection(path) -> str | None:
    top = getattr(path[0], "key", None)
    if top == "params":
        last = getattr(path[-1], "key", None)
        return "DFS locations" if last == "locations" else "parameters"
    if top == "stats":
        return "batch statistics"
    if top == "opt":
        return "optimizer state"
    return None


@functools.cache
def _checker(treedef, groups: tuple):
    def count(leaves):
        out = {g: jnp.zeros((), jnp.int32) for g in set(groups) if g}
        for g, x in zip(groups, leaves, strict=True):
            if g and jnp.issubdtype(x.dtype, jnp.inexact):
                out[g] = out[g] + (~jnp.all(jnp.isfinite(x))).astype(jnp.int32)
        return out
    return jax.jit(count)


def nonfinite_arrays(ts) -> dict[str, int]:
    """``{collection: number of non-finite arrays}`` for the collections that have any."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(ts)
    groups = tuple(_collection(p) for p, _ in flat)
    counts = jax.device_get(_checker(treedef, groups)([x for _, x in flat]))
    return {g: int(counts[g]) for g in COLLECTIONS if int(counts.get(g, 0))}


def describe(bad: dict[str, int]) -> str:
    """``'batch statistics (8 arrays), evaluation loss (nan)'``."""
    parts = []
    for k, v in bad.items():
        parts.append(f"{k} ({v})" if isinstance(v, str) else
                     f"{k} ({v} array{'s' if v != 1 else ''})")
    return ", ".join(parts)
