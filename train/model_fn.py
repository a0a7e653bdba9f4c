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

from fsjax import ops
from fsjax.data.augment import normalize, random_crop_flip, tta_logits
from fsjax.nn import dropout_key
from fsjax.optim import lookahead_sync


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

    @staticmethod
    def create(model: nnx.Module):
        model.train()
        g_train, p, s, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        model.eval()
        g_eval = nnx.split(model, nnx.Param, nnx.BatchStat, ...)[0]
        model.train()
        abstract = lambda t: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), t)
        return ModelFn(g_train, g_eval, abstract(p), abstract(s), rest)

    @staticmethod
    def initial(model: nnx.Module):
        return (nnx.to_pure_dict(nnx.state(model, nnx.Param)),
                nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)))

    def module(self, params, stats, train: bool = False) -> nnx.Module:
        graph = self.graph_train if train else self.graph_eval
        return nnx.merge(graph, _fill(self.param_tpl, params), _fill(self.stats_tpl, stats),
                         self.rest)

    def apply(self, params, stats, x, train: bool, key=None, **call_kw):
        """``(logits float32, new_stats)``; ``call_kw`` go to the model's call (e.g. a DARTS
        supernet's ``aux_skip``)."""
        m = self.module(params, stats, train)
        with dropout_key(key):
            out = m(x, **call_kw)
        new_stats = nnx.to_pure_dict(nnx.state(m, nnx.BatchStat)) if train else stats
        if isinstance(out, tuple):  # (logits, auxiliary logits)
            return tuple(o.astype(jnp.float32) for o in out), new_stats
        return out.astype(jnp.float32), new_stats


def _loss_fn(fn, c, stats, x, labels, key, param_transform, call_kw=None):
    def loss_fn(params):
        p = param_transform(params) if param_transform else params
        out, new_stats = fn.apply(p, stats, x, True, key, **(call_kw or {}))
        logits, aux = out if isinstance(out, tuple) else (out, None)

        def xent(lg):
            onehot = jax.nn.one_hot(labels, lg.shape[-1])
            if c.label_smoothing:
                onehot = optax.smooth_labels(onehot, c.label_smoothing)
            return optax.softmax_cross_entropy(lg, onehot).mean()

        loss = xent(logits)
        if aux is not None:
            loss = loss + c.aux_weight * xent(aux)
        return loss, (logits, new_stats)

    return loss_fn


def _augment(c, key, images, mean, std, dtype, odd_epoch=None):
    """Crop/flip/cutout; with ``augment.alternate_flip`` the images (mirrored in a seeded half
    once, by the trainer) are all mirrored on odd epochs instead of a random flip."""
    a = c.augment
    alternate = a.get("alternate_flip", False)
    x = random_crop_flip(key, images, a.crop_padding, a.flip and not alternate, a.cutout,
                         a.get("pad_mode", "constant"))
    if alternate and a.flip:
        x = jnp.where(odd_epoch, x[:, :, ::-1, :], x)
    return normalize(x, mean, std, dtype)


def make_train_step(fn: ModelFn, tx, c, mean, std, dtype, param_transform: Callable | None = None,
                    labels_tree=None, steps_per_epoch: int = 0):
    """``step(ts, images_u8, labels, key) -> (ts, metrics)``; ``ts`` = dict(params, stats, opt,
    step[, slow]). ``param_transform`` (e.g. QAT fake-quant) is applied to the parameters in
    the forward pass only. ``steps_per_epoch`` gives the epoch (alternate flips) and the total
    steps (the lookahead's schedule, ``c.lookahead``: ``ts['slow']`` holds its slow copy of
    the parameters and batch statistics).

    With ``c.nas.search`` (first-order DARTS) each example is a pair ``(train-half image,
    val-half image)``: weights get the gradient of the train-half loss, alphas and DFS
    locations (``labels_tree`` 'arch'/'locations') that of the val-half loss, both at the
    current parameters."""

    la = c.get("lookahead")
    every = la.every if la is not None else 0
    total = c.num_epochs * steps_per_epoch
    if (every or c.augment.get("alternate_flip", False)) and not steps_per_epoch:
        raise ValueError("make_train_step: lookahead / alternate flips need steps_per_epoch")

    aux_skip = c.nas.search and c.nas.get("aux_skip", False)
    if aux_skip and not steps_per_epoch:
        raise ValueError("make_train_step: config.nas.aux_skip needs steps_per_epoch")

    def step(ts, images, labels, key):
        k_aug, k_drop, k_val = jax.random.split(key, 3)
        odd = (ts["step"] // max(steps_per_epoch, 1)) % 2 == 1
        # DARTS-: the auxiliary skip's weight decays linearly from 1 to 0 over the search
        kw = dict(aux_skip=1.0 - ts["step"] / total) if aux_skip else None
        if c.nas.search:
            xt = _augment(c, k_aug, images[:, 0], mean, std, dtype, odd)
            xv = _augment(c, k_val, images[:, 1], mean, std, dtype, odd)
            labels, lv = labels[:, 0], labels[:, 1]
        else:
            xt = _augment(c, k_aug, images, mean, std, dtype, odd)
        grad = jax.value_and_grad(_loss_fn(fn, c, ts["stats"], xt, labels, k_drop,
                                           param_transform, kw), has_aux=True)
        (loss, (logits, stats)), grads = grad(ts["params"])
        if c.nas.search:
            gval = jax.grad(lambda p: _loss_fn(fn, c, ts["stats"], xv, lv, k_drop,
                                               param_transform, kw)(p)[0])(ts["params"])
            grads = jax.tree.map(lambda lab, gt, gv: gv if lab in ("arch", "locations") else gt,
                                 labels_tree, grads, gval)
        updates, opt = tx.update(grads, ts["opt"], ts["params"])
        params = optax.apply_updates(ts["params"], updates)
        correct = jnp.sum(jnp.argmax(logits, -1) == labels)
        new = dict(params=params, stats=stats, opt=opt, step=ts["step"] + 1)
        if every:
            slow, fast = lookahead_sync(ts["slow"], dict(params=params, stats=stats),
                                        new["step"], total, every, la.decay, la.power)
            new.update(fast, slow=slow)
        return new, dict(loss=loss * labels.shape[0], correct=correct,
                         count=jnp.asarray(labels.shape[0], jnp.int32))

    return step


def make_eval_step(fn: ModelFn, mean, std, dtype, tta: int = 0, param_transform=None):
    """``eval(params, stats, images_u8, labels, mask) -> dict(loss, correct, count)`` sums;
    ``tta``: test-time augmentation level (:func:`fsjax.data.augment.tta_logits`)."""

    def evaluate(params, stats, images, labels, mask):
        p = param_transform(params) if param_transform else params
        x = normalize(images, mean, std, dtype)

        def apply(v):
            out = fn.apply(p, stats, v, False)[0]
            return out[0] if isinstance(out, tuple) else out

        with ops.inference_trace():  # no backward here: skip the CPU barrier (35% of a forward)
            logits = tta_logits(apply, x, tta)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        correct = (jnp.argmax(logits, -1) == labels) & mask
        return dict(loss=jnp.sum(loss * mask), correct=jnp.sum(correct),
                    count=jnp.sum(mask.astype(jnp.int32)))

    return evaluate


def task_eval_step(model, fn: ModelFn, c, ds, mean, std, dtype, param_transform=None, tta=0):
    """``(eval_fn, eval_finish)`` for the task of ``ds``: classification (no finish; ``tta``
    views), or detection (boxes gathered for the mAP, :mod:`train.detect_fn`)."""
    if ds.task == "detect":
        from train import detect_fn

        return (detect_fn.make_eval_step(fn, c, mean, std, dtype, model.priors(),
                                         param_transform),
                detect_fn.map_metrics(c, ds.test_labels, ds.num_classes))
    return make_eval_step(fn, mean, std, dtype, tta, param_transform), None
