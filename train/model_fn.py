"""A NNX model as pure functions over pure-dict parameters and batch statistics.

``nnx.split`` once; inside jit the model is rebuilt with ``nnx.merge`` (trace time only).
Training and evaluation use separate graph definitions (BatchNorm/Dropout mode is static).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from fsjax.data.augment import normalize, random_crop_flip


def _fill(template, pure):
    state = jax.tree.map(lambda x: x, template, is_leaf=lambda x: isinstance(x, nnx.Variable))
    nnx.replace_by_pure_dict(state, pure)
    return state


@dataclasses.dataclass
class ModelFn:
    """Functional view of ``model``; ``params``/``stats`` are pure dicts of arrays."""

    graph_train: Any
    graph_eval: Any
    param_tpl: Any
    stats_tpl: Any
    rest: Any
    has_dropout: bool

    @staticmethod
    def create(model: nnx.Module):
        model.train()
        g_train, p, s, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        model.eval()
        g_eval = nnx.split(model, nnx.Param, nnx.BatchStat, ...)[0]
        model.train()
        has_dropout = any(isinstance(n, nnx.Dropout) for _, n in nnx.iter_graph(model))
        abstract = lambda t: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), t)
        return ModelFn(g_train, g_eval, abstract(p), abstract(s), rest, has_dropout)

    @staticmethod
    def initial(model: nnx.Module):
        return (nnx.to_pure_dict(nnx.state(model, nnx.Param)),
                nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))

    def module(self, params, stats, train: bool = False) -> nnx.Module:
        graph = self.graph_train if train else self.graph_eval
        return nnx.merge(graph, _fill(self.param_tpl, params), _fill(self.stats_tpl, stats),
                         self.rest)

    def apply(self, params, stats, x, train: bool, key=None):
        """``(logits float32, new_stats)``."""
        m = self.module(params, stats, train)
        if train and self.has_dropout:
            nnx.reseed(m, dropout=key)
        logits = m(x).astype(jnp.float32)
        new_stats = nnx.to_pure_dict(nnx.state(m, nnx.BatchStat)) if train else stats
        return logits, new_stats


def make_train_step(fn: ModelFn, tx, c, mean, std, dtype, param_transform: Callable | None = None):
    """``step(ts, images_u8, labels, key) -> (ts, metrics)``; ``ts`` = dict(params, stats, opt,
    step). ``param_transform`` (e.g. QAT fake-quant) is applied to the parameters in the
    forward pass only."""
    a = c.augment

    def step(ts, images, labels, key):
        k_aug, k_drop = jax.random.split(key)
        x = random_crop_flip(k_aug, images, a.crop_padding, a.flip, a.cutout)
        x = normalize(x, mean, std, dtype)

        def loss_fn(params):
            p = param_transform(params) if param_transform else params
            logits, stats = fn.apply(p, ts["stats"], x, True, k_drop)
            onehot = jax.nn.one_hot(labels, logits.shape[-1])
            if c.label_smoothing:
                onehot = optax.smooth_labels(onehot, c.label_smoothing)
            loss = optax.softmax_cross_entropy(logits, onehot).mean()
            return loss, (logits, stats)

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts["params"])
        updates, opt = tx.update(grads, ts["opt"], ts["params"])
        params = optax.apply_updates(ts["params"], updates)
        correct = jnp.sum(jnp.argmax(logits, -1) == labels)
        new = dict(params=params, stats=stats, opt=opt, step=ts["step"] + 1)
        return new, dict(loss=loss * labels.shape[0], correct=correct,
                         count=jnp.asarray(labels.shape[0], jnp.int32))

    return step


def make_eval_step(fn: ModelFn, mean, std, dtype, tta_flip=False, param_transform=None):
    """``eval(params, stats, images_u8, labels, mask) -> dict(loss, correct, count)`` sums."""

    def evaluate(params, stats, images, labels, mask):
        p = param_transform(params) if param_transform else params
        x = normalize(images, mean, std, dtype)
        logits, _ = fn.apply(p, stats, x, False)
        if tta_flip:
            logits = 0.5 * (logits + fn.apply(p, stats, x[:, :, ::-1, :], False)[0])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        correct = (jnp.argmax(logits, -1) == labels) & mask
        return dict(loss=jnp.sum(loss * mask), correct=jnp.sum(correct),
                    count=jnp.sum(mask.astype(jnp.int32)))

    return evaluate
