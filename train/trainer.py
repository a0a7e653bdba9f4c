"""The training run: config -> data -> model -> epochs with checkpoints -> results."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import signal
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fsjax import export, kinds, models, quant, report
from train import arch, configlib, health
from train.ckpt import RunCheckpoints, step_dirs, steps_text
from train.loop import Feed, Runner, check_batch, make_mesh
from train.model_fn import ModelFn, make_train_step, task_eval_step
from train.optim import make_optimizer, param_labels
from train.progress import MetricsLog, Progress
from train.results import plot_curves, results_table, write_results
from train.workdir import Workdir


def compute_dtype(c) -> jnp.dtype:
    if c.compute_dtype == "auto":
        return jnp.dtype(jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32)
    return jnp.dtype(c.compute_dtype)


def model_meta(c, num_classes: int) -> dict:
    conv = c.conv.to_dict()
    model_kw = {k: v for k, v in c.model_kw.to_dict().items() if v is not None}
    return dict(model=c.model, arch=models.arch_name(c.model, model_kw), model_kw=model_kw,
                conv=conv, num_classes=num_classes)


def build_model(c, num_classes: int, in_channels: int, dtype=None, layers=None,
                image_size: int | None = None):
    meta = model_meta(c, num_classes)
    meta["model_kw"] = dict(meta["model_kw"], in_channels=in_channels)
    if c.model == "ssd" and image_size and "image_size" not in meta["model_kw"]:
        meta["model_kw"]["image_size"] = int(image_size)  # the detector's boxes fit the data
    if layers:
        meta["layers"] = layers
    return export.build(meta, dtype), meta


def _init_from_dense(model, workdir: str):
    """Start from a trained dense run: BN, FC and any same-shaped parameters are copied, conv
    kernels are projected (each kind's least-squares ``load_dense``: FS/DFS ``fs_project``,
    KS/WKS the group mean)."""
    from train.eval import restore

    dense, _ = restore(workdir, "best")
    export.copy_matching(model, dense)
    src_layers = dict(export.conv_layers(dense))
    for path, layer in export.conv_layers(model):
        layer.load_dense(src_layers[path].dense_kernel())
    return model


class _Stop:
    """SIGINT/SIGTERM set a flag; the loop stops at the next chunk, keeping the last
    checkpoint (at most the current epoch is lost)."""

    def __init__(self):
        self.signal = None
        self.old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self.old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)


@dataclasses.dataclass
class _Run:
    """What stays fixed during a run: its config, data, devices, checkpoints and outputs."""

    c: ml_collections.ConfigDict
    workdir: str
    ds: Any
    dtype: Any
    mesh: Any
    n_train: int
    ckpts: RunCheckpoints
    config_name: str = ""
    param_tf: Any = None  # quantization-aware training's fake quantization, or None
    train_data: Any = None
    eval_data: Any = None
    log: Any = None  # MetricsLog
    bar: Any = None  # Progress

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch."""
        return self.n_train // self.c.batch_size


@dataclasses.dataclass
class Phase:
    """The objects a training phase runs with: the model, its metadata, the model function,
    the optimizer, its lr schedule and the compiled runner. The DFS freeze ends one phase and
    starts the next (:func:`_freeze`), carrying the train state over."""

    model: Any
    meta: dict
    fn: ModelFn
    tx: Any
    lr_fn: Any
    runner: Runner


@dataclasses.dataclass
class Position:
    """Where a run stands: the epoch to train next (0-based), the step inside it to start
    from, and that epoch's metric sums so far (the last two from a mid-epoch checkpoint). A
    checkpoint's meta holds it with the train state; the data position is the step."""

    epoch: int = 0
    step: int = 0
    acc: dict | None = None


def run(c: ml_collections.ConfigDict, workdir: str, stop_after_epochs: int | None = None,
        config_name: str = "") -> dict:
    """Train (or resume) the run described by ``c`` in ``workdir``; returns the results dict.

    ``stop_after_epochs`` stops the loop early (tests simulate an interruption with it);
    ``config_name`` (e.g. ``configs/cifar10/models.py:resnet56,dense``) labels the results.
    """
    t_start = time.perf_counter()
    c = arch.apply(c)
    configlib.validate(c)
    mesh = make_mesh()
    check_batch(c.batch_size, mesh)
    check_batch(c.eval_batch_size, mesh, "eval_batch_size")
    wd = Workdir(workdir)
    ckpts = None
    try:
        if jax.process_index() == 0:  # the other processes of a multi-process run share it
            wd.lock()
        config = json.loads(c.to_json_best_effort())
        changed = wd.check_config(config, json.loads(configlib.base().to_json_best_effort()))
        ds = configlib.load_data(c)
        train_xy = _train_arrays(c, ds)
        n_train = _sizes(ds, train_xy[1])[0]
        if n_train < c.batch_size:
            raise ValueError(f"config.batch_size {c.batch_size} exceeds the {n_train} training "
                             f"examples")
        dtype = compute_dtype(c)
        model, meta = build_model(c, ds.num_classes, ds.image_shape[-1], dtype,
                                  image_size=ds.image_shape[0])
        if ckpt_absent(workdir):
            _initialise(c, ds, model)
        ckpts = RunCheckpoints(workdir, c.keep_checkpoints, c.keep_best,
                               c.checkpoint_every_steps)
        r = _Run(c, workdir, ds, dtype, mesh, n_train, ckpts, config_name)
        phase, ts, pos = _start(r, model, meta)
        if jax.process_index() == 0:  # recorded once the run is known to start
            wd.record_config(config, changed)
        end = c.num_epochs if stop_after_epochs is None else min(
            c.num_epochs, pos.epoch + stop_after_epochs)
        ts = _open_outputs(r, phase, ts, pos, train_xy, end)
        phase, ts = train_and_evaluate(r, phase, ts, pos, end)
        return _results(r, phase, ts, t_start)
    except BaseException:
        if ckpts is not None:
            ckpts.close(quiet=True)  # the first error is the one to report
            ckpts = None
        if jax.process_index() == 0:
            wd.remove_if_unused()
        raise
    finally:
        if ckpts is not None:
            ckpts.close()
        wd.unlock()


def train_and_evaluate(r: _Run, phase: Phase, ts, pos: Position, end_epoch: int):
    """The epochs from ``pos`` to ``end_epoch``: train (a mid-epoch checkpoint every
    ``config.checkpoint_every_steps``), evaluate, log, save. Returns the last phase and train
    state. SIGINT/SIGTERM stop it at the next sync, keeping the last checkpoint."""
    c, ckpts, bar = r.c, r.ckpts, r.bar
    with _Stop() as stop:
        for epoch in range(pos.epoch, end_epoch):
            if 0 <= c.locations.freeze_epoch <= epoch and _has_dfs(phase.model):
                phase, ts = _freeze(r, phase, ts)  # DFS -> FS layers: the next phase
            bar.start_epoch(epoch)
            first = pos.step if epoch == pos.epoch else 0
            acc = {"loss": 0.0, "correct": 0, "count": 0}
            if first and pos.acc:
                acc.update(pos.acc)
            wait0, t_train = phase.runner.input_wait_s, time.perf_counter()
            chunks = phase.runner.epoch(ts, r.train_data, r.n_train, c.seed, epoch,
                                        c.steps_per_call, first, c.checkpoint_every_steps)
            for ts, done, m, save in chunks:
                if m is None:  # the first chunk runs: meanwhile the last save must land
                    ckpts.wait()
                    continue
                acc = {k: acc[k] + m[k] for k in acc}
                loss = acc["loss"] / max(acc["count"], 1)
                if not math.isfinite(loss):
                    raise FloatingPointError(ckpts.diverged(
                        f"the training loss became {loss} in epoch {epoch + 1} (step {done})"))
                bar.update(done, loss)
                if stop.signal is not None:
                    _stopped(stop.signal, epoch, ckpts)
                if save:
                    _save(r, phase, ts, Position(epoch, done, acc))
            t_train = time.perf_counter() - t_train
            rec = _epoch_record(r, phase, ts, epoch, acc, first,
                                (phase.runner.input_wait_s - wait0) / max(t_train, 1e-9))
            _check_finite(ts, rec["test_loss"], epoch, ckpts)
            r.log.write(rec)
            _save(r, phase, ts, Position(epoch + 1), rec)
    ckpts.wait()
    return phase, ts


def _initialise(c, ds, model) -> None:
    """A new run's model before training: data-dependent initialisers (e.g. airbench's
    whitening conv), then ``config.init_from`` (a dense run, projected) and
    ``config.init_weights`` (an export)."""
    if hasattr(model, "init_from_data") and c.get("data_init_examples", 5000) > 0:
        model.init_from_data(_init_images(c, ds))
    if c.init_from:
        _init_from_dense(model, c.init_from)
    if c.init_weights:
        src, _ = export.load(c.init_weights)
        export.copy_matching(model, src)


def _start(r: _Run, model, meta) -> tuple[Phase, dict, Position]:
    """The first phase, its train state and position: fresh, or restored from the newest
    checkpoint (an epoch's, or a later mid-epoch one; ``config.resume_step`` picks an
    epoch's, and the later epoch checkpoints are set aside)."""
    c, ckpts, ds = r.c, r.ckpts, r.ds
    src, step, saved, latest = ckpts.resume_point(c.resume_step)
    pos = Position()
    if saved is not None:
        if saved.get("layers"):  # e.g. DFS layers frozen into FS layers
            model, meta = build_model(c, ds.num_classes, ds.image_shape[-1], r.dtype,
                                      saved["layers"], image_size=ds.image_shape[0])
        pos = Position(saved["epoch"], saved.get("step_in_epoch", 0), saved.get("acc"))
    if c.num_epochs < pos.epoch:
        raise ValueError(f"config.num_epochs = {c.num_epochs} is below the {pos.epoch} epochs "
                         f"this run has trained (checkpoint step {latest}); use "
                         f"--config.resume_step to go back to an earlier step, or another "
                         f"--workdir")
    if c.quant.bits:
        qcfg = quant.QuantConfig.from_config(c.quant)
        entries = quant.plan(model, qcfg)
        r.param_tf = lambda p: quant.fake_quant_params(p, entries, qcfg.method)
    phase, ts = _phase(r, model, meta)
    if saved is not None:
        target = host_state(ts)
        ts = src.checked(step, lambda: src.restore_finite(step, target), target)
        moved = ckpts.epochs.set_aside_after(latest) if latest is not None else []
        if moved:
            print(f"resuming from step {latest}: the later {steps_text(moved)} were moved to "
                  f"{ckpts.aside_dir}", flush=True)
    return phase, ts, pos


def _open_outputs(r: _Run, phase: Phase, ts, pos: Position, train_xy, end_epoch: int):
    """The data on its way to the device, the metrics log and the progress bar (with the
    header); returns the train state on the device."""
    c, ds, runner = r.c, r.ds, phase.runner
    ts = jax.device_put(ts, runner.repl)
    if getattr(ds, "streaming", False):  # read from disk: the data state is the step
        start = int(jax.device_get(ts["step"]))
        r.train_data = Feed(ds.train_batches(c.seed, c.batch_size, end_epoch, start))
        r.eval_data = lambda: ds.eval_batches(c.eval_batch_size)
    else:
        r.train_data = runner.put_replicated(*train_xy) if runner.on_device else train_xy
        r.eval_data = runner.put_eval(ds.test_images, ds.test_labels)
    primary = jax.process_index() == 0  # the one process that writes files and prints
    r.log = MetricsLog(r.workdir, pos.epoch, c.tensorboard, writer=primary, quiet=c.quiet)
    r.bar = Progress(c.num_epochs, r.steps, c.batch_size, c.progress,
                     quiet=c.quiet or not primary, every_s=c.log_every_s)
    if not r.bar.quiet:  # the header traces the model for its counts: only when shown
        r.bar.say(_header(r, phase))
    if pos.step:
        r.bar.say(f"resumed from {r.ckpts.mid.dir} at step {pos.step} of epoch "
                  f"{pos.epoch + 1}")
    elif pos.epoch:
        r.bar.say(f"resumed from {r.ckpts.dir} at epoch {pos.epoch}")
    return ts


def _epoch_record(r: _Run, phase: Phase, ts, epoch: int, acc: dict, first: int,
                  input_wait: float) -> dict:
    """Evaluate after ``epoch`` (0-based; the final one with TTA too) and close the progress
    bar's epoch: the metrics log's record. ``input_wait``: the fraction of the training time
    the loop waited for streamed input."""
    c, runner = r.c, phase.runner
    ev = runner.evaluate(ts["params"], ts["stats"], r.eval_data)
    step = int(ts["step"])
    rec = dict(epoch=epoch + 1, step=step, lr=float(phase.lr_fn(step - 1)),
               train_loss=acc["loss"] / acc["count"],
               train_accuracy=acc["correct"] / acc["count"],
               test_loss=ev["loss"], test_accuracy=ev["accuracy"])
    rec.update({f"test_{k}": v for k, v in ev.items() if k not in ("loss", "accuracy")})
    if c.nas.search:  # the architecture weights of this epoch (train.nas plots them)
        rec["arch"] = _arch_weights(phase.fn, ts)
    if runner.has_tta and epoch + 1 == c.num_epochs:  # the final one
        rec["test_accuracy_tta"] = runner.evaluate(ts["params"], ts["stats"], r.eval_data,
                                                   tta=True)["accuracy"]
    el = r.bar.end_epoch(
        f"loss {rec['train_loss']:.4f} test mAP@0.5 {100 * ev['accuracy']:.2f}%"
        if r.ds.task == "detect" else f"loss {rec['train_loss']:.4f} train "
        f"{100 * rec['train_accuracy']:.2f}% test {100 * ev['accuracy']:.2f}%")
    rec["epoch_s"] = el
    rec["images_per_s"] = (r.steps - first) * c.batch_size / el
    if not runner.on_device:
        rec["input_wait_fraction"] = input_wait
    if isinstance(r.train_data, Feed) and r.train_data.skipped:
        rec["skipped_files"] = r.train_data.skipped
    return rec


def _stopped(signum: int, epoch: int, ckpts) -> None:
    """After SIGINT/SIGTERM: wait for the save in flight, say where the last checkpoint is,
    exit with 128 + the signal."""
    ckpts.wait()
    kept = ckpts.all_steps()
    where = (f"the last checkpoint (step {max(kept)}) is in {ckpts.dir}. Re-run the same "
             f"command to resume." if kept else
             "no checkpoint had been written yet: re-running the same command starts afresh.")
    print(f"\nstopped by signal {signum} during epoch {epoch + 1}; {where}", flush=True)
    raise SystemExit(128 + int(signum))


def _arch_weights(fn, ts) -> dict:
    """A DARTS supernet's softmax op weights and edge weights, as nested lists."""
    m = fn.module(jax.device_get(ts["params"]), jax.device_get(ts["stats"]))
    if not hasattr(m, "arch_weights"):
        return {}
    return {k: np.round(v, 5).tolist() for k, v in m.arch_weights().items()}


def _init_images(c, ds) -> np.ndarray:
    """``config.data_init_examples`` training images (a seeded sample), normalised as the
    model's input: what data-dependent initialisers (``model.init_from_data``) see."""
    from fsjax.data.augment import normalize

    n = c.get("data_init_examples", 5000)
    if getattr(ds, "streaming", False):
        from fsjax.data.stream import sample_images

        x = sample_images(ds, n, c.seed)
    else:
        rows = np.random.default_rng(c.seed).choice(len(ds.train_labels),
                                                    min(n, len(ds.train_labels)), replace=False)
        x = ds.train_images[np.sort(rows)]
    return np.asarray(normalize(jnp.asarray(x), ds.mean, ds.std))


def _sizes(ds, train_labels=None) -> tuple[int, int]:
    """(training examples, test examples) of an in-memory or a streamed data set."""
    if getattr(ds, "streaming", False):
        return ds.train_size, ds.test_size
    return len(ds.train_labels if train_labels is None else train_labels), len(ds.test_labels)


def _save(r: _Run, phase: Phase, ts, pos: Position, rec: dict | None = None) -> None:
    """A checkpoint of the whole train state at ``pos``: after an epoch (``rec``: its
    metrics), or inside one (``rec`` None: the epoch's metric sums so far and the data step
    go with it; the state is checked finite first)."""
    host = host_state(jax.device_get(ts))
    if rec is not None:
        m = _checkpoint_meta(r, phase, host["params"], epoch=pos.epoch, metrics=dict(
            accuracy=rec["test_accuracy"], loss=rec["test_loss"]))
        r.ckpts.save(pos.epoch, host, m, dict(accuracy=rec["test_accuracy"]))
        return
    bad = health.nonfinite_arrays(host)
    if bad:
        raise FloatingPointError(r.ckpts.diverged(
            f"non-finite values at step {pos.step} of epoch {pos.epoch + 1} in "
            f"{health.describe(bad)}"))
    m = _checkpoint_meta(r, phase, host["params"], epoch=pos.epoch, step_in_epoch=pos.step,
                         acc={k: float(v) for k, v in pos.acc.items()},
                         data_step=int(host["step"]))
    r.ckpts.save(int(host["step"]), host, m, mid=True)


def _check_finite(ts, test_loss: float, epoch: int, ckpts) -> None:
    """Before a save: parameters, DFS locations, batch statistics, optimizer state (one fused
    on-device reduction) and the evaluation loss must be finite."""
    bad: dict = health.nonfinite_arrays(ts)
    if not math.isfinite(test_loss):
        bad["evaluation loss"] = f"{test_loss}"
    if bad:
        raise FloatingPointError(ckpts.diverged(
            f"non-finite values after epoch {epoch + 1} in {health.describe(bad)}"))


def _train_arrays(c, ds):
    """Training images/labels; for a DARTS search, pairs ``(N//2, 2, ...)`` of the two halves
    of a seeded shuffle of the training set (weights on [:, 0], architecture on [:, 1]);
    ``(None, None)`` for a streamed data set (read by the runner's feed)."""
    if getattr(ds, "streaming", False):
        if c.nas.search:
            raise ValueError(f"config.nas.search needs an in-memory data set; {ds.name} is "
                             f"streamed from disk (config.stream.enabled = 'off' loads TFDS "
                             f"sets into memory)")
        return None, None
    if not c.nas.search:
        if c.augment.flip and c.augment.get("alternate_flip", False):  # a seeded half, once
            half = np.random.default_rng([c.seed, 1]).random(len(ds.train_labels)) < 0.5
            return (np.where(half[:, None, None, None], ds.train_images[:, :, ::-1],
                             ds.train_images), ds.train_labels)
        return ds.train_images, ds.train_labels
    perm = np.random.default_rng(c.seed).permutation(len(ds.train_labels))
    half = len(perm) // 2
    a, b = np.sort(perm[:half]), np.sort(perm[half:2 * half])
    return (np.stack([ds.train_images[a], ds.train_images[b]], 1),
            np.stack([ds.train_labels[a], ds.train_labels[b]], 1))


def ckpt_absent(workdir: str) -> bool:
    return not step_dirs(os.path.join(workdir, "checkpoints"))


def _has_dfs(model) -> bool:
    return any(n.spec.conv_kind.learns_locations for _, n in export.conv_layers(model))


def setup_state(model, c, steps):
    """``(model function, optax transform, lr schedule, initial train state)`` of ``model``
    under config ``c`` for ``steps`` optimizer steps."""
    fn = ModelFn.create(model)
    tx, lr_fn = make_optimizer(c, model, steps)
    params, stats = ModelFn.initial(model)
    ts = dict(params=params, stats=stats, opt=tx.init(params), step=jnp.zeros((), jnp.int32))
    if c.get("lookahead") is not None and c.lookahead.every:  # its slow copy
        ts["slow"] = jax.tree.map(jnp.copy, dict(params=params, stats=stats))
    return fn, tx, lr_fn, ts


def host_state(ts):
    """The train state with every array on the host (NumPy), as checkpoints store it."""
    return jax.tree.map(lambda x: np.asarray(x) if not isinstance(x, np.ndarray) else x, ts)


def _on_device(c, ds) -> bool:
    if getattr(ds, "streaming", False):
        return False
    if c.on_device != "auto":
        return bool(c.on_device)
    if jax.process_count() > 1:
        return False
    try:
        stats = jax.devices()[0].memory_stats() or {}
        limit = stats.get("bytes_limit", 0)
    except Exception:  # backends without memory stats (CPU)
        limit = 0
    return ds.nbytes() < (0.25 * limit if limit else 8 << 30)


def _phase(r: _Run, model, meta) -> tuple[Phase, dict]:
    """A phase for ``model`` and its fresh train state."""
    fn, tx, lr_fn, ts = setup_state(model, r.c, r.steps)
    return Phase(model, meta, fn, tx, lr_fn, _runner(r, model, fn, tx)), ts


def _freeze(r: _Run, phase: Phase, ts) -> tuple[Phase, dict]:
    """The DFS freeze, a phase change: the locations are rounded to integers (the DFS layers
    become FS layers) and a phase for the frozen model begins; the train state carries over
    (the weights, the optimizer state and lookahead copy by parameter path, the step)."""
    from fsjax.nn import freeze_dfs

    export.load_state(phase.model, jax.device_get(ts["params"]), jax.device_get(ts["stats"]))
    freeze_dfs(phase.model)
    new, fresh = _phase(r, phase.model, dict(phase.meta, layers=export.describe(phase.model)))

    def carry(new, prev):  # the previous state's arrays, by path, where the shapes agree
        old = {jax.tree_util.keystr(p): v for p, v in
               jax.tree_util.tree_flatten_with_path(jax.device_get(prev))[0]}
        return jax.tree_util.tree_map_with_path(
            lambda p, v: old.get(jax.tree_util.keystr(p), v)
            if np.shape(old.get(jax.tree_util.keystr(p), v)) == np.shape(v) else v, new)

    out = dict(fresh, opt=carry(fresh["opt"], ts["opt"]), step=ts["step"])
    if "slow" in out:
        out["slow"] = carry(fresh["slow"], ts["slow"])
    return new, jax.device_put(out, new.runner.repl)


def _runner(r: _Run, model, fn, tx) -> Runner:
    """The epoch runner with the task's steps: classification, or detection (multibox loss,
    mAP@0.5 as the test metric)."""
    c, ds, dtype = r.c, r.ds, r.dtype
    eval_fn, finish = task_eval_step(model, fn, c, ds, ds.mean, ds.std, dtype, r.param_tf)
    tta = c.get("tta", 0)
    tta_fn = task_eval_step(model, fn, c, ds, ds.mean, ds.std, dtype, r.param_tf, tta)[0] \
        if tta and ds.task != "detect" else None
    if ds.task == "detect":
        from train import detect_fn

        if jax.process_count() > 1:
            raise ValueError("detection training runs in one process (its mAP gathers the "
                             "detections on the host); use one process with several devices")
        step = detect_fn.make_train_step(fn, tx, c, ds.mean, ds.std, dtype, model.priors(),
                                         r.param_tf)
    else:
        if getattr(ds, "streaming", False):  # the stream crops and flips on the host
            c = c.copy_and_resolve_references()
            c.augment.crop_padding, c.augment.flip, c.augment.cutout = 0, False, 0
        step = make_train_step(fn, tx, c, ds.mean, ds.std, dtype, r.param_tf,
                               param_labels(model), r.steps)
    return Runner(step, eval_fn, r.mesh, c.batch_size, c.eval_batch_size, _on_device(c, ds),
                  eval_finish=finish, tta_eval_fn=tta_fn)


def _checkpoint_meta(r: _Run, phase: Phase, params, **extra) -> dict:
    """A checkpoint's JSON item: the model's layers with ``params`` loaded (DFS locations
    included), the config, the input, and ``extra``."""
    from fsjax.export import load_state

    c, ds = r.c, r.ds
    load_state(phase.model, params, None)
    m = dict(phase.meta, **extra, layers=export.describe(phase.model),
             config=json.loads(c.to_json_best_effort()), in_channels=ds.image_shape[-1],
             input_shape=list(ds.image_shape), mean=list(ds.mean), std=list(ds.std),
             device=f"{jax.device_count()}x {jax.devices()[0].device_kind}")
    if c.quant.bits:
        m["quant"] = c.quant.to_dict()
    return m


def _conv_label(c) -> str:
    return kinds.get(c.conv.kind).label(c.conv.compression)


def _header(r: _Run, phase: Phase) -> str:
    """What is about to run, before any training."""
    c, ds, meta, steps = r.c, r.ds, phase.meta, r.steps
    _, totals = report.report(phase.model, ds.image_shape)
    n_train, n_test = _sizes(ds)
    data = (f"{ds.name}: {n_train:,} train / {n_test:,} test "
            f"images {'x'.join(map(str, ds.image_shape))}"
            + (f", streamed from disk ({ds.workers} worker processes)"
               if getattr(ds, "streaming", False) else "")
            + (f" - SUBSET: {ds.subset}" if ds.subset else ""))
    rows = [("config", r.config_name or "(config object)"),
            ("model", f"{meta['arch']} ({_conv_label(c)})"),
            ("parameters", f"{totals['stored_params']:,} stored, {totals['dense_params']:,} "
                           f"dense-equivalent ({totals['compression']:.2f}x)"),
            ("data", data),
            ("training", f"{c.num_epochs} epochs x {steps} steps, batch {c.batch_size}, "
                         f"{c.optimizer.name} lr {c.optimizer.lr:g} ({c.schedule.name})"),
            ("devices", f"{jax.device_count()}x {jax.devices()[0].device_kind} "
                        f"({jax.process_count()} process), compute {r.dtype.name}"),
            ("workdir", os.path.abspath(r.workdir))]
    return "\n".join(f"{k:>10}: {v}" for k, v in rows)


def _results(r: _Run, phase: Phase, ts, t_start: float) -> dict:
    """The run's results: written to ``results.json`` with the curves' plot, and printed."""
    from fsjax.export import load_state

    c, workdir, ds, model, bar, records = r.c, r.workdir, r.ds, phase.model, r.bar, r.log.records
    meta, config_name = phase.meta, r.config_name
    load_state(model, jax.device_get(ts["params"]), jax.device_get(ts["stats"]))
    _, totals = report.report(model, ds.image_shape)
    best = max(records, key=lambda rec: rec["test_accuracy"]) if records else {}
    n_train, n_test = _sizes(ds)
    timed = bar.epochs_timed[1:] or bar.epochs_timed  # the first epoch includes compilation
    if timed:
        ips = (n_train // c.batch_size) * c.batch_size / statistics.median(timed)
    else:  # nothing trained in this process (a finished run re-run): the recorded epochs
        logged = [rec["images_per_s"] for rec in records[1:] or records if "images_per_s" in rec]
        ips = statistics.median(logged) if logged else float("nan")
    out = dict(model=meta["arch"], config=config_name or "(config object)",
               config_model=c.model, conv=_conv_label(c), dataset=c.dataset,
               train_examples=n_train, test_examples=n_test,
               subset=ds.subset,
               accuracy=records[-1]["test_accuracy"] if records else float("nan"),
               best_accuracy=best.get("test_accuracy", float("nan")),
               best_epoch=best.get("epoch", 0), epochs=len(records),
               first_epoch_s=bar.epochs_timed[0] if bar.epochs_timed else float("nan"),
               images_per_s=ips, wall_s=time.perf_counter() - t_start,
               peak_host_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               device=f"{jax.device_count()}x {jax.devices()[0].device_kind}",
               compute_dtype=str(compute_dtype(c)), **totals)
    if records and "test_accuracy_tta" in records[-1]:
        out["tta_accuracy"], out["tta"] = records[-1]["test_accuracy_tta"], c.tta
    if ds.task == "detect":
        out["metric"] = f"mAP@0.5 ({c.detection.map_method})"
        out.update({k[5:]: v for k, v in (records[-1] if records else {}).items()
                    if k.startswith(("test_map50", "test_coco"))})
    if jax.process_index():
        return out
    write_results(workdir, out)
    if ds.task == "detect":
        from train.detect_fn import draw_detections

        draw_detections(model, ds, c, os.path.join(workdir, "detections.png"))
    run_name = os.path.basename(os.path.abspath(workdir))
    plot_curves(workdir, records, f"{run_name}: {out['model']} ({out['conv']}), {out['dataset']}",
                detection=ds.task == "detect")
    if not c.quiet:
        print(results_table(out), flush=True)
    return out


__all__ = ["run", "build_model", "compute_dtype"]
