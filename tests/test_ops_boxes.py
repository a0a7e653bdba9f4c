"""fsjax.ops box math and multibox loss / NMS against slow, loop-by-loop NumPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fsjax import ops


def rand_boxes(rng, n, lo=0.02, hi=0.6):
    xy = rng.uniform(0, 1 - hi, (n, 2))
    wh = rng.uniform(lo, hi, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def ref_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def test_iou_matches_reference_and_edge_cases():
    rng = np.random.default_rng(0)
    a, b = rand_boxes(rng, 7), rand_boxes(rng, 5)
    np.testing.assert_allclose(ops.iou(a, b), ref_iou(a, b), atol=1e-6)
    box = np.array([[0.1, 0.1, 0.5, 0.5]], np.float32)
    assert float(ops.iou(box, box)[0, 0]) == pytest.approx(1.0)
    far = np.array([[0.6, 0.6, 0.9, 0.9]], np.float32)
    assert float(ops.iou(box, far)[0, 0]) == 0.0
    empty = np.zeros((1, 4), np.float32)
    assert float(ops.iou(empty, empty)[0, 0]) == 0.0  # no NaN for empty boxes
    half = np.array([[0.1, 0.1, 0.3, 0.5]], np.float32)  # half of box
    assert float(ops.iou(box, half)[0, 0]) == pytest.approx(0.5)


def ref_default_boxes(sizes, ratios, smin, smax):
    m = len(sizes)
    s = [smin + (smax - smin) * k / (m - 1) for k in range(m + 1)]
    s[m] = min(1.0, s[m])
    out = []
    for k, f in enumerate(sizes):
        for i in range(f):
            for j in range(f):
                cx, cy = (j + 0.5) / f, (i + 0.5) / f
                out.append([cx, cy, s[k], s[k]])
                s2 = math.sqrt(s[k] * s[k + 1])
                out.append([cx, cy, s2, s2])
                for r in ratios[k]:
                    out.append([cx, cy, s[k] * math.sqrt(r), s[k] / math.sqrt(r)])
                    out.append([cx, cy, s[k] / math.sqrt(r), s[k] * math.sqrt(r)])
    return np.clip(np.array(out), 0, 1)


def test_default_boxes_match_the_ssd_recipe():
    sizes, ratios = (8, 4, 2, 1), ((2,), (2, 3), (2, 3), (2,))
    got = ops.default_boxes(sizes, ratios, 0.2, 0.9)
    want = ref_default_boxes(sizes, ratios, 0.2, 0.9)
    assert got.shape == (8 * 8 * 4 + 4 * 4 * 6 + 2 * 2 * 6 + 4, 4)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert ops.boxes_per_cell(ratios) == [4, 6, 6, 4]
    with pytest.raises(ValueError, match="aspect_ratios lists 2 feature maps; the model has 4"):
        ops.default_boxes(sizes, ((2,), (2,)))


def test_encode_decode_round_trip_and_formula():
    rng = np.random.default_rng(1)
    priors = ops.default_boxes((4, 2), ((2,), (2,)))
    gt = rand_boxes(rng, len(priors))
    t = np.asarray(ops.encode_boxes(gt, priors))
    np.testing.assert_allclose(ops.decode_boxes(t, priors), gt, atol=1e-5)
    p, g = priors[3], gt[3]
    cx, cy, w, h = (g[0] + g[2]) / 2, (g[1] + g[3]) / 2, g[2] - g[0], g[3] - g[1]
    want = [(cx - p[0]) / (0.1 * p[2]), (cy - p[1]) / (0.1 * p[3]), math.log(w / p[2]) / 0.2,
            math.log(h / p[3]) / 0.2]
    np.testing.assert_allclose(t[3], want, rtol=1e-5, atol=1e-5)


def ref_match(gt, labels, valid, priors, thr):
    """ssd.pytorch's loop: each gt forces its best prior (later gts win), then threshold."""
    pc = np.concatenate([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)
    gt, labels = gt[valid], labels[valid]
    ov = ref_iou(gt, pc)
    best_gt, best_ov = ov.argmax(0), ov.max(0)
    for j in range(len(gt)):
        p = ov[j].argmax()
        best_gt[p], best_ov[p] = j, 2.0
    cls = np.where(best_ov >= thr, labels[best_gt] + 1, 0)
    loc = np.asarray(ops.encode_boxes(gt[best_gt], priors))
    return np.where(cls[:, None] > 0, loc, 0), cls


def test_match_boxes_matches_reference_with_padding_and_forced_matches():
    rng = np.random.default_rng(2)
    priors = ops.default_boxes((6, 3, 1), ((2,), (2, 3), (2,)))
    for seed in range(4):
        r = np.random.default_rng(seed)
        gt = rand_boxes(r, 5, 0.01, 0.5)
        gt[1] = gt[0] + 0.002  # two near-identical boxes compete for one prior
        labels = r.integers(0, 7, 5)
        valid = np.array([True, True, True, seed % 2 == 0, False])
        loc, cls = jax.jit(ops.match_boxes, static_argnums=4)(gt, labels, valid, priors, 0.5)
        rloc, rcls = ref_match(gt, labels, valid, priors, 0.5)
        np.testing.assert_array_equal(cls, rcls)
        np.testing.assert_allclose(loc, rloc, atol=1e-5)
        # box 1 wins the prior it shares with box 0; box 2 keeps at least its own
        assert {labels[1] + 1, labels[2] + 1} <= set(np.asarray(cls).tolist())
    tiny = np.array([[0.5, 0.5, 0.505, 0.505]], np.float32)
    _, cls = ops.match_boxes(tiny, np.array([3]), np.array([True]), priors)
    assert int((np.asarray(cls) == 4).sum()) == 1
    _, cls = ops.match_boxes(tiny, np.array([3]), np.array([False]), priors)
    assert int(np.asarray(cls).max()) == 0  # nothing valid: all background
    del rng


def ref_loss(loc_pred, logits, loc_t, cls_t, ratio):
    b, p, _ = logits.shape
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(
        -1, keepdims=True)) - logits.max(-1, keepdims=True)
    total_loc = total_conf = 0.0
    npos = 0
    for i in range(b):
        pos = cls_t[i] > 0
        npos += pos.sum()
        for j in range(p):
            if pos[j]:
                d = np.abs(loc_pred[i, j] - loc_t[i, j])
                total_loc += np.where(d < 1, 0.5 * d * d, d - 0.5).sum()
                total_conf -= logp[i, j, cls_t[i, j]]
        k = int(min(math.floor(ratio * pos.sum()), p - pos.sum()))
        negs = sorted([j for j in range(p) if not pos[j]], key=lambda j: logp[i, j, 0])[:k]
        total_conf -= sum(logp[i, j, 0] for j in negs)
    n = max(npos, 1)
    return total_loc / n, total_conf / n


def test_multibox_loss_matches_reference_and_finite_differences():
    rng = np.random.default_rng(3)
    b, p, k = 3, 40, 5
    loc_pred = rng.normal(size=(b, p, 4)).astype(np.float32)
    logits = rng.normal(size=(b, p, k + 1)).astype(np.float32)
    loc_t = rng.normal(size=(b, p, 4)).astype(np.float32)
    cls_t = np.where(rng.uniform(size=(b, p)) < 0.15, rng.integers(1, k + 1, (b, p)), 0)
    cls_t[2] = 0  # an image without objects: no positives, no negatives
    loss, parts = jax.jit(ops.multibox_loss)(loc_pred, logits, loc_t, cls_t)
    rl, rc = ref_loss(loc_pred.astype(np.float64), logits.astype(np.float64), loc_t, cls_t, 3.0)
    np.testing.assert_allclose(parts["loc"], rl, rtol=1e-5)
    np.testing.assert_allclose(parts["conf"], rc, rtol=1e-5)
    np.testing.assert_allclose(loss, rl + rc, rtol=1e-5)
    # gradients against central differences (mining is fixed for small steps)
    f = lambda lp, lg: ops.multibox_loss(lp, lg, loc_t, cls_t)[0]
    g_loc, g_log = jax.grad(f, argnums=(0, 1))(jnp.asarray(loc_pred, jnp.float64)
                                               if jax.config.jax_enable_x64 else loc_pred, logits)
    eps = 1e-2
    for idx in [(0, 1, 2), (1, 5, 0), (0, 7, 3)]:
        d = np.zeros_like(loc_pred)
        d[idx] = eps
        fd = (f(loc_pred + d, logits) - f(loc_pred - d, logits)) / (2 * eps)
        np.testing.assert_allclose(g_loc[idx], fd, rtol=2e-2, atol=2e-3)
    for idx in [(0, 1, 2), (1, 5, 0), (0, 7, 3)]:
        d = np.zeros_like(logits)
        d[idx] = eps
        fd = (f(loc_pred, logits + d) - f(loc_pred, logits - d)) / (2 * eps)
        np.testing.assert_allclose(g_log[idx], fd, rtol=2e-2, atol=2e-3)


def test_hard_negatives_picks_the_highest_losses():
    loss = np.array([[0.1, 0.9, 0.5, 0.3, 0.8, 0.2]])
    pos = np.array([[False, True, False, False, False, False]])
    got = np.asarray(ops.hard_negatives(loss, pos, 3.0))
    np.testing.assert_array_equal(got[0], [False, False, True, True, True, False])
    got = np.asarray(ops.hard_negatives(loss, pos, 10.0))  # capped at the negatives there are
    np.testing.assert_array_equal(got[0], ~pos[0])


def ref_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if not np.isfinite(scores[i]):
            continue
        if all(ref_iou(boxes[i:i + 1], boxes[j:j + 1])[0, 0] <= thr for j in keep):
            keep.append(i)
    return sorted(keep)


def test_nms_matches_greedy_reference():
    rng = np.random.default_rng(4)
    for seed in range(5):
        r = np.random.default_rng(seed)
        base = rand_boxes(r, 6, 0.1, 0.4)
        boxes = np.concatenate([base, base + r.normal(0, 0.03, base.shape)]).astype(np.float32)
        scores = r.uniform(size=12).astype(np.float32)
        scores[r.integers(0, 12)] = -np.inf
        keep = jax.jit(ops.nms_mask, static_argnums=2)(boxes, scores, 0.45)
        assert sorted(np.flatnonzero(np.asarray(keep)).tolist()) == ref_nms(boxes, scores, 0.45)
    del rng


def ref_detect(loc, logits, priors, thr, nms_thr, top_k, d):
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    boxes = np.clip(np.asarray(ops.decode_boxes(loc, priors)), 0, 1)
    dets = []
    for c in range(1, logits.shape[1]):
        idx = np.argsort(-probs[:, c], kind="stable")[:top_k]
        s = np.where(probs[idx, c] > thr, probs[idx, c], -np.inf)
        for j in ref_nms(boxes[idx], s, nms_thr):
            dets.append((s[j], c - 1, idx[j]))
    dets.sort(key=lambda t: -t[0])
    return dets[:d], boxes


def test_detect_is_jitted_fixed_shape_and_matches_reference():
    rng = np.random.default_rng(5)
    priors = ops.default_boxes((4, 2, 1), ((2,), (2,), (2,)))
    p, k = len(priors), 3
    loc = rng.normal(0, 0.5, (2, p, 4)).astype(np.float32)
    logits = rng.normal(0, 2, (2, p, k + 1)).astype(np.float32)
    f = jax.jit(jax.vmap(lambda lo, lg: ops.detect(lo, lg, priors, score_threshold=0.3,
                                                   iou_threshold=0.45, top_k=20,
                                                   max_detections=15)))
    boxes, scores, classes, valid = f(loc, logits)
    assert boxes.shape == (2, 15, 4) and scores.shape == classes.shape == valid.shape == (2, 15)
    for i in range(2):
        want, dec = ref_detect(loc[i], logits[i], priors, 0.3, 0.45, 20, 15)
        n = int(valid[i].sum())
        assert n == len(want)
        np.testing.assert_allclose(scores[i, :n], [w[0] for w in want], rtol=1e-5)
        np.testing.assert_array_equal(classes[i, :n], [w[1] for w in want])
        np.testing.assert_allclose(boxes[i, :n], dec[[w[2] for w in want]], atol=1e-6)
        assert not np.asarray(valid[i, n:]).any() and float(np.abs(scores[i, n:]).sum()) == 0


def test_flip_and_crop_boxes():
    b = np.array([[0.1, 0.2, 0.4, 0.6], [0.7, 0.7, 0.95, 0.9]], np.float32)
    np.testing.assert_allclose(ops.flip_boxes(b), [[0.6, 0.2, 0.9, 0.6], [0.05, 0.7, 0.3, 0.9]],
                               atol=1e-6)
    np.testing.assert_allclose(ops.flip_boxes(ops.flip_boxes(b)), b, atol=1e-6)
    out, ok = ops.crop_boxes(b, np.array([True, True]), (0.0, 0.0, 0.5, 0.5))
    # box 0: centre (0.25, 0.4) inside; clipped to (0.1, 0.2, 0.4, 0.5), scaled by 2
    np.testing.assert_allclose(out[0], [0.2, 0.4, 0.8, 1.0], atol=1e-6)
    assert np.asarray(ok).tolist() == [True, False]  # box 1's centre is outside the window
    _, ok = ops.crop_boxes(b, np.array([False, True]), (0.0, 0.0, 1.0, 1.0))
    assert np.asarray(ok).tolist() == [False, True]
