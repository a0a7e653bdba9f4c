"""Quantization: round-trip bounds, packing, STE gradients, packed export, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsjax import export, ops, quant, report
from fsjax.nn import DFSConv, FSConv


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_round_trip_within_half_step(bits, per_channel):
    x = jax.random.normal(jax.random.key(bits), (3, 3, 8, 16))
    groups = ops.channel_groups(x.shape) if per_channel else None
    codes, lo, step = ops.uniform_quantize(x, bits, groups)
    assert codes.dtype == jnp.uint8 and int(codes.max()) <= 2 ** bits - 1
    err = jnp.abs(ops.uniform_dequantize(codes, lo, step, groups) - x)
    bound = step[0] / 2 if groups is None else step[jnp.asarray(groups)] / 2
    assert bool(jnp.all(err <= bound * (1 + 1e-5) + 1e-7))


def test_official_8bit_convention():
    x = jnp.linspace(-1.0, 3.0, 1000)
    _, lo, step = ops.uniform_quantize(x, 8)
    np.testing.assert_allclose(step[0], 4.0 / 255, rtol=1e-6)
    assert ops.effective_params(1000, 8) == 1000 / 4 + 2


def test_fs_chunk_groups_cover_segments():
    g = ops.fs_chunk_groups(20, [0, 5, 12])
    assert g.tolist() == [0] * 5 + [1] * 7 + [2] * 8
    g = ops.fs_chunk_groups(10, [2, 6])
    assert g.tolist() == [1, 1, 0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("bits", [2, 3, 5, 7, 8])
def test_pack_unpack_bit_exact(bits):
    codes = np.random.default_rng(bits).integers(0, 2 ** bits, size=1001).astype(np.uint8)
    packed = ops.pack_bits(codes, bits)
    assert packed.nbytes == -(-1001 * bits // 8)
    np.testing.assert_array_equal(ops.unpack_bits(packed, bits, 1001), codes)


def test_kmeans_codebook():
    x = jnp.concatenate([jnp.full(50, -1.0), jnp.full(50, 0.5), jnp.full(50, 2.0)])
    codes, book = ops.kmeans_quantize(x, 2)
    np.testing.assert_allclose(ops.codebook_dequantize(codes, book), x, atol=1e-6)


@pytest.mark.parametrize("cls", [FSConv, DFSConv])
def test_ste_gradients_pass_through(cls):
    from flax import nnx

    layer = cls(4, 6, 3, compression=2.0, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 4))

    def loss(fs, fake):
        w = ops.fake_quant(fs, 4) if fake else fs
        k = layer.spec.materialize(w, layer.location_values() if cls is DFSConv else None)
        return jnp.sum(ops.conv(x, k) ** 2)

    fs = layer.fs[...]
    g_q = jax.grad(loss)(fs, True)
    assert float(jnp.abs(g_q).sum()) > 0
    # straight-through: the gradient is the float gradient evaluated at the quantized weights
    q = ops.fake_quant(fs, 4)
    np.testing.assert_allclose(g_q, jax.grad(loss)(q, False), rtol=1e-5, atol=1e-5)


def _small_model(kind="fs"):
    meta = dict(model="resnet56", num_classes=10, conv=dict(kind=kind, compression=4.0),
                model_kw=dict(depth=8, widths=(4, 8, 8)))
    return export.build(meta), meta


@pytest.mark.parametrize("bits,per_channel,method", [(8, False, "uniform"), (4, True, "uniform"),
                                                     (3, False, "kmeans")])
def test_packed_export_matches_fake_quant(tmp_path, bits, per_channel, method):
    model, meta = _small_model()
    q = quant.QuantConfig(bits=bits, per_channel=per_channel, method=method)
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    model.eval()
    entries = quant.plan(model, q)
    from train.model_fn import ModelFn

    fn = ModelFn.create(model)
    p, s = ModelFn.initial(model)
    want, _ = fn.apply(quant.fake_quant_params(p, entries, method), s, x, False)
    f = quant.save_packed(str(tmp_path / "m"), model, meta, q)
    loaded, _ = quant.load_packed(f)
    loaded.eval()
    np.testing.assert_array_equal(loaded(x), want)
    assert {e.name for e in entries} >= {"stem", "fc"}


def test_report_gains_bits_and_bytes():
    model, _ = _small_model()
    entries = quant.plan(model, quant.QuantConfig(bits=4, overrides={"fc": 8}))
    rows = report.layer_rows(model, (16, 16, 3), quant.bits_by_layer(entries))
    by = {r.name: r for r in rows}
    assert by["stem"].bits == 4 and by["stem"].bytes == -(-by["stem"].stored * 4 // 8)
    assert by["fc"].bits == 8
    assert "bits" in report.format_table(rows)


def test_errors():
    with pytest.raises(ValueError, match="bits must be an int in 2..8"):
        quant.QuantConfig(bits=1)
    with pytest.raises(ValueError, match="must be an int in 2..8"):
        quant.QuantConfig(bits=4, overrides={"stem": 12})
    with pytest.raises(ValueError, match="per_channel=False"):
        quant.QuantConfig(bits=4, per_channel=True, method="kmeans")
    model, meta = _small_model("dfs")
    with pytest.raises(ValueError, match="freeze DFS layers to FS first"):
        quant.save_packed("/tmp/never", model, meta, quant.QuantConfig(bits=8))


def test_qat_run(tmp_path):
    from tests.test_train_run import tiny_config
    from train.trainer import run

    r = run(tiny_config(num_epochs=1, **{"quant.bits": 4, "conv.kind": "dfs"}), str(tmp_path))
    assert np.isfinite(r["accuracy"])
