"""Checkpoints: an Orbax ``CheckpointManager`` in ``workdir/checkpoints`` keeping the last N and
the best (by test accuracy). Each step holds the training state (params, batch stats,
optimizer state, step) and a JSON ``meta`` item (epoch, metrics, the model's compression
metadata: layer kinds, FS lengths/offsets, DFS locations, quantization) written in the same
atomic Orbax save, so a model can be rebuilt from the checkpoint alone."""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp


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
    def __init__(self, workdir: str, keep: int = 2, keep_best: bool = True):
        self.dir = os.path.abspath(os.path.join(workdir, "checkpoints"))
        options = ocp.CheckpointManagerOptions(create=True, **_policy(keep, keep_best))
        self.manager = ocp.CheckpointManager(self.dir, options=options,
                                             item_names=("state", "meta"))

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
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), metrics=metrics)

    def wait(self):
        self.manager.wait_until_finished()

    def restore_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, step: int, target):
        """Restore ``step`` into the structure/shardings of ``target``. A failure stops with a
        message; the checkpoint is never overwritten."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for broken/mismatched checkpoints
            raise RuntimeError(
                f"checkpoint step {step} in {self.dir} failed to restore ({type(e).__name__}: "
                f"{e}). It was left untouched: fix the config to match it, or move the "
                f"directory away to start afresh.") from None
        return out["state"], out["meta"]

    def restore_arrays(self, step: int) -> dict:
        """The saved state as host arrays in its saved structure (no target needed)."""
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore()))
        except Exception as e:  # see restore()
            raise RuntimeError(f"checkpoint step {step} in {self.dir} failed to restore "
                               f"({type(e).__name__}: {e})") from None
        return jax.tree.map(np.asarray, out["state"])

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def to_host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
