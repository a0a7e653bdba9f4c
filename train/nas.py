"""Derive a DARTS genotype from a search run: ``python -m train.nas --workdir DIR``.

Writes ``DIR/genotype.json`` (genotype, rounded DFS locations of the supernet, search cost)
and ``DIR/cells.png``, and prints the search cost in GPU-hours (device-hours: epochs' wall
time x device count) and the derived network's stored parameters at the evaluation size.
Then train it: ``python -m train.main --config configs/nas/darts_eval.py:DIR/genotype.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def derive(workdir: str, eval_cells: int = 20, eval_channels: int = 36,
           conv: dict | None = None) -> dict:
    from fsjax import export, models, report
    from fsjax.models.darts import DartsSearch, draw_genotype
    from train.eval import restore
    from train.progress import MetricsLog

    model, meta = restore(workdir, "latest")
    if not isinstance(model, DartsSearch):
        raise ValueError(f"{workdir} is not a DARTS search run (model {meta['model']!r})")
    genotype = model.genotype()
    records = MetricsLog.read(os.path.join(workdir, "metrics.jsonl"))
    devices = int(meta.get("devices", 1))
    hours = sum(r.get("epoch_s", 0.0) for r in records) * devices / 3600
    conv = conv or {k: v for k, v in meta["conv"].items()}
    net = models.create("darts_eval", num_classes=meta["num_classes"],
                        conv=models.ConvFactory(**{**conv, "overrides": dict(conv.get(
                            "overrides", {}))}),
                        genotype=genotype, cells=eval_cells, channels=eval_channels,
                        in_channels=meta["in_channels"])
    net.eval()
    _, totals = report.report(net, tuple(meta["input_shape"]))
    out = dict(genotype=genotype, search_epochs=len(records), search_device_hours=hours,
               search_device=meta.get("device", ""), eval_cells=eval_cells,
               eval_channels=eval_channels, eval_stored_params=totals["stored_params"],
               dfs_locations=[d for d in export.describe(model) if "locations" in d][:0] or
               {d["name"]: [round(v) for v in d["locations"]] for d in export.describe(model)
                if "locations" in d})
    path = os.path.join(workdir, "genotype.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)
    draw_genotype(genotype, os.path.join(workdir, "cells.png"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.nas", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--channels", type=int, default=36)
    a = ap.parse_args(argv)
    try:
        out = derive(a.workdir, a.cells, a.channels)
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
        f"search: {out['search_epochs']} epochs, {out['search_device_hours']:.3f} device-hours "
        f"on {out['search_device'] or 'unknown device'}",
        f"evaluation network ({out['eval_cells']} cells, {out['eval_channels']} channels): "
        f"{out['eval_stored_params']:,} stored parameters",
        f"written: {os.path.join(workdir, 'genotype.json')}, {os.path.join(workdir, 'cells.png')}",
        f"next: python -m train.main --config "
        f"configs/nas/darts_eval.py:{os.path.join(workdir, 'genotype.json')}"])


if __name__ == "__main__":
    sys.exit(main())
