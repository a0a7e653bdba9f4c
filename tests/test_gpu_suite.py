"""The GPU suite's every part at toy sizes on the CPU (``--small``), then ``--merge`` of its
output into copies of the docs: the GPU path cannot rot while no GPU is lent."""

import json
import os

from benchmarks import gpu_suite


def test_small_suite_then_merge(tmp_path):
    out = tmp_path / "out"
    assert gpu_suite.main(["--small", "--out", str(out)]) == 0
    parts = {p: json.loads((out / f"{p}.json").read_text()) for p in gpu_suite.CAPS}
    speed = parts["speed"]["rows"]
    assert {(r["model"], r["framework"]) for r in speed} >= {("resnet18", "fsjax"),
                                                            ("airbench", "fsjax")}
    assert all(r["images_per_s"] > 0 for r in speed)
    dense = [r for r in speed if r["variant"] == "dense"]
    assert dense and all(0 <= r["outside_convs"] <= 1 for r in dense)
    acc = parts["accuracy"]["rows"]
    assert [r["variant"] for r in acc] == ["dense", "fs4"] and acc[0]["tta_accuracy"] is not None
    assert {r["part"] for r in parts["thinet"]["rows"]} == {"thinet_select", "inference_latency"}

    docs, readme = tmp_path / "results.md", tmp_path / "README.md"
    docs.write_text("# Results\n\nintro\n")
    readme.write_text(f"# fsjax\n\n{gpu_suite.BEGIN}\nold\n{gpu_suite.END}\n\ntail\n")
    assert gpu_suite.main(["--merge", str(out), "--docs", str(docs), "--readme",
                           str(readme)]) == 0
    text = docs.read_text()
    assert "SMOKE RUN" in text and "| airbench | 16 | fsjax | dense |" in text
    assert "| fast recipe | top-1 % | top-1 % TTA |" in text
    r = readme.read_text()
    assert "old" not in r and r.endswith("tail\n") and "smoke run" in r  # no smoke figures
    assert gpu_suite.main(["--merge", str(out), "--docs", str(docs), "--readme",
                           str(readme)]) == 0  # merging again replaces, not appends
    assert docs.read_text().count(gpu_suite.BEGIN) == 1
    assert os.path.exists(out / "runs" / "dense" / "results.json")


def test_merge_without_output_is_an_error(tmp_path, capsys):
    import pytest

    with pytest.raises(FileNotFoundError, match="no gpu suite output"):
        gpu_suite.main(["--merge", str(tmp_path), "--docs", str(tmp_path / "d.md"),
                        "--readme", str(tmp_path / "r.md")])
