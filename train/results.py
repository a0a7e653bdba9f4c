"""End-of-run results table (and JSON) and a PNG of the training curves."""

from __future__ import annotations

import json
import os


def results_table(r: dict) -> str:
    rows = [
        ("model", f"{r['model']} ({r['conv']})"),
        ("dataset", r["dataset"]),
        ("test accuracy (final)", f"{100 * r['accuracy']:.2f}%"),
        ("test accuracy (best)", f"{100 * r['best_accuracy']:.2f}% (epoch {r['best_epoch']})"),
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


def write_results(workdir: str, r: dict):
    path = os.path.join(workdir, "results.json")
    with open(path + ".tmp", "w") as f:
        json.dump(r, f, indent=1)
    os.replace(path + ".tmp", path)


def plot_curves(workdir: str, records: list[dict]) -> str | None:
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in records]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(ep, [r["train_loss"] for r in records], label="train")
    a.plot(ep, [r["test_loss"] for r in records], label="test")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend()
    b.plot(ep, [100 * r["train_accuracy"] for r in records], label="train")
    b.plot(ep, [100 * r["test_accuracy"] for r in records], label="test")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy (%)")
    b.legend()
    fig.tight_layout()
    out = os.path.join(workdir, "curves.png")
    fig.savefig(out + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(out + ".tmp.png", out)
    return out
