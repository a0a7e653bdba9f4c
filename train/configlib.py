"""The config schema (every key a config may set) and its validation.

Configs call :func:`base` and change what they need; the dict is locked, so a misspelt key
(``--config.optimiser.lr``) stops with ml_collections' error naming it. :func:`validate` checks
names and combinations before any work starts and lists the valid choices.
"""

from __future__ import annotations

import ml_collections

from fsjax import data, models
from fsjax.spec import KINDS

SCHEDULES = ("step", "cyclic", "cosine", "onecycle", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw")
DTYPES = ("auto", "float32", "bfloat16")
MODEL_OPTIONS = ("widths", "stem", "stem_width", "shortcut", "stride_on", "variant", "width",
                 "stem_stride", "dropout", "growth", "depth", "depths", "mid_widths", "cells",
                 "channels", "genotype", "auxiliary", "drop_path", "primitives")


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
        min_params=0))
    c.conv.overrides = ml_collections.ConfigDict({}, type_safe=False)
    c.init_from = ""         # workdir of a trained dense run: project its kernels (fs_project)
    c.init_weights = ""      # an fsjax.export path (no suffix): start from these weights
    c.num_epochs = 3
    c.batch_size = 128
    c.eval_batch_size = 1000
    c.optimizer = ml_collections.ConfigDict(dict(
        name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4, grad_clip=0.0))
    c.label_smoothing = 0.0
    c.schedule = ml_collections.ConfigDict(dict(
        name="step", warmup_epochs=0.0, decay_points=(0.5, 0.75), decay_factor=0.1, cycles=1,
        final_lr_fraction=0.0))
    # DFS locations and WKSC channel weights get their own optimizer (optax.multi_transform).
    c.locations = ml_collections.ConfigDict(dict(optimizer="adam", lr=1e-3, freeze_epoch=-1))
    c.share = ml_collections.ConfigDict(dict(optimizer="sgd", lr=0.01, weight_decay=0.0))
    c.augment = ml_collections.ConfigDict(dict(crop_padding=4, flip=True, cutout=0))
    c.tta_flip = False       # average logits of the image and its mirror at evaluation
    c.compute_dtype = "auto"  # bfloat16 on GPU/TPU, float32 on CPU; parameters stay float32
    c.on_device = "auto"     # keep the data set in device memory (auto: if it fits)
    c.steps_per_call = 0     # training steps per jitted call (0: about 10 calls per epoch)
    c.resume_step = 0        # resume from this checkpoint step (0: the latest); later ones are
    #                          moved to checkpoints-set-aside/
    c.keep_checkpoints = 2
    c.keep_best = True
    c.tensorboard = False
    c.progress = True        # the interactive bar on a terminal (off: periodic lines only)
    c.quiet = False          # True: print nothing but errors (results.json is still written)
    c.log_every_s = 30.0     # off a terminal: a progress line every this many seconds
    c.aux_weight = 0.4       # weight of an auxiliary head's loss (DARTS eval networks)
    # DARTS search (first order): weights on one half of the training set, alphas and DFS
    # locations on the other half
    c.nas = ml_collections.ConfigDict(dict(search=False, arch_lr=3e-4, arch_weight_decay=1e-3))
    c.quant = ml_collections.ConfigDict(dict(bits=0, per_channel=False, method="uniform",
                                             overrides={}),
                                        type_safe=False)  # QAT (fsjax.quant); 0 = off
    return c


def load_data(c, data_limit: int | None = None):
    """The config's data set (``data_limit`` overrides ``c.data_limit``); configs saved by an
    older fsjax may lack ``eval_limit``."""
    limit = c.data_limit if data_limit is None else data_limit
    return data.load(c.dataset, c.data_dir, limit, eval_limit=c.get("eval_limit", 0),
                     seed=c.get("seed", 0))


def _choice(key, value, valid):
    if value not in valid:
        raise ValueError(f"config.{key} = {value!r} is not valid; valid: {', '.join(valid)}")


def validate(c: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the key and the valid choices for a bad config."""
    if c.model not in models.MODELS:
        _choice("model", c.model, sorted(models.MODELS))
    if c.dataset not in ("fashion_mnist", "cifar10", "synthetic") and not (
            c.dataset.startswith("tfds:") and len(c.dataset) > 5):
        _choice("dataset", c.dataset, data.DATASETS)
    _choice("conv.kind", c.conv.kind, KINDS)
    _choice("schedule.name", c.schedule.name, SCHEDULES)
    _choice("optimizer.name", c.optimizer.name, OPTIMIZERS)
    _choice("locations.optimizer", c.locations.optimizer, OPTIMIZERS)
    _choice("share.optimizer", c.share.optimizer, OPTIMIZERS)
    _choice("compute_dtype", c.compute_dtype, DTYPES)
    _choice("on_device", c.on_device, ("auto", True, False))
    for key in ("num_epochs", "batch_size", "eval_batch_size"):
        if not isinstance(c[key], int) or c[key] <= 0:
            raise ValueError(f"config.{key} must be a positive int; got {c[key]!r}")
    if c.conv.kind in ("fs", "dfs") and not c.conv.compression >= 1:
        raise ValueError(f"config.conv.compression must be >= 1; got {c.conv.compression}")
    if c.conv.kind in ("ks", "wks") and c.conv.group_size < 1:
        raise ValueError(f"config.conv.group_size must be >= 1; got {c.conv.group_size}")
    if c.optimizer.lr <= 0:
        raise ValueError(f"config.optimizer.lr must be > 0; got {c.optimizer.lr}")
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
    if c.quant.bits and not 2 <= c.quant.bits <= 8:
        raise ValueError(f"config.quant.bits must be 0 (off) or in 2..8; got {c.quant.bits}")
