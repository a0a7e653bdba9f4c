"""Smoke test: every benchmark runs at a tiny size and writes its JSON."""

import json
import os

from benchmarks import all as bench_all


def test_benchmarks_small(tmp_path):
    out = bench_all.main(["--small", "--json-dir", str(tmp_path)])
    assert set(out) == {"layers", "train_throughput", "inference_latency", "thinet_select"}
    for name in out:
        with open(os.path.join(tmp_path, f"{name}.json")) as f:
            data = json.load(f)
        assert data["rows"] and data["env"]["backend"] == "cpu"
    assert all(r["same_selection"] for r in out["thinet_select"])
