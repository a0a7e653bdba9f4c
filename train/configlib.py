"""The config schema (every key a config may set) and its validation.

Each key is declared once, in :data:`KEYS` (and the ``prune`` / ``compress`` blocks in
:data:`PRUNE_KEYS` / :data:`COMPRESS_KEYS`): its default, its help line and what is valid.
:func:`base` (the defaults), ``--show_config`` (:data:`HELP`) and :func:`validate` all read that
table, so adding a key is one line plus its use. Configs call :func:`base` and change what they
need; the dict is locked, so a misspelt key (``--config.optimiser.lr``) stops with a one-line
error naming it. :func:`validate` checks every key and the combinations before any work starts
and says what is valid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections

from fsjax import data, kinds, models

SCHEDULES = ("step", "cyclic", "cosine", "onecycle", "linear", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw")
DTYPES = ("auto", "float32", "bfloat16")
MODEL_OPTIONS = models.model_options()  # every zoo model's keyword options (model_kw.*)


# --- what a key may hold: each check says what is valid in its own words --------------------
@dataclasses.dataclass(frozen=True)
class Int:
    """An int in ``[lo, hi]`` (None: unbounded); ``text`` overrides the generated wording."""

    lo: int | None = None
    hi: int | None = None
    text: str = ""
    kind = "int"

    def valid(self) -> str:
        return self.text or _bounds("an int", self.lo, self.hi)

    def ok(self, v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and _within(v, self.lo, self.hi)


@dataclasses.dataclass(frozen=True)
class Num(Int):
    """A number (int or float, not NaN) in ``[lo, hi]``."""

    kind = "num"

    def valid(self) -> str:
        return self.text or _bounds("a number", self.lo, self.hi)

    def ok(self, v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and \
            _within(v, self.lo, self.hi)


@dataclasses.dataclass(frozen=True)
class Bool:
    def valid(self) -> str:
        return "True, False"

    def ok(self, v) -> bool:
        return isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``values`` (a tuple, or a function giving it: e.g. the zoo's model names)."""

    values: tuple | Callable

    def choices(self) -> tuple:
        return tuple(self.values() if callable(self.values) else self.values)

    def valid(self) -> str:
        return ", ".join(map(str, self.choices()))

    def ok(self, v) -> bool:
        return v in self.choices()


def _within(v, lo, hi) -> bool:
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def _bounds(what, lo, hi) -> str:
    if what == "an int" and lo == 1 and hi is None:
        return "a positive int"
    if lo is not None and hi is not None:
        return f"{what} in [{lo}, {hi}]"
    return f"{what} >= {lo}" if lo is not None else what


def _dataset_ok(v) -> bool:
    return isinstance(v, str) and (v in ("fashion_mnist", "cifar10", "synthetic", "folder",
                                         *data.DETECTION) or
                                   (v.startswith("tfds:") and len(v) > 5))


@dataclasses.dataclass(frozen=True)
class Dataset:
    def valid(self) -> str:
        return ", ".join(data.DATASETS)

    def ok(self, v) -> bool:
        return _dataset_ok(v)


@dataclasses.dataclass(frozen=True)
class Key:
    """One config key: its dotted path, default, one-line help and check (None: any value).
    ``table=True``: a free-form ``{name: value}`` table (a ConfigDict, not type-checked)."""

    path: str
    default: Any
    help: str
    check: Any = None
    table: bool = False


K = Key
# Every key a config may set, declared once: base(), --show_config, HELP and validate() all
# come from this table (model_kw.* from the zoo's options, MODEL_OPTIONS).
KEYS = (
    K("seed", 0, "seeds initialisation, data order, augmentation and subsets", Int(0)),
    K("dataset", "fashion_mnist", "fashion_mnist | cifar10 | synthetic | folder | "
      "tfds:<name> | a detection set", Dataset()),
    K("data_dir", "", "CIFAR folder/tarballs, Fashion-MNIST IDX folder, or TFDS data dir"),
    K("data_limit", 0, ">0: a seeded class-stratified subset of this many training examples",
      Int(0, text="an int >= 0 (0: all)")),
    K("eval_limit", 0, ">0: the same for the test set (0: the full test set)",
      Int(0, text="an int >= 0 (0: all)")),
    K("model", "resnet20", "zoo name (fsjax.models.MODELS)", Choice(lambda: sorted(models.MODELS))),
    K("conv.kind", "fs", "dense | fs | dfs | ks | wks", Choice(kinds.names)),
    K("conv.compression", 4.0, "FS/DFS rho: dense kernel size / summary length", Num(1)),
    K("conv.group_size", 4, "KS/WKS: input channels per shared kernel", Int(1)),
    K("conv.location_mode", "wrap", "DFS location parameterisation: wrap | sigmoid",
      Choice(("wrap", "sigmoid"))),
    K("conv.alpha_mode", "input", "WKSC weights: input (one per input channel) | pair",
      Choice(("input", "pair"))),
    K("conv.min_params", 0, "layers with fewer dense weights stay dense", Int(0)),
    K("conv.layout", "fsjax", "FS filter starts: fsjax (exact integers) | official (the FSNet "
      "PyTorch code)", Choice(("fsjax", "official"))),
    K("conv.overrides", {}, "{layer-name glob: kind or dict of options}, later patterns win",
      table=True),
    K("init_from", "", "workdir of a trained dense run: project its kernels onto this model"),
    K("init_weights", "", "an fsjax.export path (no suffix): start from these weights"),
    K("arch_from", "", "pruning/training workdir or export path: its architecture, fresh weights"),
    K("num_epochs", 3, "epochs to train (may grow on resume)", Int(1)),
    K("batch_size", 128, "global training batch (divides by the device count)", Int(1)),
    K("eval_batch_size", 1000, "evaluation batch (divides by the device count)", Int(1)),
    K("optimizer.name", "sgd", "sgd | adam | adamw", Choice(OPTIMIZERS)),
    K("optimizer.lr", 0.1, "peak learning rate for the global batch", Num(1e-300)),
    K("optimizer.momentum", 0.9, "SGD momentum", Num(0, 0.999999, "a number in [0, 1)")),
    K("optimizer.nesterov", False, "Nesterov momentum (SGD)", Bool()),
    K("optimizer.weight_decay", 5e-4, "L2 (SGD/adam) or decoupled (adamw) weight decay", Num(0)),
    K("optimizer.grad_clip", 0.0, ">0: clip the global gradient norm",
      Num(0, text="a number >= 0 (0: off)")),
    K("optimizer.norm_lr_scale", 1.0, "lr multiplier of BatchNorm scales and biases (their "
      "weight decay per step is kept: airbench's bias_scaler)", Num(1e-300)),
    K("optimizer.frozen", {}, "{parameter path glob: epoch}: trained before that epoch only "
      "(0: never; e.g. {'whiten/kernel': 0})", table=True),
    K("lookahead.every", 0, "lookahead / EMA of weights and BatchNorm statistics every N "
      "steps (0: off)", Int(0, text="an int >= 0 (0: off)")),
    K("lookahead.decay", 0.95 ** 5, "lookahead decay at the last step (scaled by "
      "(step/total)^power)", Num(0, 1)),
    K("lookahead.power", 3.0, "lookahead decay's power of step/total", Num(0)),
    K("label_smoothing", 0.0, "cross-entropy label smoothing", Num(0, 0.999, "a number in [0, 1)")),
    K("schedule.name", "step", "step | cyclic | cosine | onecycle | linear | constant",
      Choice(SCHEDULES)),
    K("schedule.warmup_epochs", 0.0, "linear warm-up epochs", Num(0, text="a number of epochs >= 0")),
    K("schedule.decay_points", (0.5, 0.75), "step: fractions of training where lr *= "
      "decay_factor"),
    K("schedule.decay_factor", 0.1, "step/cyclic: lr factor at each decay point",
      Num(1e-300, 1, "a number in (0, 1]")),
    K("schedule.cycles", 1, "cyclic: restarts of the step schedule", Int(1)),
    K("schedule.final_lr_fraction", 0.0, "cosine/onecycle/linear: final lr / peak lr", Num(0, 1)),
    K("schedule.warmup_start_fraction", 0.0, "warm-up starts at this fraction of the peak lr "
      "(onecycle: 1/25)", Num(0, 1)),
    # DFS locations and WKSC channel weights get their own optimizer (fsjax.optim)
    K("locations.optimizer", "adam", "DFS locations' own optimizer", Choice(OPTIMIZERS)),
    K("locations.lr", 1e-3, "DFS locations' learning rate", Num(1e-300)),
    K("locations.freeze_epoch", -1, "round DFS locations (DFS -> FS) at this epoch; -1: never",
      Int(-1, text="an int >= -1 (-1: never)")),
    K("share.optimizer", "sgd", "WKSC channel weights' own optimizer", Choice(OPTIMIZERS)),
    K("share.lr", 0.01, "WKSC channel weights' learning rate", Num(1e-300)),
    K("share.weight_decay", 0.0, "WKSC channel weights' weight decay", Num(0)),
    K("augment.crop_padding", 4, "random crop after padding by this many pixels (in-memory "
      "sets; streamed sets get the stream's random-resized crop)", Int(0)),
    K("augment.flip", True, "random horizontal flip (in-memory sets; the stream flips its own)",
      Bool()),
    K("augment.cutout", 0, ">0: cutout square side (in-memory sets)",
      Int(0, text="an int >= 0 (0: off)")),
    K("augment.pad_mode", "constant", "crop padding: constant (zeros) | reflect",
      Choice(("constant", "reflect"))),
    K("augment.alternate_flip", False, "mirror a seeded half of the images once, then all of "
      "them on odd epochs (airbench), instead of a random flip per step", Bool()),
    K("tta", 0, "test-time augmentation of the final evaluation (reported beside the plain "
      "accuracy): 0 none | 1 mirror | 2 mirror + 1-pixel translations", Int(0, 2, "0, 1 or 2")),
    K("data_init_examples", 5000, "training images that data-dependent initialisers see "
      "(airbench's whitening conv); 0: none, the model keeps its random init",
      Int(0, text="an int >= 0 (0: no data-dependent init)")),
    K("compute_dtype", "auto", "auto (bf16 on GPU/TPU, f32 on CPU) | float32 | bfloat16",
      Choice(DTYPES)),
    K("on_device", "auto", "keep the data set on the device: auto | True | False",
      Choice(("auto", True, False))),
    K("steps_per_call", 0, "training steps per jitted call (0: 1 on CPU, ~10 calls/epoch "
      "elsewhere)", Int(0, text="an int >= 0 (0: auto)")),
    K("resume_step", 0, "resume from this checkpoint step (0: the latest); later ones are "
      "moved to checkpoints-set-aside/", Int(0, text="an int >= 0 (0: the latest)")),
    K("keep_checkpoints", 2, "checkpoints kept (the last N)", Int(1)),
    K("keep_best", True, "also keep the best by test accuracy", Bool()),
    K("tensorboard", True, "TensorBoard scalars in workdir/tensorboard when tensorboardX is "
      "installed (pip install tensorboardX; without it nothing is said)", Bool()),
    K("progress", True, "the interactive bar on a terminal (off: periodic lines only)", Bool()),
    K("quiet", False, "print nothing but errors (results.json is still written)", Bool()),
    K("log_every_s", 30.0, "off a terminal: a progress line every this many seconds", Num(0)),
    K("aux_weight", 0.4, "weight of an auxiliary head's loss (DARTS eval)", Num(0)),
    # DARTS search (first order): weights on one half of the training set, alphas and DFS
    # locations on the other half
    K("nas.search", False, "DARTS search: weights on one half, architecture on the other", Bool()),
    K("nas.arch_lr", 3e-4, "DARTS architecture learning rate", Num(1e-300)),
    K("nas.arch_weight_decay", 1e-3, "DARTS architecture weight decay", Num(0)),
    K("nas.warmup_epochs", 0.0, "DARTS: the architecture waits this many epochs (weights "
      "train first, as PC-DARTS)", Num(0, text="a number of epochs >= 0")),
    K("nas.aux_skip", False, "DARTS-: an auxiliary skip on every stride-1 edge, its weight "
      "decaying from 1 to 0 over the search", Bool()),
    # detection (dataset synthetic_detection | voc, model ssd): data, matching, loss, inference
    K("detection.image_size", 64, "detection images are resized to this square side "
      "(synthetic, VOC)", Int(16, text="an int >= 16 (pixels)")),
    K("detection.max_objects", 4, "synthetic scenes: most objects per image (VOC: 0 = all)",
      Int(0, text="an int >= 0 (VOC: 0 = all; synthetic >= 1)")),
    K("detection.num_train", 8000, "synthetic scenes: training images", Int(1)),
    K("detection.num_test", 1000, "synthetic scenes: test images", Int(1)),
    K("detection.min_crop", 0.5, "smallest random crop side (fraction of the image; 1: no crop)",
      Num(0.1, 1, "a number in [0.1, 1] (1: no crop)")),
    K("detection.match_threshold", 0.5, "IoU from which a default box matches a ground-truth "
      "box", Num(0, 1)),
    K("detection.neg_pos_ratio", 3.0, "hard negatives per positive in the multibox loss", Num(0)),
    K("detection.score_threshold", 0.01, "inference: lowest class score kept", Num(0, 1)),
    K("detection.nms_threshold", 0.45, "inference: NMS IoU threshold", Num(0, 1)),
    K("detection.top_k", 200, "inference: boxes per class before NMS", Int(1)),
    K("detection.max_detections", 100, "inference: detections per image", Int(1)),
    K("detection.map_method", "11point", "mAP@0.5 definition: 11point (VOC07) | all (VOC10+) "
      "| 101point", Choice(("11point", "all", "101point"))),
    K("checkpoint_every_steps", 0, ">0: a checkpoint every N steps inside an epoch too "
      "(checkpoints-partial/, the last one kept; resume mid-epoch)",
      Int(0, text="an int >= 0 (0: at epoch ends only)")),
    # streaming input (fsjax.data.stream): dataset 'folder' and large 'tfds:' sets are read
    # from disk while training (grain worker processes), with ImageNet-style crops
    K("stream.enabled", "auto", "auto (folder: always; tfds: when its images vary in size or "
      "the prepared set exceeds 4 GiB) | on | off", Choice(("auto", "on", "off"))),
    K("stream.image_size", 224, "streamed images are cropped to this square side",
      Int(8, text="an int >= 8 (pixels)")),
    K("stream.workers", 0, "grain worker processes decoding and cropping (0: in the main "
      "process)", Int(0, text="an int >= 0 (0: in the main process)")),
    K("stream.corrupt", "error", "a file that does not decode: error (names it) | skip (the "
      "next file is used instead, counted in metrics.jsonl)", Choice(("error", "skip"))),
    K("stream.crop_fraction", 0.875, "evaluation: shorter side resized to image_size / "
      "crop_fraction, then the centre crop", Num(0.05, 1)),
    K("stream.min_scale", 0.08, "training: random-resized crop's smallest area fraction",
      Num(0.001, 1)),
    K("stream.eval_split", "", "TFDS split to evaluate on (default: validation, else test)"),
    # quantization-aware training (fsjax.quant)
    K("quant.bits", 0, "QAT bits (0: off, 2..8)", Int(0, 8, "0 (off) or an int in 2..8")),
    K("quant.per_channel", False, "per-output-channel quantisation scales", Bool()),
    K("quant.method", "uniform", "uniform | kmeans", Choice(("uniform", "kmeans"))),
    K("quant.overrides", {}, "{layer glob: bits}", table=True),
) + tuple(K(f"model_kw.{k}", None, "model option (None: the model's default)")
          for k in MODEL_OPTIONS)

# the blocks that train.prune and train.compress read (configs add them with prune_block /
# compress_block, so every config that prunes or compresses has the same keys)
PRUNE_KEYS = (
    K("prune.source", "", "a trained run's workdir to prune (empty: train the dense model "
      "first)"),
    K("prune.ratio", 0.5, "fraction of each layer's filters to remove",
      Num(1e-9, 1 - 1e-9, "a number in (0, 1)")),
    K("prune.criterion", "thinet", "thinet | thinet_stepwise | thinet_stepwise_exact | random "
      "| weight_sum | apoz", Choice(("thinet", "thinet_stepwise", "thinet_stepwise_exact",
                                      "random", "weight_sum", "apoz"))),
    K("prune.layers", (), "producer convs to prune (empty: the paper's choice)"),
    K("prune.target", "", "a published VGG-16 architecture (thinet_conv | thinet_gap | "
      "thinet_tiny; empty: prune.layers at prune.ratio)"),
    K("prune.base_widths", (), "prune.target: the original model's widths (empty: VGG-16's)"),
    K("prune.samples_per_class", 10, "training images per class whose activations ThiNet "
      "samples", Int(1)),
    K("prune.samples_per_image", 10, "sampled positions per image", Int(1)),
    K("prune.head_epochs", 1, "fine-tuning epochs after a head replacement (prune.target)",
      Int(0)),
    K("prune.finetune_epochs", 1, "fine-tuning epochs after each pruned layer", Int(0)),
    K("prune.finetune_lr", 0.01, "their lr (cosine)", Num(1e-300)),
    K("prune.final_epochs", 10, "fine-tuning epochs at the end", Int(0)),
    K("prune.final_lr", 0.01, "their lr (cosine)", Num(1e-300)),
)
COMPRESS_KEYS = (
    K("compress.source", "", "a trained run's workdir (empty: train the dense model first)"),
    K("compress.stages", (), "steps: thinet:<r>, fs|dfs:<rho>, ks|wks:<g>, finetune, "
      "quant:<bits>"),
    K("compress.finetune_epochs", 10, "fine-tuning epochs of each conversion step", Int(0)),
    K("compress.finetune_lr", 0.01, "their lr (cosine)", Num(1e-300)),
    K("compress.per_channel", True, "per-output-channel quantisation scales", Bool()),
    K("compress.qat_below", 8, "quantization-aware fine-tuning below this many bits (PTQ at "
      "and above)", Int(2, 9)),
    K("compress.latency_batch", 64, "batch of the latency column", Int(1)),
)
ALL_KEYS = KEYS + PRUNE_KEYS + COMPRESS_KEYS
HELP = {k.path: k.help for k in ALL_KEYS}
# views for tests and tools: ranged keys and booleans
RANGES = {k.path: (k.check.kind, k.check.lo, k.check.hi, k.check.valid()) for k in ALL_KEYS
          if isinstance(k.check, Int)}
BOOLS = tuple(k.path for k in ALL_KEYS if isinstance(k.check, Bool))


def _build(keys, over: dict | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    for k in keys:
        *parents, last = k.path.split(".")
        node = c
        for part in parents:
            if part not in node:
                node[part] = ml_collections.ConfigDict()
            node = node[part]
        if k.table:
            node[last] = ml_collections.ConfigDict(dict(k.default), type_safe=False)
        elif k.default is None:
            node[last] = ml_collections.config_dict.placeholder(object)
        else:
            node[last] = k.default
    for path, v in (over or {}).items():
        *parents, last = path.split(".")
        node = c
        for part in parents:
            node = node[part]
        node[last] = v
    return c


def base() -> ml_collections.ConfigDict:
    """A config with every key of :data:`KEYS` at its default; configs change what they need
    (the dict is locked by the command line, so a misspelt key stops with a one-line error)."""
    return _build(KEYS)


def prune_block(c: ml_collections.ConfigDict, **over) -> ml_collections.ConfigDict:
    """Add the ``prune`` block (:data:`PRUNE_KEYS` defaults, ``over`` by key name) to ``c``."""
    c.prune = _build(PRUNE_KEYS, {f"prune.{k}": v for k, v in over.items()}).prune
    return c


def compress_block(c: ml_collections.ConfigDict, **over) -> ml_collections.ConfigDict:
    """Add the ``compress`` block (:data:`COMPRESS_KEYS`) to ``c``."""
    c.compress = _build(COMPRESS_KEYS, {f"compress.{k}": v for k, v in over.items()}).compress
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


def validate(c: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the key and what is valid for a bad config: every key of
    :data:`ALL_KEYS` present in ``c`` (configs saved by an older fsjax may lack some), then
    the combinations."""
    keys = _flat_keys(c)
    for k in ALL_KEYS:
        if k.check is not None and k.path in keys and not k.check.ok(_get(c, k.path)):
            raise ValueError(f"config.{k.path} = {_get(c, k.path)!r} is not valid; valid: "
                             f"{k.check.valid()}")
    if (c.model == "ssd") != data.is_detection(c.dataset):
        raise ValueError(f"config.model = {c.model!r} and config.dataset = {c.dataset!r} do not "
                         f"fit: detection data sets ({', '.join(data.DETECTION)}) train the "
                         f"detector 'ssd', and 'ssd' trains on them only")
    for pat, epoch in c.optimizer.get("frozen", {}).items():
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"config.optimizer.frozen[{pat!r}] = {epoch!r} is not valid; "
                             f"valid: an epoch, an int >= 0 (0: never trained)")
    if c.augment.get("alternate_flip", False) and (c.nas.search or streams(c)):
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
    if c.locations.freeze_epoch >= 0 and not kinds.get(c.conv.kind).learns_locations:
        raise ValueError("config.locations.freeze_epoch only applies to conv.kind='dfs'; "
                         f"conv.kind is {c.conv.kind!r}")
    if c.init_from and not kinds.get(c.conv.kind).compressed:
        raise ValueError("config.init_from projects a dense run onto a compressed model; "
                         "set conv.kind to fs, dfs, ks or wks")
    if c.quant.bits == 1:  # RANGES allows 0..8; one bit is not a supported width
        raise ValueError(f"config.quant.bits = 1 is not valid; valid: {RANGES['quant.bits'][3]}")
