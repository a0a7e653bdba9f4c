"""Detection metrics: PASCAL VOC mAP@0.5 (11-point VOC 2007 and all-point VOC 2010+), the
101-point interpolation of COCO, and COCO's mAP@[.5:.95] through ``pycocotools``.

Inputs are per image, in NumPy, boxes xyxy in any one unit (normalised or pixels):

- ``detections[i] = (boxes (n, 4), scores (n,), classes (n,))``;
- ``ground_truth[i] = (boxes (m, 4), classes (m,), difficult (m,) bool or None)``.

VOC rules (the devkit's ``voc_eval``): per class, detections in descending score order; each
is matched to the ground-truth box of its image it overlaps most; a true positive if that IoU
is above the threshold and the box is not yet taken, a false positive otherwise; boxes marked
``difficult`` count neither way and are not in the recall's denominator. Classes without
ground truth are left out of the mean.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

__all__ = ["METHODS", "average_precision", "evaluate_detections", "coco_map", "box_iou_np"]

METHODS = ("11point", "all", "101point")


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a (N, 4)`` and ``b (M, 4)`` xyxy -> ``(N, M)`` (NumPy, no +1 pixel rule)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), -1)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def average_precision(recall, precision, method: str = "all") -> float:
    """Area under the precision-recall curve (``recall`` ascending, one point per detection):
    ``'11point'`` (VOC 2007: mean of the best precision at recall >= 0, 0.1, ..., 1),
    ``'all'`` (VOC 2010+: exact area under the monotone envelope) or ``'101point'`` (COCO:
    the envelope sampled at recall 0, 0.01, ..., 1)."""
    if method not in METHODS:
        raise ValueError(f"AP method {method!r} is not valid; valid: {', '.join(METHODS)}")
    rec, prec = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if method == "11point":
        return float(np.mean([prec[rec >= t].max() if (rec >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    env = np.maximum.accumulate(prec[::-1])[::-1] if len(prec) else prec
    if method == "101point":
        idx = np.searchsorted(rec, np.linspace(0, 1, 101), side="left")
        return float(np.mean([env[i] if i < len(env) else 0.0 for i in idx]))
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], env, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def evaluate_detections(detections, ground_truth, num_classes: int,
                        iou_threshold: float = 0.5, method: str = "11point") -> dict:
    """VOC-style mAP. Returns ``{"map": float, "ap": [per class or None], "npos": [...]}``
    (``None``: the class has no ground truth and is not in the mean)."""
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} images of detections but {len(ground_truth)} of "
                         f"ground truth")
    aps, npos_all = [], []
    for c in range(num_classes):
        gts, npos = {}, 0
        for i, g in enumerate(ground_truth):
            boxes, classes = np.asarray(g[0]).reshape(-1, 4), np.asarray(g[1]).reshape(-1)
            diff = (np.zeros(len(classes), bool) if len(g) < 3 or g[2] is None
                    else np.asarray(g[2], bool).reshape(-1))
            sel = classes == c
            gts[i] = (boxes[sel], diff[sel], np.zeros(int(sel.sum()), bool))
            npos += int((~diff[sel]).sum())
        cand = [(float(s), i, np.asarray(b, np.float64))
                for i, (boxes, scores, classes) in enumerate(detections)
                for b, s, k in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(
                    -1), np.asarray(classes).reshape(-1), strict=True) if k == c]
        order = sorted(range(len(cand)), key=lambda j: -cand[j][0])
        tp, fp = [], []
        for j in order:
            _, i, b = cand[j]
            gboxes, diff, taken = gts[i]
            hit = miss = False
            if len(gboxes):
                ov = box_iou_np(b[None], gboxes)[0]
                k = int(ov.argmax())
                if ov[k] > iou_threshold:
                    if diff[k]:
                        continue  # neither true nor false positive
                    hit = not taken[k]
                    taken[k] = True
                    miss = not hit
                else:
                    miss = True
            else:
                miss = True
            tp.append(hit)
            fp.append(miss)
        npos_all.append(npos)
        if npos == 0:
            aps.append(None)
            continue
        tpc, fpc = np.cumsum(tp), np.cumsum(fp)
        rec = tpc / npos
        prec = tpc / np.maximum(tpc + fpc, np.finfo(np.float64).eps)
        aps.append(average_precision(rec, prec, method))
    have = [a for a in aps if a is not None]
    return {"map": float(np.mean(have)) if have else 0.0, "ap": aps, "npos": npos_all,
            "method": method, "iou_threshold": iou_threshold}


def coco_map(detections, ground_truth, num_classes: int, scale: float = 1.0) -> dict:
    """COCO's box mAP through ``pycocotools`` (the field's reference implementation):
    ``{"map": AP@[.5:.95], "map50": AP@.5, "map75": AP@.75}``, 100 detections per image,
    all areas; ``difficult`` boxes become COCO's ``iscrowd`` regions (detections on them are
    ignored). No detections or no ground truth: all zeros. ``scale`` multiplies the boxes
    (e.g. the image side for normalised boxes; COCO's area ranges are in pixels but 'all'
    ignores them). Needs ``pip install pycocotools``.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise ImportError("coco_map needs pycocotools: pip install pycocotools") from None

    def xywh(b):
        b = np.asarray(b, np.float64).reshape(-1, 4) * scale
        return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)

    images, anns, res = [], [], []
    for i, g in enumerate(ground_truth):
        images.append({"id": i})
        diff = (np.zeros(len(np.asarray(g[1]).reshape(-1)), bool) if len(g) < 3 or g[2] is None
                else np.asarray(g[2], bool).reshape(-1))
        for b, c, d in zip(xywh(g[0]), np.asarray(g[1]).reshape(-1), diff, strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c),
                         "bbox": b.tolist(), "area": float(b[2] * b[3]), "iscrowd": int(d)})
    for i, (boxes, scores, classes) in enumerate(detections):
        for b, s, c in zip(xywh(boxes), np.asarray(scores).reshape(-1),
                           np.asarray(classes).reshape(-1), strict=True):
            res.append({"image_id": i, "category_id": int(c), "bbox": b.tolist(),
                        "score": float(s)})
    if not res or not anns:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(res)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": float(ev.stats[0]), "map50": float(ev.stats[1]), "map75": float(ev.stats[2])}
