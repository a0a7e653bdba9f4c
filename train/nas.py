"""Derive a DARTS genotype from a search run: ``python -m train.nas --workdir DIR``.

Writes ``DIR/genotype.json`` (genotype, how many of each cell's 8 edges are parametric, rounded
DFS locations of the supernet, search cost and peak host memory), ``DIR/cells.png`` and
``DIR/arch_evolution.png`` (the op weights and the derived genotype per epoch), and prints the
search cost in device-hours (epochs' wall time x device count) and the derived network's
stored parameters at the evaluation size. ``--max-skips N`` caps the skip connections of each
derived cell (P-DARTS); ``--max-free N`` caps the parameter-free ops (skips and pooling) of the
normal cell, the weakest replaced by their edge's strongest conv. The final architecture
weights are kept in ``genotype.json`` (``arch_weights``), so a later derivation needs no
checkpoint.
Then train it: ``python -m train.main --config configs/nas/darts_eval.py:DIR/genotype.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def derive(workdir: str, eval_cells: int = 20, eval_channels: int = 36,
           conv: dict | None = None, max_skips: int | None = None,
           max_free: int | None = None) -> dict:
    from fsjax import export, models, report
    from fsjax.models.darts import DartsSearch, draw_genotype, parametric_edges, plot_arch_evolution
    from train.eval import restore
    from train.progress import MetricsLog

    model, meta = restore(workdir, "latest")
    if not isinstance(model, DartsSearch):
        raise ValueError(f"{workdir} is not a DARTS search run (model {meta['model']!r})")
    genotype = model.genotype(max_skips, max_free)
    uncapped = model.genotype()
    records = MetricsLog.read(os.path.join(workdir, "metrics.jsonl"))
    results = os.path.join(workdir, "results.json")
    peak = json.load(open(results)).get("peak_host_memory_mb") if os.path.exists(results) \
        else None
    devices = int(meta.get("devices", 1))
    hours = sum(r.get("epoch_s", 0.0) for r in records) * devices / 3600
    conv = conv or {k: v for k, v in meta["conv"].items()}
    net = models.create("darts_eval", num_classes=meta["num_classes"],
                        conv=models.ConvFactory(**{**conv, "overrides": dict(conv.get(
                            "overrides", {}))}),
                        genotype=genotype, cells=eval_cells, channels=eval_channels,
                        auxiliary=False, in_channels=meta["in_channels"])
    net.eval()
    _, totals = report.report(net, tuple(meta["input_shape"]))
    out = dict(genotype=genotype, max_skips=max_skips, max_free=max_free,
               parametric_edges={k: parametric_edges(genotype[k]) for k in ("normal", "reduce")},
               parametric_edges_uncapped={k: parametric_edges(uncapped[k])
                                          for k in ("normal", "reduce")},
               search_peak_host_memory_mb=peak,
               arch_weights={k: np.round(v, 6).tolist()
                             for k, v in model.arch_weights().items()},
               search_epochs=len(records), search_device_hours=hours,
               search_device=meta.get("device", ""), eval_cells=eval_cells,
               eval_channels=eval_channels, eval_stored_params=totals["stored_params"],
               dfs_locations={d["name"]: [round(v) for v in d["locations"]]
                              for d in export.describe(model) if "locations" in d})
    path = os.path.join(workdir, "genotype.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)
    draw_genotype(genotype, os.path.join(workdir, "cells.png"))
    if any(r.get("arch") for r in records):
        plot_arch_evolution(records, model.primitives, os.path.join(workdir,
                                                                   "arch_evolution.png"),
                            max_skips, max_free)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.nas", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--channels", type=int, default=36)
    ap.add_argument("--max-skips", type=int, default=None,
                    help="at most this many skip connections per derived cell (P-DARTS)")
    ap.add_argument("--max-free", type=int, default=None,
                    help="at most this many parameter-free ops (skips, pooling) in the derived "
                         "normal cell")
    a = ap.parse_args(argv)
    try:
        out = derive(a.workdir, a.cells, a.channels, max_skips=a.max_skips,
                     max_free=a.max_free)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(out, a.workdir))
    return 0


def summary(out: dict, workdir: str) -> str:
    """A few lines for a person; everything is in ``genotype.json``."""
    g = out["genotype"]
    cell = lambda kind: ", ".join(f"{op}<-{i}" for op, i in g[kind])
    return "\n".join([
        f"normal cell: {cell('normal')}",
        f"reduce cell: {cell('reduce')}",
        f"parametric edges: normal {out['parametric_edges']['normal']} of 8, reduce "
        f"{out['parametric_edges']['reduce']} of 8",
        f"search: {out['search_epochs']} epochs, {out['search_device_hours']:.3f} device-hours "
        f"on {out['search_device'] or 'unknown device'}",
        f"evaluation network ({out['eval_cells']} cells, {out['eval_channels']} channels): "
        f"{out['eval_stored_params']:,} stored parameters (without the training-only "
        f"auxiliary head)",
        f"written: {os.path.join(workdir, 'genotype.json')}, {os.path.join(workdir, 'cells.png')}",
        f"next: python -m train.main --config "
        f"configs/nas/darts_eval.py:{os.path.join(workdir, 'genotype.json')}"])


if __name__ == "__main__":
    sys.exit(main())
