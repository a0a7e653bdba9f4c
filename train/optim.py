"""Learning-rate schedules and the optimizer (weights / DFS locations / WKSC weights split)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import optax
from flax import nnx

from fsjax import optim


def schedule(c, steps_per_epoch: int):
    """Learning rate per step for ``c.schedule`` (see configlib.SCHEDULES).

    step: FSNet's decay (lr x factor at each decay point, fractions of training);
    cyclic: FSNet's restarts (the step schedule repeated ``cycles`` times; weights and
    optimizer state carry over); cosine and onecycle (linear up, cosine down) with warm-up;
    linear (airbench: linear warm-up, then linear to ``final_lr_fraction``). Warm-ups start
    at ``warmup_start_fraction`` of the peak (onecycle: at 1/25).
    """
    s, lr = c.schedule, c.optimizer.lr
    total = c.num_epochs * steps_per_epoch
    warm = int(s.warmup_epochs * steps_per_epoch)
    final = lr * s.final_lr_fraction
    start = lr * s.get("warmup_start_fraction", 0.0)

    def step_decay(length):
        bounds = {int(p * length): s.decay_factor for p in s.decay_points}
        return optax.piecewise_constant_schedule(lr, bounds)

    if s.name == "constant":
        main = optax.constant_schedule(lr)
    elif s.name == "step":
        main = step_decay(total - warm)
    elif s.name == "cyclic":
        cycle = total // s.cycles
        one = step_decay(cycle)
        main = lambda t: one(jnp.minimum(t % cycle if cycle else t, cycle))
    elif s.name == "linear":
        main = optax.linear_schedule(lr, final, max(total - warm, 1))
    elif s.name == "cosine":
        main = optax.cosine_decay_schedule(lr, max(total - warm, 1), alpha=s.final_lr_fraction)
    elif s.name == "onecycle":
        warm = max(warm, int(0.3 * total)) if s.warmup_epochs == 0 else warm
        return optax.join_schedules([optax.linear_schedule(lr / 25, lr, max(warm, 1)),
                                     optax.cosine_decay_schedule(lr, max(total - warm, 1),
                                                                 alpha=final / lr)], [warm])
    else:
        raise ValueError(f"config.schedule.name {s.name!r} is not valid")
    if warm:
        return optax.join_schedules([optax.linear_schedule(start, lr, warm), main], [warm])
    return main


def _tx(name, lr, momentum=0.9, nesterov=False, weight_decay=0.0):
    if name == "sgd":
        chain = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
        return optax.chain(*chain, optax.sgd(lr, momentum=momentum or None, nesterov=nesterov))
    if name == "adam":
        chain = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
        return optax.chain(*chain, optax.adam(lr))
    if name == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer {name!r} is not valid; valid: sgd, adam, adamw")


def param_labels(model: nnx.Module):
    """Pure-dict tree of labels (:data:`fsjax.optim.LABELS`) per parameter."""
    return optim.param_labels(model)(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def make_optimizer(c, model: nnx.Module, steps_per_epoch: int):
    """optax transform over the model's pure-dict parameters; returns (tx, lr_schedule)."""
    o = c.optimizer
    lr = schedule(c, steps_per_epoch)
    group = lambda scale: _tx(o.name, (lambda t: scale * lr(t)) if scale != 1 else lr,
                              o.momentum, o.nesterov, o.weight_decay / scale)
    clip = lambda tx: optax.chain(optax.clip_by_global_norm(o.grad_clip), tx) \
        if o.grad_clip else tx
    weights = clip(group(1.0))
    norm_scale = o.get("norm_lr_scale", 1.0)
    tx = optim.model_optimizer(
        model, weights, locations=_tx(c.locations.optimizer, c.locations.lr),
        share=_tx(c.share.optimizer, c.share.lr, weight_decay=c.share.weight_decay),
        # DARTS: Adam(3e-4, b1=0.5, b2=0.999) with weight decay 1e-3 on the alphas
        arch=optax.chain(optax.add_decayed_weights(c.nas.arch_weight_decay),
                         optax.adam(c.nas.arch_lr, b1=0.5, b2=0.999)),
        # BatchNorm scales/biases at norm_lr_scale x the lr, the same decay per step
        norm=None if math.isclose(norm_scale, 1.0) else clip(group(norm_scale)),
        frozen=dict(c.optimizer.get("frozen", None) or {}), steps_per_epoch=steps_per_epoch,
        arch_from=int(c.nas.get("warmup_epochs", 0) * steps_per_epoch))
    return tx, lr
