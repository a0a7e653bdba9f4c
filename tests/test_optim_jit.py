"""fsjax.optim (the optimizer groups, train_until / train_from, airbench's lookahead) and
fsjax.nn.jit (nnx.jit compiled with fsjax's CPU options)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import fsjax
from fsjax import models, optim


def _tiny(kind="dfs"):
    return models.create("resnet8", conv=kind, widths=(4, 8, 8))


def _loss(m, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()


def test_model_optimizer_groups_and_location_stop():
    m = _tiny("dfs")
    tx = optim.model_optimizer(m, optax.sgd(0.1), locations=optax.sgd(50.0),
                               freeze_locations_at=2, frozen={"stem/*": 0})
    opt = nnx.Optimizer(m, tx, wrt=nnx.Param)
    locs = lambda: np.concatenate([np.asarray(v[...]) for _, v in
                                   nnx.to_flat_state(nnx.state(m, fsjax.nn.Location))])
    stem = lambda: np.asarray(m.stem.conv.fs[...]).copy()
    x, y = jnp.ones((4, 32, 32, 3)), jnp.arange(4) % 10
    history, s0 = [locs()], stem()
    for _ in range(4):
        opt.update(m, nnx.grad(_loss)(m, x, y))
        history.append(locs())
    moved = [not np.allclose(a, b) for a, b in zip(history, history[1:], strict=False)]
    assert moved == [True, True, False, False]  # stopped after 2 steps
    np.testing.assert_array_equal(stem(), s0)  # frozen from epoch 0
    labels = optim.param_labels(m, frozen={"stem/*": 0})(nnx.state(m, nnx.Param))
    assert set(jax.tree.leaves(labels)) == {"weights", "locations", "frozen@0"}


def test_train_until_and_from():
    params = {"w": jnp.ones(3)}
    g = {"w": jnp.ones(3)}
    for tx, want in ((optim.train_until(optax.sgd(1.0), 2), [1, 1, 0, 0]),
                     (optim.train_from(optax.sgd(1.0), 2), [0, 0, 1, 1])):
        st = tx.init(params)
        got = []
        for _ in range(4):
            u, st = tx.update(g, st, params)
            got.append(float(-u["w"][0]))
        assert got == want


def test_lookahead_sync_matches_numpy():
    """airbench's lookahead: every 5 steps slow <- d slow + (1-d) fast, fast <- slow, with
    d = 0.95^5 (t/T)^3; at the last step fast <- slow."""
    rng = np.random.default_rng(0)
    total, every = 12, 5
    slow, fast = {"a": jnp.zeros(4)}, {"a": jnp.zeros(4)}
    ref_slow, ref_fast = np.zeros(4), np.zeros(4)
    for t in range(1, total + 1):
        step = rng.normal(size=4)
        fast = {"a": fast["a"] + step}
        ref_fast = ref_fast + step
        slow, fast = jax.jit(optim.lookahead_sync, static_argnums=(3, 4))(slow, fast, t, total,
                                                                         every)
        if t % every == 0:
            d = 0.95 ** 5 * (t / total) ** 3
            ref_slow = d * ref_slow + (1 - d) * ref_fast
            ref_fast = ref_slow.copy()
        if t >= total:
            ref_fast = ref_slow.copy()
        np.testing.assert_allclose(fast["a"], ref_fast, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(slow["a"], ref_slow, rtol=1e-6, atol=1e-6)


def _step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(_loss)(model, x, y)
    optimizer.update(model, grads)
    return loss


def test_fsjax_jit_matches_nnx_jit_and_updates_in_place():
    x, y = jnp.ones((4, 32, 32, 3)), jnp.arange(4) % 10
    out = []
    for jit in (nnx.jit, fsjax.nn.jit):
        m = _tiny("fs")
        opt = nnx.Optimizer(m, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
        f = jit(_step)
        out.append([float(f(m, opt, x, y)) for _ in range(3)])
    # the same math; other XLA options round differently (2e-5 relative seen)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-3)
    assert out[1][2] < out[1][0]


def test_fsjax_jit_compiles_with_the_options():
    """A bogus option makes the compile fail: the options reach XLA (on the CPU)."""
    m = _tiny("fs")
    f = fsjax.nn.jit(lambda m, x: m(x), compiler_options={"xla_no_such_option": "1"})
    with pytest.raises(Exception, match="xla_no_such_option|No such compile option|nknown"):
        f(m, jnp.ones((2, 32, 32, 3)))
    g = fsjax.nn.jit(lambda m, x, k: m(x) * k, static_argnums=2)
    a, b = g(m, jnp.ones((2, 32, 32, 3)), 2.0), g(m, jnp.ones((3, 32, 32, 3)), 2.0)
    assert a.shape == (2, 10) and b.shape == (3, 10) and g.compiled_count() == 2
    g(m, jnp.ones((2, 32, 32, 3)), 2.0)
    assert g.compiled_count() == 2  # the first program reused
