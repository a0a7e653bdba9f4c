"""Evaluate a run's checkpoint, and optionally export its compressed parameters.

    python -m train.eval --workdir DIR [--which best|latest|STEP] [--export PATH]
        [--quantize BITS [--per-channel] [--method uniform|kmeans]]
    python -m train.eval --workdir DIR --deploy onnx|stablehlo [--int8] --out PATH

``--deploy`` writes a file that runs outside fsjax (:mod:`fsjax.deploy`; docs/deploy.md):
StableHLO (jax.export) or ONNX (jax2onnx), float32, or ONNX int8 (QDQ) with ``--int8``. The
export is checked: its logits on test images against fsjax's (float: within 1e-4, else exit
code 1), and for int8 its top-1 over the test set next to fsjax's fake-quant top-1.

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
import numpy as np

from fsjax import deploy, export, quant, report
from fsjax.data.augment import normalize
from train.ckpt import Checkpoints
from train.configlib import load_data
from train.loop import Runner, make_mesh
from train.model_fn import ModelFn, task_eval_step


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


def evaluate(model, meta, batch: int = 500, data_limit: int | None = None, ds=None,
             tta: int = 0) -> dict:
    """Test-set loss and accuracy; ``ds``: the run's data set when already loaded; ``tta``:
    test-time augmentation level (:func:`fsjax.data.augment.tta_logits`)."""
    c = ml_collections.ConfigDict(meta["config"])
    ds = ds if ds is not None else load_data(c, data_limit)
    fn = ModelFn.create(model)
    p, s = ModelFn.initial(model)
    param_tf = None
    if meta.get("quant", {}).get("bits"):
        q = quant.QuantConfig.from_config(meta["quant"])
        entries = quant.plan(model, q)
        param_tf = lambda params: quant.fake_quant_params(params, entries, q.method)
    mesh = make_mesh()
    # detectors: mAP@0.5 as "accuracy", with the detection settings of the run
    eval_fn, finish = task_eval_step(model, fn, c, ds, meta["mean"], meta["std"], jnp.float32,
                                     param_tf, tta)
    runner = Runner(lambda *a: None, eval_fn, mesh, len(jax.devices()), batch, True,
                    eval_finish=finish)
    if getattr(ds, "streaming", False):  # read from disk (fsjax.data.stream)
        batch = -(-batch // jax.device_count()) * jax.device_count()
        return runner.evaluate(p, s, lambda: ds.eval_batches(batch))
    return runner.evaluate(p, s, runner.put_eval(ds.test_images, ds.test_labels))


def deploy_run(model, meta, fmt: str, out: str, int8: bool = False, calib: int = 512,
               check: int = 256, eval_batch: int = 256, ds=None) -> dict:
    """Export ``model`` (weights as they are: quantize first for int8) and check the file on
    the test set of ``ds`` (the run's data set; loaded when None)."""
    shape = tuple(meta["input_shape"])
    info = dict(mean=list(map(float, meta["mean"])), std=list(map(float, meta["std"])),
                input="float32 NHWC, (pixel/255 - mean) / std", model=meta.get("model", ""))
    ds = ds if ds is not None else load_data(ml_collections.ConfigDict(meta["config"]))
    if getattr(ds, "streaming", False):
        raise ValueError(f"--deploy checks the file on an in-memory test set; {ds.name} is "
                         f"streamed from disk (export with fsjax.deploy directly)")
    x = np.asarray(normalize(jnp.asarray(ds.test_images), meta["mean"], meta["std"]))
    model.eval()
    ref = np.concatenate([np.asarray(deploy.logits_of(model(jnp.asarray(x[i:i + eval_batch]))))
                          for i in range(0, min(check, len(x)), eval_batch)])
    if fmt == "stablehlo":
        res = deploy.export_stablehlo(model, shape, out, meta=info)
        got = np.asarray(deploy.load_stablehlo(out)(jnp.asarray(x[:len(ref)])))
    else:
        cal = None
        if int8:
            n = min(calib, len(ds.train_images))
            cal = np.asarray(normalize(jnp.asarray(ds.train_images[:n]), meta["mean"],
                                       meta["std"]))
        res = deploy.export_onnx(model, shape, out, int8=int8, calibration=cal, meta=info)
        sess = deploy.onnx_session(out)
        got = deploy.run_onnx(sess, x if int8 else x[:len(ref)], eval_batch)
        if int8:  # the whole test set once: its top-1, and its first logits for the check
            labels = np.asarray(ds.test_labels)
            res["int8_accuracy"] = float((got.argmax(-1) == labels).mean())
            res["test_images"] = int(len(labels))
            got = got[:len(ref)]
    res["max_abs_diff"] = float(np.abs(got - ref).max())
    res["checked_images"] = int(len(ref))
    return res


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
    ap.add_argument("--deploy", default=None, choices=deploy.FORMATS,
                    help="write a deployable file (needs --out)")
    ap.add_argument("--int8", action="store_true",
                    help="--deploy onnx: int8 QDQ (fsjax's quantized weights; 8-bit PTQ if "
                         "the run was not QAT-trained and --quantize is not given)")
    ap.add_argument("--out", default=None, help="--deploy: the file to write")
    ap.add_argument("--calib", type=int, default=512,
                    help="--int8: training images for the activation ranges")
    ap.add_argument("--tta", type=int, default=None, choices=(0, 1, 2),
                    help="test-time augmentation: 0 none, 1 mirror, 2 mirror + translations "
                         "(default: the run's config.tta; the plain accuracy is printed too)")
    a = ap.parse_args(argv)
    why = None
    if a.quantize and not 2 <= a.quantize <= 8:
        why = f"--quantize must be 0 (off) or 2..8 bits; got {a.quantize}"
    elif a.deploy and not a.out:
        why = "--deploy needs --out PATH (the file to write)"
    elif (a.out or a.int8) and not a.deploy:
        why = "--out and --int8 go with --deploy onnx|stablehlo"
    elif a.int8 and a.deploy != "onnx":
        why = "--int8 is for --deploy onnx (the StableHLO export is float32)"
    elif a.deploy and a.export:
        why = "--export (fsjax's own format) and --deploy are separate runs; give one"
    elif a.calib < 1:
        why = f"--calib must be a positive number of images; got {a.calib}"
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    try:
        model, meta = restore(a.workdir, a.which)
        if a.deploy and meta.get("model") == "ssd":
            raise ValueError("--deploy exports classifiers; export a detector with --export "
                             "PATH (fsjax's format, packed with --quantize)")
        dfs_table = report.format_locations(report.location_rows(model))
        if a.freeze_dfs or a.quantize:  # a packed export needs integer offsets
            from fsjax.nn import freeze_dfs

            freeze_dfs(model)
        if a.int8 and not a.quantize and not meta.get("quant", {}).get("bits"):
            a.quantize, a.per_channel = 8, True  # PTQ, so fake-quant has a number to compare
        if a.quantize:
            q = quant.QuantConfig(bits=a.quantize, per_channel=a.per_channel, method=a.method)
            entries = quant.quantize_model(model, q)
            meta = dict(meta, quant=dict(bits=0))  # weights are already dequantized
        elif a.deploy and meta.get("quant", {}).get("bits"):  # QAT: export the quantized weights
            quant.quantize_model(model, quant.QuantConfig.from_config(meta["quant"]))
            meta = dict(meta, quant=dict(bits=0))
        if a.deploy:
            ds = load_data(ml_collections.ConfigDict(meta["config"]))  # read once, used twice
            metrics = evaluate(model, meta, ds=ds) if a.int8 else {}
            res = deploy_run(model, meta, a.deploy, a.out, a.int8, a.calib, ds=ds)
            if a.int8:
                res["fsjax_fake_quant_accuracy"] = metrics["accuracy"]
            print(json.dumps(res, default=float))
            if not a.int8 and res["max_abs_diff"] > 1e-4:
                print(f"error: the {a.deploy} export's logits differ from fsjax's by "
                      f"{res['max_abs_diff']:.3g} (> 1e-4)", file=sys.stderr)
                return 1
            return 0
        metrics = evaluate(model, meta)
        tta = meta["config"].get("tta", 0) if a.tta is None else a.tta
        if tta:
            metrics["tta"] = tta
            metrics["tta_accuracy"] = evaluate(model, meta, tta=tta)["accuracy"]
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
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
