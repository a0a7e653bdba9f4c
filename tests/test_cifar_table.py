"""The CPU CIFAR table's driver: which jobs still run, records that outlive run directories,
the report from a mix of both."""

import dataclasses
import json
import os

import pytest

from benchmarks import cifar_table as t


@pytest.fixture
def records(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    return d


def _table(records, name="resnet8"):
    return dataclasses.replace(t.TABLES[name], records=str(records))


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
    root, tb = str(tmp_path / "runs"), _table(records)
    assert t.pending(root, tb) == list(t.JOBS)
    for n in t.JOBS:
        if n not in ("thinet50", "fs8-s0"):
            _put(records, n, _row(n, 0.5))
    # thinet50 needs dense-s1's checkpoint: recorded, but not under root, so it runs again
    assert t.pending(root, tb) == ["dense-s1", "thinet50", "fs8-s0"]
    _done(tmp_path / "runs", "dense-s1", {})
    assert t.pending(root, tb) == ["thinet50", "fs8-s0"]


def test_a_recorded_search_is_restored_for_its_network(records, tmp_path):
    root = str(tmp_path / "runs")
    for n in t.JOBS:
        if n != "nas-eval":
            _put(records, n, _row(n, 0.5))
    _put(records, "nas-search", dict(name="nas-search", command="search cmd",
                                     genotype=dict(genotype={"normal": []})))
    assert t.pending(root, _table(records)) == ["nas-eval"]  # not the search again
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
    tb = _table(records)
    t.record(str(root), "torch-dense", tb)
    rec = t.recorded("torch-dense", tb)
    assert rec["accuracy"] == 0.79 and rec["command"] == "cmd torch-dense"
    assert rec["curve"] == [dict(epoch=1, train_loss=2.0, test_accuracy=0.3)]
    assert t.report(str(root), str(tmp_path / "docs"), tb) == 0
    out = capsys.readouterr().out
    assert "| dense-s0 | 79.00 (80.00 / 78.00) |" in out  # the mean of the two seeds
    assert "- dense-s1: `python -m train.main ... dense-s1`" in out
    assert "PyTorch reference (same ResNet-8 and recipe, torch 2.13, 1 thread): 79.00%" in out
    assert "not finished:" in out and "fs8-s0" in out and "torch-dense" not in out.split(
        "not finished:")[1]
    assert os.path.exists(tmp_path / "docs" / "cifar_cpu_curves.png")  # from dense-s0's record


def test_report_without_anything_says_so(records, tmp_path, capsys):
    assert t.report(str(tmp_path / "none"), str(tmp_path / "docs"), _table(records)) == 2
    assert "no finished job" in capsys.readouterr().err


def test_fast_table_reports_tta_beside_plain_accuracy(records, tmp_path, capsys):
    """The fast table's rows carry top-1 with and without TTA; the plot ranks by TTA."""
    tb = _table(records, "fast")
    _put(records, "dense-s0", _row("dense-s0", 0.90, tta_accuracy=0.91))
    _put(records, "dense-s1", _row("dense-s1", 0.92, tta_accuracy=0.93))
    _put(records, "fs4-ptq8", _row("fs4-ptq8", 0.88))  # a row without a TTA figure
    # an ablation: reported against dense-s0, and not a point of the plot (else on the front)
    _put(records, "dense-no-smoothing", dict(_row("dense-no-smoothing", 0.8975, tta_accuracy=0.93),
                                             export_bytes=10))
    root = tmp_path / "runs"
    _done(root, "torch-dense", {"results.json": json.dumps(dict(
        framework="torch 2.13", accuracy=0.905, tta_accuracy=0.915, epochs=10, threads=1,
        images_per_s=200.0))})
    assert t.report(str(root), str(tmp_path / "docs"), tb) == 0
    out = capsys.readouterr().out
    assert "| variant | top-1 % | top-1 % TTA | stored |" in out
    assert "| dense-s0 | 91.00 (90.00 / 92.00) | 92.00 (91.00 / 93.00) |" in out
    assert "| fs4-ptq8 | 88.00 | - |" in out
    # fs4-ptq8 is as large as dense and less accurate: off the front
    assert ("Pareto front (accuracy as plotted, with TTA where the row has it, vs export "
            "bytes): dense (2-seed mean) (92.00%, 5,000 B)\n") in out
    assert "same airbench94-shaped network and recipe" in out and "(91.50% with TTA)" in out
    assert ("Recipe ablations, points of top-1 against their base row (one seed each; dense's "
            "two seeds are 2.00 apart): dense-no-smoothing -0.25 (+2.00 with TTA) vs dense-s0"
            ) in out
    assert "| dense-no-smoothing | 89.75 | 93.00 |" in out
    assert os.path.exists(tmp_path / "docs" / "cifar_fast_pareto.png")
    # dense-s0 is recorded but runs again: thinet50 and small need its checkpoint
    assert t.pending(str(root), tb) == [n for n in t.FAST_JOBS
                                        if n not in ("fs4-ptq8", "torch-dense", "dense-s1",
                                                     "dense-no-smoothing")]


def test_fast_report_gives_the_overlap_of_two_seeds_searches(records, tmp_path, capsys):
    tb = _table(records, "fast")
    _put(records, "dense-s0", _row("dense-s0", 0.90, tta_accuracy=0.91))
    normal = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4
    for name, reduce_op in (("nas-search-s0", "max_pool_3x3"), ("nas-search-s1", "skip_connect")):
        g = dict(genotype={"normal": normal, "reduce": [[reduce_op, 0], [reduce_op, 1]] * 4},
                 search_epochs=5, search_device_hours=0.9, search_device="")
        _put(records, name, dict(name=name, command=f"search {name}", genotype=g))
    assert t.report(str(tmp_path / "runs"), str(tmp_path / "docs"), tb) == 0
    out = capsys.readouterr().out
    assert ("Overlap of `nas-search-s0` and `nas-search-s1` (the same op from the same input "
            "into the same node): normal cell 8/8 edges, reduction cell 0/8") in out
    assert "Overlap of `nas-search-s1` and `nas-search-dense`" not in out  # no dense search


def test_the_plot_shows_a_two_seed_row_at_its_mean(records):
    rows = [_row("dense-s0", 0.90, tta_accuracy=0.91), _row("dense-s1", 0.92, tta_accuracy=0.95),
            _row("fs4-s1", 0.80), _row("thinet50", 0.85)]
    pts = {p["label"]: p["accuracy"] for p in t._plot_points(rows)}
    assert pts == {"dense (2-seed mean)": pytest.approx(0.93), "fs4-s1": 0.80, "thinet50": 0.85}
    assert "| fs4-s1 | 80.00 |" in t.format_table(rows, _table(records))  # no seed 0: shown
    # a row named without a seed ran seed 0: its NAME-s1 goes with it, in the plot and table
    rows = [_row("fs4-narrow", 0.70, tta_accuracy=0.72), _row("fs4-narrow-s1", 0.69,
                                                                tta_accuracy=0.70)]
    pts = {p["label"]: p["accuracy"] for p in t._plot_points(rows)}
    assert pts == {"fs4-narrow (2-seed mean)": pytest.approx(0.71)}
    table = t.format_table(rows, _table(records, "fast"))
    assert "| fs4-narrow | 69.50 (70.00 / 69.00) | 71.00 (72.00 / 70.00) |" in table
    assert "fs4-narrow-s1" not in table


def test_front_line_names_the_rows_no_smaller_row_beats():
    rows = [dict(_row("fs8-s0", 0.80, tta_accuracy=0.81), export_bytes=1000),
            dict(_row("fs2-s0", 0.85), export_bytes=3000),     # no TTA: plain accuracy
            dict(_row("fs4-s0", 0.86, tta_accuracy=0.88), export_bytes=2000)]
    assert t._front_line(t._plot_points(rows)).endswith(
        ": fs8-s0 (81.00%, 1,000 B), fs4-s0 (88.00%, 2,000 B)")


@pytest.mark.parametrize("table", sorted(t.TABLES))
def test_every_training_job_parses_to_a_valid_config(table, tmp_path, monkeypatch,
                                                     standin_genotype):
    """Each train.main / train.compress job's --config and overrides load and validate (a
    misspelt key or value in a job would otherwise surface hours into a table run). A NAS
    network's job reads its search's genotype.json: a small valid one stands in for it."""
    from absl import flags
    from ml_collections import config_flags

    from train import configlib

    checked = 0
    for name, (deps, cmd) in t.TABLES[table].jobs.items():
        if "-m" not in cmd or cmd[cmd.index("-m") + 1] not in ("train.main", "train.compress"):
            continue
        args = [a.format(root=tmp_path, workdir=tmp_path / name) for a in cmd[cmd.index("-m") + 2:]]
        if any("darts," in a for a in args):
            for dep in deps:
                (tmp_path / dep).mkdir(exist_ok=True)
                _put(tmp_path / dep, "genotype", standin_genotype)
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
        flags.DEFINE_string("workdir", None, "", flag_values=fv)
        monkeypatch.setattr("sys.argv", ["prog", *args])  # ml_collections reads overrides there
        fv(["prog", *args])
        configlib.validate(fv.config)
        checked += 1
    assert checked >= 10, f"only {checked} jobs of table {table} were checked"
