"""The one epoch loop: a scan that is unrolled (the CPU default) or a real loop (what runs on
GPU/TPU), one step or several per call, data on the device or streamed from the host - all
give the same parameters and metrics. And the bf16 setting on every model family."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_train_step import TINY
from train import configlib
from train.loop import Runner, chunk_size, make_mesh
from train.model_fn import ModelFn, make_eval_step, make_train_step
from train.trainer import build_model, setup_state

N, BATCH = 128, 16
MEAN, STD = (0.5,) * 3, (0.25,) * 3


def _data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(N, 16, 16, 3), dtype=np.uint8)
    return x, (np.arange(N) % 10).astype(np.int32)


def _epochs(on_device, unroll, steps_per_call, epochs=2, kind="dfs"):
    c = configlib.base()
    c.model, c.conv.kind = "resnet8", kind
    c.model_kw.widths = (4, 8, 8)
    # At the default lr 0.1 this tiny net on random labels is chaotic: float32 rounding
    # differences between two programs grow to 43% of a parameter within 2 epochs (measured,
    # pinned to one core; 6e-6 after the first epoch). At 0.02 they stay at 6e-6.
    c.optimizer.lr = 0.02
    model, _ = build_model(c, 10, 3, jnp.float32)
    fn, tx, _, ts = setup_state(model, c, N // BATCH)
    r = Runner(make_train_step(fn, tx, c, MEAN, STD, jnp.float32),
               make_eval_step(fn, MEAN, STD, jnp.float32), make_mesh(), BATCH, 48, on_device,
               unroll)
    x, y = _data()
    data = r.put_replicated(x, y) if on_device else (x, y)
    ts = jax.device_put(ts, r.repl)
    seen = []
    for epoch in range(epochs):
        ts, syncs = r.train_epoch(ts, data, N, 0, epoch, steps_per_call)
        seen += [(n, jax.tree.map(np.asarray, m)) for n, m in syncs]
    ev = r.evaluate(ts["params"], ts["stats"], r.put_eval(x[:100], y[:100]))
    return jax.device_get(ts), seen, ev


def _tiny_dense():
    """A dense ResNet-8 at widths (4, 8, 8): ``(config, fn, tx, ts)``."""
    c = configlib.base()
    c.model, c.conv.kind = "resnet8", "dense"
    c.model_kw.widths = (4, 8, 8)
    model, _ = build_model(c, 10, 3, jnp.float32)
    fn, tx, _, ts = setup_state(model, c, N // BATCH)
    return c, fn, tx, ts


def _assert_same(a, b, exact=True):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def reference():
    return _epochs(on_device=True, unroll=True, steps_per_call=1)


def test_chunk_size():
    assert chunk_size(390, 0, "cpu") == 1
    assert chunk_size(390, 0, "gpu") == 39
    assert chunk_size(390, 50, "gpu") == 39 and chunk_size(8, 4, "cpu") == 4


@pytest.mark.parametrize("per_call", [1, 3])
def test_unrolled_chunk_has_no_loop(per_call):
    """On the CPU a chunk is straight-line code: a conv inside an XLA while loop runs 50-100x
    slower there (jax-ml/jax#12868), and lax.scan(unroll=True) still leaves a one-iteration
    while loop around the unrolled body (the ResNet-20 step took 21 s instead of 0.62 s)."""
    c, fn, tx, ts = _tiny_dense()
    x, y = _data()
    hlo = {}
    for unroll in (True, False):
        r = Runner(make_train_step(fn, tx, c, MEAN, STD, jnp.float32),
                   make_eval_step(fn, MEAN, STD, jnp.float32), make_mesh(), BATCH, 48, True,
                   unroll)
        data = (*r.put_replicated(x, y), jnp.arange(N, dtype=jnp.int32))
        hlo[unroll] = r._chunk.lower(ts, data, jnp.arange(per_call), jax.random.key(0)) \
            .compile().as_text()
    # ops traced inside the chunk's own loop carry an op_name under "jit(chunk)/while"
    # (the RNG's small threefry loops exist in both programs)
    in_loop = lambda text: re.findall(r'op_name="jit\(chunk\)/while[/"]', text)
    assert not in_loop(hlo[True])
    assert in_loop(hlo[False])  # the accelerator program is a real loop


def test_runner_compiles_with_cpu_options(monkeypatch):
    """The trainer's programs are compiled with ``fsjax.ops.compiler_options`` (an option this
    jaxlib does not know must then fail the compilation)."""
    from fsjax import ops
    c, fn, tx, ts = _tiny_dense()
    x, y = _data()
    seen = []
    monkeypatch.setattr(ops, "compiler_options",
                        lambda backend=None: seen.append(backend) or {"xla_no_such_option": "1"})
    r = Runner(make_train_step(fn, tx, c, MEAN, STD, jnp.float32),
               make_eval_step(fn, MEAN, STD, jnp.float32), make_mesh(), BATCH, 48, True, True)
    assert seen == ["cpu"]
    data = (*r.put_replicated(x, y), jnp.arange(N, dtype=jnp.int32))
    with pytest.raises(Exception, match="xla_no_such_option"):
        r._chunk.lower(ts, data, jnp.arange(1), jax.random.key(0)).compile()
    with pytest.raises(Exception, match="xla_no_such_option"):
        ev = r.put_eval(x[:48], y[:48])
        r._eval.lower(ts["params"], ts["stats"], *ev, 0).compile()


@pytest.mark.parametrize("on_device,unroll,per_call", [
    (True, False, 4),   # the accelerator program: a while loop of 4 steps per call
    (False, True, 1),   # streamed from the host
    (False, False, 8),
    (True, True, 4),    # several unrolled steps in one program (CPU, steps_per_call=4)
])
def test_epoch_paths_equal(reference, on_device, unroll, per_call):
    """Bit-identical to one unrolled step per call where the program is the same (streamed
    instead of on-device data); otherwise XLA:CPU fuses and schedules the arithmetic of a
    real loop, or of several steps in one program, differently from one straight-line step,
    so those agree to float32 rounding (measured, largest difference of any parameter or
    optimizer state relative to the leaf's largest value, after 2 epochs of 8 steps: 6.3e-6
    for the loops, 8.6e-7 for 4 unrolled steps per call)."""
    exact = unroll and per_call == 1
    ts, seen, ev = _epochs(on_device, unroll, per_call)
    ref_ts, ref_seen, ref_ev = reference
    _assert_same(ts, ref_ts, exact)
    if exact:
        assert ev == ref_ev
    else:
        assert ev == pytest.approx(ref_ev, rel=1e-4)
    # metrics: same sums per epoch however they were chunked
    def per_epoch(s):
        out, acc = [], None
        for n, m in s:
            acc = m if acc is None else jax.tree.map(np.add, acc, m)
            if n == N // BATCH:
                out.append(acc)
                acc = None
        return out
    _assert_same(per_epoch(seen), per_epoch(ref_seen), exact)


# every family: CIFAR ResNet (basic; bottleneck), ImageNet-stem ResNet, VGG, MobileNet (WKSC +
# depthwise), DenseNet; every conv kind once (resnet18 is resnet56's basic block again)
BF16_KINDS = {"resnet56": "fs", "resnet164": "dfs", "resnet50": "ks", "vgg16": "dense",
              "mobilenet_v1": "wks", "densenet_bc100": "dfs"}


@pytest.mark.parametrize("name", list(BF16_KINDS))
def test_bf16_step_every_family(name):
    """bf16 compute, f32 parameters, optimizer state, statistics and loss."""
    kind = BF16_KINDS[name]
    c = configlib.base()
    c.model, c.conv.kind, c.conv.group_size = name, kind, 2
    for k, v in TINY[name].items():
        c.model_kw[k] = v
    image = 32 if name in ("vgg16", "resnet50") else 16
    x = jax.random.randint(jax.random.key(0), (4, image, image, 3), 0, 256).astype(jnp.uint8)
    y = jnp.arange(4) % 10
    model, _ = build_model(c, 10, 3, jnp.bfloat16)
    fn, tx, _, ts = setup_state(model, c, 10)
    new, m = jax.jit(make_train_step(fn, tx, c, MEAN, STD, jnp.bfloat16))(
        ts, x, y, jax.random.key(1))
    assert np.isfinite(float(m["loss"])) and m["loss"].dtype == jnp.float32
    for tree in (new["params"], new["stats"], new["opt"]):
        for leaf in jax.tree.leaves(tree):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                assert leaf.dtype == jnp.float32 and np.all(np.isfinite(leaf)), name
    # the same parameters evaluated in float32 and in bfloat16
    xn = (x.astype(jnp.float32) / 255 - 0.5) / 0.25
    ref = np.asarray(ModelFn.create(build_model(c, 10, 3, jnp.float32)[0]).apply(
        new["params"], new["stats"], xn, False)[0])
    low = np.asarray(fn.apply(new["params"], new["stats"], xn.astype(jnp.bfloat16), False)[0])
    # bf16 keeps 8 bits of mantissa: logits within 5% of their largest magnitude
    tol = 0.05 * (np.abs(ref).max() + 1e-3)
    assert np.abs(low - ref).max() <= tol, (name, np.abs(low - ref).max(), tol)


def test_dfs_interpolation_stays_float32():
    """In bf16 compute, the DFS kernel is interpolated from the float32 summary and float32
    locations and only then cast: equal to the float32 kernel rounded once."""
    from flax import nnx

    from fsjax.nn import DFSConv

    conv = DFSConv(8, 16, (3, 3), compression=4.0, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    conv.locations[...] = conv.locations[...] + 0.37  # fractional: interpolation matters
    from fsjax import ops

    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 8))
    y = conv(x)
    assert y.dtype == jnp.bfloat16
    k32 = conv.dense_kernel()  # float32 interpolation
    assert k32.dtype == jnp.float32
    want = ops.conv(x.astype(jnp.bfloat16), k32.astype(jnp.bfloat16),
                    conv.bias[...].astype(jnp.bfloat16))
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(want, np.float32))
