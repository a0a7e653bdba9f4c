"""End-of-run results table (and JSON) and a PNG of the training curves."""

from __future__ import annotations

import json
import os


def results_table(r: dict) -> str:
    data = f"{r['dataset']} ({r.get('train_examples', 0):,} train / " \
           f"{r.get('test_examples', 0):,} test)"
    rows = [
        ("model", f"{r['model']} ({r['conv']})"),
        ("config", r.get("config", "")),
        ("dataset", data + (f" SUBSET: {r['subset']}" if r.get("subset") else "")),
        (f"test {r.get('metric', 'accuracy')} (final)", f"{100 * r['accuracy']:.2f}%"),
        *([(f"test accuracy with TTA level {r['tta']} (final)", f"{100 * r['tta_accuracy']:.2f}%")]
          if "tta_accuracy" in r else []),
        (f"test {r.get('metric', 'accuracy')} (best)",
         f"{100 * r['best_accuracy']:.2f}% (epoch {r['best_epoch']})"),
        *([("COCO mAP@[.5:.95] (final)", f"{100 * r['coco_map']:.2f}%")]
          if "coco_map" in r else []),
        ("stored parameters", f"{r['stored_params']:,}"),
        ("dense-equivalent parameters", f"{r['dense_params']:,}"),
        ("compression (dense/stored)", f"{r['compression']:.2f}x"),
        ("MACs per image", f"{r['macs'] / 1e6:,.2f}M (1 MAC = 2 FLOPs)"),
        ("parameter bytes", f"{r['bytes']:,}"),
        ("train images/s", f"{r['images_per_s']:,.0f} (median epoch, {r['device']})"),
        ("wall time", f"{r['wall_s']:.1f}s"),
    ]
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 40)
    return "\n".join([line, *(f"{k.ljust(w)}  {v}" for k, v in rows), line])


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON to a temporary file and rename it: never half-written."""
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


def write_results(workdir: str, r: dict):
    write_json(os.path.join(workdir, "results.json"), r)


def plot_curves(workdir: str, records: list[dict], title: str = "",
                detection: bool = False) -> str | None:
    """Loss and accuracy per epoch, train and test, in two labelled panels (``detection``:
    test mAP@0.5 and the train matched-box accuracy)."""
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in records]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    acc = "test mAP@0.5 / train matched-box accuracy (%)" if detection else "accuracy (%)"
    for ax, key, scale, name in ((a, "loss", 1, "loss"), (b, "accuracy", 100, acc)):
        ax.plot(ep, [scale * r[f"train_{key}"] for r in records], "o-", ms=4,
                label="train (augmented, running mean over the epoch)" if key == "loss" or not
                detection else "train: matched default boxes classified right")
        ax.plot(ep, [scale * r[f"test_{key}"] for r in records], "s-", ms=4,
                label="test (end of epoch)" if key == "loss" or not detection
                else "test mAP@0.5 (end of epoch)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or os.path.basename(os.path.abspath(workdir)))
    fig.tight_layout()
    out = os.path.join(workdir, "curves.png")
    fig.savefig(out + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(out + ".tmp.png", out)
    return out
