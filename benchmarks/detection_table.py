"""The CPU detection table: SSD (ResNet-8 backbone) on the synthetic scenes, dense vs FS rho=4
vs FS rho=4 + 8-bit PTQ vs WKSC g=4, and FS rho=4 with dense prediction heads
(``configs/detection/synthetic.py``).

    python -m benchmarks.detection_table [--root runs/detection] [--lanes 2]
    python -m benchmarks.detection_table --report [--docs docs]

Runs the jobs two at a time, one core each (:mod:`benchmarks.jobs`: resumable). ``--report``
prints the markdown table of docs/results.md ("Detection"), writes ``ROOT/table.json`` and
copies the FS rho=4 detector's picture of test detections to ``DOCS/detection_fs4.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from benchmarks import jobs

CONFIG = "configs/detection/synthetic.py"


def _train(variant):
    return [sys.executable, "-m", "train.main", "--config", f"{CONFIG}:{variant}"]


JOBS = {
    "det-dense": ((), _train("dense")),
    "det-fs4": ((), _train("fs4")),
    "det-wks4": ((), _train("wks4")),
    "det-fs4-dense-heads": ((), _train("fs4,dense_heads")),
    "det-fs4-ptq8": (("det-fs4",), [
        "sh", "-c", f"{sys.executable} -m train.eval --workdir {{root}}/det-fs4 --which latest "
        f"--quantize 8 --per-channel --export {{workdir}}/model > {{workdir}}/eval.json.tmp && "
        f"mv {{workdir}}/eval.json.tmp {{workdir}}/eval.json"]),
}
LABELS = {"det-dense": "dense", "det-fs4": "FS rho=4", "det-wks4": "WKSC g=4",
          "det-fs4-dense-heads": "FS rho=4, dense heads",
          "det-fs4-ptq8": "FS rho=4 + 8-bit PTQ"}


def _json(path):
    with open(path) as f:
        return json.load(f)


def _row(root: str, name: str) -> dict:
    from benchmarks.cifar_table import run_export_bytes

    d = os.path.join(root, name)
    done = _json(os.path.join(d, "DONE.json"))
    row = dict(name=name, label=LABELS[name], command=done["command"],
               revision=done["revision"])
    if name.endswith("-ptq8"):
        src = os.path.join(root, "det-fs4")
        with open(os.path.join(d, "eval.json")) as f:
            e = json.loads(f.read().strip().splitlines()[-1])
        r = _json(os.path.join(src, "results.json"))
        row.update(accuracy=e["accuracy"], map50_all=e["map50_all"],
                   stored_params=e["stored_params"], dense_params=e["dense_params"],
                   effective_params=e["effective_params_paper"], macs=e["macs"],
                   export_bytes=e["export_bytes"], images_per_s=None,
                   wall_s=jobs.train_seconds([src]))
        return row
    r = _json(os.path.join(d, "results.json"))
    row.update(accuracy=r["accuracy"], map50_all=r.get("map50_all"),
               stored_params=r["stored_params"], dense_params=r["dense_params"],
               effective_params=float(r["stored_params"]), macs=r["macs"],
               export_bytes=run_export_bytes(d), images_per_s=r["images_per_s"],
               wall_s=jobs.train_seconds([d]), subset=r.get("subset"), epochs=r["epochs"])
    return row


def format_table(rows: list[dict]) -> str:
    out = ["| detector | mAP@0.5 (VOC07 11-point) | mAP@0.5 (all-point) | stored | dense-eq. | "
           "effective | export bytes | MACs | train img/s | training time | revision |",
           "|" + " --- |" * 11]
    for r in rows:
        ips = f"{r['images_per_s']:.0f}" if r.get("images_per_s") else "-"
        wall = (f"{r['wall_s'] / 60:.0f} min" if not r["name"].endswith("-ptq8")
                else "(FS rho=4's, + PTQ)")
        out.append(f"| {r['label']} | {100 * r['accuracy']:.2f} | {100 * r['map50_all']:.2f} | "
                   f"{r['stored_params']:,} | {r['dense_params']:,} | "
                   f"{r['effective_params']:,.0f} | {r['export_bytes']:,} | "
                   f"{r['macs'] / 1e6:.2f}M | {ips} | {wall} | `{r['revision']}` |")
    return "\n".join(out)


def report(root: str, docs: str) -> int:
    rows = [_row(root, n) for n in JOBS if jobs.done(root, n)]
    if not rows:
        print(f"error: no finished job under {root}; run python -m benchmarks.detection_table "
              f"first", file=sys.stderr)
        return 2
    from train.results import write_json

    write_json(os.path.join(root, "table.json"), rows)
    print(format_table(rows))
    missing = [n for n in JOBS if not jobs.done(root, n)]
    if missing:
        print(f"\nnot finished: {', '.join(missing)}")
    pic = os.path.join(root, "det-fs4", "detections.png")
    if os.path.exists(pic):
        os.makedirs(docs, exist_ok=True)
        shutil.copyfile(pic, os.path.join(docs, "detection_fs4.png"))
    return 0


def main(argv=None) -> int:
    return jobs.main(argv, "python -m benchmarks.detection_table", __doc__, JOBS, "runs/detection", report)


if __name__ == "__main__":
    sys.exit(main())
