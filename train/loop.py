"""Epoch runners: the whole data set in device memory with the epoch as jitted scans, or
streaming batches from the host with prefetch. Data parallel over a 1-D ``data`` mesh."""

from __future__ import annotations

import queue
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("data",))


def check_batch(batch: int, mesh: Mesh, key="batch_size"):
    n = mesh.devices.size
    if batch % n:
        raise ValueError(f"config.{key} = {batch} must divide by the device count {n} "
                         f"(data parallel); use a multiple of {n}")


def epoch_keys(seed: int, epoch: int):
    base = jax.random.fold_in(jax.random.key(seed), epoch)
    return jax.random.fold_in(base, 0), jax.random.fold_in(base, 1)


def chunk_size(steps: int, requested: int) -> int:
    """Largest divisor of ``steps`` not above the target (default: about 10 calls/epoch)."""
    target = requested or max(1, steps // 10)
    target = min(max(target, 1), steps)
    return max(d for d in range(1, target + 1) if steps % d == 0)


class Runner:
    """Compiles and runs training chunks and evaluation for one model/optimizer setup."""

    def __init__(self, step_fn, eval_fn, mesh: Mesh, batch: int, eval_batch: int,
                 on_device: bool):
        self.mesh, self.batch, self.eval_batch = mesh, batch, eval_batch
        self.on_device = on_device
        self.repl = NamedSharding(mesh, P())
        self.shard = NamedSharding(mesh, P("data"))
        constrain = lambda x: jax.lax.with_sharding_constraint(x, self.shard)

        def chunk(ts, xs, ys, perm, steps, key):
            def body(ts, i):
                idx = jax.lax.dynamic_slice(perm, (i * batch,), (batch,))
                x, y = constrain(xs[idx]), constrain(ys[idx])
                ts, m = step_fn(ts, x, y, jax.random.fold_in(key, ts["step"]))
                return ts, m
            ts, ms = jax.lax.scan(body, ts, steps)
            return ts, jax.tree.map(jnp.sum, ms)

        def one(ts, xs, ys, perm, i, key):
            idx = jax.lax.dynamic_slice(perm, (i * batch,), (batch,))
            return step_fn(ts, constrain(xs[idx]), constrain(ys[idx]),
                           jax.random.fold_in(key, ts["step"]))

        # XLA:CPU runs convolutions inside while loops (scan) ~50x slower than at top level
        # (measured: 4.2 s vs 0.08 s for one 64-channel 3x3 conv training step), so on the CPU
        # a chunk is a Python loop of jitted steps; on accelerators it is one jitted scan.
        self.loop_in_python = jax.default_backend() == "cpu"
        self._chunk = jax.jit(chunk, donate_argnums=(0,))
        self._one = jax.jit(one, donate_argnums=(0,))
        self._step = jax.jit(lambda ts, x, y, key: step_fn(
            ts, constrain(x), constrain(y), jax.random.fold_in(key, ts["step"])),
            donate_argnums=(0,))

        def evaluate(params, stats, xs, ys, mask):
            def body(acc, b):
                x, y, m = b
                out = eval_fn(params, stats, constrain(x), constrain(y), constrain(m))
                return jax.tree.map(jnp.add, acc, out), None
            zero = dict(loss=jnp.zeros(()), correct=jnp.zeros((), jnp.int32),
                        count=jnp.zeros((), jnp.int32))
            acc, _ = jax.lax.scan(body, zero, (xs, ys, mask))
            return acc

        self._eval = jax.jit(evaluate)
        self._eval_one = jax.jit(lambda p, s, x, y, m: eval_fn(p, s, constrain(x), constrain(y),
                                                               constrain(m)))

    # --- data placement ------------------------------------------------------------------
    def put_replicated(self, *arrays):
        return [jax.device_put(a, self.repl) for a in arrays]

    def put_eval(self, images, labels):
        n = len(labels)
        b = self.eval_batch
        nb = -(-n // b)
        pad = nb * b - n
        mask = np.concatenate([np.ones(n, bool), np.zeros(pad, bool)])
        images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
        shard = NamedSharding(self.mesh, P(None, "data"))
        r = lambda a: jax.device_put(a.reshape(nb, b, *a.shape[1:]), shard)
        return r(images), r(labels), r(mask)

    # --- running ---------------------------------------------------------------------------
    def train_epoch(self, ts, data, n_train: int, seed: int, epoch: int, steps_per_call: int,
                    on_chunk):
        """Run one epoch; ``on_chunk(steps_done, metrics_host) -> bool`` (False: stop)."""
        steps = n_train // self.batch
        k_perm, k_step = epoch_keys(seed, epoch)
        perm = jax.random.permutation(k_perm, n_train)[: steps * self.batch].astype(jnp.int32)
        if self.on_device:
            xs, ys = data
            size = chunk_size(steps, steps_per_call)
            perm = jax.device_put(perm, self.repl)
            for start in range(0, steps, size):
                if self.loop_in_python:
                    m = None
                    for i in range(start, start + size):
                        ts, mi = self._one(ts, xs, ys, perm, i, k_step)
                        m = mi if m is None else jax.tree.map(jnp.add, m, mi)
                else:
                    ts, m = self._chunk(ts, xs, ys, perm, jnp.arange(start, start + size),
                                        k_step)
                if not on_chunk(start + size, jax.device_get(m)):
                    return ts, False
            return ts, True
        return self._stream_epoch(ts, data, np.asarray(perm), steps, k_step, steps_per_call,
                                  on_chunk)

    def _stream_epoch(self, ts, data, perm, steps, key, steps_per_call, on_chunk):
        xs, ys = data
        every = chunk_size(steps, steps_per_call)
        q: queue.Queue = queue.Queue(maxsize=3)

        def produce():
            for s in range(steps):
                idx = np.sort(perm[s * self.batch:(s + 1) * self.batch])
                q.put(self._put_batch(xs[idx], ys[idx]))
            q.put(None)

        threading.Thread(target=produce, daemon=True).start()
        acc = None
        for s in range(steps):
            x, y = q.get()
            ts, m = self._step(ts, x, y, key)
            acc = m if acc is None else jax.tree.map(jnp.add, acc, m)
            if (s + 1) % every == 0:
                if not on_chunk(s + 1, jax.device_get(acc)):
                    return ts, False
                acc = None
        return ts, True

    def _put_batch(self, x, y):
        if jax.process_count() > 1:
            return (jax.make_array_from_process_local_data(self.shard, x),
                    jax.make_array_from_process_local_data(self.shard, y))
        return jax.device_put(x, self.shard), jax.device_put(y, self.shard)

    def evaluate(self, params, stats, eval_data) -> dict:
        if self.loop_in_python:
            xs, ys, ms = eval_data
            m = None
            for i in range(xs.shape[0]):
                mi = self._eval_one(params, stats, xs[i], ys[i], ms[i])
                m = mi if m is None else jax.tree.map(jnp.add, m, mi)
        else:
            m = self._eval(params, stats, *eval_data)
        m = jax.device_get(m)
        n = max(int(m["count"]), 1)
        return dict(loss=float(m["loss"]) / n, accuracy=float(m["correct"]) / n)
