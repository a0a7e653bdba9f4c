"""ThiNet math: per-channel contributions, greedy / stepwise channel selection, least squares.

Notation: layer i+1 has kernel ``W (kh, kw, C, cout)``; for a sampled output position and
output channel ``o`` the contribution of input channel ``c`` is
``x_hat[c] = sum_{ky,kx} W[ky, kx, c, o] * patch[ky, kx, c]`` and the target is
``y_hat = sum_c x_hat[c]`` (the output minus the bias). ``X`` is the ``(m, C)`` matrix of
contributions over ``m`` samples.

Both selections work from the Gram matrix ``G = X^T X`` (accumulated in chunks of rows, so
memory is bounded by the chunk, not by ``m``) and run as jitted ``lax`` loops:

- greedy removal (ICCV'17): grow the removed set ``T`` one channel at a time, taking the
  channel minimising ``||sum_{t in T+c} x_t||^2 = s + 2 r_c + G_cc`` with the running sums
  ``s`` and ``r = G[T].sum(0)`` -- O(C) per step after the Gram, instead of O(m) per candidate.
- stepwise forward selection (TPAMI'18): add the channel that best explains the residual of the
  least-squares fit over the selected set -- ranked as the authors do (a one-dimensional fit of
  the residual on each candidate) or exactly (the refit over ``S + c``); Gram-Schmidt in
  coefficient space.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["contributions", "gram", "greedy_removal", "stepwise_forward", "select_channels",
           "least_squares_scale", "sample_positions", "METHODS"]


def sample_positions(key, n_images: int, out_hw, cout: int, per_image: int):
    """Random ``(image, y, x, out_channel)`` index arrays, ``per_image`` per image, shape (m,)."""
    m = n_images * per_image
    k1, k2, k3 = jax.random.split(key, 3)
    img = jnp.repeat(jnp.arange(n_images), per_image)
    ys = jax.random.randint(k1, (m,), 0, out_hw[0])
    xs = jax.random.randint(k2, (m,), 0, out_hw[1])
    oc = jax.random.randint(k3, (m,), 0, cout)
    return img, ys, xs, oc


def _pads(kernel_size, strides, padding, hw):
    if padding == "VALID":
        return [(0, 0), (0, 0)]
    if padding != "SAME":
        return [tuple(p) for p in padding]
    out = []
    for n, k, s in zip(hw, kernel_size, strides, strict=True):
        o = -(-n // s)
        total = max((o - 1) * s + k - n, 0)
        out.append((total // 2, total - total // 2))
    return out


@functools.partial(jax.jit, static_argnames=("strides", "padding", "chunk"))
def contributions(x, kernel, img, ys, xs, oc, strides=(1, 1), padding="SAME", chunk=8192):
    """Per-input-channel contributions at sampled positions.

    Args:
      x: ``(N, H, W, C)`` input of layer i+1. kernel: ``(kh, kw, C, cout)``.
      img, ys, xs, oc: ``(m,)`` sample indices (output coordinates and output channel).
    Returns:
      ``x_hat (m, C)`` float32 (rows computed in chunks of ``chunk``).
    """
    kh, kw, c, _ = kernel.shape
    pads = _pads((kh, kw), strides, padding, x.shape[1:3])
    xp = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    m = img.shape[0]
    n_chunks = -(-m // chunk)
    total = n_chunks * chunk
    idx = [jnp.pad(a, (0, total - m)).reshape(n_chunks, chunk) for a in (img, ys, xs, oc)]

    def one(i, y, xx, o):
        patch = jax.lax.dynamic_slice(xp[i], (y * strides[0], xx * strides[1], 0), (kh, kw, c))
        return jnp.einsum("abc,abc->c", patch.astype(jnp.float32),
                          kernel[:, :, :, o].astype(jnp.float32))

    out = jax.lax.map(lambda t: jax.vmap(one)(*t), tuple(idx))
    return out.reshape(total, c)[:m]


def gram(x_hat, chunk: int = 65536):
    """``(G = X^T X (C, C), b = X^T y (C,), yy = y^T y)`` with ``y = X.sum(1)``, accumulated
    over row chunks of at most ``chunk`` rows in float32 (jitted; padded to a multiple of the
    chunk, never beyond ``m`` rounded up)."""
    m = x_hat.shape[0]
    n = -(-m // chunk)
    return _gram(x_hat, -(-m // n))


@functools.partial(jax.jit, static_argnames=("chunk",))
def _gram(x_hat, chunk: int):
    m, c = x_hat.shape
    n = -(-m // chunk)
    xs = jnp.pad(x_hat.astype(jnp.float32), ((0, n * chunk - m), (0, 0))).reshape(n, chunk, c)

    def body(acc, xb):
        g, b, yy = acc
        y = xb.sum(1)
        return (g + xb.T @ xb, b + xb.T @ y, yy + y @ y), None

    zero = (jnp.zeros((c, c)), jnp.zeros(c), jnp.zeros(()))
    (g, b, yy), _ = jax.lax.scan(body, zero, xs)
    return g, b, yy


@functools.partial(jax.jit, static_argnames=("keep",))
def greedy_removal(g, keep: int):
    """ICCV greedy: returns a bool mask ``(C,)`` of kept channels (``keep`` of them)."""
    c = g.shape[0]
    diag = jnp.diag(g)

    def body(_, state):
        removed, r, s = state
        cost = s + 2 * r + diag
        cost = jnp.where(removed, jnp.inf, cost)
        t = jnp.argmin(cost)
        return removed.at[t].set(True), r + g[t], cost[t]

    removed, _, _ = jax.lax.fori_loop(0, c - keep, body,
                                      (jnp.zeros(c, bool), jnp.zeros(c), jnp.zeros(())))
    return ~removed


@functools.partial(jax.jit, static_argnames=("keep", "exact"))
def stepwise_forward(g, b, keep: int, exact: bool = False, eps: float = 1e-6):
    """TPAMI stepwise forward selection; kept mask ``(C,)``.

    After each addition the selected channels are refit exactly (least squares), so the
    residual is ``r = y - X_S w_S`` and ``X^T r`` is ``bp`` below. Candidates are ranked by

    - ``exact=False`` (the authors' algorithm, TPAMI'18 and their released code): the
      residual left by a one-dimensional fit of ``r`` on the candidate alone,
      i.e. the largest ``(x_c^T r)^2 / ||x_c||^2``;
    - ``exact=True``: the residual left by refitting all of ``S + c``, i.e. the largest
      ``(x_c^T r)^2 / ||P_perp x_c||^2`` (never worse at each step).

    ``gp``/``bp`` are the Gram matrix and ``X^T y`` of the candidates projected orthogonal to
    the span of the selected channels (Gram-Schmidt in coefficient space).
    """
    c = g.shape[0]
    diag0 = jnp.diag(g)
    scale = jnp.maximum(jnp.max(diag0), 1e-30)

    def body(_, state):
        sel, gp, bp = state
        d = jnp.diag(gp)
        denom = d if exact else diag0
        dead = (d <= eps * scale) if exact else (diag0 <= eps * scale)
        gain = jnp.where(sel | dead, -jnp.inf, bp ** 2 / jnp.maximum(denom, 1e-30))
        p = jnp.argmax(gain)
        # a candidate already in the span of S (authors' criterion only) changes nothing
        ok = gp[p, p] > eps * scale
        norm = jnp.sqrt(jnp.maximum(gp[p, p], 1e-30))
        v = jnp.where(ok, gp[:, p] / norm, 0.0)
        return sel.at[p].set(True), gp - jnp.outer(v, v), bp - v * jnp.where(ok, bp[p] / norm,
                                                                              0.0)

    sel, _, _ = jax.lax.fori_loop(0, keep, body, (jnp.zeros(c, bool), g, b))
    return sel


METHODS = ("greedy", "stepwise", "stepwise_exact")


def select_channels(x_hat, keep: int, method: str = "greedy") -> np.ndarray:
    """Kept input channels of layer i+1 (sorted int32 indices) from ``x_hat (m, C)``.
    ``method``: ``greedy`` (ICCV'17), ``stepwise`` (TPAMI'18 as the authors wrote it) or
    ``stepwise_exact`` (exact least-squares ranking, see :func:`stepwise_forward`)."""
    c = x_hat.shape[1]
    if not 0 < keep <= c:
        raise ValueError(f"keep must be in [1, {c}]; got {keep}")
    if method not in METHODS:
        raise ValueError(f"ThiNet method must be one of {', '.join(METHODS)}; got {method!r}")
    g, b, _ = gram(jnp.asarray(x_hat))
    if method == "greedy":
        mask = greedy_removal(g, keep)
    else:
        mask = stepwise_forward(g, b, keep, exact=method == "stepwise_exact")
    return np.flatnonzero(np.asarray(mask)).astype(np.int32)


def least_squares_scale(x_hat, y_hat, kept, jitter: float = 1e-6):
    """``w = argmin ||y_hat - X[:, kept] w||^2`` (float32, Cholesky of the Gram matrix with
    relative jitter). ``x_hat (m, C)``, ``y_hat (m,)``, ``kept (k,)`` -> ``w (k,)``."""
    xs = jnp.asarray(x_hat, jnp.float32)[:, jnp.asarray(kept)]
    g = xs.T @ xs
    b = xs.T @ jnp.asarray(y_hat, jnp.float32)
    lam = jitter * jnp.maximum(jnp.trace(g) / g.shape[0], 1e-30)
    chol = jnp.linalg.cholesky(g + lam * jnp.eye(g.shape[0]))
    return jax.scipy.linalg.cho_solve((chol, True), b)
