"""A user's mistakes, table-driven: every bad input gets a one-line error that names the bad
value (no traceback, no side effect). Configs, CLIs, layers, loaders and data files."""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.test_train_run import ROOT
from train import configlib

# --- configs: every ranged key, every boolean, every choice, the combinations ------------------
_BAD_RANGE = {"int": ["x", -5, 2.5], "num": ["x", -1.0]}


def _config_cases():
    cases = []
    for key, (kind, lo, hi, _) in configlib.RANGES.items():
        bad = list(_BAD_RANGE[kind])
        if hi is not None:
            bad.append(hi * 2 + 1)
        if lo is not None and lo > 0 and kind == "int":
            bad.append(lo - 1)
        cases += [(key, v) for v in bad]
    cases += [(key, "yes") for key in configlib.BOOLS]
    for key in ("model", "dataset", "conv.kind", "schedule.name", "optimizer.name",
                "locations.optimizer", "share.optimizer", "compute_dtype", "conv.location_mode",
                "conv.alpha_mode", "quant.method", "augment.pad_mode", "prune.criterion",
                "stream.enabled", "detection.map_method"):
        cases.append((key, "bogus"))
    cases.append(("on_device", "maybe"))
    return cases


def _set(c, key, value):
    node = c
    *parents, last = key.split(".")
    for p in parents:
        node = node[p]
    with c.unlocked(), c.ignore_type():
        node[last] = value


@pytest.mark.parametrize("key,value", _config_cases())
def test_bad_config_value(key, value):
    c = configlib.prune_block(configlib.compress_block(configlib.base()))
    _set(c, key, value)
    with pytest.raises(ValueError) as e:
        configlib.validate(c)
    msg = str(e.value)
    assert "\n" not in msg and f"config.{key} = {value!r}" in msg and "valid" in msg, msg


@pytest.mark.parametrize("over,needle", [
    ({"schedule.warmup_epochs": 3.0}, "config.schedule.warmup_epochs = 3.0 must be below"),
    ({"locations.freeze_epoch": 1}, "freeze_epoch only applies to conv.kind='dfs'"),
    ({"init_from": "runs/x", "conv.kind": "dense"}, "config.init_from projects a dense run"),
    ({"schedule.name": "cyclic", "schedule.cycles": 9}, "config.schedule.cycles must be in"),
    ({"schedule.decay_points": (0.5, 1.5)}, "got (0.5, 1.5)"),
    ({"quant.bits": 1}, "config.quant.bits = 1 is not valid"),
])
def test_bad_config_combination(over, needle):
    c = configlib.base()
    for k, v in over.items():
        _set(c, k, v)
    with pytest.raises(ValueError, match=None) as e:
        configlib.validate(c)
    assert needle in str(e.value) and "\n" not in str(e.value)


# --- the training CLI: flags and config keys, in a subprocess (as a user runs it) --------------
@pytest.mark.parametrize("args,needle", [
    (["--config.optimiser.lr=1"], "did you mean config.optimizer.lr?"),
    (["--config.num_epochs=abc"], "'abc'"),
    (["--config.conv.kind=fsx"], "config.conv.kind = 'fsx' is not valid"),
    (["--bogus=1"], "'bogus'"),
    (["--config", "configs/nope.py"], "configs/nope.py does not exist"),
    (["--config", "configs/cifar10/models.py:resnet99"], "'resnet99' has no CIFAR-10 config"),
    (["--config.dataset=synthetic", "--config.conv.kind=ks", "--config.conv.group_size=5",
      "--config.model=resnet8"], "group_size=5"),
    (["stray"], "unexpected arguments: stray"),
])
def test_train_cli_one_line(tmp_path, args, needle):
    if "--config" not in args:
        args = ["--config", "configs/default.py", *args]
    out = subprocess.run([sys.executable, "-m", "train.main", *args, "--workdir",
                          str(tmp_path / "w")], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert err and err[-1].startswith("error: ") and needle in err[-1], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not os.path.exists(tmp_path / "w")  # a failed start leaves nothing behind


def test_show_config_lists_keys_with_help():
    out = subprocess.run([sys.executable, "-m", "train.main", "--show_config"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert "optimizer.lr = 0.1  # peak learning rate for the global batch" in lines
    assert len(lines) >= 60 and all("  # " in x for x in lines if not x.startswith("model_kw"))


# --- the report CLI ----------------------------------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["--input", "0x0x3"], "'0x0x3'"), (["--input", "32x32"], "'32x32'"),
    (["--input", "axbxc"], "'axbxc'"), (["--group-size", "0"], "--group-size"),
    (["--num-classes", "0"], "--num-classes"), (["--compression", "0.5"], "0.5"),
    (["--model-arg", "noequals"], "'noequals'"), (["--model-arg", "depth=8x"], "'8x'"),
    (["--model-arg", "bogus=1"], "bogus"), (["--conv", "fsx"], "'fsx'"),
    (["--conv", "ks", "--group-size", "5"], "group_size=5"),
    (["--model", "resnet57"], "'resnet57'"), (["--model-arg", "depth=9"], "got 9"),
])
def test_report_cli(capsys, args, needle):
    from fsjax.report.__main__ import main

    argv = args if "--model" in args else ["--model", "resnet56", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


# --- train.eval --------------------------------------------------------------------------------
def test_eval_cli(tmp_path, capsys):
    from train import eval as ev

    afile = tmp_path / "f.txt"
    afile.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, needle in [
            (["--workdir", str(tmp_path / "nope")], "does not exist"),
            (["--workdir", str(afile)], "is not a directory"),
            (["--workdir", str(empty)], "no checkpoints in"),
            (["--workdir", str(empty), "--which", "foo"], "no checkpoints in"),
            (["--workdir", str(empty), "--quantize", "9"], "--quantize must be"),
    ]:
        assert ev.main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (args, err)
    assert not os.path.exists(tmp_path / "nope") and os.listdir(empty) == []


# --- layers ------------------------------------------------------------------------------------
def _layer_cases():
    import fsjax.linen as fl
    import fsjax.nn as fnn

    r = nnx.Rngs(0)
    x4 = jnp.ones((1, 8, 8, 4))
    return [
        ("rank-2 input", lambda: fnn.FSConv(4, 8, (3, 3), rngs=r)(jnp.ones((2, 4))), "(2, 4)"),
        ("channels", lambda: fnn.FSConv(4, 8, (3, 3), rngs=r)(jnp.ones((1, 8, 8, 3))), "3)"),
        ("int param_dtype", lambda: fnn.FSConv(4, 8, (3, 3), param_dtype=jnp.int32, rngs=r),
         "param_dtype"),
        ("int dtype", lambda: fnn.KSConv(4, 8, (3, 3), groups=2, dtype=jnp.int8, rngs=r),
         "dtype"),
        ("compression < 1", lambda: fnn.FSConv(4, 8, (3, 3), compression=0.5, rngs=r), "0.5"),
        ("groups", lambda: fnn.KSConv(4, 8, (3, 3), groups=3, rngs=r), "3"),
        ("linen rank-2", lambda: fl.FSConv(8, (3, 3)).init(jax_key(), jnp.ones((2, 4))),
         "(2, 4)"),
        ("linen int param_dtype", lambda: fl.FSConv(8, (3, 3), param_dtype=jnp.int32).init(
            jax_key(), x4), "param_dtype"),
    ]


def jax_key():
    import jax

    return jax.random.key(0)


@pytest.mark.parametrize("case", range(8))
def test_layer_errors(case):
    name, fn, needle = _layer_cases()[case]
    with pytest.raises(ValueError) as e:
        fn()
    assert "\n" not in str(e.value) and needle in str(e.value), (name, str(e.value))


# --- exports and packed files ------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from fsjax import export, models, quant

    d = tmp_path_factory.mktemp("exp")
    m = models.create("resnet8", conv="fs", widths=(4, 8, 8))
    meta = dict(model="resnet8", model_kw=dict(widths=[4, 8, 8]),
                conv=dict(kind="fs", compression=4.0), num_classes=10)
    export.save(str(d / "m"), m, meta)
    packed = quant.save_packed(str(d / "m"), m, meta, quant.QuantConfig(bits=4))
    return d, packed


def _copy(d, src, dst, json_edit=None, npz_edit=None):
    js = json.load(open(d / f"{src}.json"))
    if json_edit:
        json_edit(js)
    json.dump(js, open(d / f"{dst}.json", "w"))
    z = dict(np.load(d / f"{src}.npz"))
    if npz_edit:
        npz_edit(z)
    np.savez(d / f"{dst}.npz", **z)


def _drop_one(z):
    del z[sorted(z)[2]]


def _retype(z):
    k = sorted(z)[2]
    z[k] = z[k].astype(np.float64)


@pytest.mark.parametrize("what,json_edit,npz_edit,needle", [
    ("num_classes edited", lambda j: j.update(num_classes=11), None, "checksum mismatch"),
    ("compression edited", lambda j: j["conv"].update(compression=2.0), None, "checksum"),
    ("array deleted", None, _drop_one, "is missing"),
    ("array retyped", None, _retype, "the metadata says"),
    ("array added", None, lambda z: z.update(extra=np.ones(2)), "'extra' is not in"),
    ("no checksum", lambda j: j.pop("sha256"), None, "no checksum"),
])
def test_tampered_export(exported, what, json_edit, npz_edit, needle):
    from fsjax import export

    d, _ = exported
    name = what.replace(" ", "_")
    _copy(d, "m", name, json_edit, npz_edit)
    with pytest.raises(ValueError) as e:
        export.load(str(d / name))
    assert needle in str(e.value) and name in str(e.value) and "\n" not in str(e.value)


def test_broken_files(exported, tmp_path):
    from fsjax import export, quant

    d, packed = exported
    blob = open(d / "m.npz", "rb").read()
    (tmp_path / "t.npz").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "t.json").write_text(open(d / "m.json").read())
    (tmp_path / "j.npz").write_bytes(blob)
    (tmp_path / "j.json").write_text("{not json")
    (tmp_path / "text.fsq.npz").write_text("hello")
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    z = dict(np.load(packed))
    meta = json.loads(z["meta.json"].tobytes())
    meta["quant"]["tensors"][0]["bits"] = 3
    z["meta.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "bits.fsq.npz", **z)
    cases = [
        (lambda: export.load(str(tmp_path / "t")), "t.npz is not a readable"),
        (lambda: export.load(str(tmp_path / "j")), "j.json is not valid JSON"),
        (lambda: export.load(str(tmp_path / "none")), "none.json is missing"),
        (lambda: quant.load_packed(str(tmp_path / "text.fsq.npz")), "text.fsq.npz is not a"),
        (lambda: quant.load_packed(str(tmp_path / "plain.npz")), "no metadata inside"),
        (lambda: quant.load_packed(str(tmp_path / "bits.fsq.npz")), "checksum mismatch"),
        (lambda: quant.load_packed(str(tmp_path / "gone.fsq.npz")), "is missing"),
        (lambda: quant.QuantConfig(bits=4, method="bogus"), "'bogus'"),
    ]
    for fn, needle in cases:
        with pytest.raises((ValueError, FileNotFoundError)) as e:
            fn()
        assert needle in str(e.value) and "\n" not in str(e.value), (needle, str(e.value))


# --- data --------------------------------------------------------------------------------------
def test_data_locations(tmp_path, monkeypatch):
    from fsjax import data

    monkeypatch.setenv("FSJAX_CIFAR10", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError) as e:
        data.load("cifar10")
    assert "missing" in str(e.value) and "$FSJAX_CIFAR10" in str(e.value)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        data.load("fashion_mnist", str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.load("mnist")


def test_each_config_key_is_declared_once(monkeypatch):
    """base(), the help of --show_config and validate() all come from configlib.KEYS: a key
    added there (one line) is in the defaults, has its help and is checked."""
    c = configlib.base()
    flat = {k for k in configlib._flat_keys(c)
            if not isinstance(configlib._get(c, k), configlib.ml_collections.ConfigDict)
            or k in ("conv.overrides", "optimizer.frozen", "quant.overrides")}
    assert flat == {k.path for k in configlib.KEYS}
    assert all(configlib.HELP[k] for k in flat)
    new = configlib.Key("new.depth", 3, "a new key", configlib.Int(1))
    monkeypatch.setattr(configlib, "KEYS", configlib.KEYS + (new,))
    monkeypatch.setattr(configlib, "ALL_KEYS", configlib.ALL_KEYS + (new,))
    c = configlib.base()
    assert c.new.depth == 3
    c.new.depth = 0
    with pytest.raises(ValueError, match=r"config.new.depth = 0 is not valid; valid: a positive int"):
        configlib.validate(c)
