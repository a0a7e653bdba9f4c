"""SSD's training loss and its inference post-processing (fixed shapes, jit end to end).

Shapes: ``B`` images, ``P`` default boxes, ``K`` object classes (``K + 1`` logits with class 0
the background). Box conventions as in :mod:`fsjax.ops.boxes`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fsjax.ops.boxes import VARIANCES, decode_boxes, nms_mask

__all__ = ["smooth_l1", "hard_negatives", "multibox_loss", "detect"]


def smooth_l1(x, beta: float = 1.0):
    """Huber-style smooth L1, elementwise: ``0.5 x^2 / beta`` if ``|x| < beta`` else
    ``|x| - beta / 2``."""
    ax = jnp.abs(x)
    return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def hard_negatives(neg_loss, positive, neg_pos_ratio: float = 3.0):
    """SSD's hard negative mining: per image, the ``min(ratio * #positives, #negatives)``
    negatives with the highest loss.

    Args:
      neg_loss: ``(B, P)`` background loss of every prior; positive: ``(B, P)`` bool.
    Returns:
      ``(B, P)`` bool, the chosen negatives (ties: the lower index first).
    """
    num_pos = positive.sum(-1, keepdims=True)
    num_neg = jnp.minimum(jnp.floor(neg_pos_ratio * num_pos),
                          positive.shape[-1] - num_pos)
    loss = jnp.where(positive, -jnp.inf, jax.lax.stop_gradient(neg_loss))
    rank = jnp.argsort(jnp.argsort(-loss, -1, stable=True), -1, stable=True)
    return (rank < num_neg) & ~positive


def multibox_loss(loc_pred, logits, loc_targets, cls_targets, neg_pos_ratio: float = 3.0):
    """SSD's multibox loss: smooth L1 on the positives' offsets plus softmax cross-entropy on
    the positives and the mined hard negatives, both summed and divided by the number of
    positives in the batch (at least 1).

    Args:
      loc_pred: ``(B, P, 4)``; logits: ``(B, P, K + 1)``; loc_targets: ``(B, P, 4)``;
      cls_targets: ``(B, P)`` int (0 = background), from :func:`fsjax.ops.match_boxes`.
    Returns:
      ``(loss, {"loc": ..., "conf": ..., "positives": ...})``, scalars.
    """
    positive = cls_targets > 0
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    ce = -jnp.take_along_axis(logp, cls_targets[..., None].astype(jnp.int32), -1)[..., 0]
    negative = hard_negatives(-logp[..., 0], positive, neg_pos_ratio)
    n = jnp.maximum(positive.sum(), 1).astype(jnp.float32)
    loc = jnp.sum(smooth_l1(loc_pred.astype(jnp.float32) - loc_targets).sum(-1) * positive) / n
    conf = jnp.sum(ce * (positive | negative)) / n
    return loc + conf, {"loc": loc, "conf": conf, "positives": positive.sum()}


def detect(loc_pred, logits, priors, *, score_threshold: float = 0.01,
           iou_threshold: float = 0.45, top_k: int = 200, max_detections: int = 100,
           variances=VARIANCES):
    """Per-class NMS of one image's predictions, fixed output size.

    For each object class: the ``top_k`` priors by softmax score, those above
    ``score_threshold``, greedy NMS at ``iou_threshold``; then the ``max_detections`` best
    over all classes.

    Args:
      loc_pred: ``(P, 4)``; logits: ``(P, K + 1)``; priors: ``(P, 4)`` cxcywh.
    Returns:
      ``(boxes (D, 4) xyxy clipped to [0, 1], scores (D,), classes (D,) int32 in 0..K-1,
      valid (D,) bool)`` with ``D = max_detections``, best first; invalid rows are padding
      (score 0). Batch it with ``jax.vmap``.
    """
    p, k1 = logits.shape
    top_k = min(top_k, p)
    boxes = jnp.clip(decode_boxes(loc_pred.astype(jnp.float32), priors, variances), 0.0, 1.0)
    probs = jax.nn.softmax(logits.astype(jnp.float32), -1)[:, 1:].T      # (K, P)

    def per_class(s):
        top, idx = jax.lax.top_k(s, top_k)
        top = jnp.where(top > score_threshold, top, -jnp.inf)
        keep = nms_mask(boxes[idx], top, iou_threshold)
        return jnp.where(keep, top, -jnp.inf), idx

    scores, idx = jax.vmap(per_class)(probs)                              # (K, top_k)
    classes = jnp.broadcast_to(jnp.arange(k1 - 1)[:, None], scores.shape)
    d = min(max_detections, scores.size)
    best, flat = jax.lax.top_k(scores.reshape(-1), d)
    valid = jnp.isfinite(best)
    out_boxes = jnp.where(valid[:, None], boxes[idx.reshape(-1)[flat]], 0.0)
    return (out_boxes, jnp.where(valid, best, 0.0), classes.reshape(-1)[flat].astype(jnp.int32),
            valid)
