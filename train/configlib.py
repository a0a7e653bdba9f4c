"""The config schema (every key a config may set) and its validation.

Configs call :func:`base` and change what they need; the dict is locked, so a misspelt key
(``--config.optimiser.lr``) stops with ml_collections' error naming it. :func:`validate` checks
names and combinations before any work starts and lists the valid choices.
"""

from __future__ import annotations

import ml_collections

from fsjax import data, models
from fsjax.spec import KINDS

SCHEDULES = ("step", "cyclic", "cosine", "onecycle", "linear", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw")
DTYPES = ("auto", "float32", "bfloat16")
MODEL_OPTIONS = ("widths", "stem", "stem_width", "shortcut", "stride_on", "variant", "width",
                 "stem_stride", "dropout", "growth", "depth", "depths", "mid_widths", "cells",
                 "channels", "genotype", "auxiliary", "drop_path", "primitives", "torch_padding",
                 "head", "fc_width", "backbone", "backbone_kw", "image_size", "extras",
                 "aspect_ratios", "min_scale", "max_scale", "logit_scale", "norm_scale",
                 "norm_momentum", "norm_eps", "identity_init", "conv_init_scale",
                 "whiten_width", "partial_channels", "edge_norm")


def base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.dataset = "fashion_mnist"
    c.data_dir = ""          # CIFAR folder/tarballs, Fashion-MNIST IDX folder, or TFDS data dir
    c.data_limit = 0         # >0: a seeded class-stratified subset of this many training examples
    c.eval_limit = 0         # >0: the same for the test set (0: the full test set)
    c.model = "resnet20"
    # model options; None = the model's default. See fsjax.models for which model takes which.
    c.model_kw = ml_collections.ConfigDict(
        {k: ml_collections.config_dict.placeholder(object) for k in MODEL_OPTIONS})
    c.conv = ml_collections.ConfigDict(dict(
        kind="fs", compression=4.0, group_size=4, location_mode="wrap", alpha_mode="input",
        min_params=0, layout="fsjax"))
    c.conv.overrides = ml_collections.ConfigDict({}, type_safe=False)
    c.init_from = ""         # workdir of a trained dense run: project its kernels (fs_project)
    c.init_weights = ""      # an fsjax.export path (no suffix): start from these weights
    c.arch_from = ""         # a run (or export) whose architecture to train from scratch
    c.num_epochs = 3
    c.batch_size = 128
    c.eval_batch_size = 1000
    c.optimizer = ml_collections.ConfigDict(dict(
        name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4, grad_clip=0.0,
        norm_lr_scale=1.0))
    # {glob on the parameter path (a/b/c): epoch}: trained before that epoch only (0: frozen)
    c.optimizer.frozen = ml_collections.ConfigDict({}, type_safe=False)
    # lookahead (airbench): every N steps slow <- d slow + (1-d) fast, fast <- slow, with
    # d = decay * (step / total)^power; the weights are the slow copy at the end. 0: off
    c.lookahead = ml_collections.ConfigDict(dict(every=0, decay=0.95 ** 5, power=3.0))
    c.label_smoothing = 0.0
    c.schedule = ml_collections.ConfigDict(dict(
        name="step", warmup_epochs=0.0, decay_points=(0.5, 0.75), decay_factor=0.1, cycles=1,
        final_lr_fraction=0.0, warmup_start_fraction=0.0))
    # DFS locations and WKSC channel weights get their own optimizer (optax.multi_transform).
    c.locations = ml_collections.ConfigDict(dict(optimizer="adam", lr=1e-3, freeze_epoch=-1))
    c.share = ml_collections.ConfigDict(dict(optimizer="sgd", lr=0.01, weight_decay=0.0))
    c.augment = ml_collections.ConfigDict(dict(crop_padding=4, flip=True, cutout=0,
                                               pad_mode="constant", alternate_flip=False))
    c.tta = 0                # test-time augmentation of the final evaluation: 0 | 1 | 2
    c.data_init_examples = 5000  # training images seen by data-dependent initialisers
    c.compute_dtype = "auto"  # bfloat16 on GPU/TPU, float32 on CPU; parameters stay float32
    c.on_device = "auto"     # keep the data set in device memory (auto: if it fits)
    c.steps_per_call = 0     # training steps per jitted call (0: about 10 calls per epoch)
    c.resume_step = 0        # resume from this checkpoint step (0: the latest); later ones are
    #                          moved to checkpoints-set-aside/
    c.keep_checkpoints = 2
    c.keep_best = True
    c.tensorboard = True     # TensorBoard scalars when tensorboardX is installed
    c.progress = True        # the interactive bar on a terminal (off: periodic lines only)
    c.quiet = False          # True: print nothing but errors (results.json is still written)
    c.log_every_s = 30.0     # off a terminal: a progress line every this many seconds
    c.aux_weight = 0.4       # weight of an auxiliary head's loss (DARTS eval networks)
    # DARTS search (first order): weights on one half of the training set, alphas and DFS
    # locations on the other half
    c.nas = ml_collections.ConfigDict(dict(search=False, arch_lr=3e-4, arch_weight_decay=1e-3,
                                           warmup_epochs=0.0, aux_skip=False))
    # detection (dataset synthetic_detection | voc, model ssd): data, matching, loss, inference
    c.detection = ml_collections.ConfigDict(dict(
        image_size=64, max_objects=4, num_train=8000, num_test=1000, min_crop=0.5,
        match_threshold=0.5, neg_pos_ratio=3.0, score_threshold=0.01, nms_threshold=0.45,
        top_k=200, max_detections=100, map_method="11point"))
    c.checkpoint_every_steps = 0  # >0: also a checkpoint every N steps inside an epoch
    # streaming input (fsjax.data.stream): dataset 'folder' and large 'tfds:' sets are read
    # from disk while training (grain worker processes), with ImageNet-style crops
    c.stream = ml_collections.ConfigDict(dict(
        enabled="auto", image_size=224, workers=0, corrupt="error", crop_fraction=0.875,
        min_scale=0.08, eval_split=""))
    c.quant = ml_collections.ConfigDict(dict(bits=0, per_channel=False, method="uniform",
                                             overrides={}),
                                        type_safe=False)  # QAT (fsjax.quant); 0 = off
    return c


def load_data(c, data_limit: int | None = None):
    """The config's data set (``data_limit`` overrides ``c.data_limit``); configs saved by an
    older fsjax may lack ``eval_limit``."""
    limit = c.data_limit if data_limit is None else data_limit
    if streams(c):
        return _stream_data(c, limit)
    det = c.get("detection")
    kw = dict(image_size=det.image_size, max_objects=det.max_objects, num_train=det.num_train,
              num_test=det.num_test, seed=c.get("seed", 0)) if det is not None else None
    return data.load(c.dataset, c.data_dir, limit, eval_limit=c.get("eval_limit", 0),
                     seed=c.get("seed", 0), detection_kw=kw)


def streams(c) -> bool:
    """Whether ``c.dataset`` is read from disk while training (:mod:`fsjax.data.stream`)."""
    st = c.get("stream")
    if c.dataset == "folder":
        return True
    if st is None or not c.dataset.startswith("tfds:") or st.enabled == "off":
        return False
    if st.enabled == "on":
        return True
    return data.tfds_is_large(c.dataset[5:], c.data_dir)


def _stream_data(c, limit):
    from fsjax.data import stream

    if limit or c.get("eval_limit", 0):
        raise ValueError(f"config.data_limit / eval_limit need an in-memory data set; "
                         f"{c.dataset} is streamed from disk (config.stream.enabled)")
    st = c.stream
    kw = dict(size=st.image_size, workers=st.workers, crop_fraction=st.crop_fraction,
              min_scale=st.min_scale)
    if c.dataset == "folder":
        if not c.data_dir:
            raise ValueError("config.dataset = 'folder' needs config.data_dir: a folder with "
                             "train/<class>/* and val/ (class folders, or val_labels.txt)")
        return stream.image_folder(c.data_dir, corrupt=st.corrupt, **kw)
    return stream.tfds_stream(c.dataset[5:], c.data_dir, eval_split=st.eval_split, **kw)


HELP = {
    "seed": "seeds initialisation, data order, augmentation and subsets",
    "dataset": "fashion_mnist | cifar10 | synthetic | tfds:<name>",
    "data_dir": "CIFAR folder/tarballs, Fashion-MNIST IDX folder, or TFDS data dir",
    "data_limit": ">0: a seeded class-stratified subset of this many training examples",
    "eval_limit": ">0: the same for the test set (0: the full test set)",
    "model": "zoo name (fsjax.models.MODELS)",
    "conv.kind": "dense | fs | dfs | ks | wks",
    "conv.compression": "FS/DFS rho: dense kernel size / summary length",
    "conv.group_size": "KS/WKS: input channels per shared kernel",
    "conv.location_mode": "DFS location parameterisation: wrap | sigmoid",
    "conv.alpha_mode": "WKSC weights: input (one per input channel) | pair",
    "conv.min_params": "layers with fewer dense weights stay dense",
    "conv.layout": "FS filter starts: fsjax (exact integers) | official (the FSNet PyTorch code)",
    "conv.overrides": "{layer-name glob: kind or dict of options}, later patterns win",
    "init_from": "workdir of a trained dense run: project its kernels onto this model",
    "init_weights": "an fsjax.export path (no suffix): start from these weights",
    "arch_from": "pruning/training workdir or export path: its architecture, fresh weights",
    "num_epochs": "epochs to train (may grow on resume)",
    "batch_size": "global training batch (divides by the device count)",
    "eval_batch_size": "evaluation batch (divides by the device count)",
    "optimizer.name": "sgd | adam | adamw",
    "optimizer.lr": "peak learning rate for the global batch",
    "optimizer.momentum": "SGD momentum",
    "optimizer.nesterov": "Nesterov momentum (SGD)",
    "optimizer.weight_decay": "L2 (SGD/adam) or decoupled (adamw) weight decay",
    "optimizer.grad_clip": ">0: clip the global gradient norm",
    "optimizer.norm_lr_scale": "lr multiplier of BatchNorm scales and biases (their weight "
                               "decay per step is kept: airbench's bias_scaler)",
    "optimizer.frozen": "{parameter path glob: epoch}: trained before that epoch only "
                        "(0: never; e.g. {'whiten/kernel': 0})",
    "lookahead.every": "lookahead / EMA of weights and BatchNorm statistics every N steps "
                       "(0: off)",
    "lookahead.decay": "lookahead decay at the last step (scaled by (step/total)^power)",
    "lookahead.power": "lookahead decay's power of step/total",
    "label_smoothing": "cross-entropy label smoothing",
    "schedule.name": "step | cyclic | cosine | onecycle | linear | constant",
    "schedule.warmup_epochs": "linear warm-up epochs",
    "schedule.decay_points": "step: fractions of training where lr *= decay_factor",
    "schedule.decay_factor": "step/cyclic: lr factor at each decay point",
    "schedule.cycles": "cyclic: restarts of the step schedule",
    "schedule.final_lr_fraction": "cosine/onecycle/linear: final lr / peak lr",
    "schedule.warmup_start_fraction": "warm-up starts at this fraction of the peak lr "
                                      "(onecycle: 1/25)",
    "locations.optimizer": "DFS locations' own optimizer",
    "locations.lr": "DFS locations' learning rate",
    "locations.freeze_epoch": "round DFS locations (DFS -> FS) at this epoch; -1: never",
    "share.optimizer": "WKSC channel weights' own optimizer",
    "share.lr": "WKSC channel weights' learning rate",
    "share.weight_decay": "WKSC channel weights' weight decay",
    "augment.crop_padding": "random crop after zero padding by this many pixels (in-memory "
                            "sets; streamed sets get the stream's random-resized crop)",
    "augment.flip": "random horizontal flip (in-memory sets; the stream flips its own)",
    "augment.cutout": ">0: cutout square side (in-memory sets)",
    "augment.pad_mode": "crop padding: constant (zeros) | reflect",
    "augment.alternate_flip": "mirror a seeded half of the images once, then all of them on "
                              "odd epochs (airbench), instead of a random flip per step",
    "tta": "test-time augmentation of the final evaluation (reported beside the plain "
           "accuracy): 0 none | 1 mirror | 2 mirror + 1-pixel translations",
    "data_init_examples": "training images that data-dependent initialisers see (airbench's "
                          "whitening conv)",
    "compute_dtype": "auto (bf16 on GPU/TPU, f32 on CPU) | float32 | bfloat16",
    "on_device": "keep the data set on the device: auto | True | False",
    "steps_per_call": "training steps per jitted call (0: 1 on CPU, ~10 calls/epoch elsewhere)",
    "resume_step": "resume from this checkpoint step (0: the latest)",
    "keep_checkpoints": "checkpoints kept (the last N)",
    "keep_best": "also keep the best by test accuracy",
    "tensorboard": "TensorBoard scalars in workdir/tensorboard when tensorboardX is installed "
                   "(pip install tensorboardX; without it nothing is said)",
    "progress": "the interactive bar on a terminal (off: periodic lines only)",
    "quiet": "print nothing but errors",
    "log_every_s": "off a terminal: a progress line every this many seconds",
    "aux_weight": "weight of an auxiliary head's loss (DARTS eval)",
    "nas.search": "DARTS search: weights on one half, architecture on the other",
    "nas.arch_lr": "DARTS architecture learning rate",
    "nas.arch_weight_decay": "DARTS architecture weight decay",
    "nas.warmup_epochs": "DARTS: the architecture waits this many epochs (weights train "
                         "first, as PC-DARTS)",
    "nas.aux_skip": "DARTS-: an auxiliary skip on every stride-1 edge, its weight decaying "
                    "from 1 to 0 over the search",
    "detection.image_size": "detection images are resized to this square side (synthetic, VOC)",
    "detection.max_objects": "synthetic scenes: most objects per image (VOC: 0 = all)",
    "detection.num_train": "synthetic scenes: training images",
    "detection.num_test": "synthetic scenes: test images",
    "detection.min_crop": "smallest random crop side (fraction of the image; 1: no crop)",
    "detection.match_threshold": "IoU from which a default box matches a ground-truth box",
    "detection.neg_pos_ratio": "hard negatives per positive in the multibox loss",
    "detection.score_threshold": "inference: lowest class score kept",
    "detection.nms_threshold": "inference: NMS IoU threshold",
    "detection.top_k": "inference: boxes per class before NMS",
    "detection.max_detections": "inference: detections per image",
    "detection.map_method": "mAP@0.5 definition: 11point (VOC07) | all (VOC10+) | 101point",
    "checkpoint_every_steps": ">0: a checkpoint every N steps inside an epoch too "
                              "(checkpoints-partial/, the last one kept; resume mid-epoch)",
    "stream.enabled": "auto (folder: always; tfds: when its images vary in size or the "
                      "prepared set exceeds 4 GiB) | on | off",
    "stream.image_size": "streamed images are cropped to this square side",
    "stream.workers": "grain worker processes decoding and cropping (0: in the main process)",
    "stream.corrupt": "a file that does not decode: error (names it) | skip (the next file "
                      "is used instead, counted in metrics.jsonl)",
    "stream.crop_fraction": "evaluation: shorter side resized to image_size / crop_fraction, "
                            "then the centre crop",
    "stream.min_scale": "training: random-resized crop's smallest area fraction",
    "stream.eval_split": "TFDS split to evaluate on (default: validation, else test)",
    "quant.bits": "QAT bits (0: off, 2..8)",
    "quant.per_channel": "per-output-channel quantisation scales",
    "quant.method": "uniform | kmeans",
    "quant.overrides": "{layer glob: bits}",
}
HELP.update({f"model_kw.{k}": "model option (None: the model's default)" for k in MODEL_OPTIONS})

# key: (type, low, high, what is valid); low/high inclusive unless the text says otherwise
RANGES = {
    "seed": ("int", 0, None, "an int >= 0"),
    "data_limit": ("int", 0, None, "an int >= 0 (0: all)"),
    "eval_limit": ("int", 0, None, "an int >= 0 (0: all)"),
    "num_epochs": ("int", 1, None, "a positive int"),
    "batch_size": ("int", 1, None, "a positive int"),
    "eval_batch_size": ("int", 1, None, "a positive int"),
    "steps_per_call": ("int", 0, None, "an int >= 0 (0: auto)"),
    "keep_checkpoints": ("int", 1, None, "a positive int"),
    "resume_step": ("int", 0, None, "an int >= 0 (0: the latest)"),
    "log_every_s": ("num", 0, None, "a number >= 0"),
    "label_smoothing": ("num", 0, 0.999, "a number in [0, 1)"),
    "tta": ("int", 0, 2, "0, 1 or 2"),
    "data_init_examples": ("int", 1, None, "a positive int"),
    "optimizer.norm_lr_scale": ("num", 1e-300, None, "a number > 0"),
    "lookahead.every": ("int", 0, None, "an int >= 0 (0: off)"),
    "lookahead.decay": ("num", 0, 1, "a number in [0, 1]"),
    "lookahead.power": ("num", 0, None, "a number >= 0"),
    "schedule.warmup_start_fraction": ("num", 0, 1, "a number in [0, 1]"),
    "aux_weight": ("num", 0, None, "a number >= 0"),
    "optimizer.lr": ("num", 1e-300, None, "a number > 0"),
    "optimizer.momentum": ("num", 0, 0.999999, "a number in [0, 1)"),
    "optimizer.weight_decay": ("num", 0, None, "a number >= 0"),
    "optimizer.grad_clip": ("num", 0, None, "a number >= 0 (0: off)"),
    "locations.lr": ("num", 1e-300, None, "a number > 0"),
    "locations.freeze_epoch": ("int", -1, None, "an int >= -1 (-1: never)"),
    "share.lr": ("num", 1e-300, None, "a number > 0"),
    "share.weight_decay": ("num", 0, None, "a number >= 0"),
    "schedule.warmup_epochs": ("num", 0, None, "a number of epochs >= 0"),
    "schedule.decay_factor": ("num", 1e-300, 1, "a number in (0, 1]"),
    "schedule.final_lr_fraction": ("num", 0, 1, "a number in [0, 1]"),
    "schedule.cycles": ("int", 1, None, "a positive int"),
    "augment.crop_padding": ("int", 0, None, "an int >= 0"),
    "augment.cutout": ("int", 0, None, "an int >= 0 (0: off)"),
    "conv.compression": ("num", 1, None, "a number >= 1"),
    "conv.group_size": ("int", 1, None, "a positive int"),
    "conv.min_params": ("int", 0, None, "an int >= 0"),
    "quant.bits": ("int", 0, 8, "0 (off) or an int in 2..8"),
    "checkpoint_every_steps": ("int", 0, None, "an int >= 0 (0: at epoch ends only)"),
    "stream.image_size": ("int", 8, None, "an int >= 8 (pixels)"),
    "stream.workers": ("int", 0, None, "an int >= 0 (0: in the main process)"),
    "stream.crop_fraction": ("num", 0.05, 1, "a number in [0.05, 1]"),
    "stream.min_scale": ("num", 0.001, 1, "a number in [0.001, 1]"),
    "nas.arch_lr": ("num", 1e-300, None, "a number > 0"),
    "nas.arch_weight_decay": ("num", 0, None, "a number >= 0"),
    "nas.warmup_epochs": ("num", 0, None, "a number of epochs >= 0"),
    "detection.image_size": ("int", 16, None, "an int >= 16 (pixels)"),
    "detection.max_objects": ("int", 0, None, "an int >= 0 (VOC: 0 = all; synthetic >= 1)"),
    "detection.num_train": ("int", 1, None, "a positive int"),
    "detection.num_test": ("int", 1, None, "a positive int"),
    "detection.min_crop": ("num", 0.1, 1, "a number in [0.1, 1] (1: no crop)"),
    "detection.match_threshold": ("num", 0, 1, "a number in [0, 1]"),
    "detection.neg_pos_ratio": ("num", 0, None, "a number >= 0"),
    "detection.score_threshold": ("num", 0, 1, "a number in [0, 1]"),
    "detection.nms_threshold": ("num", 0, 1, "a number in [0, 1]"),
    "detection.top_k": ("int", 1, None, "a positive int"),
    "detection.max_detections": ("int", 1, None, "a positive int"),
}
BOOLS = ("augment.flip", "augment.alternate_flip", "keep_best", "tensorboard", "progress", "quiet",
         "optimizer.nesterov", "quant.per_channel", "nas.search", "nas.aux_skip")


def _get(c, key):
    for part in key.split("."):
        c = c[part]
    return c


def _flat_keys(c, prefix=""):
    out = set()
    for k, v in c.items():
        out.add(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            out |= _flat_keys(v, prefix + k + ".")
    return out


def _range(key, v, kind, lo, hi, text):
    ok_type = (isinstance(v, int) if kind == "int" else isinstance(v, (int, float))) \
        and not isinstance(v, bool)
    if not ok_type or (lo is not None and v < lo) or (hi is not None and v > hi) or \
            (kind == "num" and v != v):
        raise ValueError(f"config.{key} = {v!r} is not valid; valid: {text}")


def _choice(key, value, valid):
    if value not in valid:
        raise ValueError(f"config.{key} = {value!r} is not valid; valid: "
                         f"{', '.join(map(str, valid))}")


def validate(c: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the key and the valid choices for a bad config."""
    if c.model not in models.MODELS:
        _choice("model", c.model, sorted(models.MODELS))
    if "stream" in c:
        _choice("stream.enabled", c.stream.enabled, ("auto", "on", "off"))
        _choice("stream.corrupt", c.stream.corrupt, ("error", "skip"))
    if c.dataset not in ("fashion_mnist", "cifar10", "synthetic", "folder",
                         *data.DETECTION) and not (
            c.dataset.startswith("tfds:") and len(c.dataset) > 5):
        _choice("dataset", c.dataset, data.DATASETS)
    if (c.model == "ssd") != data.is_detection(c.dataset):
        raise ValueError(f"config.model = {c.model!r} and config.dataset = {c.dataset!r} do not "
                         f"fit: detection data sets ({', '.join(data.DETECTION)}) train the "
                         f"detector 'ssd', and 'ssd' trains on them only")
    if "detection" in c:
        _choice("detection.map_method", c.detection.map_method, ("11point", "all", "101point"))
    _choice("conv.kind", c.conv.kind, KINDS)
    _choice("schedule.name", c.schedule.name, SCHEDULES)
    _choice("optimizer.name", c.optimizer.name, OPTIMIZERS)
    _choice("locations.optimizer", c.locations.optimizer, OPTIMIZERS)
    _choice("share.optimizer", c.share.optimizer, OPTIMIZERS)
    _choice("compute_dtype", c.compute_dtype, DTYPES)
    _choice("on_device", c.on_device, ("auto", True, False))
    keys = _flat_keys(c)
    for key, (kind, lo, hi, text) in RANGES.items():
        if key in keys:
            _range(key, _get(c, key), kind, lo, hi, text)
    for key in BOOLS:
        if key in keys and not isinstance(_get(c, key), bool):
            raise ValueError(f"config.{key} = {_get(c, key)!r} is not valid; valid: True, False")
    _choice("conv.location_mode", c.conv.location_mode, ("wrap", "sigmoid"))
    _choice("conv.layout", c.conv.get("layout", "fsjax"), ("fsjax", "official"))
    _choice("conv.alpha_mode", c.conv.alpha_mode, ("input", "pair"))
    _choice("quant.method", c.quant.method, ("uniform", "kmeans"))
    _choice("augment.pad_mode", c.augment.pad_mode, ("constant", "reflect"))
    for pat, epoch in c.optimizer.frozen.items():
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"config.optimizer.frozen[{pat!r}] = {epoch!r} is not valid; "
                             f"valid: an epoch, an int >= 0 (0: never trained)")
    if c.augment.alternate_flip and (c.nas.search or streams(c)):
        raise ValueError("config.augment.alternate_flip needs an in-memory data set without "
                         "config.nas.search (it mirrors a fixed half of the training images)")
    if c.schedule.warmup_epochs >= c.num_epochs and c.schedule.warmup_epochs:
        raise ValueError(f"config.schedule.warmup_epochs = {c.schedule.warmup_epochs} must be "
                         f"below num_epochs = {c.num_epochs}")
    unknown = [k for k, v in c.model_kw.items() if v is not None and k not in MODEL_OPTIONS]
    if unknown:
        raise ValueError(f"config.model_kw.{unknown[0]} is not a model option; valid: "
                         f"{', '.join(MODEL_OPTIONS)}")
    if c.schedule.name == "step" and not all(0 < p < 1 for p in c.schedule.decay_points):
        raise ValueError("config.schedule.decay_points must be fractions of training in (0, 1); "
                         f"got {tuple(c.schedule.decay_points)}")
    if c.schedule.name == "cyclic" and not (1 <= c.schedule.cycles <= c.num_epochs):
        raise ValueError(f"config.schedule.cycles must be in [1, num_epochs={c.num_epochs}]; "
                         f"got {c.schedule.cycles}")
    if c.locations.freeze_epoch >= 0 and c.conv.kind != "dfs":
        raise ValueError("config.locations.freeze_epoch only applies to conv.kind='dfs'; "
                         f"conv.kind is {c.conv.kind!r}")
    if c.init_from and c.conv.kind == "dense":
        raise ValueError("config.init_from projects a dense run onto a compressed model; "
                         "set conv.kind to fs, dfs, ks or wks")
    if c.quant.bits == 1:  # RANGES allows 0..8; one bit is not a supported width
        raise ValueError(f"config.quant.bits = 1 is not valid; valid: {RANGES['quant.bits'][3]}")
