"""Detection training and evaluation steps (SSD): the detection counterparts of
:mod:`train.model_fn`'s classification steps, on the same :class:`~train.model_fn.ModelFn`.

Targets arrive packed as ``(B, G, 7)`` rows ``(x1, y1, x2, y2, class, valid, difficult)``
(:func:`fsjax.data.pack_targets`); ``difficult`` objects are left out of training (as in SSD)
and count neither way in the mAP. The train "accuracy" is the fraction of matched default
boxes whose class is predicted right (per image, averaged); the test metric is mAP@0.5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fsjax import ops
from fsjax.data import detection, unpack_targets
from fsjax.data.augment import normalize


def _targets(c, priors, boxes, labels, valid):
    return jax.vmap(lambda b, lab, v: ops.match_boxes(b, lab, v, priors,
                                                      c.detection.match_threshold))(
        boxes, labels, valid)


def _hit_fraction(logits, cls_t):
    """Per image ``(B,)``: the fraction of positive default boxes classified right."""
    pos = cls_t > 0
    return ((jnp.argmax(logits, -1) == cls_t) & pos).sum(-1) / jnp.maximum(pos.sum(-1), 1)


def make_train_step(fn, tx, c, mean, std, dtype, priors, param_transform=None):
    """``step(ts, images_u8, targets, key) -> (ts, metrics)`` (see :mod:`train.model_fn`)."""
    import optax

    priors = jnp.asarray(priors)

    def step(ts, images, y, key):
        k_aug, k_drop = jax.random.split(key)
        boxes, labels, valid, difficult = unpack_targets(y)
        x, boxes, valid = detection.augment(k_aug, images, boxes, valid & ~difficult,
                                            c.detection.min_crop, c.augment.flip)
        x = normalize(x, mean, std, dtype)
        loc_t, cls_t = _targets(c, priors, boxes, labels, valid)

        def loss_fn(params):
            p = param_transform(params) if param_transform else params
            (loc, logits), stats = fn.apply(p, ts["stats"], x, True, k_drop)
            loss, _ = ops.multibox_loss(loc, logits, loc_t, cls_t, c.detection.neg_pos_ratio)
            return loss, (logits, stats)

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(ts["params"])
        updates, opt = tx.update(grads, ts["opt"], ts["params"])
        params = optax.apply_updates(ts["params"], updates)
        n = images.shape[0]
        new = dict(params=params, stats=stats, opt=opt, step=ts["step"] + 1)
        return new, dict(loss=loss * n, correct=jnp.sum(_hit_fraction(logits, cls_t)),
                         count=jnp.asarray(n, jnp.int32))

    return step


def make_eval_step(fn, c, mean, std, dtype, priors, param_transform=None):
    """``eval(params, stats, images_u8, targets, mask) -> dict`` of sums (loss: each image's
    multibox loss) and, under keys starting with ``_``, the batch's detections
    (:func:`fsjax.ops.detect`), gathered by the runner for :func:`map_metrics`."""
    priors = jnp.asarray(priors)
    d = c.detection
    kw = dict(score_threshold=d.score_threshold, iou_threshold=d.nms_threshold, top_k=d.top_k,
              max_detections=d.max_detections)

    def evaluate(params, stats, images, y, mask):
        p = param_transform(params) if param_transform else params
        x = normalize(images, mean, std, dtype)
        with ops.inference_trace():
            (loc, logits), _ = fn.apply(p, stats, x, False)
        boxes, labels, valid, difficult = unpack_targets(y)
        loc_t, cls_t = _targets(c, priors, boxes, labels, valid & ~difficult)
        per_image = jax.vmap(lambda a, b, t, u: ops.multibox_loss(
            a[None], b[None], t[None], u[None], d.neg_pos_ratio)[0])(loc, logits, loc_t, cls_t)
        det_boxes, scores, classes, ok = jax.vmap(lambda a, b: ops.detect(a, b, priors, **kw))(
            loc, logits)
        return dict(loss=jnp.sum(per_image * mask), correct=jnp.sum(_hit_fraction(logits, cls_t) * mask),
                    count=jnp.sum(mask.astype(jnp.int32)), _boxes=det_boxes, _scores=scores,
                    _classes=classes, _valid=ok & mask[:, None])

    return evaluate


def detections_list(gathered: dict, n: int) -> list[tuple]:
    """The runner's gathered ``_boxes/_scores/_classes/_valid`` -> per image
    ``(boxes, scores, classes)`` of the valid rows, for the first ``n`` images."""
    b, s, k, v = (np.concatenate(gathered[key])[:n] for key in
                  ("_boxes", "_scores", "_classes", "_valid"))
    return [(b[i][v[i]], s[i][v[i]], k[i][v[i]]) for i in range(n)]


def ground_truth(targets: np.ndarray) -> list[tuple]:
    """Packed targets ``(N, G, 7)`` -> per image ``(boxes, classes, difficult)``."""
    boxes, classes, valid, difficult = unpack_targets(np.asarray(targets))
    return [(b[v], k[v], d[v]) for b, k, v, d in zip(boxes, classes, valid, difficult,
                                                      strict=True)]


def map_metrics(c, test_targets: np.ndarray, num_classes: int):
    """``finish(gathered) -> {"accuracy": mAP@0.5 (config.detection.map_method), "map50_*",
    "coco_map" (mAP@[.5:.95], with pycocotools)}`` for :meth:`train.loop.Runner.evaluate`."""
    from fsjax.report.detection import coco_map, evaluate_detections

    gts = ground_truth(test_targets)

    def finish(gathered):
        dets = detections_list(gathered, len(gts))
        maps = {m: evaluate_detections(dets, gts, num_classes, 0.5, m)["map"]
                for m in dict.fromkeys(("11point", "all", c.detection.map_method))}
        out = {f"map50_{m}": maps[m] for m in ("11point", "all")}
        out["accuracy"] = maps[c.detection.map_method]
        try:  # COCO's mAP@[.5:.95] where pycocotools is installed
            out["coco_map"] = coco_map(dets, gts, num_classes)["map"]
        except ImportError:
            pass
        return out

    return finish


def draw_detections(model, ds, c, out: str, n: int = 8, min_score: float = 0.3,
                    side: int = 192) -> str:
    """A PNG of the first ``n`` test images with the detector's boxes (score >= ``min_score``,
    red, with class name and score) and the ground truth (thin green)."""
    from flax import nnx
    from PIL import Image, ImageDraw

    model.eval()
    images = ds.test_images[:n]
    x = normalize(jnp.asarray(images), ds.mean, ds.std)
    d = c.detection
    with ops.inference_trace():
        boxes, scores, classes, valid = nnx.jit(lambda m, x: m.detect(
            x, score_threshold=d.score_threshold, iou_threshold=d.nms_threshold, top_k=d.top_k,
            max_detections=d.max_detections))(model, x)
    boxes, scores, classes, valid = map(np.asarray, (boxes, scores, classes, valid))
    gts = ground_truth(ds.test_labels[:n])
    names = ds.class_names or tuple(str(i) for i in range(ds.num_classes))
    canvas = Image.new("RGB", (side * len(images), side + 14), "white")
    draw = ImageDraw.Draw(canvas)
    for i, im in enumerate(images):
        canvas.paste(Image.fromarray(im).resize((side, side), Image.BILINEAR), (i * side, 0))
        for b in gts[i][0]:
            draw.rectangle([i * side + b[0] * side, b[1] * side, i * side + b[2] * side,
                            b[3] * side], outline=(0, 200, 0), width=1)
        for b, s, k, v in zip(boxes[i], scores[i], classes[i], valid[i], strict=True):
            if not v or s < min_score:
                continue
            x1, y1 = i * side + b[0] * side, b[1] * side
            draw.rectangle([x1, y1, i * side + b[2] * side, b[3] * side], outline=(230, 0, 0),
                           width=2)
            draw.text((x1 + 2, y1 + 1), f"{names[k]} {s:.2f}", fill=(255, 255, 0))
    draw.text((4, side + 1), f"red: detections (score >= {min_score}), green: ground truth",
              fill=(0, 0, 0))
    canvas.save(out)
    model.train()
    return out
