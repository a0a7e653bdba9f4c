"""``config.arch_from``: train an architecture recorded by another run with fresh weights.

The control experiment of the ThiNet paper ("train from scratch"): the pruned widths (and
head) of a pruning run, built and initialised anew. ``arch_from`` names a pruning workdir
(``train.prune``: its ``final/`` run), a training workdir (its latest checkpoint's metadata) or
an ``fsjax.export`` path without suffix; its model, ``model_kw`` and ``conv`` replace the
config's, and nothing else (no weights) is read.
"""

from __future__ import annotations

import copy
import json
import os


def source_meta(path: str) -> dict:
    """Architecture metadata (``model``, ``model_kw``, ``conv``, ``num_classes``) of ``path``."""
    from train.ckpt import Checkpoints

    if os.path.exists(path + ".json") and not os.path.isdir(path):
        with open(path + ".json") as f:
            return json.load(f)
    if os.path.exists(os.path.join(path, "prune_results.json")):
        path = os.path.join(path, "final")
    elif os.path.isdir(path) and not os.path.isdir(os.path.join(path, "checkpoints")) and any(
            d.startswith("stage") for d in os.listdir(path)):
        raise ValueError(f"config.arch_from = {path!r} is a pruning run that has not finished "
                         f"(no prune_results.json); finish it or name one of its stages")
    if not os.path.isdir(os.path.join(path, "checkpoints")):
        raise ValueError(f"config.arch_from = {path!r} is neither a training or pruning "
                         f"workdir (no checkpoints/) nor an fsjax.export path (no {path}.json)")
    ck = Checkpoints(path)
    try:
        step = ck.latest_step()
        if step is None:
            raise ValueError(f"config.arch_from = {path!r} has no checkpoint")
        return ck.restore_meta(step)
    finally:
        ck.close()


def apply(c):
    """A copy of ``c`` whose model, ``model_kw`` and ``conv`` are those of ``c.arch_from``
    (``c`` itself when it is empty). The model name must agree."""
    if not c.get("arch_from"):
        return c
    from train.configlib import MODEL_OPTIONS

    for k in ("init_weights", "init_from"):
        if c.get(k):
            raise ValueError(f"config.arch_from trains with fresh weights; config.{k} would "
                             f"load weights: set one of them")
    meta = source_meta(c.arch_from)
    if meta["model"] != c.model:
        raise ValueError(f"config.arch_from = {c.arch_from!r} holds a {meta['model']}; "
                         f"config.model is {c.model!r} (set --config.model={meta['model']})")
    out = copy.deepcopy(c)
    out.unlock()
    for k in MODEL_OPTIONS:
        out.model_kw[k] = None
    for k, v in meta.get("model_kw", {}).items():
        if k != "in_channels":
            out.model_kw[k] = v
    for k, v in meta.get("conv", {}).items():
        if k == "overrides":
            out.conv.overrides = dict(v)
        elif k in out.conv:
            out.conv[k] = v
    out.lock()
    return out
