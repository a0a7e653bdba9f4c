"""Smoke test: every benchmark runs at a tiny size and writes its JSON."""

import json
import os

import pytest

from benchmarks import all as bench_all


@pytest.mark.parametrize("name", [n for n, _ in bench_all.BENCHMARKS])
def test_benchmarks_small(name, tmp_path):
    """Each benchmark of ``benchmarks.all`` at its ``--small`` size (one test each, so the
    workers share them)."""
    if name == "deploy_latency":
        pytest.importorskip("jax2onnx", reason="the deploy extra")
    out = dict(bench_all.BENCHMARKS)[name].main(["--small", "--json-dir", str(tmp_path)])
    with open(os.path.join(tmp_path, f"{name}.json")) as f:
        data = json.load(f)
    assert data["rows"] and data["env"]["backend"] == "cpu"
    if name == "thinet_select":
        assert all(r["same_selection"] for r in out)
    if name == "thinet_vgg":
        vgg = {r["row"]: r for r in out}
        assert len(vgg) == 5 and all(r["f_ms"] > 0 and r["b_ms"] > 0 for r in vgg.values())
        assert vgg["ThiNet-Tiny"]["FLOPs_B"] < vgg["ThiNet-GAP"]["FLOPs_B"] < vgg["original"][
            "FLOPs_B"]
    if name == "deploy_latency":
        assert [r["model"] for r in out] == ["dense", "wksc g=4"]
        assert all(r["ort_int8_b1_ms"] > 0 for r in out)


def test_benchmarks_all_runs_each(monkeypatch):
    calls = []
    for n, mod in bench_all.BENCHMARKS:
        monkeypatch.setattr(mod, "main", lambda argv, n=n: calls.append((n, argv)) or [n])
    out = bench_all.main(["--small"])
    assert list(out) == [n for n, _ in bench_all.BENCHMARKS]
    assert all(argv == ["--small"] for _, argv in calls)


def test_pareto_front_and_plot(tmp_path):
    from benchmarks.pareto import pareto_front, plot

    pts = [(100, 80.0), (50, 85.0), (200, 90.0), (300, 89.0), (40, 70.0)]
    assert pareto_front(pts) == [4, 1, 2]
    runs = [dict(model="m", conv=str(i), bytes=b, accuracy=a / 100) for i, (b, a) in
            enumerate(pts)]
    out = plot(runs, str(tmp_path / "p.png"))
    assert os.path.getsize(out) > 1000
