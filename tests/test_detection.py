"""SSD detectors (fsjax.models.SSD), detection data and augmentation: shapes, conv kinds on
every layer, a tiny detector that learns, jitted fixed-shape inference, VOC folders."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fsjax import ops, report
from fsjax.data import detection
from fsjax.models import SSD, ConvFactory


def kinds(model, size):
    rows = report.layer_rows(model, (size, size, 3))
    return {r.name: r.kind for r in rows if r.kind not in ("fc", "bn")}


@pytest.mark.parametrize("kind", ["dense", "fs", "wks"])
def test_resnet_ssd_shapes_and_every_conv_compressed(kind):
    m = SSD(10, image_size=64, factory=ConvFactory(kind=kind), rngs=nnx.Rngs(0))
    loc, logits = m(jnp.zeros((2, 64, 64, 3)))
    p = len(m.priors())
    assert m.feature_sizes == (16, 8, 4, 2, 1)
    assert loc.shape == (2, p, 4) and logits.shape == (2, p, 11)
    k = kinds(m, 64)
    assert {"head1.loc", "head5.cls", "extra3.conv", "stage3.block0.conv2"} <= set(k)
    if kind == "fs":
        assert set(k.values()) == {"fs"}
    if kind == "wks":  # the RGB stem (3 inputs) stays dense; every other conv shares kernels
        assert {n for n, v in k.items() if v == "dense"} == {"stem"}


def test_vgg16_and_mobilenet_backbones():
    vgg = SSD(3, backbone="vgg16", backbone_kw=dict(widths=[8] * 13), image_size=64,
              rngs=nnx.Rngs(0))
    loc, logits = vgg(jnp.zeros((1, 64, 64, 3)))
    assert vgg.feature_sizes[:2] == (8, 4) and loc.shape[1] == len(vgg.priors())
    assert "fc6" in kinds(vgg, 64) and vgg.l2norm is not None
    mob = SSD(3, backbone="mobilenet_v1", backbone_kw=dict(width=0.25), image_size=96,
              factory=ConvFactory(kind="wks"), rngs=nnx.Rngs(0))
    loc, logits = mob(jnp.zeros((1, 96, 96, 3)))
    assert mob.feature_sizes[:2] == (6, 3) and logits.shape == (1, len(mob.priors()), 4)
    with pytest.raises(ValueError, match="SSD backbone 'alexnet' is not valid; valid: resnet"):
        SSD(3, backbone="alexnet", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="SSD was built for 64x64 images; got 32x32"):
        vgg(jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="aspect_ratios lists 2 feature maps; the detector has"):
        SSD(3, image_size=64, aspect_ratios=((2,), (2,)), rngs=nnx.Rngs(0))


def test_tiny_detector_learns_and_inference_is_jitted_with_fixed_shapes(tmp_path):
    ds = detection.synthetic_scenes(64, 16, size=64, max_objects=3, cache_dir=str(tmp_path),
                                    progress=False)
    model = SSD(ds.num_classes, image_size=64, factory=ConvFactory(kind="fs"),
                rngs=nnx.Rngs(0))
    priors = jnp.asarray(model.priors())
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    mean, std = jnp.array(ds.mean), jnp.array(ds.std)
    tr = ds.train

    @nnx.jit
    def step(model, opt, key, x, boxes, labels, valid):
        x, boxes, valid = detection.augment(key, x, boxes, valid)
        x = (x / 255.0 - mean) / std
        loc_t, cls_t = jax.vmap(lambda b, lab, v: ops.match_boxes(b, lab, v, priors))(
            boxes, labels, valid)

        def loss_fn(m):
            loc, logits = m(x)
            return ops.multibox_loss(loc, logits, loc_t, cls_t)[0]

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    losses = []
    key = jax.random.key(0)
    for i in range(40):
        key, k = jax.random.split(key)
        sl = slice(i % 2 * 32, i % 2 * 32 + 32)
        losses.append(float(step(model, opt, k, tr.images[sl], tr.boxes[sl], tr.labels[sl],
                                 tr.valid[sl])))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-6:]) < 0.6 * np.mean(losses[:4]), losses

    model.eval()
    det = nnx.jit(lambda m, x: m.detect((x / 255.0 - mean) / std, max_detections=20))
    boxes, scores, classes, valid = det(model, jnp.asarray(ds.test.images[:4], jnp.float32))
    assert boxes.shape == (4, 20, 4) and scores.shape == classes.shape == valid.shape == (4, 20)
    assert classes.dtype == jnp.int32 and valid.dtype == jnp.bool_
    assert float(boxes.min()) >= 0 and float(boxes.max()) <= 1


def test_synthetic_scenes_are_deterministic_and_cached(tmp_path):
    a = detection.synthetic_scenes(12, 4, size=48, cache_dir=str(tmp_path / "a"), progress=False)
    b = detection.synthetic_scenes(12, 4, size=48, cache_dir=str(tmp_path / "b"), progress=False)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.test.boxes, b.test.boxes)
    assert os.listdir(tmp_path / "a") == os.listdir(tmp_path / "b")
    c = detection.synthetic_scenes(12, 4, size=48, cache_dir=str(tmp_path / "a"), progress=False)
    np.testing.assert_array_equal(a.train.labels, c.train.labels)
    v = a.train.valid
    assert v.any(1).all() and v.shape == (12, 4)
    bx = a.train.boxes[v]
    assert (bx[:, 2:] > bx[:, :2]).all() and bx.min() >= 0 and bx.max() <= 1
    with pytest.raises(ValueError, match="synthetic scenes need size >= 16"):
        detection.synthetic_scenes(size=8, cache_dir=str(tmp_path))


def test_augment_keeps_boxes_on_the_objects():
    # white rectangles on black: after crop + flip, each valid box must frame its rectangle
    n, s = 16, 64
    images = np.zeros((n, s, s, 3), np.float32)
    boxes = np.zeros((n, 2, 4), np.float32)
    rng = np.random.default_rng(0)
    for i in range(n):
        x0, y0 = rng.integers(4, 30, 2)
        w, h = rng.integers(12, 28, 2)
        images[i, y0:y0 + h, x0:x0 + w] = 255
        boxes[i, 0] = np.array([x0, y0, x0 + w, y0 + h]) / s
    valid = np.zeros((n, 2), bool)
    valid[:, 0] = True
    out, ob, ov = jax.jit(lambda k, i, b, v: detection.augment(k, i, b, v, min_scale=0.6))(
        jax.random.key(1), images, boxes, valid)
    out, ob, ov = np.asarray(out), np.asarray(ob), np.asarray(ov)
    assert out.shape == images.shape and ob.shape == boxes.shape and not ov[:, 1].any()
    changed = 0
    for i in range(n):
        if not ov[i, 0]:
            continue
        ys, xs = np.nonzero(out[i, ..., 0] > 127)
        seen = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / s
        assert float(ops.iou(seen[None], ob[i, :1])[0, 0]) > 0.85, (i, seen, ob[i, 0])
        changed += not np.allclose(ob[i, 0], boxes[i, 0])
    assert changed >= n // 2


VOC_XML = """<annotation><filename>{id}.jpg</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>"""
VOC_OBJ = """<object><name>{name}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin>
<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def make_voc(root, images):
    from PIL import Image

    base = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / sub).mkdir(parents=True)
    for split in ("trainval", "test"):
        (base / "ImageSets/Main" / f"{split}.txt").write_text(
            "".join(f"{i}\n" for i, sp, *_ in images if sp == split))
    for i, _, w, h, objs in images:
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(base / "JPEGImages" / f"{i}.jpg")
        xml = VOC_XML.format(id=i, w=w, h=h, objs="".join(
            VOC_OBJ.format(name=n, d=int(d), x1=b[0], y1=b[1], x2=b[2], y2=b[3])
            for n, d, b in objs))
        (base / "Annotations" / f"{i}.xml").write_text(xml)
    return base


def test_voc_folder_layout(tmp_path):
    make_voc(tmp_path, [
        ("000001", "trainval", 200, 100, [("dog", False, (1, 1, 100, 50)),
                                          ("person", True, (101, 51, 200, 100))]),
        ("000002", "trainval", 50, 80, [("car", False, (11, 21, 30, 60))]),
        ("000003", "test", 64, 64, [("cat", False, (1, 1, 64, 64))]),
    ])
    ds = detection.load_voc(str(tmp_path), size=32)
    assert ds.num_classes == 20 and ds.train.images.shape == (2, 32, 32, 3)
    assert ds.train.boxes.shape == (2, 2, 4) and len(ds.test) == 1
    np.testing.assert_allclose(ds.train.boxes[0], [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]])
    np.testing.assert_allclose(ds.train.boxes[1, 0], [10 / 50, 20 / 80, 30 / 50, 60 / 80])
    assert ds.train.labels[0].tolist() == [detection.VOC_CLASSES.index("dog"),
                                           detection.VOC_CLASSES.index("person")]
    assert ds.train.difficult[0].tolist() == [False, True]
    assert ds.train.valid.tolist() == [[True, True], [True, False]]
    gt = ds.train.ground_truth()
    assert len(gt) == 2 and gt[1][0].shape == (1, 4)
    with pytest.raises(FileNotFoundError, match="VOC split file .*val.txt is missing"):
        detection.load_voc(str(tmp_path), train_split="val")
    with pytest.raises(FileNotFoundError, match="no PASCAL VOC 2007 under"):
        detection.load_voc(str(tmp_path / "nothing"))


def test_voc_bad_annotation_names_the_file(tmp_path):
    base = make_voc(tmp_path, [("000001", "trainval", 20, 20, [("unicorn", False, (1, 1, 5, 5))]),
                               ("000002", "test", 20, 20, [("cat", False, (1, 1, 5, 5))])])
    with pytest.raises(ValueError, match=r"000001.xml is not valid \(unknown class 'unicorn'\)"):
        detection.load_voc(str(tmp_path))
    (base / "Annotations" / "000001.xml").write_text("<annotation><size>")
    with pytest.raises(ValueError, match="000001.xml is not valid"):
        detection.load_voc(str(tmp_path))


def test_trainer_trains_resumes_evaluates_and_exports_a_detector(tmp_path, monkeypatch, capsys):
    import json

    from configs.detection.synthetic import get_config
    from train import eval as eval_cli
    from train.trainer import run

    monkeypatch.setenv("FSJAX_CACHE", str(tmp_path / "cache"))
    c = get_config("fs4")
    c.detection.num_train, c.detection.num_test = 128, 40
    c.num_epochs, c.batch_size, c.eval_batch_size = 1, 32, 20
    c.schedule.warmup_epochs = 0.0
    c.progress, c.tensorboard = False, False
    w = str(tmp_path / "run")
    r = run(c, w)
    assert r["metric"] == "mAP@0.5 (11point)" and 0 <= r["accuracy"] <= 1
    assert {"map50_11point", "map50_all", "coco_map"} <= set(r)
    assert r["stored_params"] < r["dense_params"]
    assert os.path.getsize(os.path.join(w, "detections.png")) > 1000
    c.num_epochs = 2  # resume: one more epoch on top of the checkpoint
    r2 = run(c, w)
    assert r2["epochs"] == 2
    with open(os.path.join(w, "metrics.jsonl")) as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2]
    capsys.readouterr()
    assert eval_cli.main(["--workdir", w, "--which", "latest"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["accuracy"] == pytest.approx(r2["accuracy"], abs=1e-6)
    packed = str(tmp_path / "det8")
    assert eval_cli.main(["--workdir", w, "--quantize", "8", "--export", packed]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert os.path.exists(out["export_file"]) and out["export_bytes"] < r2["bytes"] / 2
    assert eval_cli.main(["--workdir", w, "--deploy", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "--deploy exports classifiers" in capsys.readouterr().err


def test_config_errors_for_detection():
    from configs.detection.synthetic import get_config
    from train import configlib

    c = get_config()
    c.model = "resnet8"
    with pytest.raises(ValueError, match="detection data sets .* train the detector 'ssd'"):
        configlib.validate(c)
    with pytest.raises(ValueError, match="the second part must be 'dense_heads' or absent"):
        get_config("fs4,heads")
    assert dict(get_config("fs4,dense_heads").conv.overrides) == {"head*": "dense"}
    c = get_config()
    c.detection.map_method = "voc"
    with pytest.raises(ValueError, match="config.detection.map_method = 'voc' is not valid"):
        configlib.validate(c)


def test_tfds_voc_converts_boxes_and_flags(monkeypatch):
    """TFDS is not installed here: a stand-in module with TFDS's VOC example layout checks
    the conversion (yxyx -> xyxy, labels, difficult, resize, split names)."""
    import sys
    import types

    seen = {}

    def example(h, w, bbox, label, diff):
        return {"image": np.full((h, w, 3), 7, np.uint8),
                "objects": {"bbox": np.array(bbox, np.float32), "label": np.array(label),
                            "is_difficult": np.array(diff)}}

    class Builder:
        def is_prepared(self):
            return True

        def as_dataset(self, split):
            seen.setdefault("splits", []).append(split)
            if split == "test":
                return [example(10, 20, [[0.1, 0.2, 0.5, 0.6]], [14], [False])]
            return [example(30, 40, [[0.0, 0.5, 1.0, 1.0], [0.2, 0.1, 0.4, 0.3]], [7, 19],
                            [False, True]), example(8, 8, [[0.5, 0.5, 0.9, 0.9]], [0], [False])]

    fake = types.ModuleType("tensorflow_datasets")
    fake.builder = lambda name, data_dir=None: seen.update(name=name) or Builder()
    fake.as_numpy = lambda ds: ds
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    from fsjax import data

    ds = data.load("tfds:voc/2007", detection_kw=dict(image_size=16))
    assert seen == {"name": "voc/2007", "splits": ["train+validation", "test"]}
    assert ds.task == "detect" and ds.num_classes == 20 and ds.train_images.shape == (2, 16, 16, 3)
    t = ds.train_labels  # packed (x1, y1, x2, y2, class, valid, difficult)
    np.testing.assert_allclose(t[0, :, :4], [[0.5, 0.0, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4]])
    assert t[0, :, 4].tolist() == [7, 19] and t[0, :, 6].tolist() == [0, 1]
    assert t[1, :, 5].tolist() == [1, 0]  # the second image has one object: one padding row
    np.testing.assert_allclose(ds.test_labels[0, 0, :5], [0.2, 0.1, 0.6, 0.5, 14])
