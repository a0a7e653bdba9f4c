"""Accuracy vs bytes on disk: the Pareto front of a set of runs and its plot (log x)."""

from __future__ import annotations

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
    colors = [ax.scatter(x, y, s=25).get_facecolor()[0] for x, y in pts]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_size))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("bytes on disk")
    ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    fig.canvas.draw()  # fixes limits and layout, so data -> pixel positions are final
    placed = []  # boxes of the labels so far, in points
    right = ax.get_window_extent().x1 * 72 / fig.dpi
    for (x, y), r, color in zip(pts, runs, colors, strict=True):
        text = r.get("label") or f"{r['model']} {r['conv']}"
        px, py = ax.transData.transform((x, y))
        w, h = 4.2 * len(text), 10.0  # a fontsize-7 label, in points, about
        px, py = px * 72 / fig.dpi, py * 72 / fig.dpi  # pixels -> points
        # the first offset whose box overlaps no earlier label
        offsets = ((3, 3), (3, -11), (3, 14), (3, -22), (-w - 3, 3), (-w - 3, -11), (3, 25),
                   (3, -33))
        for dx, dy in offsets:
            box = (px + dx, py + dy, px + dx + w, py + dy + h)
            if box[2] < right and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in placed):
                break
        placed.append(box)
        # the label in its point's colour, and a leader line where it had to move away
        ax.annotate(text, (x, y), fontsize=7, xytext=(dx, dy), textcoords="offset points",
                    color=color, arrowprops=None if (dx, dy) == offsets[0] else dict(
                        arrowstyle="-", lw=0.5, color=color, shrinkA=0, shrinkB=2))
    fx = [pts[i][0] for i in front]
    fy = [pts[i][1] for i in front]
    ax.step(fx, fy, where="post", color="k", lw=1, label="Pareto front")
    ax.legend()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
