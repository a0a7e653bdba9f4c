"""The CPU CIFAR table's driver: which jobs still run, records that outlive run directories,
the report from a mix of both."""

import json
import os

import pytest

from benchmarks import cifar_table as t


@pytest.fixture
def records(tmp_path, monkeypatch):
    d = tmp_path / "records"
    d.mkdir()
    monkeypatch.setattr(t, "RECORDS", str(d))
    return d


def _row(name, acc, **kw):
    return dict(name=name, command=f"python -m train.main ... {name}", revision="abc1234",
                wall_s=600.0, accuracy=acc, stored_params=1000, dense_params=4000,
                effective_params=1000.0, macs=12_000_000, export_bytes=5000, images_per_s=400.0,
                **kw)


def _put(records, name, rec):
    (records / f"{name}.json").write_text(json.dumps(rec))


def _done(root, name, files):
    d = root / name
    d.mkdir(parents=True)
    (d / "DONE.json").write_text(json.dumps(dict(command=f"cmd {name}", revision="def5678")))
    for f, content in files.items():
        (d / f).write_text(content)


def test_pending_skips_recorded_jobs_but_reruns_a_missing_input(records, tmp_path):
    root = str(tmp_path / "runs")
    assert t.pending(root) == list(t.JOBS)
    for n in t.JOBS:
        if n not in ("thinet50", "fs8-s0"):
            _put(records, n, _row(n, 0.5))
    # thinet50 needs dense-s1's checkpoint: recorded, but not under root, so it runs again
    assert t.pending(root) == ["dense-s1", "thinet50", "fs8-s0"]
    _done(tmp_path / "runs", "dense-s1", {})
    assert t.pending(root) == ["thinet50", "fs8-s0"]


def test_a_recorded_search_is_restored_for_its_network(records, tmp_path):
    root = str(tmp_path / "runs")
    for n in t.JOBS:
        if n != "nas-eval":
            _put(records, n, _row(n, 0.5))
    _put(records, "nas-search", dict(name="nas-search", command="search cmd",
                                     genotype=dict(genotype={"normal": []})))
    assert t.pending(root) == ["nas-eval"]  # not the search again
    with open(os.path.join(root, "nas-search", "genotype.json")) as f:
        assert json.load(f) == dict(genotype={"normal": []})


def test_record_and_report_from_records_and_runs(records, tmp_path, capsys):
    root = tmp_path / "runs"
    _put(records, "dense-s0", _row("dense-s0", 0.80, note="kept", curve=[
        dict(epoch=1, train_loss=1.5, test_accuracy=0.5), dict(epoch=2, train_loss=1.0,
                                                               test_accuracy=0.8)]))
    _put(records, "dense-s1", _row("dense-s1", 0.78))
    _done(root, "torch-dense", {
        "results.json": json.dumps(dict(framework="torch 2.13", accuracy=0.79, epochs=15,
                                        threads=1, images_per_s=350.0)),
        "metrics.jsonl": json.dumps(dict(epoch=1, train_loss=2.0, test_accuracy=0.3)) + "\n"})
    t.record(str(root), "torch-dense")
    rec = t.recorded("torch-dense")
    assert rec["accuracy"] == 0.79 and rec["command"] == "cmd torch-dense"
    assert rec["curve"] == [dict(epoch=1, train_loss=2.0, test_accuracy=0.3)]
    assert t.report(str(root), str(tmp_path / "docs")) == 0
    out = capsys.readouterr().out
    assert "| dense-s0 | 79.00 (80.00 / 78.00) |" in out  # the mean of the two seeds
    assert "- dense-s1: `python -m train.main ... dense-s1`" in out
    assert "PyTorch reference (same ResNet-8 and recipe, torch 2.13, 1 thread): 79.00%" in out
    assert "not finished:" in out and "fs8-s0" in out and "torch-dense" not in out.split(
        "not finished:")[1]
    assert os.path.exists(tmp_path / "docs" / "cifar_cpu_curves.png")  # from dense-s0's record


def test_report_without_anything_says_so(records, tmp_path, capsys):
    assert t.report(str(tmp_path / "none"), str(tmp_path / "docs")) == 2
    assert "no finished job" in capsys.readouterr().err
