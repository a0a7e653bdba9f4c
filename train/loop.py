"""Epoch runners: the whole data set in device memory with the epoch as jitted scans, or
streaming batches from the host with prefetch. Data parallel over a 1-D ``data`` mesh."""

from __future__ import annotations

import queue
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fsjax import ops


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


def chunk_size(steps: int, requested: int, backend: str | None = None) -> int:
    """Training steps per jitted call: the largest divisor of ``steps`` not above
    ``requested``; ``requested=0`` (auto) is 1 on the CPU and about 10 calls per epoch
    elsewhere (see :class:`Runner`)."""
    if not requested:
        requested = 1 if (backend or jax.default_backend()) == "cpu" else max(1, steps // 10)
    target = min(max(requested, 1), steps)
    return max(d for d in range(1, target + 1) if steps % d == 0)


class Sync(NamedTuple):
    """What :meth:`Runner.epoch` yields: the train state after ``done`` steps of the epoch, the
    metrics summed since the previous sync (None right after the first chunk's dispatch) and
    whether a mid-epoch checkpoint is due."""

    ts: dict
    done: int
    metrics: dict | None
    save: bool


class Runner:
    """Compiles and runs training chunks and evaluation for one model/optimizer setup.

    One epoch loop for every backend and for both data placements: a Python loop over jitted
    *chunks*, each a ``lax.scan`` over ``chunk_size`` training steps. The only differences:

    - ``unroll`` (default: on the CPU): XLA:CPU runs a convolution inside a while loop
      50-100x slower than at top level (jax-ml/jax#12868), so there the chunk's steps are a
      Python loop traced into one program (and the auto chunk is one step); elsewhere it is a
      ``lax.scan``. ``lax.scan(unroll=True)`` is not enough: jax 0.10 still emits a while
      loop (of one iteration) around the unrolled body, and the ResNet-20 step ran 35x
      slower inside it (21 s instead of 0.62 s on the 2-core CPU).
    - where a step's batch comes from: on-device data is gathered inside the chunk by the
      epoch's permutation; streamed data arrives as ``(chunk, batch, ...)`` arrays assembled
      on the host (each process puts only its rows of the global batch), either from host
      arrays or from a :class:`Feed` of batches read from disk (:mod:`fsjax.data.stream`).
      The time the device loop waits for a streamed chunk is counted in ``input_wait_s``.
    - an epoch can start at a chunk boundary ``first_step`` (a resume mid-epoch).
    - on the CPU both programs are compiled with ``fsjax.ops.compiler_options`` (XLA's own
      kernels instead of YNNPACK's: ~20% per ResNet step, docs/performance.md).

    Metrics are summed on the device and fetched about 10 times per epoch (:meth:`epoch`).
    Evaluation is a Python loop of one jitted call per evaluation batch on every backend;
    evaluation outputs whose key starts with ``_`` (a detector's boxes) are gathered per batch
    instead of summed and handed to ``eval_finish(gathered) -> dict`` (e.g. the mAP), whose
    entries join (or replace) the evaluation's.
    """

    def __init__(self, step_fn, eval_fn, mesh: Mesh, batch: int, eval_batch: int,
                 on_device: bool, unroll: bool | None = None, eval_finish=None,
                 tta_eval_fn=None):
        self.mesh, self.batch, self.eval_batch = mesh, batch, eval_batch
        self.eval_finish = eval_finish
        self.on_device = on_device
        self.input_wait_s = 0.0
        self.unroll = jax.default_backend() == "cpu" if unroll is None else bool(unroll)
        self.repl = NamedSharding(mesh, P())
        self.shard = NamedSharding(mesh, P("data"))
        self.shard_chunk = NamedSharding(mesh, P(None, "data"))
        constrain = lambda x: jax.lax.with_sharding_constraint(x, self.shard)

        def fetch(data, i):
            if on_device:
                xs, ys, perm = data
                idx = jax.lax.dynamic_slice(perm, (i * batch,), (batch,))
                return xs[idx], ys[idx]
            xs, ys = data
            return xs[i], ys[i]

        def chunk(ts, data, steps, key):
            def body(ts, i):
                x, y = fetch(data, i)
                return step_fn(ts, constrain(x), constrain(y),
                               jax.random.fold_in(key, ts["step"]))
            if self.unroll:  # a Python loop: lax.scan(unroll=True) still leaves a while loop
                ms = []
                for j in range(steps.shape[0]):
                    ts, m = body(ts, steps[j])
                    ms.append(m)
                ms = jax.tree.map(lambda *a: jnp.stack(a), *ms)
            else:
                ts, ms = jax.lax.scan(body, ts, steps)
            return ts, jax.tree.map(jnp.sum, ms)

        opts = ops.compiler_options(mesh.devices.flat[0].platform)
        self._chunk = jax.jit(chunk, donate_argnums=(0,), compiler_options=opts)
        def jit_eval(fn):
            return jax.jit(lambda p, s, xs, ys, ms, i: fn(
                p, s, constrain(xs[i]), constrain(ys[i]), constrain(ms[i])),
                compiler_options=opts)

        self._eval = jit_eval(eval_fn)
        self._eval_tta = jit_eval(tta_eval_fn) if tta_eval_fn is not None else None

    @property
    def has_tta(self) -> bool:
        """Whether :meth:`evaluate` can run the test-time augmented step."""
        return self._eval_tta is not None

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
        labels = np.concatenate([labels, np.zeros((pad, *labels.shape[1:]), labels.dtype)])
        rows = np.arange(nb * b).reshape(nb, b)
        return [self._put_rows(a, rows) for a in (images, labels, mask)]

    def _put_rows(self, a, rows):
        """``a[rows]`` for ``rows`` of shape ``(k, global batch)`` as a device array whose axis
        1 is split over the devices; in a multi-process run each process reads and transfers
        only its own columns of ``rows``."""
        if jax.process_count() == 1:
            return jax.device_put(a[rows], self.shard_chunk)
        n, p, i = rows.shape[1], jax.process_count(), jax.process_index()
        local = a[rows[:, i * n // p:(i + 1) * n // p]]
        return jax.make_array_from_process_local_data(
            self.shard_chunk, local, (*rows.shape, *a.shape[1:]))

    # --- running ---------------------------------------------------------------------------
    def epoch(self, ts, data, n_train: int, seed: int, epoch: int, steps_per_call: int,
              first_step: int = 0, save_every: int = 0):
        """Run one epoch from step ``first_step`` (a multiple of the chunk size), yielding
        :class:`Sync` tuples ``(ts, done, metrics, save)``: once right after the first chunk
        is dispatched with ``metrics`` None (the device computes while the caller does host
        work, e.g. waits for the previous checkpoint), then about 10 times per epoch and at
        every multiple of ``save_every`` steps (rounded to the chunk size) with the metrics
        summed on the device since the previous sync, fetched to the host; ``save`` is True at
        a multiple of ``save_every`` inside the epoch (a mid-epoch checkpoint is due). A
        caller that stops iterating stops the epoch there."""
        steps = n_train // self.batch
        k_perm, k_step = epoch_keys(seed, epoch)
        size = chunk_size(steps, steps_per_call)
        if first_step % size:
            raise ValueError(f"an epoch can start only at a chunk boundary: step {first_step} "
                             f"is not a multiple of the {size} steps per call")
        every = max(size, max(1, steps // 10) // size * size)  # host syncs per epoch: ~10
        save_every = max(size, save_every // size * size) if save_every else 0
        if isinstance(data, Feed):
            chunks = self._feed(data, steps, size, first_step)
        else:
            perm = jax.random.permutation(k_perm, n_train)[: steps * self.batch].astype(
                jnp.int32)
            if self.on_device:
                xs, ys = data
                perm = jax.device_put(perm, self.repl)
                chunks = (((xs, ys, perm), start) for start in range(first_step, steps, size))
            else:
                chunks = self._stream(data, np.asarray(perm), steps, size, first_step)
        acc = None
        for batches, start in chunks:
            ts, m = self._chunk(ts, batches, jnp.arange(start, start + size), k_step)
            acc = m if acc is None else jax.tree.map(jnp.add, acc, m)
            done = start + size
            if start == first_step:
                yield Sync(ts, done, None, False)
            save = bool(save_every) and done % save_every == 0
            if done % every == 0 or done == steps or save:
                yield Sync(ts, done, jax.device_get(acc), save and done < steps)
                acc = None

    def train_epoch(self, ts, data, n_train: int, seed: int, epoch: int,
                    steps_per_call: int = 0):
        """The whole epoch (benchmarks, tests): ``(ts, [(steps done, metrics summed since the
        previous entry), ...])``."""
        syncs = []
        for s in self.epoch(ts, data, n_train, seed, epoch, steps_per_call):
            ts = s.ts  # the last sync is at the epoch's end
            if s.metrics is not None:
                syncs.append((s.done, s.metrics))
        return ts, syncs

    def _stream(self, data, perm, steps, size, first=0):
        """``((xs, ys), start)`` per chunk, assembled on the host in a background thread
        (prefetch 2 chunks); the indices of chunk step ``i`` are the same rows of the epoch's
        permutation as on-device training uses, in the same order."""
        xs, ys = data
        b = self.batch
        q: queue.Queue = queue.Queue(maxsize=2)

        def produce():
            try:
                for start in range(first, steps, size):
                    rows = perm[start * b:(start + size) * b].reshape(size, b)
                    q.put(((self._put_rows(xs, rows), self._put_rows(ys, rows)), start))
            except BaseException as e:  # surfaces in the training thread
                q.put(e)
            q.put(None)

        return self._consume(produce, q)

    def _consume(self, produce, q):
        """Run ``produce`` in a thread; yield what it queues, timing the waits."""
        threading.Thread(target=produce, daemon=True).start()
        while True:
            t0 = time.perf_counter()
            item = q.get()
            self.input_wait_s += time.perf_counter() - t0
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _put_local(self, local: np.ndarray):
        """This process's ``(k, local batch, ...)`` rows -> a global ``(k, batch, ...)`` array
        split over the devices on axis 1."""
        if jax.process_count() == 1:
            return jax.device_put(local, self.shard_chunk)
        shape = (local.shape[0], local.shape[1] * jax.process_count(), *local.shape[2:])
        return jax.make_array_from_process_local_data(self.shard_chunk, local, shape)

    def _feed(self, feed, steps, size, first):
        """``((xs, ys), start)`` per chunk from the feed's batches (prefetch 2 chunks)."""
        q: queue.Queue = queue.Queue(maxsize=2)

        def produce():
            try:
                for start in range(first, steps, size):
                    local = [feed.next() for _ in range(size)]
                    xs = np.stack([b["image"] for b in local])
                    ys = np.stack([b["label"] for b in local])
                    q.put(((self._put_local(xs), self._put_local(ys)), start))
            except BaseException as e:  # surfaces in the training thread
                q.put(e)
            q.put(None)

        return self._consume(produce, q)

    def evaluate(self, params, stats, eval_data, tta: bool = False) -> dict:
        """Metrics over the test set: ``eval_data`` from :meth:`put_eval`, or a callable
        returning an iterator of this process's batches ``dict(image, label, mask)``;
        ``tta``: with the test-time augmented evaluation step (``tta_eval_fn``)."""
        evaluate = self._eval_tta if tta else self._eval
        if callable(eval_data):
            def batches():
                for b in eval_data():
                    yield [self._put_local(b[k][None]) for k in ("image", "label", "mask")]
            items = ((xs, ys, ms, 0) for xs, ys, ms in batches())
        else:
            xs, ys, ms = eval_data
            items = ((xs, ys, ms, i) for i in range(xs.shape[0]))
        m, gathered = None, {}
        for xs, ys, ms, i in items:
            mi = evaluate(params, stats, xs, ys, ms, i)
            for k in [k for k in mi if k.startswith("_")]:
                gathered.setdefault(k, []).append(np.asarray(jax.device_get(mi.pop(k))))
            m = mi if m is None else jax.tree.map(jnp.add, m, mi)
        m = jax.device_get(m)
        n = max(int(m["count"]), 1)
        out = dict(loss=float(m["loss"]) / n, accuracy=float(m["correct"]) / n)
        if self.eval_finish is not None:
            out.update(self.eval_finish(gathered))
        return out


class Feed:
    """Training batches read from disk for the whole run: ``next()`` is this process's next
    batch ``dict(image, label, skipped)``; ``skipped`` counts the corrupt files replaced so
    far. (Its state is the training step it started from: the batches are a pure function
    of it, :mod:`fsjax.data.stream`.)"""

    def __init__(self, batches):
        self._it = iter(batches)
        self.skipped = 0

    def next(self) -> dict:
        b = next(self._it)
        self.skipped += int(np.sum(b.get("skipped", 0)))
        return b
