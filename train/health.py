"""Is the training state still finite? One fused on-device reduction per check.

The state ``ts`` (dict of params, stats, opt, step) is split into the collections a person
would name: parameters, DFS locations, batch statistics and optimizer state. The check returns,
for each collection, how many of its floating-point arrays hold a NaN or an infinity.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

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
def _checker(treedef, groups: tuple, sizes: tuple):
    """One program for a state of this structure: the non-finite flags of all its
    floating-point arrays, flattened and concatenated into one vector, reduced per array by a
    segment max. (One reduction per array compiled in time linear in the number of arrays,
    and slowly: 22 s on the CPU for a DARTS supernet's 3,000 leaves, 308 s for 2,000 small
    arrays, against 3.6 s for the concatenated form.) The flags take a byte per element of the
    state for the moment of the check."""
    picked = [i for i, g in enumerate(groups) if g]
    ids = np.repeat(np.arange(len(picked)), [sizes[i] for i in picked])
    names = sorted({groups[i] for i in picked})
    owner = np.array([names.index(groups[i]) for i in picked], np.int32)

    def count(leaves):
        if not picked:
            return {}
        bad = jnp.concatenate([~jnp.isfinite(leaves[i]).ravel() for i in picked])
        per_array = jax.ops.segment_max(bad.astype(jnp.int32), ids, num_segments=len(picked),
                                        indices_are_sorted=True)
        per_array = jnp.maximum(per_array, 0)  # an empty array's segment max is int32's min
        per_group = jax.ops.segment_sum(per_array, owner, num_segments=len(names))
        return dict(zip(names, per_group, strict=True))
    return jax.jit(count)


def nonfinite_arrays(ts) -> dict[str, int]:
    """``{collection: number of non-finite arrays}`` for the collections that have any."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(ts)
    groups = tuple(_collection(p) if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else None
                   for p, x in flat)
    sizes = tuple(int(np.size(x)) for _, x in flat)
    counts = jax.device_get(_checker(treedef, groups, sizes)([x for _, x in flat]))
    return {g: int(counts[g]) for g in COLLECTIONS if int(counts.get(g, 0))}


def describe(bad: dict[str, int]) -> str:
    """``'batch statistics (8 arrays), evaluation loss (nan)'``."""
    parts = []
    for k, v in bad.items():
        parts.append(f"{k} ({v})" if isinstance(v, str) else
                     f"{k} ({v} array{'s' if v != 1 else ''})")
    return ", ".join(parts)
