"""On-device augmentation of uint8 NHWC batches (jit/vmap friendly, sharding-invariant)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalize(images: jax.Array, mean, std, dtype=jnp.float32) -> jax.Array:
    """uint8 ``(N, H, W, C)`` -> ``(x/255 - mean) / std`` in ``dtype``."""
    x = images.astype(jnp.float32) / 255.0
    return ((x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)).astype(dtype)


def random_crop_flip(key, images: jax.Array, padding: int = 4, flip: bool = True,
                     cutout: int = 0) -> jax.Array:
    """Per-image random crop after zero padding, horizontal flip and optional cutout.

    ``images (N, H, W, C)`` any dtype -> same shape. One key per batch; per-image randomness
    is drawn with batch-shaped draws, so results do not depend on how the batch is sharded.
    """
    n, h, w, c = images.shape
    k1, k2, k3, k4 = jax.random.split(key, 4)
    if padding:
        padded = jnp.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
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
