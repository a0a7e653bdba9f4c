"""Checkpoints: an Orbax ``CheckpointManager`` in ``workdir/checkpoints`` keeping the last N and
the best (by test accuracy). Each step holds the training state (params, batch stats,
optimizer state, step) and a JSON ``meta`` item (epoch, metrics, the model's compression
metadata: layer kinds, FS lengths/offsets, DFS locations, quantization) written in the same
atomic Orbax save, so a model can be rebuilt from the checkpoint alone."""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import logging
import os
import shutil
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from train import health


def _policy(keep: int, keep_best: bool):
    try:
        from orbax.checkpoint import checkpoint_managers as cm
        policies = [cm.LatestN(n=keep)]
        if keep_best:
            policies.append(cm.BestN(get_metric_fn=lambda m: m["accuracy"], reverse=False, n=1,
                                     keep_checkpoints_without_metrics=False))
        return dict(preservation_policy=cm.AnyPreservationPolicy(policies))
    except (ImportError, AttributeError):  # older orbax: keep the last N only
        return dict(max_to_keep=keep)


class Checkpoints:
    def __init__(self, workdir: str, keep: int = 2, keep_best: bool = True,
                 subdir: str = "checkpoints"):
        self.dir = os.path.abspath(os.path.join(workdir, subdir))
        options = ocp.CheckpointManagerOptions(create=True, **_policy(keep, keep_best))
        self.manager = ocp.CheckpointManager(self.dir, options=options,
                                             item_names=("state", "meta"))
        self._saving, self._closed, self._before = None, False, set()
        _quiet(True)

    def latest_step(self):
        return self.manager.latest_step()

    def all_steps(self):
        return list(self.manager.all_steps())

    def best_step(self):
        """The kept step with the highest test accuracy (read from each step's meta)."""
        best, best_acc = None, -1.0
        for s in self.all_steps():
            acc = self.restore_meta(s).get("metrics", {}).get("accuracy", -1.0)
            if acc > best_acc:
                best, best_acc = s, acc
        return best

    def save(self, step: int, state, meta: dict, metrics: dict | None = None):
        """Start an asynchronous save of ``step``; :meth:`wait` reports whether it landed."""
        self._saving = step
        self._before = set(threading.enumerate())
        meta = dict(meta, sha256=_meta_sha(meta))
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), metrics=metrics)

    def wait(self):
        """Block until the save in flight is on disk. A failed save raises
        :class:`SaveError` (one line: step, OS error, the steps still intact) after removing
        its unfinished folder."""
        step, self._saving = self._saving, None
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as e:  # orbax re-raises the writer's error, maybe wrapped
            self._close_after_failure()
            self._remove_unfinished(step)
            kept = [s for s in step_dirs(self.dir) if s != step]
            raise SaveError(
                f"saving checkpoint step {step} to {self.dir} failed: {_os_error(e)}; its "
                f"unfinished folder was removed; "
                + (f"the earlier checkpoints ({steps_text(kept)}) are intact"
                   if kept else "no earlier checkpoint exists")) from None

    def restore_meta(self, step: int) -> dict:
        """The step's JSON metadata, checked against the SHA-256 written with it (checkpoints
        of older versions have none)."""
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(
                meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # see restore()
            raise RuntimeError(f"checkpoint step {step} in {self.dir} failed to restore its "
                               f"metadata ({_first_line(e)})") from None
        if "sha256" in meta and meta["sha256"] != _meta_sha(meta):
            raise RuntimeError(f"checkpoint step {step} in {self.dir}: its metadata was changed "
                               f"after it was written (checksum mismatch)")
        return meta

    def restore(self, step: int, target):
        """Restore ``step`` into the structure/shardings of ``target``; a failure raises
        RuntimeError naming the step (the checkpoint is never touched)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for broken/mismatched checkpoints
            raise RuntimeError(
                f"checkpoint step {step} in {self.dir} failed to restore ({_first_line(e)})"
            ) from None
        return out["state"], out["meta"]

    def restore_finite(self, step: int, target):
        """:meth:`restore`'s state, which must hold only finite values."""
        state, _ = self.restore(step, target)
        bad = health.nonfinite_arrays(state)
        if bad:
            raise RuntimeError(f"checkpoint step {step} in {self.dir} holds non-finite values "
                               f"in {health.describe(bad)} (written by an older fsjax or by "
                               f"hand)")
        return state

    def checked(self, step: int, load, target=None):
        """``load()``, or one message naming the unusable step, the steps that do restore
        (and are finite, when ``target`` is given) and the command that resumes from one."""
        try:
            return load()
        except RuntimeError as e:
            reason = str(e)
        good = []
        for s in sorted((s for s in self.all_steps() if s != step), reverse=True):
            try:
                self.restore_meta(s)
                if target is not None:
                    self.restore_finite(s, target)
                good.append(s)
            except Exception:  # probing: any failure means "does not restore"
                continue
        hint = (f"steps that restore: {', '.join(map(str, good))}; resume from one with "
                f"--config.resume_step={good[0]} (the later steps are moved aside, not "
                f"deleted)" if good else
                "no other step restores; move the directory away to start afresh")
        raise RuntimeError(f"{reason}. It was left untouched; {hint}.")

    def restore_arrays(self, step: int) -> dict:
        """The saved state as host arrays in its saved structure (no target needed)."""
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore()))
        except Exception as e:  # see restore()
            raise RuntimeError(f"checkpoint step {step} in {self.dir} failed to restore "
                               f"({_first_line(e)})") from None
        return jax.tree.map(np.asarray, out["state"])

    @property
    def aside_dir(self) -> str:
        return self.dir + "-set-aside"

    def set_aside_after(self, step: int) -> list[int]:
        """Move the steps after ``step`` to :attr:`aside_dir` (a resume from an earlier step
        must not overwrite them, nor be overtaken by them); returns the moved steps."""
        later = [s for s in step_dirs(self.dir) if s > step]
        for s in later:
            os.makedirs(self.aside_dir, exist_ok=True)
            dst = os.path.join(self.aside_dir, str(s))
            if os.path.exists(dst):
                dst += f".{int(time.time())}"
            os.replace(os.path.join(self.dir, str(s)), dst)
        if later:
            self.manager.reload()
        return later

    def _remove_unfinished(self, step):
        if step is None:
            return
        for d in glob.glob(os.path.join(self.dir, f"{step}.orbax-checkpoint-tmp*")):
            shutil.rmtree(d, ignore_errors=True)
        final = os.path.join(self.dir, str(step))
        if os.path.isdir(final) and not _finalized(final):
            shutil.rmtree(final, ignore_errors=True)

    def _close_after_failure(self, timeout: float = 60.0):
        """After a failed save the manager is unusable: close it and wait (bounded) for the
        save's other writer threads, so that none is still writing when its folder is
        removed (the run stops anyway)."""
        self._closed = True
        try:
            self.manager.close()
        except Exception:  # it re-raises the same failure
            pass
        deadline = time.monotonic() + timeout
        for t in set(threading.enumerate()) - self._before:
            if t is not threading.current_thread() and t.ident is not None:  # started
                t.join(max(0.0, deadline - time.monotonic()))
        _quiet(False)

    def close(self):
        if self._closed:
            return
        try:
            self.wait()
        finally:
            if not self._closed:
                self._closed = True
                self.manager.close()
                _quiet(False)


def step_dirs(ckpt_dir: str) -> list[int]:
    """The finished step folders in a checkpoint directory (no orbax temporaries), sorted."""
    return sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit()) \
        if os.path.isdir(ckpt_dir) else []


def _meta_sha(meta: dict) -> str:
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def steps_text(steps) -> str:
    steps = list(steps)
    return f"step{'s' if len(steps) != 1 else ''} {', '.join(map(str, steps))}"


class SaveError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions, ...)."""


def _os_error(e: BaseException) -> str:
    """The OS error behind an orbax/tensorstore exception, as ``[Errno 28] No space ...``."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return f"[Errno {seen.errno}] {os.strerror(seen.errno)}"
        seen = seen.__cause__ or seen.__context__
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    for code in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
        if os.strerror(code).lower() in str(e).lower():
            return f"[Errno {code}] {os.strerror(code)}"
    return f"{type(e).__name__}: {text}"


def _finalized(step_dir: str) -> bool:
    return os.path.exists(os.path.join(step_dir, "_CHECKPOINT_METADATA"))


class _DropOrbaxErrors(logging.Filter):
    """Orbax logs a failed background save with long tracebacks from several threads; the
    trainer reports it in one line instead."""

    def filter(self, record):
        return "orbax" not in record.pathname


_FILTER = _DropOrbaxErrors()
_HOOK = {}


def _orbax_thread(args) -> bool:
    tb = args.exc_traceback
    while tb is not None:
        if "orbax" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _quiet(on: bool):
    """While a Checkpoints is open, orbax's log records and its writer threads' uncaught
    exceptions are not printed (a failure reaches the trainer through :meth:`wait`)."""
    log = logging.getLogger("absl")
    if on:
        log.addFilter(_FILTER)
        if not _HOOK:
            _HOOK["old"] = old = threading.excepthook
            threading.excepthook = lambda a: None if _orbax_thread(a) else old(a)
    else:
        log.removeFilter(_FILTER)
        if _HOOK and _FILTER not in log.filters:
            threading.excepthook = _HOOK.pop("old")


def to_host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


class RunCheckpoints:
    """A run's checkpoints as one object. Each holds the whole train state, and in its meta the
    run's position (epoch, step in the epoch, that epoch's metric sums so far, data step):

    - one per finished epoch in ``workdir/checkpoints`` (``epochs``: the last ``keep`` and the
      best by test accuracy; what ``train.eval`` and the conversions read);
    - with ``every_steps``, the newest one inside an epoch in ``workdir/checkpoints-partial``
      (``mid``; also opened when that directory exists, so a resume finds it).

    Its ``dir``, ``all_steps`` and ``aside_dir`` are those of the epoch checkpoints."""

    def __init__(self, workdir: str, keep: int = 2, keep_best: bool = True,
                 every_steps: int = 0):
        self.epochs = Checkpoints(workdir, keep, keep_best)
        path = os.path.join(workdir, "checkpoints-partial")
        self.mid = Checkpoints(workdir, 1, False, "checkpoints-partial") \
            if every_steps or os.path.isdir(path) else None
        self.dir, self.aside_dir = self.epochs.dir, self.epochs.aside_dir

    def all_steps(self):
        return self.epochs.all_steps()

    def resume_point(self, resume_step: int = 0):
        """Where a run resumes: ``(source, step, meta, epoch_step)``: the newest epoch
        checkpoint (``resume_step``, when nonzero, picks one), or a later mid-epoch one
        (``source`` is then :attr:`mid`); ``epoch_step`` is the epoch checkpoint's step (the
        later ones are set aside on resuming). All None for a fresh run. A checkpoint that
        does not restore raises one message naming the steps that do."""
        latest = self._resume_step(resume_step)
        saved = self.epochs.checked(latest, lambda: self.epochs.restore_meta(latest)) \
            if latest is not None else None
        src, step = self.epochs, latest
        last = None if self.mid is None or resume_step else self.mid.latest_step()
        if last is not None:
            m = self.mid.checked(last, lambda: self.mid.restore_meta(last))
            if m["epoch"] >= (saved["epoch"] if saved else 0):  # resume inside an epoch
                src, step, saved = self.mid, last, m
        return (src if step is not None else None), step, saved, latest

    def _resume_step(self, resume_step: int):
        steps = self.all_steps()
        if not resume_step:
            return max(steps) if steps else None
        if resume_step not in steps:
            raise ValueError(f"config.resume_step = {resume_step} is not a checkpoint in "
                             f"{self.dir}; valid: " + (", ".join(map(str, sorted(steps)))
                                                       if steps else "none (no checkpoint yet)"))
        return resume_step

    def diverged(self, what: str) -> str:
        """One message: what became non-finite, and the last good checkpoint or that none
        exists yet."""
        kept = self.all_steps()
        where = (f"the last good checkpoint, step {max(kept)} in {self.dir}, is kept: re-run "
                 f"with a lower config.optimizer.lr or a config.optimizer.grad_clip to resume "
                 f"from it" if kept else
                 "no checkpoint exists yet (nothing was saved): lower config.optimizer.lr or "
                 "set config.optimizer.grad_clip and start again")
        return f"training diverged: {what}; nothing was saved for this epoch; {where}."

    def save(self, step: int, state, meta: dict, metrics: dict | None = None,
             mid: bool = False):
        """An epoch checkpoint (``metrics``: its test accuracy, for the best one), or with
        ``mid`` one inside an epoch (``step``: the training step), after the previous one
        landed."""
        if mid:
            self.mid.wait()
            self.mid.save(step, state, meta)
        else:
            self.epochs.save(step, state, meta, metrics)

    def wait(self):
        """Block until every save in flight is on disk (a failure raises SaveError)."""
        self.epochs.wait()
        if self.mid is not None:
            self.mid.wait()

    def close(self, quiet: bool = False):
        """Wait and close both; ``quiet``: after another error, which stays the one reported."""
        errors = []
        for k in (self.mid, self.epochs):
            try:
                if k is not None:
                    k.close()
            except Exception as e:  # close the other one too; report the first
                errors.append(e)
        if errors and not quiet:
            raise errors[0]
