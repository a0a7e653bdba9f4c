"""fsjax.ops.init (the whitening, partial-identity and fan-in initialisers) against NumPy
references, and the airbench model's data-dependent init that uses them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fsjax import models, ops


def _images(seed=0, n=6, h=7, w=6, c=3):
    """Images whose channels and neighbouring pixels are correlated (as real ones are)."""
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, h, w, c)) @ np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.4],
                                                 [0.0, 0.0, 1.0]])[:c, :c]
    return (x + 0.6 * np.roll(x, 1, axis=1) + 0.3 * np.roll(x, 1, axis=2)).astype(np.float32)


def _whitening_reference(x, kh, kw, eps):
    """Every patch by loops, the second-moment matrix and its eigenvectors in float64."""
    n, h, w, c = x.shape
    patches = [x[i, y:y + kh, z:z + kw, :].reshape(-1) for i in range(n)
               for y in range(h - kh + 1) for z in range(w - kw + 1)]
    p = np.asarray(patches, np.float64)
    lam, vec = np.linalg.eigh(p.T @ p / len(p))
    order = np.argsort(lam)[::-1]
    return lam[order], vec[:, order] / np.sqrt(lam[order] + eps), p


@pytest.mark.parametrize("kernel_size,c", [((2, 2), 3), ((3, 2), 2)])
def test_whitening_kernel_matches_the_eigenvectors_of_the_patches(kernel_size, c):
    """Filter i is e_i / sqrt(lambda_i + eps) (up to the eigenvector's sign), filter d+i its
    negative, and the first d outputs over the patches have second moments
    lambda_i / (lambda_i + eps) and no correlation."""
    kh, kw = kernel_size
    x, eps = _images(c=c), 5e-4
    k = np.asarray(ops.whitening_kernel(jnp.asarray(x), kernel_size, eps))
    d = kh * kw * c
    assert k.shape == (kh, kw, c, 2 * d)
    f = k.reshape(d, 2 * d)
    lam, ref, p = _whitening_reference(x, kh, kw, eps)
    np.testing.assert_allclose(f[:, d:], -f[:, :d], rtol=0, atol=0)
    for i in range(d):
        sign = np.sign(f[:, i] @ ref[:, i])
        np.testing.assert_allclose(f[:, i], sign * ref[:, i], rtol=2e-3, atol=2e-3)
    out = p @ f[:, :d]
    np.testing.assert_allclose(out.T @ out / len(p), np.diag(lam / (lam + eps)), atol=2e-3)


def test_whitening_kernel_is_the_conv_that_whitens():
    """Through a VALID conv (the model's use), the outputs' second-moment matrix is ~identity."""
    x = _images(seed=1, n=20, h=8, w=8)
    k = ops.whitening_kernel(jnp.asarray(x), (2, 2), 1e-6)
    y = jax.lax.conv_general_dilated(jnp.asarray(x), k, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    y = np.asarray(y[..., :12], np.float64).reshape(-1, 12)
    np.testing.assert_allclose(y.T @ y / len(y), np.eye(12), atol=1e-3)


def test_whitening_kernel_rejects_images_smaller_than_the_kernel():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        ops.whitening_kernel(jnp.zeros((2, 1, 4, 3)), (2, 2))


@pytest.mark.parametrize("cin,cout", [(3, 5), (5, 3), (4, 4)])
def test_identity_kernel_copies_the_first_channels(cin, cout):
    """conv(x, identity_kernel) with SAME padding is x's first min(cin, cout) channels, then
    zeros (a slow NumPy reference: the kernel built tap by tap)."""
    k = np.asarray(ops.identity_kernel((3, 3, cin, cout)))
    ref = np.zeros((3, 3, cin, cout), np.float32)
    for i in range(min(cin, cout)):
        ref[1, 1, i, i] = 1.0
    np.testing.assert_array_equal(k, ref)
    x = jnp.asarray(_images(n=2, h=5, w=5, c=3)[..., :1].repeat(cin, -1) *
                    np.arange(1, cin + 1, dtype=np.float32))
    y = jax.lax.conv_general_dilated(x, jnp.asarray(k), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    n = min(cin, cout)
    np.testing.assert_allclose(y[..., :n], x[..., :n], rtol=1e-6)
    np.testing.assert_array_equal(y[..., n:], 0.0)


def test_fan_in_normal_has_the_requested_variance():
    w = ops.fan_in_normal(jax.random.key(0), (200_000,), fan_in=50, scale=2.0)
    assert abs(float(jnp.var(w)) / (2.0 / 50) - 1) < 0.02
    assert float(jnp.max(jnp.abs(w))) <= 2 * (2.0 / 50) ** 0.5 / 0.87962566 + 1e-6
    with pytest.raises(ValueError, match="fan_in must be positive"):
        ops.fan_in_normal(jax.random.key(0), (3,), fan_in=0)


def test_airbench_init_from_data_loads_the_whitening_kernel():
    """The model's data-dependent init is ops.whitening_kernel on its 2x2 conv, bias 0; a
    whitening conv of another width is refused."""
    x = jnp.asarray(_images(n=4, h=8, w=8))
    m = models.create("airbench", widths=(8, 8, 8), rngs=nnx.Rngs(0))
    m.init_from_data(x)
    np.testing.assert_allclose(m.whiten.kernel[...], ops.whitening_kernel(x, (2, 2)), rtol=1e-6)
    np.testing.assert_array_equal(m.whiten.bias[...], 0.0)
    m = models.create("airbench", widths=(8, 8, 8), whiten_width=16, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="whiten_width=16"):
        m.init_from_data(x)


def test_fast_config_options_no_whiten_and_epochs():
    """config.data_init_examples = 0 (fast.py's no-whiten ablation) skips init_from_data and
    trains the whitening kernel (the recipe itself freezes it); epochs=<n> stretches the
    schedule; an unknown option is refused."""
    from configs.cifar10 import fast
    from train import trainer

    c = fast.get_config("dense,0,no-whiten")
    assert c.data_init_examples == 0 and "whiten/kernel" not in c.optimizer.frozen
    assert fast.get_config("dense").optimizer.frozen["whiten/kernel"] == 0

    class Model:
        def init_from_data(self, images):
            raise AssertionError("init_from_data ran with data_init_examples = 0")

    trainer._initialise(c, None, Model())
    c = fast.get_config("dfs4,1,epochs=20")
    assert (c.num_epochs, c.locations.freeze_epoch) == (20, 18)
    assert c.schedule.warmup_epochs == pytest.approx(4.6)
    with pytest.raises(ValueError, match="unknown option 'no-bn'"):
        fast.get_config("dense,0,no-bn")


def test_fast_config_darts_size_and_kind_options(tmp_path, standin_genotype):
    """fast.py:darts,<genotype>[,<variant>][,cells=<n>][,channels=<n>]: the size options set
    the evaluation network's cells and channels in any order, the variant its conv kind, and a
    malformed option is refused with the valid forms."""
    import json

    from configs.cifar10 import fast

    g = tmp_path / "genotype.json"
    g.write_text(json.dumps(standin_genotype))
    c = fast.get_config(f"darts,{g}")
    assert (c.model, c.conv.kind, c.model_kw.cells, c.model_kw.channels) == (
        "darts_eval", "fs", fast.NAS_CELLS, fast.NAS_CHANNELS)
    c = fast.get_config(f"darts,{g},cells=5,dense,channels=24")
    assert (c.conv.kind, c.model_kw.cells, c.model_kw.channels) == ("dense", 5, 24)
    for bad in ("cells=2", "cells=five", "depth=4", "channels=0"):
        with pytest.raises(ValueError, match=f"bad darts option '{bad}'"):
            fast.get_config(f"darts,{g},{bad}")
