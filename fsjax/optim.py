"""Optimiser pieces for fsjax models, as optax transforms and pure functions.

- :func:`model_optimizer`: one optax transform for all of an fsjax model's parameters, with
  their own transforms for DFS locations (DFSNet trains them with Adam 1e-3, and can stop
  them at a step), WKSC channel weights, DARTS architecture logits, BatchNorm parameters and
  parameters frozen by path. The trainer builds its optimizer with it; in your own loop::

      tx = fsjax.optim.model_optimizer(model, optax.sgd(0.1, momentum=0.9),
                                       locations=optax.adam(1e-3), freeze_locations_at=9000)
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  (after ``freeze_locations_at`` steps the locations stay where they are; round them into
  plain FS layers with :func:`fsjax.nn.freeze_dfs` to train or export on).
- :func:`param_labels`: the label of every parameter (what :func:`model_optimizer` uses).
- :func:`train_until`: an optax transform whose updates stop after a number of steps (a
  parameter trained for the first epochs only, e.g. airbench's whitening bias).
- :func:`lookahead_sync`: airbench's lookahead / EMA of the weights (and BatchNorm statistics):
  every ``every`` steps the slow copy moves towards the fast weights and the fast weights are
  reset to it; at the last step the weights become the slow copy.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from fsjax.models.darts import ArchParam
from fsjax.nn import BatchNorm, Location, ShareWeight

__all__ = ["model_optimizer", "param_labels", "train_until", "train_from", "lookahead_decay",
           "lookahead_sync", "LABELS"]

# the groups :func:`param_labels` assigns (plus 'frozen@E' for parameters frozen at epoch E)
LABELS = ("weights", "locations", "share", "arch", "norm")


def _key(path) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path)


def param_labels(model: nnx.Module, *, frozen: Mapping[str, int] | None = None,
                 norm_group: bool = False, steps_per_epoch: int = 1) -> Callable:
    """A function ``labels(params) -> tree of labels`` for ``optax.multi_transform``.

    ``params`` may be any tree of the model's ``nnx.Param`` arrays keyed like
    ``nnx.state(model, nnx.Param)`` (an ``nnx.State``, ``nnx.as_pure`` of one, or
    ``nnx.to_pure_dict``). Labels: ``'locations'`` (DFS :class:`fsjax.nn.Location`),
    ``'share'`` (WKSC :class:`fsjax.nn.ShareWeight`), ``'arch'`` (DARTS
    :class:`fsjax.models.darts.ArchParam`), ``'norm'`` (BatchNorm scale/bias, when
    ``norm_group``), else ``'weights'``; ``frozen`` (``{glob on the path 'a/b/c': epoch}``,
    first match wins) labels matching parameters ``'frozen@<epoch>'``.
    """
    state = nnx.state(model, nnx.Param)
    norms = {tuple(path) for path, node in nnx.iter_graph(model) if isinstance(node, BatchNorm)}
    table = {}
    for path, v in nnx.to_flat_state(state):
        name = "/".join(map(str, path))
        label = next((f"frozen@{int(e)}" for pat, e in dict(frozen or {}).items()
                      if fnmatch.fnmatchcase(name, pat)), None)
        if label is None:
            label = ("locations" if isinstance(v, Location) else "share"
                     if isinstance(v, ShareWeight) else "arch" if isinstance(v, ArchParam)
                     else "norm" if norm_group and tuple(path[:-1]) in norms else "weights")
        table[tuple(path)] = label

    def labels(params):
        def one(path, _):
            key = _key(path)
            if key not in table:
                raise ValueError(f"param_labels: {'/'.join(map(str, key))} is not a parameter "
                                 f"of the model the labels were made for")
            return table[key]
        return jax.tree_util.tree_map_with_path(
            one, params, is_leaf=lambda x: isinstance(x, nnx.Variable))

    return labels


def model_optimizer(model: nnx.Module, weights: optax.GradientTransformation, *,
                    locations: optax.GradientTransformation | None = None,
                    freeze_locations_at: int | None = None,
                    share: optax.GradientTransformation | None = None,
                    arch: optax.GradientTransformation | None = None,
                    norm: optax.GradientTransformation | None = None,
                    frozen: Mapping[str, int] | None = None,
                    arch_from: int = 0,
                    steps_per_epoch: int = 1) -> optax.GradientTransformation:
    """One optax transform for every parameter of ``model`` (:func:`param_labels`' groups).

    Args:
      weights: the transform of ordinary weights (conv kernels, FS vectors, BN, FC).
      locations: DFS locations' (default ``optax.adam(1e-3)``, as DFSNet and the trainer);
        ``freeze_locations_at``: their updates stop after this many steps.
      share: WKSC channel weights' (default: ``weights``').
      arch: DARTS architecture logits' (default: Adam 3e-4, b1 0.5, weight decay 1e-3);
        ``arch_from``: they wait this many steps (a warm-up of the weights).
      norm: BatchNorm scales' and biases' (default: ``weights``'; given, they get it).
      frozen: ``{path glob: epoch}``: trained with ``weights`` for ``epoch *
        steps_per_epoch`` steps, then frozen (0: never trained).
    """
    locations = locations if locations is not None else optax.adam(1e-3)
    if freeze_locations_at is not None:
        locations = train_until(locations, int(freeze_locations_at))
    arch = arch if arch is not None else optax.chain(
        optax.add_decayed_weights(1e-3), optax.adam(3e-4, b1=0.5, b2=0.999))
    txs = {"weights": weights, "locations": locations,
           "share": share if share is not None else weights,
           "arch": train_from(arch, int(arch_from)) if arch_from else arch,
           "norm": norm if norm is not None else weights}
    for epoch in set(dict(frozen or {}).values()):
        txs[f"frozen@{int(epoch)}"] = (train_until(weights, int(epoch) * steps_per_epoch)
                                       if epoch > 0 else optax.set_to_zero())
    return optax.multi_transform(txs, param_labels(model, frozen=frozen,
                                                   norm_group=norm is not None))


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


def train_from(inner: optax.GradientTransformation, steps: int) -> optax.GradientTransformation:
    """Zeros for the first ``steps`` calls, then ``inner``'s updates (a warm-up during which
    the parameters wait, e.g. DARTS's architecture while the weights train first). ``inner``
    sees no gradient before then, so its state starts fresh at step ``steps``."""

    def init(params):
        return _UntilState(inner.init(params), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        go = state.count >= steps
        new, inner_state = inner.update(updates, state.inner, params)
        keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(go, x, y), a, b)
        zeros = jax.tree.map(jnp.zeros_like, new)
        return keep(new, zeros), _UntilState(keep(inner_state, state.inner), state.count + 1)

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
