"""fsjax.report.detection: VOC / COCO-style mAP on crafted cases, against hand-computed values
and pycocotools (the reference implementation)."""

import numpy as np
import pytest

from fsjax.report.detection import average_precision, coco_map, evaluate_detections

A = [0.1, 0.1, 0.4, 0.4]
B = [0.6, 0.6, 0.9, 0.9]


def gt(*boxes, classes=None, difficult=None):
    return (np.array(boxes, np.float32).reshape(-1, 4),
            np.array(classes if classes is not None else [0] * len(boxes)), difficult)


def det(*rows):  # rows of (box, score, class)
    return (np.array([r[0] for r in rows], np.float32).reshape(-1, 4),
            np.array([r[1] for r in rows], np.float32), np.array([r[2] for r in rows]))


def shifted(box, dx):
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


CASES = {  # name: (detections, ground truth, AP for 11point, all, 101point)
    "perfect": ([det((A, 0.9, 0), (B, 0.8, 0))], [gt(A, B)], 1.0, 1.0, 1.0),
    # IoU of a box shifted by 0.2 of its 0.3 side: 0.1 / 0.5 = 0.2 -> a false positive + a miss
    "shifted": ([det((shifted(A, 0.2), 0.9, 0), (B, 0.8, 0))], [gt(A, B)], None, None, None),
    "duplicate": ([det((A, 0.9, 0), (shifted(A, 0.01), 0.8, 0), (B, 0.7, 0))], [gt(A, B)],
                  (6 + 5 * 2 / 3) / 11, 0.5 + 0.5 * 2 / 3, (51 + 50 * 2 / 3) / 101),
    "missed": ([det((A, 0.9, 0))], [gt(A, B)], 6 / 11, 0.5, 51 / 101),
}


@pytest.mark.parametrize("name", ["perfect", "duplicate", "missed"])
def test_hand_computed_cases_and_pycocotools(name):
    dets, gts, ap11, ap_all, ap101 = CASES[name]
    for method, want in (("11point", ap11), ("all", ap_all), ("101point", ap101)):
        got = evaluate_detections(dets, gts, 1, method=method)["map"]
        assert got == pytest.approx(want, abs=1e-9), method
    assert coco_map(dets, gts, 1)["map50"] == pytest.approx(ap101, abs=1e-6)


def test_shifted_detection_is_a_false_positive_and_a_miss():
    dets, gts, *_ = CASES["shifted"]
    # ranked: FP (0.9) then TP (0.8): precision [0, 0.5], recall [0, 0.5]
    assert evaluate_detections(dets, gts, 1, method="all")["map"] == pytest.approx(0.25)
    assert evaluate_detections(dets, gts, 1, method="11point")["map"] == pytest.approx(3 / 11)
    assert coco_map(dets, gts, 1)["map50"] == pytest.approx(
        evaluate_detections(dets, gts, 1, method="101point")["map"], abs=1e-6)


def test_iou_threshold_and_coco_thresholds():
    # shifted by 0.05 of a 0.3 side: IoU = 0.25 / 0.35 = 0.714: a hit at 0.5, a miss at 0.75
    dets = [det((shifted(A, 0.05), 0.9, 0))]
    gts = [gt(A)]
    assert evaluate_detections(dets, gts, 1, 0.5, "all")["map"] == 1.0
    assert evaluate_detections(dets, gts, 1, 0.75, "all")["map"] == 0.0
    c = coco_map(dets, gts, 1)
    assert c["map50"] == pytest.approx(1.0) and c["map75"] == pytest.approx(0.0)
    assert c["map"] == pytest.approx(0.5)  # hits at 0.50 .. 0.70: 5 of 10 thresholds


def test_difficult_boxes_count_neither_way_and_empty_classes_are_left_out():
    gts = [gt(A, B, classes=[0, 0], difficult=[False, True])]
    dets = [det((A, 0.9, 0), (B, 0.95, 0))]  # the difficult hit is ignored, not a FP
    r = evaluate_detections(dets, gts, 3, method="all")
    assert r["ap"] == [1.0, None, None] and r["map"] == 1.0 and r["npos"] == [1, 0, 0]


def test_random_scenes_agree_with_pycocotools():
    rng = np.random.default_rng(0)
    dets, gts = [], []
    for _ in range(20):  # objects on a 3x3 grid never overlap each other
        cells = rng.choice(9, rng.integers(1, 5), replace=False)
        boxes = np.array([[c % 3 / 3 + 0.02, c // 3 / 3 + 0.02, c % 3 / 3 + 0.3, c // 3 / 3 + 0.3]
                          for c in cells])
        classes = rng.integers(0, 3, len(cells))
        gts.append((boxes, classes, None))
        rows = []
        for b, k in zip(boxes, classes, strict=True):
            for _ in range(rng.integers(0, 3)):  # 0-2 detections per object, some misclassified
                jitter = b + rng.normal(0, 0.03, 4)
                rows.append((jitter, rng.uniform(), k if rng.uniform() < 0.8 else (k + 1) % 3))
        dets.append(det(*rows) if rows else det())
    ours = evaluate_detections(dets, gts, 3, method="101point")["map"]
    assert 0.1 < ours < 0.95
    assert coco_map(dets, gts, 3)["map50"] == pytest.approx(ours, abs=1e-6)


def test_bad_method_and_mismatched_lists():
    with pytest.raises(ValueError, match="AP method 'voc' is not valid; valid: 11point, all"):
        average_precision([1.0], [1.0], "voc")
    with pytest.raises(ValueError, match="2 images of detections but 1 of ground truth"):
        evaluate_detections([det(), det()], [gt(A)], 1)
