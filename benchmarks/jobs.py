"""Run a set of training jobs a few at a time, one CPU core each, resumable.

``run(jobs, root, lanes, only)``: ``jobs`` maps a name to ``(inputs, command)``; a job starts
once its inputs are done, pinned to its own core with single-threaded XLA; with ``lanes=1``
the one job runs unpinned on every core, for a job the others wait on (the fast CIFAR network
on the 2-core machine: 191 images/s alone on both cores, 87-137 pinned to one core next to
another job). The command's
``{root}`` is filled in and ``--workdir ROOT/NAME`` appended unless it names ``{workdir}``
itself. A finished job is marked by ``ROOT/NAME/DONE.json`` (command, revisions:
``ROOT/NAME/REVISIONS`` has a line per start) and skipped on re-run; an interrupted one resumes
from its last checkpoint. Output of each job: ``ROOT/NAME.log``. Used by
:mod:`benchmarks.cifar_table` and :mod:`benchmarks.detection_table`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def revision() -> str:
    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain",
                                                                  "-uno") else "")


def revisions(root, name) -> str:
    """The revisions the job ran at, in order (several when it was resumed after a commit)."""
    with open(os.path.join(root, name, "REVISIONS")) as f:
        revs = [line.split()[1] for line in f if line.strip()]
    return "+".join(dict.fromkeys(revs))


def train_seconds(workdirs) -> float:
    """Wall time of the training itself: the epochs' seconds in the runs' metrics (the
    first epoch includes compilation; evaluation is outside), summed over resumes."""
    from train.progress import MetricsLog

    return sum(r.get("epoch_s", 0.0) for w in workdirs
               for r in MetricsLog.read(os.path.join(w, "metrics.jsonl")))


def done(root, name) -> bool:
    return os.path.exists(os.path.join(root, name, "DONE.json"))


def _shown(cmd: list[str]) -> str:
    """The command as a person would type it (``python`` for this interpreter)."""
    return " ".join(a.replace(sys.executable, "python") for a in cmd)


def _command(jobs, root, name) -> list[str]:
    workdir = os.path.join(root, name)
    cmd = [a.replace("{root}", root).replace("{workdir}", workdir) for a in jobs[name][1]]
    own = any("{workdir}" in a for a in jobs[name][1])
    return cmd if own else cmd + ["--workdir", workdir]


def _env(core) -> dict:
    """A pinned job's XLA runs single-threaded on its core; a lone lane (``core`` None) keeps
    XLA's threads for every core."""
    if core is None:
        return dict(os.environ)
    return dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") +
                                       " --xla_cpu_multi_thread_eigen=false").strip())


def _start(jobs, root, name, core):
    env = _env(core)
    log = open(os.path.join(root, f"{name}.log"), "a")
    cmd = _command(jobs, root, name)
    os.makedirs(os.path.join(root, name), exist_ok=True)
    with open(os.path.join(root, name, "REVISIONS"), "a") as f:  # one line per (re)start
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {revision()}\n")
    print(f"[{time.strftime('%H:%M:%S')}] start {name} on core {core}: {' '.join(cmd[1:])}",
          flush=True)
    pre = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=pre,
                         start_new_session=True)
    return p, log, time.time()


def run(jobs: dict, root: str, lanes: int, only: list[str] | None = None,
        on_done=None) -> int:
    """Run ``jobs`` (all, or ``only``) until each is done or failed; ``on_done(root, name)``
    is called after each job that finishes."""
    names = [n for n in jobs if not only or n in only]
    unknown = sorted(set(only or ()) - set(jobs))
    if unknown:
        print(f"error: unknown job(s) {', '.join(unknown)}; valid: {', '.join(jobs)}",
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
                    command=_shown(_command(jobs, root, name)),
                    revision=revisions(root, name), last_wall_s=time.time() - t0,
                    lanes=lanes))
                print(f"[{time.strftime('%H:%M:%S')}] done {name} ({time.time() - t0:.0f} s)",
                      flush=True)
                if on_done is not None:
                    on_done(root, name)
            else:
                failed.add(name)
                print(f"[{time.strftime('%H:%M:%S')}] FAILED {name} (exit {p.returncode}); "
                      f"see {root}/{name}.log", flush=True)
        todo = [n for n in names if not done(root, n) and n not in running and n not in failed]
        ready = [n for n in todo if all(done(root, d) for d in jobs[n][0])]
        free = [c for c in cores[:lanes] if c not in {v[3] for v in running.values()}] \
            if lanes > 1 else [None]
        while ready and len(running) < lanes and free:
            name, core = ready.pop(0), free.pop(0)
            running[name] = (*_start(jobs, root, name, core), core)
        if not running:
            left = [n for n in names if not done(root, n)]
            print("all done" if not left else f"not done: {', '.join(left)}")
            return 1 if left else 0
        time.sleep(5)


def main(argv, prog: str, doc: str, jobs: dict, root: str, report, pending=None,
         on_done=None) -> int:
    """The command line of a job table: run its jobs, or ``--report`` them
    (``report(root, docs) -> exit code``). ``pending(root)``, if given, is called before any
    run and names the jobs to run when ``--only`` does not; ``on_done`` goes to :func:`run`."""
    ap = argparse.ArgumentParser(prog=prog, description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=root)
    ap.add_argument("--lanes", type=int, default=2,
                    help="jobs at a time (one core each; 1: one job on every core)")
    ap.add_argument("--only", default="", help="comma-separated job names (default: all)")
    ap.add_argument("--report", action="store_true", help="report the finished jobs")
    ap.add_argument("--docs", default="docs", help="--report: where the PNGs go")
    a = ap.parse_args(argv)
    if a.report:
        return report(a.root, a.docs)
    # pending() runs with --only too: it also puts back what a job needs from the records (a
    # recorded search's genotype for its network)
    todo = pending(a.root) if pending else None
    only = [n for n in a.only.split(",") if n] or todo
    if only == []:
        print("all done")
        return 0
    return run(jobs, a.root, a.lanes, only, on_done)
