"""One pipeline from a trained model to the smallest export: ``python -m train.compress
--config configs/compress/<...>.py [--config.key=value ...] [--workdir DIR]``.

``config.compress.stages`` is a sequence of steps applied in order, each in its own directory
``NN-<step>/`` under the workdir:

- ``thinet:<ratio>`` ThiNet-prune ``prune.layers`` (default: the paper's) to keep ``1 - ratio``
  of their filters, fine-tuning per layer and at the end (``config.prune``; ``train.prune``);
- ``fs:<rho>`` | ``dfs:<rho>`` | ``ks:<g>`` | ``wks:<g>`` convert every conv by projection
  (least-squares FS summary, group-mean kernel) and fine-tune ``compress.finetune_epochs``;
- ``finetune`` fine-tune the current model ``compress.finetune_epochs`` more;
- ``quant:<bits>`` quantize the weights: post-training at 8 bits and above
  ``compress.qat_below`` bits, quantization-aware fine-tuning below it. It is the last step.

The start is ``compress.source`` (a trained run's workdir) or, when empty, ``00-dense/`` trains
the configured model. Every step ends with its model saved: fsjax's export (``model.npz``; the
packed ``model.fsq.npz`` after ``quant``). Each step adds a row to ``compress_results.json``, to
the printed table (top-1, stored and effective parameters, MACs, bytes on disk, forward
latency on this machine) and to ``pareto.png``. Re-running the command resumes: finished
steps are skipped and the step in progress resumes from its last checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time

from fsjax import kinds
from train import cli


def parse_stages(stages) -> list[tuple[str, float]]:
    """``["thinet:0.5", "fs:4", "quant:8"]`` -> ``[("thinet", 0.5), ("fs", 4.0), ...]``;
    a bad step is a ValueError naming it and the valid forms."""
    valid = "thinet:<ratio in (0,1)>, fs|dfs:<rho >= 1>, ks|wks:<g>, finetune, quant:<2..8>"
    out = []
    for i, s in enumerate(stages):
        name, _, arg = str(s).partition(":")
        try:
            v = float(arg) if arg else None
        except ValueError:
            v = None
        ok = {"thinet": v is not None and 0 < v < 1, "finetune": not arg,
              "quant": v is not None and v == int(v) and 2 <= v <= 8}.get(name, False)
        if name in kinds.convertible():  # a conversion step: the kind's option
            ok = kinds.get(name).step_value(v) is not None
        if not ok:
            raise ValueError(f"config.compress.stages[{i}] = {s!r} is not valid; valid: {valid}")
        if name == "quant" and i != len(stages) - 1:
            raise ValueError(f"config.compress.stages: quant must be the last step; got {s!r} "
                             f"at position {i + 1} of {len(stages)}")
        out.append((name, v))
    if not out:
        raise ValueError(f"config.compress.stages is empty; give one or more of: {valid}")
    return out


def _dirname(i: int, name: str, v) -> str:
    arg = "" if v is None else f"{v:g}"
    return f"{i:02d}-{name}{arg}"


def _done(d: str) -> bool:
    return os.path.exists(os.path.join(d, "stage.json"))


def _run_config(c, meta, **over):
    """The trainer config of a fine-tuning step (:func:`train.prune.stage_config` at
    ``compress.finetune_epochs`` / ``finetune_lr``), no dense projection unless ``over`` asks."""
    from train.prune import stage_config

    return stage_config(c, meta, c.compress.finetune_epochs, c.compress.finetune_lr,
                        **{"init_from": "", **over})


def _init_weights(d: str, model, meta) -> str:
    """``model`` saved once as the step's ``init`` export (kept for a resumed step); its path."""
    from fsjax import export

    init = os.path.join(d, "init")
    if not os.path.exists(init + ".json"):
        export.save(init, model, meta)
    return init


def _latency_ms(model, input_shape, batch: int, runs: int = 10) -> float:
    """Median ms of the jitted eval-mode forward at ``batch`` (compilation excluded)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from fsjax import ops

    model.eval()
    graphdef, state = nnx.split(model)

    def fwd(s, x):
        with ops.inference_trace():
            return nnx.merge(graphdef, s)(x)

    f = jax.jit(fwd, compiler_options=ops.compiler_options())
    x = jnp.zeros((batch, *input_shape), jnp.float32)
    jax.block_until_ready(f(state, x))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(f(state, x))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _row(label, model, meta, accuracy, file, c, entries=None) -> dict:
    """``accuracy``: top-1, or ``(top-1, top-1 with config.tta)``."""
    from fsjax import quant, report

    shape = tuple(meta["input_shape"])
    _, tot = report.report(model, shape, quant.bits_by_layer(entries) if entries else None)
    eff = quant.effective_params(model, entries) if entries else tot["stored_params"]
    accuracy, tta = accuracy if isinstance(accuracy, tuple) else (accuracy, None)
    extra = dict(tta_accuracy=tta, tta=c.tta) if tta is not None else {}
    return dict(stage=label, label=label, accuracy=accuracy, **extra,
                stored_params=tot["stored_params"],
                dense_params=tot["dense_params"], effective_params=float(eff), macs=tot["macs"],
                export_bytes=os.path.getsize(file), export_file=file,
                latency_ms=_latency_ms(model, shape, c.compress.latency_batch),
                latency_batch=c.compress.latency_batch)


def _finish(d, label, model, meta, accuracy, c, entries=None, qc=None) -> dict:
    """Save the step's model (export, or packed when quantized), measure its row, and mark the
    step done (``stage.json``, written last and atomically)."""
    from fsjax import export, quant

    if qc is not None:
        file = quant.save_packed(os.path.join(d, "model"), model, meta, qc)
    else:
        file, _ = export.save(os.path.join(d, "model"), model, meta)
    from train.results import write_json

    row = _row(label, model, meta, accuracy, file, c, entries)
    write_json(os.path.join(d, "stage.json"), row)
    return row


def _accuracy(workdir: str):
    """The run's top-1, or ``(top-1, top-1 with TTA)`` where it evaluated with TTA."""
    with open(os.path.join(workdir, "results.json")) as f:
        r = json.load(f)
    return (r["accuracy"], r["tta_accuracy"]) if "tta_accuracy" in r else float(r["accuracy"])


def compress(c, workdir: str) -> list[dict]:
    from fsjax import quant
    from train import configlib
    from train.eval import evaluate, restore
    from train.prune import prune
    from train.results import write_json
    from train.trainer import run

    configlib.validate(c)
    steps = parse_stages(c.compress.stages)
    if c.compress.source and not os.path.isdir(os.path.join(c.compress.source, "checkpoints")):
        raise ValueError(f"config.compress.source = {c.compress.source!r} is not a training "
                         f"run's workdir (no checkpoints/ in it)")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    src = c.compress.source
    if not src:
        src = os.path.join(workdir, "00-dense")
        _say(f"== dense model: train in {src}" + _skip(src))
        if not _done(src):
            run(c, src)
    if not _done(os.path.join(workdir, "00-source")):
        os.makedirs(os.path.join(workdir, "00-source"), exist_ok=True)
        model, meta = restore(src, "latest")
        _finish(os.path.join(workdir, "00-source"), "source", model, meta, _accuracy(src), c)
    rows.append(_load_row(os.path.join(workdir, "00-source")))
    for i, (name, v) in enumerate(steps, 1):
        d = os.path.join(workdir, _dirname(i, name, v))
        label = name if v is None else f"{name} {v:g}"
        _say(f"== step {i}/{len(steps)}: {label} in {d}" + _skip(d))
        if _done(d):
            rows.append(_load_row(d))
            src = d if name != "thinet" else os.path.join(d, "final")
            continue
        os.makedirs(d, exist_ok=True)
        if name != "thinet":  # train.prune restores its source itself
            model, meta = restore(src, "latest")
        if name == "thinet":
            p = copy.deepcopy(c)
            p.unlock()
            p.prune.source, p.prune.ratio = src, v
            p.lock()
            prune(p, d)
            out = os.path.join(d, "final")
        elif name in kinds.convertible():
            k = kinds.get(name)
            over = {"conv.kind": name, f"conv.{k.step_option}": k.step_value(v),
                    "conv.overrides": {}, "init_from": src}
            out = os.path.join(d, "train")
            run(_run_config(c, meta, **over), out)
        elif name == "finetune":
            out = os.path.join(d, "train")
            run(_run_config(c, meta, init_weights=_init_weights(d, model, meta)), out)
        else:  # quant
            bits = int(v)
            qc = quant.QuantConfig(bits=bits, per_channel=c.compress.per_channel)
            if bits < c.compress.qat_below:
                out = os.path.join(d, "train")
                run(_run_config(c, meta, init_weights=_init_weights(d, model, meta),
                                **{"quant.bits": bits,
                                   "quant.per_channel": c.compress.per_channel}), out)
                model, meta = restore(out, "latest")
            from fsjax.nn import freeze_dfs

            freeze_dfs(model)  # the packed format stores integer FS offsets
            entries = quant.quantize_model(model, qc)
            qmeta = dict(meta, quant=dict(bits=0))  # weights are already dequantized
            acc = evaluate(model, qmeta)["accuracy"]
            if c.get("tta", 0):
                acc = (acc, evaluate(model, qmeta, tta=c.tta)["accuracy"])
            rows.append(_finish(d, label, model, meta, acc, c, entries, qc))
            break
        model, meta = restore(out, "latest")
        rows.append(_finish(d, label, model, meta, _accuracy(out), c))
        src = out
    write_json(os.path.join(workdir, "compress_results.json"), rows)
    from fsjax.report.pareto import plot

    plot(rows, os.path.join(workdir, "pareto.png"))
    _say("== compression summary")
    print(format_rows(rows))
    return rows


def _load_row(d: str) -> dict:
    with open(os.path.join(d, "stage.json")) as f:
        return json.load(f)


def _skip(d: str) -> str:
    return " - done, skipped" if _done(d) else ""


def format_rows(rows) -> str:
    head = (f"{'step':<14}{'top-1':>8}{'stored':>11}{'effective':>11}{'MACs':>13}"
            f"{'bytes':>11}{'ms/batch':>10}")
    lines = [head]
    for r in rows:
        lines.append(f"{r['stage']:<14}{100 * r['accuracy']:>7.2f}%{r['stored_params']:>11,}"
                     f"{r['effective_params']:>11,.0f}{r['macs']:>13,}{r['export_bytes']:>11,}"
                     f"{r['latency_ms']:>10.2f}")
    lines.append(f"(latency: jitted forward, batch {rows[0]['latency_batch']}, this machine; "
                 f"effective = the FSNet paper's bits/32 count)")
    return "\n".join(lines)


def _say(text: str):
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    cli.run_config_tool(compress, "compression", "configs/compress/models.py:resnet56",
                         os.path.join("runs", "compress"))
