"""Smoke test: every benchmark runs at a tiny size and writes its JSON."""

import json
import os

from benchmarks import all as bench_all


def test_benchmarks_small(tmp_path):
    out = bench_all.main(["--small", "--json-dir", str(tmp_path)])
    assert set(out) == {"layers", "train_throughput", "inference_latency", "thinet_select",
                        "thinet_vgg"}
    for name in out:
        with open(os.path.join(tmp_path, f"{name}.json")) as f:
            data = json.load(f)
        assert data["rows"] and data["env"]["backend"] == "cpu"
    assert all(r["same_selection"] for r in out["thinet_select"])
    vgg = {r["row"]: r for r in out["thinet_vgg"]}
    assert len(vgg) == 5 and all(r["f_ms"] > 0 and r["b_ms"] > 0 for r in vgg.values())
    assert vgg["ThiNet-Tiny"]["FLOPs_B"] < vgg["ThiNet-GAP"]["FLOPs_B"] < vgg["original"][
        "FLOPs_B"]


def test_pareto_front_and_plot(tmp_path):
    from benchmarks.pareto import pareto_front, plot

    pts = [(100, 80.0), (50, 85.0), (200, 90.0), (300, 89.0), (40, 70.0)]
    assert pareto_front(pts) == [4, 1, 2]
    runs = [dict(model="m", conv=str(i), bytes=b, accuracy=a / 100) for i, (b, a) in
            enumerate(pts)]
    out = plot(runs, str(tmp_path / "p.png"))
    assert os.path.getsize(out) > 1000
