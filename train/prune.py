"""ThiNet pruning driven by the trainer: ``python -m train.prune --config
configs/thinet/<...>.py [--config.key=value ...] [--workdir DIR]``.

Steps (each its own directory under the workdir, so an interrupted run resumes per layer):
``dense/`` trains the unpruned model unless ``prune.source`` names a trained run; with
``prune.target`` (a published VGG-16 architecture: thinet_conv, thinet_gap, thinet_tiny) whose
head differs from the source's, ``head-<head>/`` replaces the head and fine-tunes
``prune.head_epochs``; then for every prunable pair (``prune.layers`` at ``prune.ratio``, or
every conv wider than the target), ``stageNN-<layer>/`` prunes it (ThiNet or a baseline
criterion) on ``prune.samples_per_class`` training images per class and fine-tunes
``prune.finetune_epochs``; ``final/`` fine-tunes ``prune.final_epochs``. Each stage's
checkpoints carry the pruned architecture (widths, head), so the model reloads without the
original, and ``--config.arch_from=<workdir>`` of ``train.main`` trains it from scratch.
"""

from __future__ import annotations

import copy
import json
import os
import sys

import jax.numpy as jnp
import numpy as np

from train import cli


def stage_config(c, meta, epochs, lr, **over):
    """The trainer config of a fine-tuning stage: ``c`` with the architecture of ``meta`` (zoo
    options, conv kind), no initial weights or architecture source, ``epochs`` of cosine
    decay from ``lr``, then ``over`` (dotted keys, e.g. ``init_weights=...``)."""
    s = copy.deepcopy(c)
    s.unlock()
    for k, v in meta["model_kw"].items():
        if k != "in_channels":
            s.model_kw[k] = v
    for k, v in meta.get("conv", {}).items():  # the stage model's own kind (dense or FS)
        if k in s.conv and k != "overrides":
            s.conv[k] = v
    s.init_weights = ""
    if "arch_from" in s:
        s.arch_from = ""  # the stage's architecture is meta's, from its init weights
    s.num_epochs = max(1, epochs)
    s.optimizer.lr = lr
    s.schedule.name = "cosine"
    s.schedule.warmup_epochs = 0.0
    for k, v in over.items():
        node = s
        *parents, last = k.split(".")
        for part in parents:
            node = node[part]
        node[last] = v
    s.lock()
    return s


def _stage(c, workdir, init, meta, epochs, lr):
    from train.trainer import run

    return run(stage_config(c, meta, epochs, lr, init_weights=init or ""), workdir)


def prune(c, workdir: str) -> list[dict]:
    from fsjax import export
    from fsjax.data.augment import normalize
    from fsjax.prune import thinet
    from train import configlib
    from train.configlib import load_data
    from train.eval import restore
    from train.results import write_json
    from train.trainer import run

    configlib.validate(c)
    p = c.prune
    if p.criterion not in thinet.CRITERIA:
        raise ValueError(f"config.prune.criterion = {p.criterion!r} is not valid; valid: "
                         f"{', '.join(thinet.CRITERIA)}")
    if not 0 < p.ratio < 1:
        raise ValueError(f"config.prune.ratio must be in (0, 1); got {p.ratio}")
    os.makedirs(workdir, exist_ok=True)
    src = p.source or os.path.join(workdir, "dense")
    if not p.source:
        _say(f"== dense model: train in {src}")
        run(c, src)
    model, meta = restore(src, "best")
    rows = [dict(stage="dense", **_summary(model, meta, src))]
    ds = load_data(c)
    if getattr(ds, "streaming", False):  # read from disk, centre crops
        from fsjax.data.stream import sample_images

        images = normalize(jnp.asarray(sample_images(ds, p.samples_per_class, c.seed)[0]),
                           ds.mean, ds.std)
    else:
        rng = np.random.default_rng(c.seed)
        pick = np.concatenate([rng.permutation(np.flatnonzero(ds.train_labels == k))[
            :p.samples_per_class] for k in range(ds.num_classes)])
        images = normalize(jnp.asarray(ds.train_images[np.sort(pick)]), ds.mean, ds.std)
    head, plan = _plan(p, meta)
    if head:
        stage = os.path.join(workdir, f"head-{head}")
        epochs = p.head_epochs
        _say(f"== head: replace the {meta['model_kw'].get('head') or 'default'} head by "
             f"'{head}', fine-tune {epochs} epochs in {stage}" + _skipped(stage))
        model, meta = _finetuned(c, stage, f"head-{head}", rows, epochs, p.finetune_lr,
                                 lambda: thinet.replace_head(model, meta, head))
    for i, (pair, ratio) in enumerate(plan):
        stage = os.path.join(workdir, f"stage{i:02d}-{pair.producer}")
        _say(f"== stage {i + 1}/{len(plan)}: prune {pair.producer} to {1 - ratio:.4g} of its "
             f"filters ({p.criterion}), fine-tune {p.finetune_epochs} epochs in {stage}"
             + _skipped(stage))

        def pruned(model=model, meta=meta, pair=pair, ratio=ratio):
            model.eval()
            new, new_meta, kept = thinet.prune_pair(model, meta, pair, images, ratio,
                                                    p.criterion, p.samples_per_image, c.seed)
            return new, dict(new_meta, kept={pair.producer: kept.tolist()})

        model, meta = _finetuned(c, stage, pair.producer, rows, p.finetune_epochs,
                                 p.finetune_lr, pruned, init_name="pruned")
    final = os.path.join(workdir, "final")
    if head or plan:
        _say(f"== final: fine-tune {p.final_epochs} epochs in {final}")
        export.save(os.path.join(final, "init"), model, meta)
        _stage(c, final, os.path.join(final, "init"), meta, p.final_epochs, p.final_lr)
        model, meta = restore(final, "latest")
        rows.append(dict(stage="final", **_summary(model, meta, final)))
    write_json(os.path.join(workdir, "prune_results.json"), rows)
    _say("== pruning summary (test accuracy after each stage's fine-tuning)")
    _print(rows)
    return rows


def _skipped(stage) -> str:
    return " - done, skipped" if os.path.exists(os.path.join(stage, "results.json")) else ""


def _finetuned(c, stage, label, rows, epochs, lr, make, init_name="init"):
    """One stage, skipped when ``stage/results.json`` exists: ``make()`` gives the
    ``(model, meta)`` to start from, saved as ``stage/<init_name>`` and fine-tuned. Appends
    the stage's row; returns its latest ``(model, meta)``."""
    from fsjax import export
    from train.eval import restore

    if not _skipped(stage):
        new, new_meta = make()
        init = os.path.join(stage, init_name)
        export.save(init, new, new_meta)
        _stage(c, stage, init, new_meta, epochs, lr)
    model, meta = restore(stage, "latest")
    rows.append(dict(stage=label, **_summary(model, meta, stage)))
    return model, meta


def _plan(p, meta):
    """``(new head or None, [(pair, ratio), ...])``. ``prune.target`` (a published VGG-16
    architecture, ``thinet.VGG16_TARGETS``) prunes every conv wider than its target width
    (kept fractions of ``prune.base_widths``, default VGG-16's) and sets the target's head
    first; otherwise ``prune.layers`` (default: the paper's) at ``prune.ratio``."""
    target = p.target
    from fsjax.models.vgg import VGG16_WIDTHS
    from fsjax.prune import thinet

    if not target:
        return None, [(pair, p.ratio) for pair in
                      thinet.prunable_pairs(meta, list(p.layers) or None)]
    if meta["model"] != "vgg16":
        raise ValueError(f"config.prune.target = {target!r} is a VGG-16 architecture; the "
                         f"source model is {meta['model']!r}")
    want = thinet.target_widths(target, tuple(p.base_widths) or None)
    have = meta["model_kw"].get("widths") or VGG16_WIDTHS
    convs = list(zip(thinet.VGG_NAMES, have, want, strict=True))
    for n, h, w in convs:
        if h < w:
            raise ValueError(f"config.prune.target = {target!r}: the source's {n} has {h} "
                             f"filters, fewer than the target's {w} (set prune.base_widths to "
                             f"the original model's widths)")
    ratios = {n: 1 - w / h for n, h, w in convs if h > w}
    head = thinet.VGG16_TARGETS[target]["head"]
    head = head if head and head != (meta["model_kw"].get("head") or "") else None
    return head, [(pair, ratios[pair.producer]) for pair in
                  thinet.prunable_pairs(meta, list(ratios))] if ratios else []


def _summary(model, meta, workdir):
    from fsjax import report

    _, tot = report.report(model, tuple(meta["input_shape"]))
    with open(os.path.join(workdir, "results.json")) as f:
        r = json.load(f)
    return dict(accuracy=r["accuracy"], params=tot["stored_params"], macs=tot["macs"])


def _say(text: str):
    print(text, file=sys.stderr, flush=True)


def _print(rows):
    print(f"{'stage':<24}{'accuracy':>10}{'params':>14}{'MACs':>14}")
    for r in rows:
        print(f"{r['stage']:<24}{100 * r['accuracy']:>9.2f}%{r['params']:>14,}{r['macs']:>14,}")


if __name__ == "__main__":
    cli.run_config_tool(prune, "pruning", "configs/thinet/vgg16_cifar.py",
                         os.path.join("runs", "thinet"))
