"""Compress a model you trained, fine-tune it, quantize it and run it in onnxruntime.

Steps, each printed with its test accuracy: the trained dense model (loaded from an fsjax
export, or trained here); ``fsjax.nn.convert(model, 'fs')`` (every large conv becomes an FS
layer, its kernel projected by least squares); a short fine-tune; ``fsjax.quant`` 8-bit
weights; ``fsjax.deploy.export_onnx(..., int8=True)`` and onnxruntime on the test set. The
training step is a plain ``jax.jit`` over ``nnx.split`` / ``nnx.merge`` (the functional NNX
style), compiled with ``fsjax.ops.compiler_options()``.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import fsjax
from fsjax.data import load
from fsjax.data.augment import normalize


def fit(model, ds, config, epochs, lr, prep):
    """SGD (momentum 0.9, cosine from ``lr``) on ``model`` in place, BatchNorm in train mode."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    steps = len(ds.train_labels) // config.batch_size
    tx = optax.sgd(optax.cosine_decay_schedule(lr, max(1, epochs * steps)), momentum=0.9)
    opt = tx.init(params)

    def step(params, rest, opt, x, y):
        def loss(p):
            m = nnx.merge(graphdef, p, rest, copy=True)
            out = optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
            return out, nnx.split(m, nnx.Param, ...)[2]  # updated BatchNorm statistics
        grads, rest = jax.grad(loss, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), rest, opt

    step = jax.jit(step, donate_argnums=(0, 1, 2), compiler_options=fsjax.ops.compiler_options())
    rng = np.random.default_rng(config.seed)
    model.train()
    for _ in range(epochs):
        for idx in rng.permutation(len(ds.train_labels))[:steps * config.batch_size].reshape(
                steps, config.batch_size):
            params, rest, opt = step(params, rest, opt, prep(ds.train_images[idx]),
                                     jnp.asarray(ds.train_labels[idx]))
    nnx.update(model, params, rest)


def predict(forward, x, batch=500) -> np.ndarray:
    """Top-1 classes of ``forward(x_batch) -> logits`` (numpy or jax) over ``x``."""
    return np.concatenate([np.argmax(np.asarray(forward(x[i:i + batch])), -1)
                           for i in range(0, len(x), batch)])


def train_and_evaluate(config, workdir: str) -> dict:
    ds = load(config.dataset, limit=config.data_limit, seed=config.seed)
    prep = lambda x: normalize(jnp.asarray(x), ds.mean, ds.std)
    x_test, y_test = np.asarray(prep(ds.test_images)), ds.test_labels
    if config.source:
        model, _ = fsjax.export.load(config.source)
    else:
        model = fsjax.models.create(config.model, num_classes=ds.num_classes,
                                    in_channels=ds.image_shape[-1], seed=config.seed)
        fit(model, ds, config, config.dense_epochs, config.learning_rate, prep)
    shape = ds.image_shape

    def row(step, **extra):
        model.eval()
        fwd = nnx.jit(lambda m, x: m(x))
        _, tot = fsjax.report.report(model, shape)
        pred = predict(lambda x: fwd(model, x), x_test)
        r = dict(step=step, accuracy=float((pred == y_test).mean()),
                 stored_params=tot["stored_params"], **extra)
        print(r, flush=True)
        return r, pred

    rows = [row("trained")[0]]
    done = fsjax.nn.convert(model, "fs", compression=config.compression)
    rows.append(row(f"fs rho={config.compression:g} (projected)", converted=list(done),
                    left_dense=[list(s) for s in done.skipped])[0])
    fit(model, ds, config, config.finetune_epochs, 0.1 * config.learning_rate, prep)
    rows.append(row("fine-tuned")[0])
    q = fsjax.quant.QuantConfig(bits=config.bits, per_channel=True)
    fsjax.quant.quantize_model(model, q)  # weights replaced by their dequantized values
    r, pred = row(f"{config.bits}-bit weights")
    rows.append(r)
    path = os.path.join(workdir, "model.int8.onnx")
    calib = np.asarray(prep(ds.train_images[:config.calibration_images]))
    info = fsjax.deploy.export_onnx(model, shape, path, int8=True, calibration=calib)
    session = fsjax.deploy.onnx_session(path)
    onnx_pred = predict(lambda x: fsjax.deploy.run_onnx(session, x), x_test)
    rows.append(dict(step="int8 ONNX in onnxruntime", onnx_bytes=info["bytes"],
                     accuracy=float((onnx_pred == y_test).mean()),
                     same_top1_as_fsjax=float((onnx_pred == pred).mean())))
    print(rows[-1], flush=True)
    return dict(rows=rows, accuracy=rows[-1]["accuracy"], onnx_file=path)
