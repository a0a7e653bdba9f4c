"""A Linen model you did not write for fsjax, compressed without editing its class.

``CNN`` is plain ``flax.linen``. After training it, ``fsjax.linen.compress`` replaces its
``nn.Conv`` calls by FS (or DFS/KS/WKS) layers, projects the trained kernels, and returns a
model whose ``init``/``apply`` are the original's; it is fine-tuned with the same jitted step
(``jax.jit`` with ``fsjax.ops.compiler_options()``: fsjax's XLA:CPU options, ``{}`` elsewhere).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import fsjax
import fsjax.linen as fl
from fsjax.data import load
from fsjax.data.augment import normalize


class CNN(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=2)(x))
        x = nn.relu(nn.Conv(128, (3, 3), strides=2)(x))
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


def fit(apply, params, ds, config, epochs, prep):
    """SGD on ``apply(params, x)``'s cross-entropy; returns the trained params."""
    steps = len(ds.train_labels) // config.batch_size
    tx = optax.sgd(optax.cosine_decay_schedule(config.learning_rate, epochs * steps),
                   momentum=0.9)
    opt = tx.init(params)

    def step(params, opt, x, y):
        loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()
        grads = jax.grad(loss)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    step = jax.jit(step, compiler_options=fsjax.ops.compiler_options())
    rng = np.random.default_rng(config.seed)
    for _ in range(epochs):
        perm = rng.permutation(len(ds.train_labels))[:steps * config.batch_size]
        for idx in perm.reshape(steps, config.batch_size):
            params, opt = step(params, opt, prep(ds.train_images[idx]),
                               jnp.asarray(ds.train_labels[idx]))
    return params


def accuracy(apply, params, x, y, batch=1000):
    f = jax.jit(apply)
    return sum(int(jnp.sum(jnp.argmax(f(params, x[i:i + batch]), -1) == y[i:i + batch]))
               for i in range(0, len(y), batch)) / len(y)


def train_and_evaluate(config, workdir: str) -> dict:
    ds = load(config.dataset, limit=config.data_limit, seed=config.seed)
    prep = lambda x: normalize(jnp.asarray(x), ds.mean, ds.std)
    x_test, y_test = prep(ds.test_images), jnp.asarray(ds.test_labels)
    model = CNN(ds.num_classes)
    variables = model.init(jax.random.key(config.seed), x_test[:1])
    apply = lambda p, x: model.apply({"params": p}, x)
    params = fit(apply, variables["params"], ds, config, config.dense_epochs, prep)
    dense_acc = accuracy(apply, params, x_test, y_test)

    small, new_vars = fl.compress(model, {"params": params}, x_test[:2], kind=config.kind,
                                  compression=config.compression, group_size=config.group_size)
    print(f"compressed {small.converted}; left dense: {small.skipped}")
    capply = lambda p, x: small.apply({"params": p}, x)
    projected_acc = accuracy(capply, new_vars["params"], x_test, y_test)
    tuned = fit(capply, new_vars["params"], ds, config, config.finetune_epochs, prep)
    count = lambda p: sum(int(np.size(v)) for v in jax.tree.leaves(p))
    return dict(dense_accuracy=dense_acc, projected_accuracy=projected_acc,
                accuracy=accuracy(capply, tuned, x_test, y_test), dense_params=count(params),
                stored_params=count(tuned), converted=list(small.converted),
                skipped=[list(s) for s in small.skipped])
