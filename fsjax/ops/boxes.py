"""Box math for single-shot detection (SSD, Liu et al. 2016).

Conventions: boxes are ``(x1, y1, x2, y2)`` corners ("xyxy"), normalised to the image
(``[0, 1]``); default (prior) boxes are ``(cx, cy, w, h)`` ("cxcywh"). Class targets use 0 for
background and ``label + 1`` for object classes ``label`` in ``0..K-1``. Every function has
fixed output shapes (padding + masks), so training and inference jit end to end.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["area", "iou", "corners_to_center", "center_to_corners", "default_boxes",
           "boxes_per_cell", "encode_boxes", "decode_boxes", "match_boxes", "nms_mask", "flip_boxes",
           "crop_boxes", "VARIANCES"]

VARIANCES = (0.1, 0.2)  # SSD's scaling of centre and size offsets


def area(b: jax.Array) -> jax.Array:
    """``(..., 4)`` xyxy -> ``(...)``; an inverted box has area 0."""
    return jnp.clip(b[..., 2] - b[..., 0], 0) * jnp.clip(b[..., 3] - b[..., 1], 0)


def iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """Intersection over union of every pair: ``a (..., N, 4)``, ``b (..., M, 4)`` xyxy ->
    ``(..., N, M)``; 0 where the union is empty."""
    lt = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = jnp.clip(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[..., :, None] + area(b)[..., None, :] - inter
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def corners_to_center(b):
    """``(..., 4)`` xyxy -> cxcywh."""
    return jnp.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], -1)


def center_to_corners(b):
    """``(..., 4)`` cxcywh -> xyxy."""
    return jnp.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


def default_boxes(feature_sizes, aspect_ratios, min_scale: float = 0.2,
                  max_scale: float = 0.9, clip: bool = True) -> np.ndarray:
    """SSD's default boxes: ``(P, 4)`` cxcywh, a NumPy constant built at model set-up.

    Feature map ``k`` of ``m`` (``feature_sizes[k]`` = its side ``f``) gets scale
    ``s_k = min_scale + (max_scale - min_scale) k / (m - 1)`` and, at each cell centre
    ``((j + .5) / f, (i + .5) / f)`` in row-major order, the boxes ``(s_k, s_k)``,
    ``(s'_k, s'_k)`` with ``s'_k = sqrt(s_k s_{k+1})`` (``s_m`` continues the same linear
    step, capped at 1), and ``(s_k sqrt(r), s_k / sqrt(r))`` and its transpose for every
    ``r`` in ``aspect_ratios[k]`` (ratios > 1). That is ``2 + 2 len(aspect_ratios[k])`` boxes
    per cell, the order the heads' outputs are reshaped in. ``clip`` clips to the image.
    """
    m = len(feature_sizes)
    if len(aspect_ratios) != m:
        raise ValueError(f"aspect_ratios lists {len(aspect_ratios)} feature maps; the model "
                         f"has {m}")
    step = (max_scale - min_scale) / max(m - 1, 1)
    scales = [min_scale + step * k for k in range(m)] + [min(1.0, max_scale + step)]
    out = []
    for k, f in enumerate(feature_sizes):
        s, s2 = scales[k], math.sqrt(scales[k] * scales[k + 1])
        wh = [(s, s), (s2, s2)]
        for r in aspect_ratios[k]:
            wh += [(s * math.sqrt(r), s / math.sqrt(r)), (s / math.sqrt(r), s * math.sqrt(r))]
        c = (np.arange(f) + 0.5) / f
        cy, cx = np.meshgrid(c, c, indexing="ij")
        centres = np.stack([cx, cy], -1).reshape(-1, 1, 2)
        sizes = np.broadcast_to(np.array(wh), (f * f, len(wh), 2))
        out.append(np.concatenate([np.broadcast_to(centres, sizes.shape), sizes], -1)
                   .reshape(-1, 4))
    boxes = np.concatenate(out).astype(np.float32)
    return np.clip(boxes, 0.0, 1.0) if clip else boxes


def boxes_per_cell(aspect_ratios) -> list[int]:
    """Default boxes per cell of each feature map (see :func:`default_boxes`)."""
    return [2 + 2 * len(r) for r in aspect_ratios]


def encode_boxes(boxes, priors, variances=VARIANCES):
    """Regression targets of ``boxes (..., P, 4)`` xyxy against ``priors (P, 4)`` cxcywh ->
    ``(..., P, 4)``: ``((c - pc) / (v0 pwh), log(wh / pwh) / v1)``."""
    g = corners_to_center(boxes)
    wh = jnp.maximum(g[..., 2:], 1e-6)
    return jnp.concatenate([(g[..., :2] - priors[:, :2]) / (variances[0] * priors[:, 2:]),
                            jnp.log(wh / priors[:, 2:]) / variances[1]], -1)


def decode_boxes(offsets, priors, variances=VARIANCES):
    """Inverse of :func:`encode_boxes`: ``offsets (..., P, 4)`` -> xyxy ``(..., P, 4)``."""
    c = priors[:, :2] + offsets[..., :2] * variances[0] * priors[:, 2:]
    wh = priors[:, 2:] * jnp.exp(jnp.minimum(offsets[..., 2:] * variances[1], 10.0))
    return center_to_corners(jnp.concatenate([c, wh], -1))


def match_boxes(gt_boxes, gt_labels, gt_valid, priors, threshold: float = 0.5,
                variances=VARIANCES):
    """SSD matching of one image's ground truth to the default boxes.

    Each valid ground-truth box claims its best-overlapping prior (ties between boxes claiming
    the same prior go to the later box); every other prior takes the ground truth it overlaps
    most and is positive if that IoU is ``>= threshold``.

    Args:
      gt_boxes: ``(G, 4)`` xyxy, padded; gt_labels: ``(G,)`` int in ``0..K-1``;
      gt_valid: ``(G,)`` bool (padding rows False); priors: ``(P, 4)`` cxcywh.
    Returns:
      ``(loc_targets (P, 4), cls_targets (P,) int32)``: encoded offsets of the matched box
      (0 for background) and ``label + 1`` or 0 (background).
    """
    g, p = gt_boxes.shape[0], priors.shape[0]
    ov = iou(gt_boxes, center_to_corners(priors))               # (G, P)
    ov = jnp.where(gt_valid[:, None], ov, -1.0)
    best_gt, best_ov = jnp.argmax(ov, 0), jnp.max(ov, 0)        # (P,)
    best_prior = jnp.argmax(ov, 1)                             # (G,)
    claims = (best_prior[:, None] == jnp.arange(p)[None, :]) & gt_valid[:, None]  # (G, P)
    claimed = claims.any(0)
    claimer = jnp.argmax(jnp.where(claims, jnp.arange(g)[:, None], -1), 0)
    best_gt = jnp.where(claimed, claimer, best_gt)
    positive = claimed | (best_ov >= threshold)
    cls = jnp.where(positive, gt_labels[best_gt].astype(jnp.int32) + 1, 0)
    loc = encode_boxes(gt_boxes[best_gt], priors, variances)
    return jnp.where(positive[:, None], loc, 0.0), cls


def nms_mask(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression with a fixed shape.

    Args:
      boxes: ``(K, 4)`` xyxy; scores: ``(K,)``, ``-inf`` for entries that take no part.
    Returns:
      ``(K,)`` bool: kept, in the input's order. A box is kept if no higher-scoring kept box
      overlaps it with IoU ``> iou_threshold`` (equal scores: the earlier index first).
    """
    k = boxes.shape[0]
    order = jnp.argsort(-scores, stable=True)
    b, s = boxes[order], scores[order]
    ov = iou(b, b)
    idx = jnp.arange(k)

    def body(i, keep):
        suppressed = jnp.any(keep & (ov[i] > iou_threshold) & (idx < i))
        return keep.at[i].set(jnp.isfinite(s[i]) & ~suppressed)

    keep_sorted = jax.lax.fori_loop(0, k, body, jnp.zeros(k, bool))
    return jnp.zeros(k, bool).at[order].set(keep_sorted)


def flip_boxes(boxes):
    """Boxes of the horizontally mirrored image: ``(..., 4)`` xyxy."""
    return jnp.stack([1 - boxes[..., 2], boxes[..., 1], 1 - boxes[..., 0], boxes[..., 3]], -1)


def crop_boxes(boxes, valid, window, min_visible: float = 0.0):
    """Boxes in the frame of the crop ``window = (x1, y1, x2, y2)`` (normalised), clipped to it.

    Args:
      boxes: ``(G, 4)`` xyxy; valid: ``(G,)`` bool.
    Returns:
      ``(boxes (G, 4), valid (G,))``: a box stays valid if its centre lies inside the window
      (SSD's rule) and more than ``min_visible`` of its area is inside.
    """
    window = jnp.asarray(window, boxes.dtype)
    wh = window[2:] - window[:2]
    clipped = jnp.concatenate([jnp.maximum(boxes[:, :2], window[:2]),
                               jnp.minimum(boxes[:, 2:], window[2:])], -1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = jnp.all((centre > window[:2]) & (centre < window[2:]), -1)
    kept = area(clipped) > min_visible * area(boxes)
    out = (clipped - jnp.tile(window[:2], 2)) / jnp.tile(wh, 2)
    ok = valid & inside & kept & (area(boxes) > 0)
    return jnp.where(ok[:, None], out, 0.0), ok
