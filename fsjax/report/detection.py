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

from fsjax import ops

__all__ = ["METHODS", "average_precision", "evaluate_detections", "coco_map"]

METHODS = ("11point", "all", "101point")


def _normalized(detections, ground_truth):
    """Per image NumPy ``(boxes (n, 4), scores (n,), classes (n,))`` and ``(boxes (m, 4),
    classes (m,), difficult (m,) bool)``, read once."""
    dets = [(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s).reshape(-1),
             np.asarray(k).reshape(-1)) for b, s, k in detections]
    gts = []
    for g in ground_truth:
        classes = np.asarray(g[1]).reshape(-1)
        diff = (np.zeros(len(classes), bool) if len(g) < 3 or g[2] is None
                else np.asarray(g[2], bool).reshape(-1))
        gts.append((np.asarray(g[0], np.float32).reshape(-1, 4), classes, diff))
    return dets, gts


def _pairwise_iou(dets, gts) -> np.ndarray:
    """IoU of every detection with every ground-truth box of its image, ``(N, D, G)``: one
    :func:`fsjax.ops.iou` call over the images padded to the most detections and boxes (padding
    boxes are empty: IoU 0)."""
    n = len(dets)
    d = max([1, *(len(x[0]) for x in dets)])
    g = max([1, *(len(x[0]) for x in gts)])
    pd, pg = np.zeros((n, d, 4), np.float32), np.zeros((n, g, 4), np.float32)
    for i, ((db, _, _), (gb, _, _)) in enumerate(zip(dets, gts, strict=True)):
        pd[i, :len(db)], pg[i, :len(gb)] = db, gb
    return np.asarray(ops.iou(pd, pg))


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
    dets, gts = _normalized(detections, ground_truth)
    ious = _pairwise_iou(dets, gts)
    aps, npos_all = [], []
    for c in range(num_classes):
        own = [np.flatnonzero(classes == c) for _, classes, _ in gts]  # per image
        taken = [np.zeros(len(o), bool) for o in own]
        npos = sum(int((~diff[o]).sum()) for (_, _, diff), o in zip(gts, own, strict=True))
        cand = [(float(s), i, j) for i, (_, scores, classes) in enumerate(dets)
                for j in np.flatnonzero(classes == c) for s in (scores[j],)]
        cand.sort(key=lambda t: -t[0])
        tp, fp = [], []
        for _, i, j in cand:
            hit = miss = False
            if len(own[i]):
                ov = ious[i, j, own[i]]
                k = int(ov.argmax())
                if ov[k] > iou_threshold:
                    if gts[i][2][own[i][k]]:
                        continue  # difficult: neither true nor false positive
                    hit = not taken[i][k]
                    taken[i][k] = True
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

    dets, gts = _normalized(detections, ground_truth)
    images, anns, res = [], [], []
    for i, (boxes, classes, diff) in enumerate(gts):
        images.append({"id": i})
        for b, c, d in zip(xywh(boxes), classes, diff, strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c),
                         "bbox": b.tolist(), "area": float(b[2] * b[3]), "iscrowd": int(d)})
    for i, (boxes, scores, classes) in enumerate(dets):
        for b, s, c in zip(xywh(boxes), scores, classes, strict=True):
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
