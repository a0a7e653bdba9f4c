"""Accuracy vs stored bytes (log scale), one point per run, Pareto front marked.

    python -m benchmarks.pareto RUN_DIR [RUN_DIR ...] --out docs/pareto.png

Each RUN_DIR holds a ``results.json`` (from ``train.main``); the size is its ``export_bytes``
when present (bytes on disk of the export), else the parameter bytes of the report.
"""

from __future__ import annotations

import argparse
import json
import os


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated (smaller size and higher accuracy), by size."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -float("inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot(runs: list[dict], out: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r.get("export_bytes", r["bytes"]), 100 * r["accuracy"]) for r in runs]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (x, y), r in zip(pts, runs, strict=True):
        ax.scatter(x, y, s=25)
        ax.annotate(f"{r['model']} {r['conv']}", (x, y), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    fx = [pts[i][0] for i in front]
    fy = [pts[i][1] for i in front]
    ax.step(fx, fy, where="post", color="k", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("stored bytes")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


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
