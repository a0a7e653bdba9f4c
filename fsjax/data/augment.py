"""On-device augmentation of uint8 NHWC batches (jit/vmap friendly, sharding-invariant)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalize(images: jax.Array, mean, std, dtype=jnp.float32) -> jax.Array:
    """uint8 ``(N, H, W, C)`` -> ``(x/255 - mean) / std`` in ``dtype``."""
    x = images.astype(jnp.float32) / 255.0
    return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


PAD_MODES = ("constant", "reflect")


def random_crop_flip(key, images: jax.Array, padding: int = 4, flip: bool = True,
                     cutout: int = 0, pad_mode: str = "constant") -> jax.Array:
    """Per-image random crop after padding, horizontal flip and optional cutout.

    ``images (N, H, W, C)`` any dtype -> same shape. ``pad_mode``: ``'constant'`` (zeros) or
    ``'reflect'`` (mirrored without repeating the edge, airbench's translate). One key per
    batch; per-image randomness is drawn with batch-shaped draws, so results do not depend on
    how the batch is sharded.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode {pad_mode!r} is not valid; valid: {', '.join(PAD_MODES)}")
    n, h, w, c = images.shape
    k1, k2, k3, k4 = jax.random.split(key, 4)
    if padding:
        padded = jnp.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)],
                         mode=pad_mode)
        dy = jax.random.randint(k1, (n,), 0, 2 * padding + 1)
        dx = jax.random.randint(k2, (n,), 0, 2 * padding + 1)
        images = jax.vmap(lambda im, y, x: jax.lax.dynamic_slice(im, (y, x, 0), (h, w, c)))(
            padded, dy, dx)
    if flip:
        do = jax.random.bernoulli(k3, 0.5, (n,))
        images = jnp.where(do[:, None, None, None], images[:, :, ::-1, :], images)
    if cutout:
        cy = jax.random.randint(k4, (n,), 0, h)
        cx = jax.random.randint(jax.random.fold_in(k4, 1), (n,), 0, w)
        ys = jnp.arange(h)[None, :, None]
        xs = jnp.arange(w)[None, None, :]
        half = cutout // 2
        inside = ((jnp.abs(ys - cy[:, None, None]) <= half - (cutout % 2 == 0)) &
                  (jnp.abs(xs - cx[:, None, None]) <= half - (cutout % 2 == 0)))
        images = jnp.where(inside[..., None], jnp.zeros_like(images), images)
    return images


TTA_LEVELS = (0, 1, 2)


def tta_logits(apply, x: jax.Array, level: int = 0) -> jax.Array:
    """Logits averaged over test-time views of ``x (N, H, W, C)``; ``apply(x) -> (N, classes)``.

    level 0: ``apply(x)``; 1: the mean over ``x`` and its mirror; 2 (airbench): half of level
    1, plus half the mean of level 1 over the two 1-pixel translations up-left and down-right
    of the reflect-padded image (6 forward passes).
    """
    if level not in TTA_LEVELS:
        raise ValueError(f"tta level {level!r} is not valid; valid: 0, 1, 2")
    if level == 0:
        return apply(x)
    mirror = lambda v: 0.5 * (apply(v) + apply(v[:, :, ::-1, :]))
    if level == 1:
        return mirror(x)
    h, w = x.shape[1:3]
    p = jnp.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    shifted = 0.5 * (mirror(p[:, :h, :w]) + mirror(p[:, 2:, 2:]))
    return 0.5 * mirror(x) + 0.5 * shifted
