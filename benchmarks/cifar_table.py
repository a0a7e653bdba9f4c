"""The CPU CIFAR-10 tables: train every variant of a table's config, then report.

    python -m benchmarks.cifar_table [--table resnet8|fast] [--root DIR] [--lanes 2]
        [--only NAME,...]
    python -m benchmarks.cifar_table [--table ...] --report [--docs docs]

Tables (:data:`TABLES`): ``resnet8`` (``configs/cifar10/table.py``, the small-network table)
and ``fast`` (``configs/cifar10/fast.py``, the airbench94-shaped network). Runs a table's jobs
``--lanes`` at a time, each pinned to its own CPU core with single-threaded XLA
(:mod:`benchmarks.jobs`: resumable, a job runs once its inputs are done, each start's
revision recorded). Each finished job's row and curve are kept in ``benchmarks/records/
<records>/NAME.json`` (committed); a re-run runs only the jobs not recorded there, and the
report takes each row from ``--root`` where the job ran there, else from its record.

``--report`` prints the markdown table of docs/results.md from the finished jobs, writes
``ROOT/table.json``, the accuracy-vs-bytes plot with its Pareto front and the dense / FS / DFS
training curves (PNG, into ``--docs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys

from benchmarks import jobs

RECORDS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "records")


@dataclasses.dataclass(frozen=True)
class Table:
    """One table: its jobs (name -> (inputs, command); ``{root}``/``{workdir}`` filled in; order
    = priority), the rows in table order, the jobs that are not rows, where its records live,
    its default run root and its figures."""

    name: str
    jobs: dict
    order: tuple
    not_rows: tuple
    records: str
    root: str
    pareto_png: str
    curves_png: str
    network: str  # for titles: "ResNet-8", ...
    # (row, base row) pairs: recipe ablations, reported as differences from their base and
    # left off the accuracy-vs-bytes plot (they are not compression methods)
    ablations: tuple = ()

    def record_path(self, name: str) -> str:
        return os.path.join(self.records, f"{name}.json")


def _train(config, variant, seed=0):
    return [sys.executable, "-m", "train.main", "--config", f"{config}:{variant},{seed}"]


def _compress(config, step, source):
    return [sys.executable, "-m", "train.compress", "--config", f"{config}:compress,{step}",
            f"--config.compress.source={{root}}/{source}"]


def _torch(recipe):
    return [sys.executable, "-m", "benchmarks.torch_cifar_reference", "--recipe", recipe,
            "--workdir", "{workdir}"]


R8 = "configs/cifar10/table.py"
# The conversions start from the seed-1 runs: seed 0's run directories were not kept.
RESNET8_JOBS = {
    "dense-s1": ((), _train(R8, "dense", 1)),
    "fs4-s1": ((), _train(R8, "fs4", 1)),
    "fs4-ptq8": (("fs4-s1",), _compress(R8, "quant:8", "fs4-s1")),
    # the dense row's independent reference: the same ResNet-8 and recipe in PyTorch
    "torch-dense": ((), _torch("resnet8")),
    "fs4-proj": (("dense-s1",), _compress(R8, "fs:4", "dense-s1")),
    "fs4-qat4": (("fs4-s1",), _compress(R8, "quant:4", "fs4-s1")),
    "thinet50": (("dense-s1",), _compress(R8, "thinet:0.5", "dense-s1")),
    # DFSNet NAS: a small first-order DARTS search (DFS rho=4 supernet, 3 cells, 8 channels,
    # 5 candidate ops, 4,000 training images split in halves, 4 epochs; a step of the 5-cell
    # supernet took 21 s on one core: 10,000 images x 8 epochs would have taken 3.6 hours),
    # its genotype, then the derived network trained with the table's recipe
    "nas-search": ((), ["sh", "-c", " ".join([
        sys.executable, "-m", "train.main", "--config", "configs/nas/darts_search.py:4",
        "--config.model_kw.cells=3", "--config.model_kw.channels=8",
        "\"--config.model_kw.primitives=('none','max_pool_3x3','skip_connect','sep_conv_3x3',"
        "'dil_conv_3x3')\"", "--config.num_epochs=4", "--config.data_limit=4000",
        "--config.eval_limit=2000", "--workdir", "{workdir}", "&&", sys.executable, "-m",
        "train.nas", "--workdir", "{workdir}", "--cells", "5", "--channels", "16"])]),
    "fs8-s0": ((), _train(R8, "fs8")),
    "wks4-s0": ((), _train(R8, "wks4")),
    "dfs4-s0": ((), _train(R8, "dfs4")),
    "nas-eval": (("nas-search",), [sys.executable, "-m", "train.main", "--config",
                                    f"{R8}:darts,{{root}}/nas-search/genotype.json"]),
    "dense-s0": ((), _train(R8, "dense")),
    "fs4-s0": ((), _train(R8, "fs4")),
    "fs2-s0": ((), _train(R8, "fs2")),
}

FAST = "configs/cifar10/fast.py"


def _search(arg):
    """A DFSNet-NAS search (configs/nas/darts_search.py:<arg>) and its genotype: P-DARTS's cap
    of 2 skips, and at most 2 parameter-free ops in the normal cell (the searches recorded
    before this cap, nas-search and nas-search-alr, were derived with the skip cap alone)."""
    return ["sh", "-c", " ".join([
        sys.executable, "-m", "train.main", "--config", f"configs/nas/darts_search.py:{arg}",
        "--workdir", "{workdir}", "&&", sys.executable, "-m", "train.nas", "--workdir",
        "{workdir}", "--max-skips", "2", "--max-free", "2", "--cells", "3", "--channels",
        "16"])]


def _nas_eval(search, variant="fs4"):
    return [sys.executable, "-m", "train.main", "--config",
            f"{FAST}:darts,{{root}}/{search}/genotype.json,{variant}"]
# The conversions start from the seed-0 runs (run them in the session that trains those).
FAST_JOBS = {
    "torch-dense": ((), _torch("airbench")),
    "dense-s0": ((), _train(FAST, "dense")),
    "fs4-s0": ((), _train(FAST, "fs4")),
    "thinet50": (("dense-s0",), _compress(FAST, "thinet:0.5", "dense-s0")),
    "fs4-ptq8": (("fs4-s0",), _compress(FAST, "quant:8", "fs4-s0")),
    "fs4-qat4": (("fs4-s0",), _compress(FAST, "quant:4", "fs4-s0")),
    "fs4-proj": (("dense-s0",), _compress(FAST, "fs:4", "dense-s0")),
    # ThiNet -> FS -> 8 bits: aimed at the smallest model within 1 point of dense
    "small": (("dense-s0",), _compress(FAST, "thinet:0.5,fs:4,quant:8", "dense-s0")),
    "dfs4-s0": ((), _train(FAST, "dfs4")),
    # DFSNet NAS on the CPU: two seeds of the DFS-supernet search, a dense-supernet search at
    # the same budget, and the derived network trained with this table's recipe
    "nas-search": ((), _search("cpu,free_drop=0")),
    # seed 0 again at the current budget (nas-search above read 16,000 images, derived without
    # the parameter-free cap and kept no architecture weights)
    "nas-search-s0": ((), _search("cpu,0,free_drop=0")),
    "nas-search-s1": ((), _search("cpu,1,free_drop=0")),
    "nas-search-dense": ((), _search("cpu,dense,free_drop=0")),
    # the same search with a 10x architecture lr (the default's weights barely moved)
    "nas-search-alr": ((), _search("cpu,arch_lr=6e-3,free_drop=0")),
    # P-DARTS's dropout on the parameter-free candidates (skips and pools), rate 0.5: the
    # config's default since these two seeds (the searches above say free_drop=0, as they ran)
    "nas-search-fdrop": ((), _search("cpu,free_drop=0.5")),
    # its second seed, and the dense supernet with it (seed 0): is the remedy robust?
    "nas-search-fdrop-s1": ((), _search("cpu,1,free_drop=0.5")),
    "nas-search-fdrop-dense": ((), _search("cpu,dense,free_drop=0.5")),
    "nas-search-fdrop-s2": ((), _search("cpu,2,free_drop=0.5")),
    # the networks are trained from the default search's genotype (free_drop 0.5, seed 1: 6 of
    # 8 normal-cell edges parametric as ranked), with FS rho=4 and dense convs, and from the
    # dense supernet's at the same settings (nas-eval ran: 67.60%, 76 min alone on both cores,
    # below fs4-narrow, the hand-designed network of its size; nas-eval-dsearch: 69.84%, 83 min,
    # above it; nas-eval-dense: 70.16%, 87 min), and from the DFS supernet's of the dense one's
    # seed (0): like for like
    "nas-eval": (("nas-search-fdrop-s1",), _nas_eval("nas-search-fdrop-s1")),
    "nas-eval-dense": (("nas-search-fdrop-s1",), _nas_eval("nas-search-fdrop-s1", "dense")),
    "nas-eval-dsearch": (("nas-search-fdrop-dense",), _nas_eval("nas-search-fdrop-dense")),
    "nas-eval-dfs-seed0": (("nas-search-fdrop",), _nas_eval("nas-search-fdrop")),
    # the same genotype at 5 cells (three normal cells instead of one; 38,454 stored weights,
    # 25.6M MACs; about 2 hours alone on both cores by nas-eval's speed), against fs4-w32
    "nas-eval-5c": (("nas-search-fdrop-s1",), _nas_eval("nas-search-fdrop-s1", "fs4,cells=5")),
    "fs2-s0": ((), _train(FAST, "fs2")),
    "fs8-s0": ((), _train(FAST, "fs8")),
    "wks4-s0": ((), _train(FAST, "wks4")),
    "ks4-s0": ((), _train(FAST, "ks4")),
    "dense-s1": ((), _train(FAST, "dense", 1)),
    # the recipe's pieces, one off at a time (dense, seed 0): does each pay on this copy of
    # CIFAR-10? (one seed: differences under about 0.5 points are within run-to-run noise)
    "dense-no-lookahead": ((), _train(FAST, "dense") + ["--config.lookahead.every=0"]),
    "dense-no-smoothing": ((), _train(FAST, "dense") + ["--config.label_smoothing=0.0"]),
    "dense-random-flip": ((), _train(FAST, "dense") + ["--config.augment.alternate_flip=False"]),
    "dense-no-whiten": ((), _train(FAST, "dense", "0,no-whiten")),
    "fs4-s1": ((), _train(FAST, "fs4", 1)),
    # the FS gap at twice the schedule (each about 90 minutes alone on both cores)
    "dense-20ep": ((), _train(FAST, "dense", "0,epochs=20")),
    "fs4-20ep": ((), _train(FAST, "fs4", "0,epochs=20")),
    # a hand-designed network of the NAS network's size (10,296 stored weights, 41 KB):
    # the fast network at widths 16/32/32 with FS rho=4, the same recipe
    "fs4-narrow": ((), _train(FAST, "fs4") + ["--config.model_kw.widths=(16,32,32)"]),
    # its second seed: the run-to-run spread at this size, against which NAS rows are read
    "fs4-narrow-s1": ((), _train(FAST, "fs4", 1) + ["--config.model_kw.widths=(16,32,32)"]),
    # ... and of nas-eval-5c's size (37,560 stored weights, 17.1M MACs): widths 32/64/64
    # (ran: 78.80%, 11 min alone on both cores)
    "fs4-w32": ((), _train(FAST, "fs4") + ["--config.model_kw.widths=(32,64,64)"]),
    "fs4-w32-s1": ((), _train(FAST, "fs4", 1) + ["--config.model_kw.widths=(32,64,64)"]),
}

TABLES = {
    "resnet8": Table(
        "resnet8", RESNET8_JOBS,
        ("dense-s0", "dense-s1", "fs2-s0", "fs4-s0", "fs4-s1", "fs8-s0", "dfs4-s0", "wks4-s0",
         "thinet50", "fs4-proj", "fs4-ptq8", "fs4-qat4", "nas-eval"),
        ("nas-search", "torch-dense"), os.path.join(RECORDS_DIR, "cifar_table"), "runs/table",
        "cifar_cpu_pareto.png", "cifar_cpu_curves.png", "ResNet-8"),
    "fast": Table(
        "fast", FAST_JOBS,
        ("dense-s0", "dense-s1", "fs2-s0", "fs4-s0", "fs4-s1", "fs8-s0", "dfs4-s0", "ks4-s0",
         "wks4-s0", "thinet50", "fs4-proj", "fs4-ptq8", "fs4-qat4", "small", "fs4-narrow",
         "fs4-narrow-s1", "fs4-w32", "fs4-w32-s1",
         "dense-no-lookahead", "dense-no-smoothing",
         "dense-random-flip", "dense-no-whiten",
         "dense-20ep", "fs4-20ep", "nas-eval", "nas-eval-dense", "nas-eval-dsearch",
         "nas-eval-dfs-seed0", "nas-eval-5c"),
        ("torch-dense", "nas-search", "nas-search-s0", "nas-search-s1", "nas-search-dense",
         "nas-search-alr", "nas-search-fdrop", "nas-search-fdrop-s1", "nas-search-fdrop-dense",
         "nas-search-fdrop-s2"),
        os.path.join(RECORDS_DIR, "cifar_fast"), "runs/fast",
        "cifar_fast_pareto.png", "cifar_fast_curves.png", "airbench94-shaped network",
        (("dense-no-lookahead", "dense-s0"), ("dense-no-smoothing", "dense-s0"),
         ("dense-random-flip", "dense-s0"), ("dense-no-whiten", "dense-s0"),
         ("dense-20ep", "dense-s0"), ("fs4-20ep", "fs4-s0"))),
}
RESNET8 = TABLES["resnet8"]
# the ResNet-8 table's names, as before the fast table existed
JOBS, ORDER, NOT_ROWS, RECORDS = RESNET8.jobs, RESNET8.order, RESNET8.not_rows, RESNET8.records


def recorded(name: str, t: Table = RESNET8) -> dict | None:
    path = t.record_path(name)
    return _json(path) if os.path.exists(path) else None


def record(root: str, name: str, t: Table = RESNET8) -> None:
    """Keep the finished job ``root/name``'s table row and test curve in ``t.records``."""
    from train.results import write_json

    d = os.path.join(root, name)
    if name.startswith("nas-search"):
        rec = dict(name=name, command=_json(os.path.join(d, "DONE.json"))["command"],
                   genotype=_json(os.path.join(d, "genotype.json")))
    elif name == "torch-dense":
        done = _json(os.path.join(d, "DONE.json"))
        rec = dict(_json(os.path.join(d, "results.json")), name=name, command=done["command"],
                   revision=done["revision"])
    else:
        rec = _row(root, name)
    curve = _run_curve(d)
    if curve:
        rec["curve"] = curve
    os.makedirs(t.records, exist_ok=True)
    write_json(t.record_path(name), rec)


def _restore_search(root: str, t: Table, name: str) -> None:
    """A recorded search is all its network needs (the genotype): put it back under root."""
    rec = recorded(name, t)
    d = os.path.join(root, name)
    if rec and not jobs.done(root, name):
        from train.results import write_json

        os.makedirs(d, exist_ok=True)
        write_json(os.path.join(d, "genotype.json"), rec["genotype"])
        write_json(os.path.join(d, "DONE.json"), dict(command=rec["command"],
                                                      revision="(restored from its record)"))


def pending(root: str, t: Table = RESNET8) -> list[str]:
    """The jobs still to run: those neither recorded nor done under ``root``, and the inputs
    they need that ``root`` lacks (a recorded input is run again for its checkpoint; a
    recorded search is restored from its record instead)."""
    need = [n for n in t.jobs if not recorded(n, t) and not jobs.done(root, n)]
    for n in need:
        for d in t.jobs[n][0]:
            if d.startswith("nas-search"):
                _restore_search(root, t, d)
    i = 0
    while i < len(need):
        need += [d for d in t.jobs[need[i]][0] if d not in need and not jobs.done(root, d)]
        i += 1
    return [n for n in t.jobs if n in need]


# ---------------------------------------------------------------------------- report


def _json(path):
    with open(path) as f:
        return json.load(f)


def run_export_bytes(workdir: str) -> int:
    """Bytes on disk of fsjax's export (``.npz``) of the run's latest checkpoint."""
    from fsjax import export
    from train.eval import restore

    path = os.path.join(workdir, "export", "model")
    if not os.path.exists(path + ".npz"):
        model, meta = restore(workdir, "latest")
        export.save(path, model, meta)
    return os.path.getsize(path + ".npz")


def _row(root: str, name: str) -> dict:
    d = os.path.join(root, name)
    done = _json(os.path.join(d, "DONE.json"))
    row = dict(name=name, command=done["command"], revision=done["revision"])
    if os.path.exists(os.path.join(d, "compress_results.json")):
        last = _json(os.path.join(d, "compress_results.json"))[-1]
        # every training run of the pipeline's steps: NN-<step>/train, a ThiNet step's
        # per-layer stageNN-*/ fine-tunes and its final/
        train = sorted(os.path.dirname(os.path.join(root_, f)) for s in sorted(os.listdir(d))
                       if s[:2].isdigit()
                       for root_, _, files in os.walk(os.path.join(d, s)) for f in files
                       if f == "results.json")
        ips = [_json(os.path.join(t, "results.json"))["images_per_s"] for t in train
               if os.path.basename(t) in ("train", "final")]
        row["wall_s"] = jobs.train_seconds(train)
        row.update(accuracy=last["accuracy"], tta_accuracy=last.get("tta_accuracy"),
                   stored_params=last["stored_params"],
                   dense_params=last["dense_params"], effective_params=last["effective_params"],
                   macs=last["macs"], export_bytes=last["export_bytes"],
                   images_per_s=statistics.median(ips) if ips else None)
    else:
        r = _json(os.path.join(d, "results.json"))
        row["wall_s"] = jobs.train_seconds([d])
        row.update(accuracy=r["accuracy"], tta_accuracy=r.get("tta_accuracy"),
                   stored_params=r["stored_params"],
                   dense_params=r["dense_params"], effective_params=float(r["stored_params"]),
                   macs=r["macs"], export_bytes=run_export_bytes(d), images_per_s=r["images_per_s"],
                   subset=r.get("subset"), epochs=r["epochs"])
    return row


# pairs of searches run at the same budget whose genotypes the report compares: two seeds of
# the DFS supernet, and the DFS supernet against the dense one, without and with free_drop
SAME_BUDGET_SEARCHES = (("nas-search-s0", "nas-search-s1"), ("nas-search-s1", "nas-search-dense"),
                        ("nas-search-fdrop", "nas-search-fdrop-s1"),
                        ("nas-search-fdrop", "nas-search-fdrop-dense"),
                        ("nas-search-fdrop-s1", "nas-search-fdrop-s2"))


def _search_line(root: str, t: Table) -> str:
    """Each DARTS search's cost and genotype (``train.nas``'s genotype.json), a paragraph
    each, and how much the genotypes of :data:`SAME_BUDGET_SEARCHES` share."""
    from fsjax.models.darts import shared_edges

    out, found = [], {}
    for name in (n for n in t.jobs if n.startswith("nas-search")):
        path = os.path.join(root, name, "genotype.json")
        if os.path.exists(path):
            g = _json(path)
        elif recorded(name, t):
            g = recorded(name, t)["genotype"]
        else:
            continue
        found[name] = g["genotype"]
        cell = lambda kind, g=g: ", ".join(f"{op}<-{i}" for op, i in g["genotype"][kind])
        par = g.get("parametric_edges")
        supernet = "dense" if "dense" in name else "DFS rho=4"
        out.append(
            f"DARTS search `{name}` ({supernet} supernet): {g['search_epochs']} epochs, "
            f"{g['search_device_hours']:.2f} device-hours on "
            f"{g['search_device'] or 'one core of the 2-core CPU'}"
            + (f", peak host memory {g['search_peak_host_memory_mb']:,.0f} MiB"
               if g.get("search_peak_host_memory_mb") else "")
            + (f"; parametric edges: normal {par['normal']}/8, reduction {par['reduce']}/8"
               + (f" (before the caps: {g['parametric_edges_uncapped']['normal']}/8, "
                  f"{g['parametric_edges_uncapped']['reduce']}/8)"
                  if g.get("max_skips") is not None or g.get("max_free") is not None
                  else "") if par else "")
            + f"; normal cell: {cell('normal')}; reduction cell: {cell('reduce')}")
    for a, b in SAME_BUDGET_SEARCHES:
        if a in found and b in found:
            n = {k: shared_edges(found[a][k], found[b][k]) for k in ("normal", "reduce")}
            out.append(f"Overlap of `{a}` and `{b}` (the same op from the same input into the "
                       f"same node): normal cell {n['normal']}/8 edges, reduction cell "
                       f"{n['reduce']}/8")
    return "\n\n".join(out)


def _reference_line(root: str, t: Table) -> str:
    """The PyTorch reference of the dense row (``benchmarks.torch_cifar_reference``)."""
    path = os.path.join(root, "torch-dense", "results.json")
    r = _json(path) if jobs.done(root, "torch-dense") else recorded("torch-dense", t)
    if not r:
        return ""
    tta = (f" ({100 * r['tta_accuracy']:.2f}% with TTA)" if r.get("tta_accuracy") is not None
           else "")
    return (f"PyTorch reference (same {t.network} and recipe, {r['framework']}, "
            f"{r['threads']} thread): {100 * r['accuracy']:.2f}%{tta} after {r['epochs']} "
            f"epochs, {r['images_per_s']:.0f} train images/s")


def _rows(root: str, t: Table) -> list[dict]:
    """Each finished job's row: from ``root`` where it ran there, else from ``t.records``."""
    rows = []
    for n in t.jobs:
        if n in t.not_rows:
            continue
        if jobs.done(root, n):
            rows.append(_row(root, n))
        elif recorded(n, t):
            rows.append(recorded(n, t))
    return rows


def report(root: str, docs: str, t: Table = RESNET8) -> int:
    rows = _rows(root, t)
    if not rows:
        print(f"error: no finished job under {root} or {t.records}; run python -m "
              f"benchmarks.cifar_table --table {t.name} first", file=sys.stderr)
        return 2
    from train.results import write_json

    os.makedirs(root, exist_ok=True)
    write_json(os.path.join(root, "table.json"), rows)
    print(format_table(rows, t))
    print("\nCommands (each row's run directory under --root):\n")
    print("\n".join(f"- {r['name']}: `{r['command']}`" for r in sorted(
        rows, key=lambda r: t.order.index(r["name"]))))
    ablated = {a for a, _ in t.ablations}
    points = _plot_points([r for r in rows if r["name"] not in ablated])
    for line in (_front_line(points), _ablation_line(rows, t), _search_line(root, t),
                 _reference_line(root, t)):
        if line:
            print("\n" + line)
    missing = [n for n in t.jobs if not jobs.done(root, n) and not recorded(n, t)]
    if missing:
        print(f"\nnot finished: {', '.join(missing)}")
    os.makedirs(docs, exist_ok=True)
    from fsjax.report.pareto import plot

    plot(points, os.path.join(docs, t.pareto_png))
    curves(root, os.path.join(docs, t.curves_png), t)
    return 0


def _front_line(pts: list[dict]) -> str:
    """The points of :func:`_plot_points` on the plot's Pareto front (no other is as small and
    more accurate), from the smallest export up."""
    from fsjax.report.pareto import pareto_front

    front = pareto_front([(p["export_bytes"], p["accuracy"]) for p in pts])
    return "Pareto front (accuracy as plotted, with TTA where the row has it, vs export bytes): " + \
        ", ".join(f"{pts[i]['label']} ({100 * pts[i]['accuracy']:.2f}%, "
                  f"{pts[i]['export_bytes']:,} B)" for i in front)


def _ablation_line(rows: list[dict], t: Table) -> str:
    """Each finished ablation's top-1 minus its base row's (the same seed), with TTA beside,
    and how far the base's two seeds are apart (the noise these differences sit in)."""
    by = {r["name"]: r for r in rows}
    diffs, spreads = [], {}
    for name, base in t.ablations:
        if name in by and base in by:
            a, b = by[name], by[base]
            d = f"{name} {100 * (a['accuracy'] - b['accuracy']):+.2f}"
            if a.get("tta_accuracy") is not None and b.get("tta_accuracy") is not None:
                d += f" ({100 * (a['tta_accuracy'] - b['tta_accuracy']):+.2f} with TTA)"
            diffs.append(f"{d} vs {base}")
            twin = _seed1_twin(base, by)
            if twin:
                spreads[_unseeded(base)] = abs(100 * (twin["accuracy"] - b["accuracy"]))
    if not diffs:
        return ""
    noise = "".join(f"; {n}'s two seeds are {v:.2f} apart" for n, v in spreads.items())
    return ("Recipe ablations, points of top-1 against their base row (one seed each"
            f"{noise}): " + "; ".join(diffs))


def _plot_points(rows: list[dict]) -> list[dict]:
    """One point per row of the table: a row with two seeds at their mean accuracy, as the
    table shows it."""
    out = []
    for r, twin in _with_twins(rows):
        if twin:
            out.append(dict(r, label=f"{_unseeded(r['name'])} (2-seed mean)",
                            accuracy=statistics.mean([_headline(r), _headline(twin)])))
        else:
            out.append(dict(r, label=r["name"], accuracy=_headline(r)))
    return out


def _unseeded(name: str) -> str:
    """A seed-0 row's name without its seed: NAME for NAME-s0, and NAME for NAME (a row
    named without a seed ran seed 0)."""
    return name[:-3] if name.endswith("-s0") else name


def _seed1_twin(name: str, by: dict) -> dict | None:
    """The seed-1 row (NAME-s1) of the seed-0 row ``name`` (NAME-s0 or NAME), if ``by``
    has it."""
    return None if name.endswith("-s1") else by.get(_unseeded(name) + "-s1")


def _with_twins(rows: list[dict]) -> list[tuple[dict, dict | None]]:
    """Each row once, as ``(row, its seed-1 twin or None)``: a seed-1 row whose seed 0 is
    there goes with it, not on its own."""
    by = {r["name"]: r for r in rows}
    paired = {t["name"] for r in rows if (t := _seed1_twin(r["name"], by))}
    return [(r, _seed1_twin(r["name"], by)) for r in rows if r["name"] not in paired]


def _headline(r: dict) -> float:
    """The accuracy a row is compared by: with TTA where the row has it."""
    return r["tta_accuracy"] if r.get("tta_accuracy") is not None else r["accuracy"]


def _accuracy_cell(r, twin, key) -> str:
    accs = [100 * x[key] for x in ([r, twin] if twin else [r]) if x.get(key) is not None]
    if len(accs) == 2:
        return f"{statistics.mean(accs):.2f} ({accs[0]:.2f} / {accs[1]:.2f})"
    return f"{accs[0]:.2f}" if accs else "-"


def format_table(rows: list[dict], t: Table = RESNET8) -> str:
    rows = sorted(rows, key=lambda r: t.order.index(r["name"]))
    tta = any(r.get("tta_accuracy") is not None for r in rows)
    out = ["| variant | top-1 %" + (" | top-1 % TTA" if tta else "") + " | stored | "
           "dense-eq. | effective | export bytes | MACs | train img/s | wall | revision |",
           "|" + " --- |" * (11 if tta else 10)]
    for r, twin in _with_twins(rows):
        acc = _accuracy_cell(r, twin, "accuracy")
        if tta:
            acc += " | " + _accuracy_cell(r, twin, "tta_accuracy")
        both = [r, twin] if twin else [r]
        ips = " / ".join(f"{x['images_per_s']:.0f}" for x in both if x.get("images_per_s"))
        wall = " / ".join(f"{x['wall_s'] / 60:.0f} min" for x in both if x["wall_s"] >= 30)
        rev = " / ".join(f"`{x['revision']}`" for x in both)
        out.append(f"| {r['name']} | {acc} | {r['stored_params']:,} | {r['dense_params']:,} | "
                   f"{r['effective_params']:,.0f} | {r['export_bytes']:,} | "
                   f"{r['macs'] / 1e6:.2f}M | {ips or '-'} | {wall or '-'} | {rev} |")
    return "\n".join(out)


def curves(root: str, out: str, t: Table = RESNET8) -> str | None:
    """Test accuracy per epoch of dense, FS rho=4 and DFS rho=4 in one figure (seed 0, or
    seed 1 where seed 0's curve was not kept)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    shown = 0
    for kind, label in (("dense", "dense"), ("fs4", "FS rho=4"), ("dfs4", "DFS rho=4")):
        recs = next((c for c in (_curve(root, f"{kind}-s{s}", t) for s in (0, 1)) if c), None)
        if not recs:
            continue
        label += f" (seed {recs[0]['seed']})"
        ep = [r["epoch"] for r in recs]
        ax[0].plot(ep, [r["train_loss"] for r in recs], label=label)
        ax[1].plot(ep, [100 * r["test_accuracy"] for r in recs], marker=".", label=label)
        shown += 1
    if not shown:
        plt.close(fig)
        return None
    ax[0].set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax[1].set(xlabel="epoch", ylabel="test top-1 (%)",
              title=f"CIFAR-10 test accuracy\n{t.network}, CPU")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _run_curve(workdir: str) -> list[dict] | None:
    """Per-epoch ``epoch``, ``train_loss``, ``test_accuracy`` of a run's metrics.jsonl."""
    from train.progress import MetricsLog

    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    return [dict(epoch=r["epoch"], train_loss=r["train_loss"], test_accuracy=r["test_accuracy"])
            for r in MetricsLog.read(path) if "test_accuracy" in r]


def _curve(root: str, name: str, t: Table) -> list[dict] | None:
    """The job's per-epoch training loss and test accuracy, from ``root`` or ``t.records``."""
    recs = _run_curve(os.path.join(root, name)) or (recorded(name, t) or {}).get("curve")
    return [dict(r, seed=int(name[-1])) for r in recs] if recs else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--table", default="resnet8", choices=tuple(TABLES))
    a, rest = ap.parse_known_args(argv)
    t = TABLES[a.table]
    return jobs.main(rest, f"python -m benchmarks.cifar_table --table {t.name}", __doc__,
                     t.jobs, t.root, lambda root, docs: report(root, docs, t),
                     lambda root: pending(root, t), lambda root, name: record(root, name, t))


if __name__ == "__main__":
    sys.exit(main())
