"""The training run: config -> data -> model -> epochs with checkpoints -> results."""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fsjax import export, kinds, models, quant, report
from train import arch, configlib, health
from train.ckpt import Checkpoints, step_dirs, steps_text
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
    ckpts = partial = None
    try:
        if jax.process_index() == 0:  # the other processes of a multi-process run share it
            wd.lock()
        config = json.loads(c.to_json_best_effort())
        changed = wd.check_config(config, json.loads(configlib.base().to_json_best_effort()))
        ds = configlib.load_data(c)
        train_x, train_y = _train_arrays(c, ds)
        n_train = _sizes(ds, train_y)[0]
        steps = n_train // c.batch_size
        if steps == 0:
            raise ValueError(f"config.batch_size {c.batch_size} exceeds the {n_train} training "
                             f"examples")
        dtype = compute_dtype(c)
        model, meta = build_model(c, ds.num_classes, ds.image_shape[-1], dtype,
                                  image_size=ds.image_shape[0])
        if hasattr(model, "init_from_data") and ckpt_absent(workdir):
            model.init_from_data(_init_images(c, ds))  # e.g. airbench's whitening conv
        if c.init_from and ckpt_absent(workdir):
            _init_from_dense(model, c.init_from)
        if c.init_weights and ckpt_absent(workdir):
            src, _ = export.load(c.init_weights)
            export.copy_matching(model, src)
        ckpts = Checkpoints(workdir, c.keep_checkpoints, c.keep_best)
        partial = _open_partial(c, workdir)  # mid-epoch checkpoints, or None

        def record_config():  # once the run is known to start
            if jax.process_index() == 0:
                wd.record_config(config, changed)

        return _train(c, workdir, ckpts, partial, ds, (train_x, train_y), model, meta, dtype,
                      mesh, steps, stop_after_epochs, t_start, config_name, record_config)
    except BaseException:
        for k in (partial, ckpts):
            if k is not None:
                try:
                    k.close()
                except Exception:  # the first error is the one to report
                    pass
        ckpts = partial = None
        if jax.process_index() == 0:
            wd.remove_if_unused()
        raise
    finally:
        for k in (partial, ckpts):
            if k is not None:
                k.close()
        wd.unlock()


def _train(c, workdir, ckpts, partial, ds, train_xy, model, meta, dtype, mesh, steps,
           stop_after_epochs, t_start, config_name, on_start):
    latest = _resume_step(c, ckpts)
    start_epoch, first_step, acc0 = 0, 0, None
    saved = _checked(ckpts, latest, lambda: ckpts.restore_meta(latest)) \
        if latest is not None else None
    mid = _partial_step(c, partial, saved)
    src, src_step = ckpts, latest
    if mid is not None:  # resume inside an epoch
        src, src_step = partial, mid
        saved = _checked(partial, src_step, lambda: partial.restore_meta(src_step))
    if saved is not None:
        if saved.get("layers"):  # e.g. DFS layers frozen into FS layers
            model, meta = build_model(c, ds.num_classes, ds.image_shape[-1], dtype,
                                      saved["layers"], image_size=ds.image_shape[0])
        start_epoch = saved["epoch"]
        first_step, acc0 = saved.get("step_in_epoch", 0), saved.get("acc")
    if c.num_epochs < start_epoch:
        raise ValueError(f"config.num_epochs = {c.num_epochs} is below the {start_epoch} epochs "
                         f"this run has trained (checkpoint step {latest}); use "
                         f"--config.resume_step to go back to an earlier step, or another "
                         f"--workdir")
    fn, tx, lr_fn, ts = setup_state(model, c, steps)
    if saved is not None:
        target = host_state(ts)
        ts = _checked(src, src_step, lambda: _restore_finite(src, src_step, target), target)
        on_start()  # the config is recorded once the run is known to start
        moved = ckpts.set_aside_after(latest) if latest is not None else []
        if moved:
            print(f"resuming from step {latest}: the later {steps_text(moved)} were moved to "
                  f"{ckpts.aside_dir}", flush=True)
    else:
        on_start()
    param_tf = None
    qcfg = quant.QuantConfig.from_config(c.quant) if c.quant.bits else None
    if qcfg:
        entries = quant.plan(model, qcfg)
        param_tf = lambda p: quant.fake_quant_params(p, entries, qcfg.method)

    n_train = _sizes(ds, train_xy[1])[0]
    runner = _runner(model, fn, tx, c, ds, dtype, mesh, param_tf, steps)
    ts = jax.device_put(ts, runner.repl)
    end_epoch = c.num_epochs if stop_after_epochs is None else min(
        c.num_epochs, start_epoch + stop_after_epochs)
    if getattr(ds, "streaming", False):  # read from disk: the data state is the step
        start = int(jax.device_get(ts["step"]))
        train_data = Feed(ds.train_batches(c.seed, c.batch_size, end_epoch, start))
        eval_data = lambda: ds.eval_batches(c.eval_batch_size)
    else:
        train_data = runner.put_replicated(*train_xy) if runner.on_device else train_xy
        eval_data = runner.put_eval(ds.test_images, ds.test_labels)
    primary = jax.process_index() == 0  # the one process that writes files and prints
    log = MetricsLog(workdir, start_epoch, c.tensorboard, writer=primary, quiet=c.quiet)
    bar = Progress(c.num_epochs, steps, c.batch_size, c.progress, quiet=c.quiet or not primary,
                   every_s=c.log_every_s)
    if not bar.quiet:  # the header traces the model for its counts: only when shown
        bar.say(_header(c, config_name, workdir, model, meta, ds, dtype, steps))
    if src is not ckpts:
        bar.say(f"resumed from {partial.dir} at step {first_step} of epoch {start_epoch + 1}")
    elif start_epoch:
        bar.say(f"resumed from {ckpts.dir} at epoch {start_epoch}")

    with _Stop() as stop:
        for epoch in range(start_epoch, end_epoch):
            if 0 <= c.locations.freeze_epoch <= epoch and _has_dfs(model):
                model, fn, tx, ts, runner = _freeze(model, fn, ts, c, steps, ds, dtype, mesh,
                                                    param_tf)
                meta["layers"] = export.describe(model)
            bar.start_epoch(epoch)
            acc = {"loss": 0.0, "correct": 0, "count": 0}
            first = first_step if epoch == start_epoch else 0
            if first and acc0:
                acc.update(acc0)
            wait0, t_train = runner.input_wait_s, time.perf_counter()

            def on_chunk(done, m, acc=acc, epoch=epoch):
                for k in acc:
                    acc[k] += m[k]
                loss = acc["loss"] / max(acc["count"], 1)
                if not math.isfinite(loss):
                    raise FloatingPointError(_diverged(
                        f"the training loss became {loss} in epoch {epoch + 1} (step {done})",
                        ckpts))
                bar.update(done, loss)
                return stop.signal is None

            # the previous epoch's save is awaited once this epoch's first chunk is running:
            # a failed save stops the run before any of this epoch is logged or saved
            def on_save(done, ts, acc=acc, epoch=epoch, model=model, meta=meta):
                _save_partial(partial, ts, meta, c, model, epoch, done, acc, ckpts, ds)

            ts, finished = runner.train_epoch(
                ts, train_data, n_train, c.seed, epoch, c.steps_per_call, on_chunk, ckpts.wait,
                first, c.checkpoint_every_steps, on_save if partial is not None else None)
            t_train = time.perf_counter() - t_train
            if not finished:
                ckpts.wait()
                kept = ckpts.all_steps()
                where = (f"the last checkpoint (step {max(kept)}) is in {ckpts.dir}. Re-run "
                         f"the same command to resume." if kept else
                         "no checkpoint had been written yet: re-running the same command "
                         "starts afresh.")
                print(f"\nstopped by signal {stop.signal} during epoch {epoch + 1}; {where}",
                      flush=True)
                raise SystemExit(128 + int(stop.signal))
            ev = runner.evaluate(ts["params"], ts["stats"], eval_data)
            rec = dict(epoch=epoch + 1, step=int(ts["step"]),
                       lr=float(lr_fn(int(ts["step"]) - 1)),
                       train_loss=acc["loss"] / acc["count"],
                       train_accuracy=acc["correct"] / acc["count"],
                       test_loss=ev["loss"], test_accuracy=ev["accuracy"])
            rec.update({f"test_{k}": v for k, v in ev.items() if k not in ("loss", "accuracy")})
            if c.nas.search:  # the architecture weights of this epoch (train.nas plots them)
                rec["arch"] = _arch_weights(fn, ts)
            if runner.has_tta and epoch + 1 == c.num_epochs:  # the final one
                rec["test_accuracy_tta"] = runner.evaluate(ts["params"], ts["stats"], eval_data,
                                                           tta=True)["accuracy"]
            el = bar.end_epoch(
                f"loss {rec['train_loss']:.4f} test mAP@0.5 {100 * ev['accuracy']:.2f}%"
                if ds.task == "detect" else f"loss {rec['train_loss']:.4f} train "
                f"{100 * rec['train_accuracy']:.2f}% test {100 * ev['accuracy']:.2f}%")
            rec["epoch_s"] = el
            rec["images_per_s"] = (steps - first) * c.batch_size / el
            if not runner.on_device:  # of the training time: the loop's wait for input
                rec["input_wait_fraction"] = (runner.input_wait_s - wait0) / max(t_train, 1e-9)
            if isinstance(train_data, Feed) and train_data.skipped:
                rec["skipped_files"] = train_data.skipped
            _check_finite(ts, ev, epoch, ckpts)
            log.write(rec)
            _save(ckpts, ts, meta, c, model, fn, epoch + 1, rec, ds)
    ckpts.wait()
    if partial is not None:
        partial.wait()
    records = log.records
    return _results(c, workdir, model, fn, ts, ds, records, bar, t_start, meta, config_name)


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


def _open_partial(c, workdir):
    """The mid-epoch checkpoints of ``workdir/checkpoints-partial`` (the last one kept), or
    None unless ``config.checkpoint_every_steps`` is set or some exist."""
    path = os.path.join(workdir, "checkpoints-partial")
    if not c.checkpoint_every_steps and not os.path.isdir(path):
        return None
    return Checkpoints(workdir, 1, False, "checkpoints-partial")


def _partial_step(c, partial, saved):
    """The newest mid-epoch checkpoint's step when it is later than the epoch checkpoint being
    resumed (``saved``: its metadata, or None), else None."""
    last = None if partial is None else partial.latest_step()
    if last is not None and not c.resume_step:
        m = _checked(partial, last, lambda: partial.restore_meta(last))
        if m["epoch"] >= (saved["epoch"] if saved else 0):
            return last
    return None


def _save_partial(partial, ts, meta, c, model, epoch: int, done: int, acc: dict, ckpts, ds):
    """A checkpoint inside epoch ``epoch`` (0-based) after ``done`` of its steps, with the
    epoch's metric sums so far; the data position is the step (fsjax.data.stream)."""
    host = host_state(jax.device_get(ts))
    bad = health.nonfinite_arrays(host)
    if bad:
        raise FloatingPointError(_diverged(
            f"non-finite values at step {done} of epoch {epoch + 1} in {health.describe(bad)}",
            ckpts))
    partial.wait()
    m = _checkpoint_meta(meta, c, model, host["params"], ds, epoch=epoch, step_in_epoch=done,
                         acc={k: float(v) for k, v in acc.items()}, data_step=int(host["step"]))
    partial.save(int(host["step"]), host, m)


def _resume_step(c, ckpts):
    steps = ckpts.all_steps()
    if not c.resume_step:
        return max(steps) if steps else None
    if c.resume_step not in steps:
        raise ValueError(f"config.resume_step = {c.resume_step} is not a checkpoint in "
                         f"{ckpts.dir}; valid: " + (", ".join(map(str, sorted(steps)))
                                                    if steps else "none (no checkpoint yet)"))
    return c.resume_step


def _restore_finite(ckpts, step: int, target):
    state, _ = ckpts.restore(step, target)
    bad = health.nonfinite_arrays(state)
    if bad:
        raise RuntimeError(f"checkpoint step {step} in {ckpts.dir} holds non-finite values in "
                           f"{health.describe(bad)} (written by an older fsjax or by hand)")
    return state


def _checked(ckpts, step: int, load, target=None):
    """``load()``, or one message naming the unusable step, the steps that do restore (and
    are finite, when ``target`` is given) and the command that resumes from one."""
    try:
        return load()
    except RuntimeError as e:
        reason = str(e)
    good = []
    for s in sorted((s for s in ckpts.all_steps() if s != step), reverse=True):
        try:
            ckpts.restore_meta(s)
            if target is not None:
                _restore_finite(ckpts, s, target)
            good.append(s)
        except Exception:  # probing: any failure means "does not restore"
            continue
    hint = (f"steps that restore: {', '.join(map(str, good))}; resume from one with "
            f"--config.resume_step={good[0]} (the later steps are moved aside, not deleted)"
            if good else "no other step restores; move the directory away to start afresh")
    raise RuntimeError(f"{reason}. It was left untouched; {hint}.")


def _diverged(what: str, ckpts) -> str:
    """One message: what became non-finite, and the last good checkpoint or that none
    exists yet."""
    kept = ckpts.all_steps()
    where = (f"the last good checkpoint, step {max(kept)} in {ckpts.dir}, is kept: re-run "
             f"with a lower config.optimizer.lr or a config.optimizer.grad_clip to resume from "
             f"it" if kept else
             "no checkpoint exists yet (nothing was saved): lower config.optimizer.lr or set "
             "config.optimizer.grad_clip and start again")
    return f"training diverged: {what}; nothing was saved for this epoch; {where}."


def _check_finite(ts, ev: dict, epoch: int, ckpts) -> None:
    """Before a save: parameters, DFS locations, batch statistics, optimizer state (one fused
    on-device reduction) and the evaluation metrics must be finite."""
    bad: dict = health.nonfinite_arrays(ts)
    if not math.isfinite(ev["loss"]):
        bad["evaluation loss"] = f"{ev['loss']}"
    if bad:
        raise FloatingPointError(_diverged(
            f"non-finite values after epoch {epoch + 1} in {health.describe(bad)}", ckpts))


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


def _freeze(model, fn, ts, c, steps, ds, dtype, mesh, param_tf):
    """Round DFS locations to integers: DFS layers become FS layers; the weights' optimizer
    state carries over by parameter path."""
    from fsjax.nn import freeze_dfs

    export.load_state(model, jax.device_get(ts["params"]), jax.device_get(ts["stats"]))
    freeze_dfs(model)
    fn2, tx, _, ts2 = setup_state(model, c, steps)
    def carry(new, prev):  # the previous state's arrays, by path, where the shapes agree
        old = {jax.tree_util.keystr(p): v for p, v in
               jax.tree_util.tree_flatten_with_path(jax.device_get(prev))[0]}
        return jax.tree_util.tree_map_with_path(
            lambda p, v: old.get(jax.tree_util.keystr(p), v)
            if np.shape(old.get(jax.tree_util.keystr(p), v)) == np.shape(v) else v, new)

    ts2 = dict(ts2, opt=carry(ts2["opt"], ts["opt"]), step=ts["step"])
    if "slow" in ts2:
        ts2["slow"] = carry(ts2["slow"], ts["slow"])
    runner = _runner(model, fn2, tx, c, ds, dtype, mesh, param_tf, steps)
    return model, fn2, tx, jax.device_put(ts2, runner.repl), runner


def _runner(model, fn, tx, c, ds, dtype, mesh, param_tf, steps) -> Runner:
    """The epoch runner with the task's steps: classification, or detection (multibox loss,
    mAP@0.5 as the test metric)."""
    eval_fn, finish = task_eval_step(model, fn, c, ds, ds.mean, ds.std, dtype, param_tf)
    tta = c.get("tta", 0)
    tta_fn = task_eval_step(model, fn, c, ds, ds.mean, ds.std, dtype, param_tf, tta)[0] \
        if tta and ds.task != "detect" else None
    if ds.task == "detect":
        from train import detect_fn

        if jax.process_count() > 1:
            raise ValueError("detection training runs in one process (its mAP gathers the "
                             "detections on the host); use one process with several devices")
        step = detect_fn.make_train_step(fn, tx, c, ds.mean, ds.std, dtype, model.priors(),
                                         param_tf)
    else:
        if getattr(ds, "streaming", False):  # the stream crops and flips on the host
            c = c.copy_and_resolve_references()
            c.augment.crop_padding, c.augment.flip, c.augment.cutout = 0, False, 0
        step = make_train_step(fn, tx, c, ds.mean, ds.std, dtype, param_tf, param_labels(model),
                               steps)
    return Runner(step, eval_fn, mesh, c.batch_size, c.eval_batch_size, _on_device(c, ds),
                  eval_finish=finish, tta_eval_fn=tta_fn)


def _checkpoint_meta(meta, c, model, params, ds, **extra) -> dict:
    """A checkpoint's JSON item: the model's layers with ``params`` loaded (DFS locations
    included), the config, the input, and ``extra``."""
    from fsjax.export import load_state

    load_state(model, params, None)
    m = dict(meta, **extra, layers=export.describe(model),
             config=json.loads(c.to_json_best_effort()), in_channels=ds.image_shape[-1],
             input_shape=list(ds.image_shape), mean=list(ds.mean), std=list(ds.std),
             device=f"{jax.device_count()}x {jax.devices()[0].device_kind}")
    if c.quant.bits:
        m["quant"] = c.quant.to_dict()
    return m


def _save(ckpts, ts, meta, c, model, fn, epoch, rec, ds):
    host = host_state(jax.device_get(ts))
    m = _checkpoint_meta(meta, c, model, host["params"], ds, epoch=epoch, metrics=dict(
        accuracy=rec["test_accuracy"], loss=rec["test_loss"]))
    ckpts.save(epoch, host, m, dict(accuracy=rec["test_accuracy"]))


def _conv_label(c) -> str:
    return kinds.get(c.conv.kind).label(c.conv.compression)


def _header(c, config_name, workdir, model, meta, ds, dtype, steps) -> str:
    """What is about to run, before any training."""
    _, totals = report.report(model, ds.image_shape)
    n_train, n_test = _sizes(ds)
    data = (f"{ds.name}: {n_train:,} train / {n_test:,} test "
            f"images {'x'.join(map(str, ds.image_shape))}"
            + (f", streamed from disk ({ds.workers} worker processes)"
               if getattr(ds, "streaming", False) else "")
            + (f" - SUBSET: {ds.subset}" if ds.subset else ""))
    rows = [("config", config_name or "(config object)"),
            ("model", f"{meta['arch']} ({_conv_label(c)})"),
            ("parameters", f"{totals['stored_params']:,} stored, {totals['dense_params']:,} "
                           f"dense-equivalent ({totals['compression']:.2f}x)"),
            ("data", data),
            ("training", f"{c.num_epochs} epochs x {steps} steps, batch {c.batch_size}, "
                         f"{c.optimizer.name} lr {c.optimizer.lr:g} ({c.schedule.name})"),
            ("devices", f"{jax.device_count()}x {jax.devices()[0].device_kind} "
                        f"({jax.process_count()} process), compute {dtype.name}"),
            ("workdir", os.path.abspath(workdir))]
    return "\n".join(f"{k:>10}: {v}" for k, v in rows)


def _results(c, workdir, model, fn, ts, ds, records, bar, t_start, meta, config_name) -> dict:
    from fsjax.export import load_state

    load_state(model, jax.device_get(ts["params"]), jax.device_get(ts["stats"]))
    _, totals = report.report(model, ds.image_shape)
    best = max(records, key=lambda r: r["test_accuracy"]) if records else {}
    n_train, n_test = _sizes(ds)
    timed = bar.epochs_timed[1:] or bar.epochs_timed  # the first epoch includes compilation
    if timed:
        ips = (n_train // c.batch_size) * c.batch_size / statistics.median(timed)
    else:  # nothing trained in this process (a finished run re-run): the recorded epochs
        logged = [r["images_per_s"] for r in records[1:] or records if "images_per_s" in r]
        ips = statistics.median(logged) if logged else float("nan")
    r = dict(model=meta["arch"], config=config_name or "(config object)",
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
        r["tta_accuracy"], r["tta"] = records[-1]["test_accuracy_tta"], c.tta
    if ds.task == "detect":
        r["metric"] = f"mAP@0.5 ({c.detection.map_method})"
        r.update({k[5:]: v for k, v in (records[-1] if records else {}).items()
                  if k.startswith(("test_map50", "test_coco"))})
    if jax.process_index():
        return r
    write_results(workdir, r)
    if ds.task == "detect":
        from train.detect_fn import draw_detections

        draw_detections(model, ds, c, os.path.join(workdir, "detections.png"))
    run_name = os.path.basename(os.path.abspath(workdir))
    plot_curves(workdir, records, f"{run_name}: {r['model']} ({r['conv']}), {r['dataset']}",
                detection=ds.task == "detect")
    if not c.quiet:
        print(results_table(r), flush=True)
    return r


__all__ = ["run", "build_model", "compute_dtype"]
