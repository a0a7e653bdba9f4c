"""benchmarks.jobs: the resumable one-core-per-job runner of the result tables."""

import json
import sys

from benchmarks import jobs


def test_jobs_run_in_order_mark_done_and_skip_on_rerun(tmp_path, capsys):
    root = str(tmp_path)
    write = "import sys, pathlib; pathlib.Path(sys.argv[-1]).mkdir(exist_ok=True); " \
            "(pathlib.Path(sys.argv[-1]) / 'out').write_text('x')"
    table = {
        "a": ((), [sys.executable, "-c", write]),                       # gets --workdir ROOT/a
        "b": (("a",), [sys.executable, "-c", "import sys; open(sys.argv[1]).read()",
                       "{root}/a/out"]),                                # runs after a
        "c": ((), [sys.executable, "-c", "import sys; sys.exit(3)"]),    # fails
        "d": (("c",), [sys.executable, "-c", "pass"]),                   # never starts
        "e": ((), ["sh", "-c", "echo hi > {workdir}/own.txt"]),          # names its workdir
    }
    assert jobs.run(table, root, lanes=2) == 1
    out = capsys.readouterr().out
    assert "FAILED c (exit 3)" in out and "not done: c, d" in out
    for name in ("a", "b", "e"):
        done = json.loads((tmp_path / name / "DONE.json").read_text())
        assert done["revision"] and done["command"].startswith("python -c" if name != "e"
                                                               else "sh -c echo hi >")
        assert len((tmp_path / name / "REVISIONS").read_text().splitlines()) == 1
    assert (tmp_path / "e" / "own.txt").read_text() == "hi\n"
    assert "--workdir" not in json.loads((tmp_path / "e" / "DONE.json").read_text())["command"]
    assert not (tmp_path / "d").exists()
    # a re-run skips what is done and retries the rest
    assert jobs.run(table, root, lanes=1, only=["a", "b"]) == 0
    assert "start" not in capsys.readouterr().out
    assert jobs.run(table, root, lanes=1, only=["zz"]) == 2
    assert "unknown job(s) zz; valid: a, b, c, d, e" in capsys.readouterr().err


def test_pinned_jobs_run_single_threaded_xla_a_lone_lane_does_not(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    assert jobs._env(0)["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false"
    assert jobs._env(None)["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"


def test_main_calls_pending_with_only_too(tmp_path):
    """pending() restores what jobs need from the records (a search's genotype), so it runs
    before an --only run as well; --only still picks the jobs."""
    calls = []

    def pending(root):
        calls.append(root)
        return ["a", "b"]

    table = {"a": ((), [sys.executable, "-c", "pass"]), "b": ((), [sys.executable, "-c", "pass"])}
    root = str(tmp_path)
    assert jobs.main(["--root", root, "--only", "b", "--lanes", "1"], "prog", "", table, root,
                     None, pending) == 0
    assert calls == [root] and jobs.done(root, "b") and not jobs.done(root, "a")
