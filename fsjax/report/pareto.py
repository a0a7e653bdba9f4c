"""Accuracy vs bytes on disk: the Pareto front of a set of runs and its plot (log x)."""

from __future__ import annotations

import math

__all__ = ["pareto_front", "plot"]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated (smaller size and higher accuracy), by size."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -float("inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _size(v, _pos=None) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if v >= scale:
            return f"{v / scale:g} {unit}"
    return f"{v:g} B"


def plot(runs: list[dict], out: str) -> str:
    """Write the plot of ``runs`` (dicts with ``accuracy`` in [0, 1], ``export_bytes`` or
    ``bytes``, and ``label`` or ``model`` + ``conv``) to ``out`` (PNG); returns ``out``."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["export_bytes"] if "export_bytes" in r else r["bytes"], 100 * r["accuracy"])
           for r in runs]
    front = pareto_front(pts)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    placed = []  # (log10 bytes, accuracy) of the labels so far
    for (x, y), r in zip(pts, runs, strict=True):
        ax.scatter(x, y, s=25)
        # a label next to an earlier point of about the same size and accuracy goes below it
        near = sum(abs(math.log10(max(x, 1)) - lx) < 0.1 and abs(y - ly) < 0.8 for lx, ly in placed)
        placed.append((math.log10(max(x, 1)), y))
        ax.annotate(r.get("label") or f"{r['model']} {r['conv']}", (x, y), fontsize=7,
                    xytext=(3, 3 - 10 * near), textcoords="offset points")
    fx = [pts[i][0] for i in front]
    fy = [pts[i][1] for i in front]
    ax.step(fx, fy, where="post", color="k", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_size))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("bytes on disk")
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
