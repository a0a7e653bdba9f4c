"""Train a small CNN whose convs are FS and DFS layers, in your own Flax NNX loop.

Only public fsjax API: ``fsjax.nn`` layers, ``fsjax.optim.model_optimizer`` (DFS locations get
their own optimizer and stop at a step), ``fsjax.nn.jit`` (``nnx.jit`` compiled with fsjax's
CPU compiler options), ``fsjax.nn.freeze_dfs`` and ``fsjax.report``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import fsjax
import fsjax.nn as fnn
from fsjax.data import load
from fsjax.data.augment import normalize


class CNN(nnx.Module):
    """conv (dense stem) -> FS conv / 2 -> DFS conv / 2 -> global pool -> linear."""

    def __init__(self, in_channels, num_classes, compression, rngs):
        self.stem = fnn.Conv(in_channels, 32, (3, 3), use_bias=False, name="stem", rngs=rngs)
        self.fs = fnn.FSConv(32, 64, (3, 3), strides=2, use_bias=False, compression=compression,
                             name="fs", rngs=rngs)
        self.dfs = fnn.DFSConv(64, 128, (3, 3), strides=2, use_bias=False,
                               compression=compression, name="dfs", rngs=rngs)
        self.norms = nnx.List([fnn.BatchNorm(c, rngs=rngs) for c in (32, 64, 128)])
        self.head = nnx.Linear(128, num_classes, rngs=rngs)

    def __call__(self, x):
        for conv, norm in zip((self.stem, self.fs, self.dfs), self.norms, strict=True):
            x = jax.nn.relu(norm(conv(x)))
        return self.head(x.mean(axis=(1, 2)))


def loss_fn(model, x, y):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@fnn.jit
def train_step(model, optimizer, x, y):
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
    optimizer.update(model, grads)
    return loss


@fnn.jit
def eval_step(model, x, y):
    return jnp.sum(jnp.argmax(model(x), -1) == y)


def accuracy(model, x, y, batch=1000):
    model.eval()
    hits = sum(int(eval_step(model, x[i:i + batch], y[i:i + batch]))
               for i in range(0, len(y), batch))
    model.train()
    return hits / len(y)


def train_and_evaluate(config, workdir: str) -> dict:
    """Train, then round the DFS locations (DFS -> FS) and evaluate; returns the metrics."""
    ds = load(config.dataset, limit=config.data_limit, seed=config.seed)
    prep = lambda x: normalize(jnp.asarray(x), ds.mean, ds.std)
    x_test, y_test = prep(ds.test_images), jnp.asarray(ds.test_labels)
    model = CNN(ds.image_shape[-1], ds.num_classes, config.compression, nnx.Rngs(config.seed))
    steps = len(ds.train_labels) // config.batch_size
    lr = optax.cosine_decay_schedule(config.learning_rate, config.num_epochs * steps)
    weights = optax.chain(optax.add_decayed_weights(config.weight_decay),
                          optax.sgd(lr, momentum=0.9, nesterov=True))
    tx = fsjax.optim.model_optimizer(model, weights, locations=optax.adam(config.location_lr),
                                     freeze_locations_at=config.freeze_locations_epoch * steps)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    rng = np.random.default_rng(config.seed)
    history = []
    for epoch in range(config.num_epochs):
        perm = rng.permutation(len(ds.train_labels))[:steps * config.batch_size]
        losses = [float(train_step(model, optimizer, prep(ds.train_images[idx]),
                                   jnp.asarray(ds.train_labels[idx])))
                  for idx in perm.reshape(steps, config.batch_size)]
        history.append(dict(epoch=epoch + 1, train_loss=float(np.mean(losses)),
                            test_accuracy=accuracy(model, x_test, y_test)))
        print(history[-1], flush=True)
    moved = np.abs(np.asarray(model.dfs.location_values()) - np.asarray(model.dfs.spec.offsets))
    fnn.freeze_dfs(model)  # learned locations rounded: the DFS layer is now an FSConv
    table, totals = fsjax.report.report(model, ds.image_shape)
    print(table)
    return dict(history=history, accuracy=accuracy(model, x_test, y_test),
                mean_location_shift=float(moved.mean()), dfs_frozen_to=type(model.dfs).__name__,
                stored_params=totals["stored_params"], dense_params=totals["dense_params"])
