"""Flax's own conv test cases, run against fsjax's layers: a drop-in must accept what Flax runs.

The cases are those of the installed Flax's tests for ``Conv`` (``tests/nnx/nn/conv_test.py``:
the NNX/Linen equivalence product; ``tests/linen/linen_linear_test.py``: every ``nn.Conv`` test,
ConvLocal/ConvTranspose excluded), rebuilt here. Each runs through FSConv (compression 1),
DFSConv (integer locations, compression 1) and KSConv (``groups = in_features``, no sharing),
NNX and Linen, and is compared bit for bit with Flax's layer fed the materialised kernel; where
Flax's test checks its output against hand-computed numbers (deterministic ``kernel_init``),
fsjax's own initialisation must give those numbers too. The signature tests make a new Flax
argument show up as a failure here.
"""

import dataclasses
import functools
import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx
from jax.lax import Precision

import fsjax.linen as fl
import fsjax.nn as fnn

ones, zeros = nnx.initializers.ones, nnx.initializers.zeros


def _cases():
    """(name, input, Linen-style kwargs, expected output or None)."""
    out = []
    # conv_test.py: TestConvLinenConsistency.test_nnx_linen_conv_equivalence. Flax's test
    # overrides every padding by (4, 2) (input dilation is set), so the product collapses.
    for strides, bias, use_mask, pet in itertools.product(
            [None, (2, 3)], [True, False], [False, True], [None, jnp.float32]):
        kw = dict(features=6, kernel_size=(7, 4), strides=strides, padding=(4, 2),
                  input_dilation=(2, 3), kernel_dilation=(2, 3), feature_group_count=3,
                  use_bias=bias, mask=jnp.tril(jnp.ones((7, 4, 1, 6))) if use_mask else None,
                  dtype=jnp.float32, param_dtype=jnp.float16, precision=Precision.HIGHEST,
                  preferred_element_type=pet)
        out.append((f"equiv-{strides}-{bias}-{use_mask}-{pet}", jnp.ones((24, 9, 3)), kw, None))
    init1 = dict(kernel_init=ones, bias_init=ones)
    for bias in (True, False):
        kw = dict(features=4, use_bias=bias, kernel_size=(3,), padding="VALID", **init1)
        want = np.full((1, 6, 4), 10.0 if bias else 9.0)
        out.append((f"conv-{bias}", jnp.ones((1, 8, 3)), kw, want))
        out.append((f"multibatch-{bias}", jnp.ones((2, 5, 8, 3)), kw,
                    np.full((2, 5, 6, 4), 10.0 if bias else 9.0)))
    out.append(("single_input", jnp.ones((8, 3)),
                dict(features=4, kernel_size=(3,), padding="VALID", **init1),
                np.full((6, 4), 10.0)))
    out.append(("single_input_masked", jnp.ones((8, 3)),
                dict(features=4, kernel_size=(3,), padding="VALID",
                     mask=jnp.tril(jnp.ones((3, 3, 4))), **init1),
                np.tile([10.0, 7.0, 4.0, 1.0], (6, 1))))
    out.append(("group", jnp.ones((1, 8, 4)),
                dict(features=4, kernel_size=(3,), feature_group_count=2, padding="VALID",
                     **init1), np.full((1, 6, 4), 7.0)))
    init10 = dict(kernel_init=ones, bias_init=zeros)
    for nb, nf, k, ni, n in itertools.product((1, 3), (1, 2), (1, 2, 3, 9), (1, 3), (1, 8, 16)):
        out.append((f"circ1d-{nb}-{nf}-{k}-{ni}-{n}", jnp.ones((nb, n, ni)),
                    dict(features=nf, kernel_size=(k,), padding="CIRCULAR", **init10),
                    np.full((nb, n, nf), k * ni)))
    for nb, nf, k, ni, ny in itertools.product((1, 3), (1, 2, 10), (1, 2, 3, 9), (1, 5), (5, 10)):
        out.append((f"circ2d-{nb}-{nf}-{k}-{ni}-{ny}", jnp.ones((nb, 14, ny, ni)),
                    dict(features=nf, kernel_size=(k, k), padding="CIRCULAR", **init10),
                    np.full((nb, 14, ny, nf), k * k * ni)))
    x1 = np.expand_dims(np.arange(1, 6), (0, 2))
    k1 = np.expand_dims(np.array((1, 2, 1)), (1, 2))
    x2 = np.expand_dims(np.array(((1, 2, 3), (4, 5, 6), (7, 8, 9))), (0, 3))
    k2 = np.expand_dims(np.array(((0, 1, 0), (1, 2, 1), (0, 1, 0))), (2, 3))
    custom1 = dict(features=1, kernel_size=(3,), kernel_init=lambda *_: k1, bias_init=zeros)
    custom2 = dict(features=1, kernel_size=(3, 3), kernel_init=lambda *_: k2, bias_init=zeros)
    out.append(("circ1d_custom", x1, dict(strides=(3,), padding="CIRCULAR", **custom1),
                np.array([[[9], [16]]])))
    out.append(("circ1d_dilation", x1, dict(padding="CIRCULAR", kernel_dilation=(3,), **custom1),
                np.expand_dims([3 + 2 + 4, 4 + 4 + 5, 5 + 6 + 1, 1 + 8 + 2, 2 + 10 + 3], (0, 2))))
    out.append(("circ2d_custom", x2, dict(padding="CIRCULAR", **custom2), np.expand_dims(
        [[2 + 7 + 2 + 4 + 3, 4 + 8 + 3 + 5 + 1, 6 + 9 + 1 + 6 + 2],
         [8 + 1 + 5 + 7 + 6, 10 + 2 + 6 + 8 + 4, 12 + 3 + 4 + 9 + 5],
         [14 + 4 + 8 + 1 + 9, 16 + 5 + 9 + 2 + 7, 18 + 6 + 7 + 3 + 8]], (0, 3))))
    out.append(("reflect1d", x1, dict(strides=(2,), padding="REFLECT", **custom1),
                np.expand_dims([2 + 2 + 2, 2 + 6 + 4, 4 + 10 + 4], (0, 2))))
    out.append(("reflect2d", x2, dict(padding="REFLECT", **custom2), np.expand_dims(
        [[2 + 4 + 2 + 4 + 2, 4 + 5 + 3 + 5 + 1, 6 + 6 + 2 + 6 + 2],
         [8 + 1 + 5 + 7 + 5, 10 + 2 + 6 + 8 + 4, 12 + 3 + 5 + 9 + 5],
         [14 + 4 + 8 + 8 + 4, 16 + 5 + 9 + 5 + 7, 18 + 6 + 8 + 6 + 8]], (0, 3))))
    causal = np.array([5.0, 9.0] + [13.0] * 6)[None, :, None].repeat(4, 2)
    out.append(("causal1d", jnp.ones((1, 8, 4)),
                dict(features=4, kernel_size=(3,), padding="CAUSAL", **init1), causal))
    out.append(("int_kernel", jnp.ones((8, 3)), dict(features=4, kernel_size=3), None))
    return out


CASES = _cases()
KINDS = {  # fsjax layer, its options at "no compression", NNX and Linen
    "fs": (fnn.FSConv, fl.FSConv, lambda cin: dict(compression=1.0)),
    "dfs": (fnn.DFSConv, fl.DFSConv, lambda cin: dict(compression=1.0)),
    "ks": (fnn.KSConv, fl.KSConv, lambda cin: dict(groups=cin)),
}


def _nnx_args(kw):
    kw = dict(kw)
    return kw.pop("features"), kw.pop("kernel_size"), kw


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_flax_cases_nnx(kind):
    cls, _, opts = KINDS[kind]
    for i, (name, x, kw, want) in enumerate(CASES):
        if kind == "dfs" and name.startswith(("circ1d-", "circ2d-")) and i % 5:
            # the 192 padding-mode combinations go through ops.conv, shared by every kind,
            # and run in full for fs and ks; dfs builds its kernel eagerly (slow), so 1 in 5
            # here (5 is coprime to the inner loops: every value of every parameter occurs)
            continue
        cin = x.shape[-1]
        features, ks, rest = _nnx_args(kw)
        layer = cls(cin, features, ks, **rest, **opts(cin), rngs=nnx.Rngs(0))
        ref = nnx.Conv(cin, features, ks, **rest, rngs=nnx.Rngs(0))
        ref.kernel[...] = layer.dense_kernel().astype(ref.kernel[...].dtype)
        if ref.bias is not None:
            ref.bias[...] = layer.bias[...]
        y, out = layer(x), ref(x)
        assert y.dtype == out.dtype and y.shape == out.shape, name
        np.testing.assert_array_equal(y, out, err_msg=name)
        if want is not None:
            np.testing.assert_array_equal(y, want, err_msg=name)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_flax_cases_linen(kind):
    _, cls, opts = KINDS[kind]
    key = jax.random.key(0)
    for name, x, kw, want in CASES:
        cin = x.shape[-1]
        kw = dict(kw)
        pet = kw.pop("preferred_element_type", None)
        if pet is not None:  # Linen's Conv takes it through its conv function (as Flax's test)
            kw["conv_general_dilated"] = functools.partial(jax.lax.conv_general_dilated,
                                                           preferred_element_type=pet)
        mod = cls(**kw, **opts(cin))
        y, variables = mod.init_with_output(key, x)
        p = variables["params"]
        ref = {"kernel": fl.dense_kernel(mod, p, cin).astype(kw.get("param_dtype", jnp.float32))}
        if "bias" in p:
            ref["bias"] = p["bias"]
        out = linen.Conv(**kw).apply({"params": ref}, x)
        assert y.dtype == out.dtype and y.shape == out.shape, name
        np.testing.assert_array_equal(y, out, err_msg=name)
        if want is not None:
            np.testing.assert_array_equal(y, want, err_msg=name)


def test_positional_strides_and_int_kernel_as_flax():
    x = jnp.ones((2, 24, 9, 3))
    a = fnn.FSConv(3, 6, (7, 4), (2, 3), padding="VALID", compression=1.0, rngs=nnx.Rngs(0))
    assert a(x).shape == nnx.Conv(3, 6, (7, 4), (2, 3), padding="VALID", rngs=nnx.Rngs(0))(x).shape
    b = fnn.KSConv(3, 4, 3, rngs=nnx.Rngs(0), groups=3)
    assert b.kernel_size == (3,) and b.kernel.shape == (3, 3, 4)
    # Flax's initialiser maps onto the summary: same key, compression 1 -> Flax's kernel
    c = fnn.FSConv(3, 4, (3, 3), compression=1.0, kernel_init=nnx.initializers.lecun_normal(),
                   rngs=nnx.Rngs(5))
    np.testing.assert_array_equal(c.dense_kernel(), nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(5)).kernel[...])


def _same_default(a, b):
    if a is b or (a is inspect.Parameter.empty and b is inspect.Parameter.empty):
        return True
    if callable(a) and callable(b) and getattr(a, "__name__", 1) == getattr(b, "__name__", 2):
        try:  # an initialiser: same values
            k = jax.random.key(0)
            return bool(jnp.array_equal(a(k, (3,), jnp.float32), b(k, (3,), jnp.float32)))
        except Exception:
            return True  # same-named function (e.g. promote_dtype from another module)
    try:
        return bool(a == b)
    except Exception:
        return False


# kernel_init: fsjax's None = the per-weight fan-in init whose distribution is Flax's default
# lecun_normal (documented), since a Flax initialiser cannot see a summary's fan-in.
DOCUMENTED = {"kernel_init"}


@pytest.mark.parametrize("cls", [fnn.Conv, fnn.FSConv, fnn.DFSConv, fnn.KSConv])
def test_nnx_signature_starts_with_flax(cls):
    flax_params = list(inspect.signature(nnx.Conv.__init__).parameters.values())
    ours = list(inspect.signature(cls.__init__).parameters.values())
    assert [p.name for p in ours[:len(flax_params)]] == [p.name for p in flax_params]
    for f, o in zip(flax_params, ours, strict=False):
        assert f.kind == o.kind, f.name
        if f.name not in DOCUMENTED:
            assert _same_default(f.default, o.default), f.name


@pytest.mark.parametrize("cls", [fl.FSConv, fl.DFSConv, fl.KSConv])
def test_linen_fields_start_with_flax(cls):
    flax_fields = [f for f in dataclasses.fields(linen.Conv) if f.name not in ("parent", "name")]
    ours = [f for f in dataclasses.fields(cls) if f.name not in ("parent", "name")]
    assert [f.name for f in ours[:len(flax_fields)]] == [f.name for f in flax_fields]
    for f, o in zip(flax_fields, ours, strict=False):
        if f.name not in DOCUMENTED:
            assert _same_default(f.default, o.default), f.name
