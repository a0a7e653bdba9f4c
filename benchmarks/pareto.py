"""Accuracy vs stored bytes (log scale), one point per run, Pareto front marked.

    python -m benchmarks.pareto RUN_DIR [RUN_DIR ...] --out docs/pareto.png

Each RUN_DIR holds a ``results.json`` (from ``train.main``); the size is its ``export_bytes``
when present (bytes on disk of the export), else the parameter bytes of the report.
"""

from __future__ import annotations

import argparse
import json
import os

from fsjax.report.pareto import pareto_front, plot  # noqa: F401 (re-exported)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="pareto.png")
    a = ap.parse_args(argv)
    runs = []
    for d in a.runs:
        with open(os.path.join(d, "results.json")) as f:
            runs.append(json.load(f))
    print(plot(runs, a.out))


if __name__ == "__main__":
    main()
