"""The CPU CIFAR-10 table: train every variant of ``configs/cifar10/table.py``, then report.

    python -m benchmarks.cifar_table [--root runs/table] [--lanes 2] [--only NAME,...]
    python -m benchmarks.cifar_table --report [--docs docs]

Runs the jobs below ``--lanes`` at a time, each pinned to its own CPU core with single-threaded
XLA (on the 2-core machine two such runs give 1.4x the images/s of one run on both cores). A job
runs once its inputs are done; a finished job is marked by ``ROOT/NAME/DONE.json`` (command,
revisions: ``ROOT/NAME/REVISIONS`` has a line per start) and skipped on re-run; an interrupted
one resumes from its last checkpoint (the trainer's, or ``train.compress``'s steps). Output of
each job: ``ROOT/NAME.log``.

``--report`` prints the markdown table of docs/results.md ("CIFAR-10 on the CPU") from the
finished jobs, writes ``ROOT/table.json``, the accuracy-vs-bytes plot with its Pareto front
and the dense / FS / DFS training curves (PNG, into ``--docs``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

TABLE = "configs/cifar10/table.py"
NAS_SEARCH = "configs/nas/darts_search.py:4"


def _train(variant, seed=0):
    return [sys.executable, "-m", "train.main", "--config", f"{TABLE}:{variant},{seed}"]


def _compress(step, source):
    return [sys.executable, "-m", "train.compress", "--config", f"{TABLE}:compress,{step}",
            f"--config.compress.source={{root}}/{source}"]


# name -> (inputs, command; "{root}" and "{workdir}" are filled in). Order = priority.
JOBS = {
    "dense-s0": ((), _train("dense")),
    "fs4-s0": ((), _train("fs4")),
    "fs2-s0": ((), _train("fs2")),
    "fs8-s0": ((), _train("fs8")),
    "dfs4-s0": ((), _train("dfs4")),
    "wks4-s0": ((), _train("wks4")),
    "thinet50": (("dense-s0",), _compress("thinet:0.5", "dense-s0")),
    "fs4-proj": (("dense-s0",), _compress("fs:4", "dense-s0")),
    "fs4-ptq8": (("fs4-s0",), _compress("quant:8", "fs4-s0")),
    "fs4-qat4": (("fs4-s0",), _compress("quant:4", "fs4-s0")),
    "dense-s1": ((), _train("dense", 1)),
    "fs4-s1": ((), _train("fs4", 1)),
}


def _revision() -> str:
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain",
                                                                  "-uno") else "")


def _revisions(root, name) -> str:
    """The revisions the job ran at, in order (several when it was resumed after a commit)."""
    with open(os.path.join(root, name, "REVISIONS")) as f:
        revs = [line.split()[1] for line in f if line.strip()]
    return "+".join(dict.fromkeys(revs))


def _train_seconds(workdirs) -> float:
    """Wall time of the training itself: the epochs' seconds in the runs' metrics (the
    first epoch includes compilation; evaluation is outside), summed over resumes."""
    from train.progress import MetricsLog

    return sum(r.get("epoch_s", 0.0) for w in workdirs
               for r in MetricsLog.read(os.path.join(w, "metrics.jsonl")))


def _done(root, name) -> bool:
    return os.path.exists(os.path.join(root, name, "DONE.json"))


def _command(root, name) -> list[str]:
    workdir = os.path.join(root, name)
    return [a.replace("{root}", root) for a in JOBS[name][1]] + ["--workdir", workdir]


def _start(root, name, core):
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                                      " --xla_cpu_multi_thread_eigen=false").strip())
    log = open(os.path.join(root, f"{name}.log"), "a")
    cmd = _command(root, name)
    os.makedirs(os.path.join(root, name), exist_ok=True)
    with open(os.path.join(root, name, "REVISIONS"), "a") as f:  # one line per (re)start
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {_revision()}\n")
    print(f"[{time.strftime('%H:%M:%S')}] start {name} on core {core}: {' '.join(cmd[1:])}",
          flush=True)
    pre = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=pre,
                         start_new_session=True)
    return p, log, time.time()


def run(root: str, lanes: int, only: list[str] | None) -> int:
    names = [n for n in JOBS if not only or n in only]
    unknown = sorted(set(only or ()) - set(JOBS))
    if unknown:
        print(f"error: unknown job(s) {', '.join(unknown)}; valid: {', '.join(JOBS)}",
              file=sys.stderr)
        return 2
    os.makedirs(root, exist_ok=True)
    cores = sorted(os.sched_getaffinity(0))
    running: dict[str, tuple] = {}
    failed: set[str] = set()

    def stop(*_):
        for p, *_ in running.values():
            os.killpg(p.pid, signal.SIGTERM)
        sys.exit(130)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for name, (p, log, t0, _core) in list(running.items()):
            if p.poll() is None:
                continue
            log.close()
            del running[name]
            if p.returncode == 0:
                from train.results import write_json

                write_json(os.path.join(root, name, "DONE.json"), dict(
                    command=" ".join(["python", *_command(root, name)[1:]]),
                    revision=_revisions(root, name), last_wall_s=time.time() - t0,
                    lanes=lanes))
                print(f"[{time.strftime('%H:%M:%S')}] done {name} ({time.time() - t0:.0f} s)",
                      flush=True)
            else:
                failed.add(name)
                print(f"[{time.strftime('%H:%M:%S')}] FAILED {name} (exit {p.returncode}); "
                      f"see {root}/{name}.log", flush=True)
        todo = [n for n in names if not _done(root, n) and n not in running and n not in failed]
        ready = [n for n in todo if all(_done(root, d) for d in JOBS[n][0])]
        free = [c for c in cores[:lanes] if c not in {v[3] for v in running.values()}] \
            if lanes > 1 else [None]
        while ready and len(running) < lanes and free:
            name, core = ready.pop(0), free.pop(0)
            running[name] = (*_start(root, name, core), core)
        if not running:
            left = [n for n in names if not _done(root, n)]
            print("all done" if not left else f"not done: {', '.join(left)}")
            return 1 if left else 0
        time.sleep(5)


# ---------------------------------------------------------------------------- report


def _json(path):
    with open(path) as f:
        return json.load(f)


def _export_bytes(workdir: str) -> int:
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
        train = [os.path.join(d, s, t) for s in sorted(os.listdir(d)) if s[:2].isdigit()
                 for t in ("train", "final") if os.path.exists(os.path.join(d, s, t,
                                                                            "results.json"))]
        ips = [_json(os.path.join(t, "results.json"))["images_per_s"] for t in train]
        row["wall_s"] = _train_seconds(train)
        row.update(accuracy=last["accuracy"], stored_params=last["stored_params"],
                   dense_params=last["dense_params"], effective_params=last["effective_params"],
                   macs=last["macs"], export_bytes=last["export_bytes"],
                   images_per_s=statistics.median(ips) if ips else None)
    else:
        r = _json(os.path.join(d, "results.json"))
        row["wall_s"] = _train_seconds([d])
        row.update(accuracy=r["accuracy"], stored_params=r["stored_params"],
                   dense_params=r["dense_params"], effective_params=float(r["stored_params"]),
                   macs=r["macs"], export_bytes=_export_bytes(d), images_per_s=r["images_per_s"],
                   subset=r.get("subset"), epochs=r["epochs"])
    return row


def report(root: str, docs: str) -> int:
    rows = [_row(root, n) for n in JOBS if _done(root, n)]
    if not rows:
        print(f"error: no finished job under {root}; run python -m benchmarks.cifar_table first",
              file=sys.stderr)
        return 2
    from train.results import write_json

    write_json(os.path.join(root, "table.json"), rows)
    print(format_table(rows))
    missing = [n for n in JOBS if not _done(root, n)]
    if missing:
        print(f"\nnot finished: {', '.join(missing)}")
    os.makedirs(docs, exist_ok=True)
    from fsjax.report.pareto import plot

    plot([dict(r, label=r["name"]) for r in rows if not r["name"].endswith("-s1")],
         os.path.join(docs, "cifar_cpu_pareto.png"))
    curves(root, os.path.join(docs, "cifar_cpu_curves.png"))
    return 0


def format_table(rows: list[dict]) -> str:
    by = {r["name"]: r for r in rows}
    out = ["| variant | top-1 % | stored | dense-eq. | effective | export bytes | MACs | "
           "train img/s | wall | revision |", "|" + " --- |" * 10]
    for r in rows:
        if r["name"].endswith("-s1"):
            continue
        acc = f"{100 * r['accuracy']:.2f}"
        twin = by.get(r["name"][:-1] + "1") if r["name"].endswith("-s0") else None
        if twin:
            accs = [100 * r["accuracy"], 100 * twin["accuracy"]]
            acc = f"{statistics.mean(accs):.2f} ({accs[0]:.2f} / {accs[1]:.2f})"
        ips = f"{r['images_per_s']:.0f}" if r.get("images_per_s") else "-"
        out.append(f"| {r['name']} | {acc} | {r['stored_params']:,} | {r['dense_params']:,} | "
                   f"{r['effective_params']:,.0f} | {r['export_bytes']:,} | "
                   f"{r['macs'] / 1e6:.2f}M | {ips} | {r['wall_s'] / 60:.0f} min | "
                   f"`{r['revision']}` |")
    return "\n".join(out)


def curves(root: str, out: str) -> str | None:
    """Test accuracy per epoch of dense, FS rho=4 and DFS rho=4 (seed 0) in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from train.progress import MetricsLog

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    shown = 0
    for name, label in (("dense-s0", "dense"), ("fs4-s0", "FS rho=4"), ("dfs4-s0", "DFS rho=4")):
        path = os.path.join(root, name, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        recs = MetricsLog.read(path)
        ep = [r["epoch"] for r in recs]
        ax[0].plot(ep, [r["train_loss"] for r in recs], label=label)
        ax[1].plot(ep, [100 * r["test_accuracy"] for r in recs], marker=".", label=label)
        shown += 1
    if not shown:
        plt.close(fig)
        return None
    ax[0].set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax[1].set(xlabel="epoch", ylabel="test top-1 (%)",
              title="CIFAR-10 test accuracy, ResNet-8, CPU")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cifar_table", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="runs/table")
    ap.add_argument("--lanes", type=int, default=2, help="jobs at a time (one core each)")
    ap.add_argument("--only", default="", help="comma-separated job names (default: all)")
    ap.add_argument("--report", action="store_true", help="report the finished jobs")
    ap.add_argument("--docs", default="docs", help="--report: where the PNGs go")
    a = ap.parse_args(argv)
    if a.report:
        return report(a.root, a.docs)
    return run(a.root, a.lanes, [n for n in a.only.split(",") if n] or None)


if __name__ == "__main__":
    sys.exit(main())
