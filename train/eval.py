"""Evaluate a run's checkpoint, and optionally export its compressed parameters.

    python -m train.eval --workdir DIR [--which best|latest|STEP] [--export PATH]
        [--quantize BITS [--per-channel] [--method uniform|kmeans]]

The model is rebuilt from the checkpoint's metadata alone. ``--export`` writes the stored
parameters (FS vectors, not materialised kernels) as PATH.npz + PATH.json
(:func:`fsjax.export.save`); with ``--quantize`` a packed PATH.fsq.npz (:mod:`fsjax.quant`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections

from fsjax import export, quant, report
from train.ckpt import Checkpoints
from train.configlib import load_data
from train.loop import Runner, make_mesh
from train.model_fn import ModelFn, make_eval_step


def restore(workdir: str, which: str = "best"):
    """``(model, meta)`` of a run's checkpoint (``best``, ``latest`` or a step number).
    Reads only: a workdir without checkpoints is an error, never created."""
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"workdir {workdir} is not a directory" if os.path.exists(
            workdir) else f"workdir {workdir} does not exist")
    if not os.path.isdir(os.path.join(workdir, "checkpoints")):
        raise FileNotFoundError(f"no checkpoints in {workdir} (no checkpoints/ folder): is it "
                                f"a training run's workdir?")
    if which not in ("best", "latest") and not which.isdigit():
        raise ValueError(f"--which {which!r} is not valid; valid: best, latest or a step number")
    ck = Checkpoints(workdir)
    steps = ck.all_steps()
    if not steps:
        ck.close()
        raise FileNotFoundError(f"no checkpoint in {ck.dir}")
    if which == "best":
        step = ck.best_step()
    elif which == "latest":
        step = ck.latest_step()
    else:
        step = int(which)
        if step not in steps:
            ck.close()
            raise ValueError(f"--which {which}: no such step; kept steps: "
                             f"{', '.join(map(str, sorted(steps)))}")
    meta = ck.restore_meta(step)
    model = export.build(meta)
    state = ck.restore_arrays(step)
    ck.close()
    export.load_state(model, state["params"], state["stats"])
    return model, meta


def evaluate(model, meta, batch: int = 500, data_limit: int | None = None) -> dict:
    c = ml_collections.ConfigDict(meta["config"])
    ds = load_data(c, data_limit)
    fn = ModelFn.create(model)
    p, s = ModelFn.initial(model)
    param_tf = None
    if meta.get("quant", {}).get("bits"):
        q = quant.QuantConfig.from_config(meta["quant"])
        entries = quant.plan(model, q)
        param_tf = lambda params: quant.fake_quant_params(params, entries, q.method)
    mesh = make_mesh()
    runner = Runner(lambda *a: None, make_eval_step(fn, meta["mean"], meta["std"], jnp.float32,
                                                     c.tta_flip, param_tf),
                    mesh, len(jax.devices()), batch, True)
    return runner.evaluate(p, s, runner.put_eval(ds.test_images, ds.test_labels))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--which", default="best", help="best | latest | a step (epoch) number")
    ap.add_argument("--export", default=None, help="write the compressed parameters here")
    ap.add_argument("--quantize", type=int, default=0, help="bits (2..8) for a packed export")
    ap.add_argument("--per-channel", action="store_true")
    ap.add_argument("--method", default="uniform", choices=quant.METHODS)
    ap.add_argument("--freeze-dfs", action="store_true",
                    help="round DFS locations: evaluate/export the model as an FS model")
    a = ap.parse_args(argv)
    if a.quantize and not 2 <= a.quantize <= 8:
        print(f"error: --quantize must be 0 (off) or 2..8 bits; got {a.quantize}",
              file=sys.stderr)
        return 2
    try:
        model, meta = restore(a.workdir, a.which)
        dfs_table = report.format_locations(report.location_rows(model))
        if a.freeze_dfs or a.quantize:  # a packed export needs integer offsets
            from fsjax.nn import freeze_dfs

            freeze_dfs(model)
        if a.quantize:
            q = quant.QuantConfig(bits=a.quantize, per_channel=a.per_channel, method=a.method)
            entries = quant.quantize_model(model, q)
            meta = dict(meta, quant=dict(bits=0))  # weights are already dequantized
        metrics = evaluate(model, meta)
        table, totals = report.report(model, tuple(meta["input_shape"]))
        print(table)
        if dfs_table != "no DFS layers":
            print("learned DFS locations\n" + dfs_table)
        out = dict(metrics, **totals, epoch=meta["epoch"])
        if a.export:
            if a.quantize:
                f = quant.save_packed(a.export, model, meta, q)
                out.update(export_file=f, export_bytes=os.path.getsize(f),
                           effective_params_paper=quant.effective_params(model, entries))
            else:
                npz, js = export.save(a.export, model, meta)
                out.update(export_file=npz, export_bytes=os.path.getsize(npz))
        print(json.dumps(out, default=float))
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
