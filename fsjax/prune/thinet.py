"""ThiNet filter pruning of zoo models: pick the channels layer i+1 needs, drop the other
filters of layer i (and their BN channels), rescale layer i+1 by least squares, and rebuild a
physically smaller model.

Prunable pairs (the papers' choice): VGG-16 ``conv1_1 .. conv4_3`` (each with its next conv;
``conv5_1 .. conv5_3`` on request, ``conv5_3`` with the head's first FC layer as its
consumer, as ThiNet-Tiny needs); ResNet basic blocks: ``conv1`` (-> ``conv2``); bottlenecks:
``conv1`` and ``conv2`` (branch2a/2b, -> ``conv2``/``conv3``). Shortcuts and block outputs are never pruned.
FS layers (and DFS layers once their locations are frozen) are pruned on their materialised
kernels; the pruned layer is rebuilt as FS at the same compression (a shorter summary) whose
summary is the least-squares projection of the kept filters; the relative projection error
of each rebuilt layer is returned in ``new_meta['projection_error']``. KS/WKSC layers keep
their factored form: a kernel-sharing consumer keeps whole groups (the selection runs over
the groups' summed contributions), the least-squares scale of each kept group is folded into
its shared kernel, and WKSC channel weights follow their channels.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax import export, ops
from fsjax.models.vgg import VGG16_WIDTHS, vgg_conv_names
from fsjax.ops.thinet import least_squares_scale, sample_positions, select_channels
from fsjax.spec import record_calls

__all__ = ["select_channels", "least_squares_scale", "Pair", "prunable_pairs", "prune_pair",
           "CRITERIA", "keep_count", "VGG16_TARGETS", "target_widths", "replace_head",
           "published_architecture", "paper_counts"]

CRITERIA = ("thinet", "thinet_stepwise", "thinet_stepwise_exact", "random", "weight_sum", "apoz")
VGG_NAMES = tuple(vgg_conv_names())  # conv1_1 .. conv5_3
VGG_DEFAULT = VGG_NAMES[:10]
HEAD = "head"  # consumer name of the last conv: the head's first FC layer
# ThiNet's VGG-16 architectures (the authors' released prototxts): the fraction of each conv's
# original filters kept, and the head (None: unchanged).
VGG16_TARGETS = {
    "thinet_conv": dict(keep={n: 0.5 for n in VGG_DEFAULT}, head=None),
    "thinet_gap": dict(keep={n: 0.5 for n in VGG_DEFAULT}, head="gap"),
    "thinet_tiny": dict(keep={**{n: 0.25 for n in VGG_NAMES[:12]}, "conv5_3": 0.5},
                        head="gap"),
}


@dataclasses.dataclass(frozen=True)
class Pair:
    producer: str   # conv whose filters are removed
    consumer: str   # next conv, whose input channels are removed and rescaled
    slot: tuple     # where the producer's width lives in model_kw: ("widths", i) or
                    # ("mid_widths", block, j)


def prunable_pairs(meta: dict, layers=None) -> list[Pair]:
    """Pairs of ``meta['model']`` in forward order; ``layers`` filters producers (VGG default:
    conv1_1..conv4_3; airbench and ResNets: all eligible)."""
    name = meta["model"]
    if name == "vgg16":
        want = set(layers or VGG_DEFAULT)
        bad = sorted(want - set(VGG_NAMES))
        if bad:
            raise ValueError(f"ThiNet: VGG-16 has no conv {bad[0]!r}; prunable: conv1_1 .. "
                             f"conv5_3")
        return [Pair(a, b, ("widths", i)) for i, (a, b) in
                enumerate(zip(VGG_NAMES, VGG_NAMES[1:] + (HEAD,), strict=True)) if a in want]
    if name == "airbench":  # VGG-shaped: each conv feeds the next, the last feeds the head
        model = export.build(meta)
        names = [x.conv.spec.name for x in model.layers]
        bad = sorted(set(layers or ()) - set(names))
        if bad:
            raise ValueError(f"ThiNet: airbench has no conv {bad[0]!r}; prunable: "
                             f"{', '.join(names)}")
        return [Pair(a, b, ("widths", i)) for i, (a, b) in
                enumerate(zip(names, names[1:] + [HEAD], strict=True))
                if not layers or a in layers]
    if not name.startswith("resnet"):
        raise ValueError(f"ThiNet pairs are defined for vgg16, airbench and the ResNets; got "
                         f"{name!r}")
    model = export.build(meta)
    out = []
    for bi, blk in enumerate(model.blocks):
        prefix = blk.conv1.conv.spec.name.rsplit(".", 1)[0]
        convs = ["conv1", "conv2"] + (["conv3"] if hasattr(blk, "conv3") else [])
        for j in range(len(convs) - 1):
            p = f"{prefix}.{convs[j]}"
            if layers is None or p in layers:
                out.append(Pair(p, f"{prefix}.{convs[j + 1]}", ("mid_widths", bi, j)))
    return out


def target_widths(target: str, base=None) -> list[int]:
    """Per-conv widths of a published VGG-16 ThiNet target (``VGG16_TARGETS``), as kept
    fractions (``keep_count``) of ``base`` (default: VGG-16's 64 .. 512)."""
    if target not in VGG16_TARGETS:
        raise ValueError(f"unknown ThiNet target {target!r}; valid: {', '.join(VGG16_TARGETS)}")
    base = list(base or VGG16_WIDTHS)
    if len(base) != len(VGG_NAMES):
        raise ValueError(f"ThiNet target base widths must list {len(VGG_NAMES)} widths; got "
                         f"{len(base)}")
    keep = VGG16_TARGETS[target]["keep"]
    return [keep_count(w, 1 - keep[n]) if n in keep else w
            for w, n in zip(base, VGG_NAMES, strict=True)]


def replace_head(model, meta: dict, head: str):
    """VGG-16 with another head (``'gap'``: ThiNet-GAP's global average pooling + one FC):
    returns ``(new_model, new_meta)``. Convs, BN and any head parameter whose shape still
    matches (the classifier of a ``'linear'`` head) are copied; the others start fresh
    (an ``'fc'`` head's replacement), so fine-tune after."""
    if meta["model"] != "vgg16":
        raise ValueError(f"head replacement is defined for vgg16; got {meta['model']!r}")
    new_meta = dict(meta, model_kw=dict(meta.get("model_kw", {}), head=head))
    new_meta.pop("layers", None)
    new = export.build(new_meta, dtype=getattr(model.layers[0].conv, "dtype", None))
    export.copy_matching(new, model)
    return new, new_meta


def keep_count(channels: int, ratio: float) -> int:
    """Channels kept when pruning ``ratio`` of them: ``floor(channels * (1 - ratio))``, at
    least 1 (floor reproduces the published ThiNet architectures)."""
    return max(1, int(np.floor(channels * (1 - ratio) + 1e-9)))


def _find(model, name):
    """(ConvBN-or-wrapper path, module) whose conv is named ``name``."""
    for path, node in nnx.iter_graph(model):
        conv = getattr(node, "conv", None)
        if conv is not None and getattr(getattr(conv, "spec", None), "name", None) == name:
            return tuple(path), node
    raise ValueError(f"no conv named {name!r} in the model")


def _eval_batches(model, images, fn, batch=256):
    """``fn(model in eval mode, x)`` over ``images`` in jitted batches, concatenated."""
    graphdef, state = nnx.split(model)

    @functools.partial(jax.jit, compiler_options=ops.compiler_options())
    def fwd(state, x):
        m = nnx.merge(graphdef, state)
        m.eval()
        return fn(m, x)

    return jnp.concatenate([fwd(state, images[i:i + batch]) for i in range(0, len(images), batch)])


def _capture_input(model, images, name):
    def conv_input(m, x):
        with record_calls() as calls:
            m(x)
        for spec, xin, _ in calls:
            if spec.name == name:
                return xin
        raise ValueError(f"conv {name!r} was not called")

    return _eval_batches(model, images, conv_input)


def _scores(criterion, producer, x_in, key):
    c = x_in.shape[-1]
    if criterion == "random":
        return jax.random.uniform(key, (c,))
    if criterion == "weight_sum":
        return jnp.abs(producer.conv.dense_kernel()).sum((0, 1, 2))
    if criterion == "apoz":  # keep the channels with the fewest zero activations
        return -(x_in <= 0).mean((0, 1, 2))
    raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")


def prune_pair(model, meta: dict, pair: Pair, images, ratio: float, criterion="thinet",
               samples_per_image: int = 10, seed: int = 0):
    """Prune one pair; returns ``(new_model, new_meta, kept indices)``.

    ``images``: float input batch (already normalised) used to sample the consumer's input.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    if pair.consumer == HEAD:
        return _prune_into_head(model, meta, pair, images, ratio, criterion, samples_per_image,
                                seed)
    ppath, producer = _find(model, pair.producer)
    cpath, consumer = _find(model, pair.consumer)
    for layer in (producer.conv, consumer.conv):
        _check_prunable(layer.spec)
    x_in = _capture_input(model, images, pair.consumer)
    c = x_in.shape[-1]
    # a kernel-sharing consumer keeps whole groups (channels sharing one kernel), so the
    # pruned layer has valid groups again: select among groups of g channels
    g = consumer.conv.spec.conv_kind.input_share(consumer.conv.spec)
    keep = max(1, keep_count(c, ratio) // g)
    key = _layer_key(seed, pair.producer)
    w_kernel = consumer.conv.dense_kernel()
    x_hat = None
    if criterion.startswith("thinet"):
        s = consumer.conv.spec
        if (s.rank != 2 or s.dilation != (1, 1) or s.input_dilation not in ((), (1, 1))
                or s.padding not in ("SAME", "VALID")):
            raise ValueError(f"{s.name!r}: ThiNet sampling supports undilated 2-D SAME/VALID "
                             f"convs; got kernel {s.kernel_size}, dilation {s.dilation}, "
                             f"padding {s.padding!r}")
        out_hw = ops.conv_output_shape(x_in.shape[1:3], s.kernel_size, s.strides, s.padding,
                                       s.dilation)
        idx = sample_positions(key, x_in.shape[0], out_hw, s.out_features,
                               samples_per_image)
        x_hat = ops.contributions(x_in, w_kernel, *idx, strides=s.strides, padding=s.padding)
        x_hat = x_hat.reshape(x_hat.shape[0], c // g, g).sum(2)  # per group (g=1: channel)
    scores = lambda: np.asarray(_scores(criterion, producer, x_in, key)).reshape(
        c // g, g).sum(1)
    kept, scale = _select(criterion, x_hat, keep, scores)
    kept_groups, kept = kept, (kept[:, None] * g + np.arange(g)).reshape(-1).astype(np.int32)

    def consumer_inputs(new, errors):
        _, ncons = _find(new, pair.consumer)
        _prune_inputs(consumer.conv, ncons.conv, kept, kept_groups, scale, errors)
        if ncons.conv.bias is not None:
            ncons.conv.bias[...] = consumer.conv.bias[...]

    return _rebuild(model, meta, pair, producer, kept, consumer_inputs)


def _layer_key(seed: int, name: str):
    """A stable per-layer key (Python's str hash differs between processes)."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) % 2 ** 31)


def _select(criterion, x_hat, keep, scores_fn):
    """``(kept indices, least-squares scale)`` of one selection over ``x_hat (m, C)``."""
    if criterion.startswith("thinet"):
        method = {"thinet": "greedy", "thinet_stepwise": "stepwise",
                  "thinet_stepwise_exact": "stepwise_exact"}[criterion]
        kept = select_channels(x_hat, keep, method)
        return kept, least_squares_scale(x_hat, x_hat.sum(1), kept)
    scores = np.asarray(scores_fn())
    kept = np.sort(np.argsort(-scores)[:keep]).astype(np.int32)
    return kept, jnp.ones(len(kept))


def _prune_into_head(model, meta, pair, images, ratio, criterion, samples_per_image, seed):
    """Prune the last conv against the head's first FC layer: its input is the ``(N, S, C)``
    feature map (``model.features``) and its kernel reshapes to ``(S, C, out)``, i.e. a
    VALID ``(1, S)`` conv over a ``(N, 1, S, C)`` input, so the conv contributions apply."""
    _, producer = _find(model, pair.producer)
    _check_prunable(producer.conv.spec)
    f = _eval_batches(model, images, lambda m, x: m.features(x))
    n, s, c = f.shape
    fc = model.head[0]
    w = fc.kernel[...].reshape(s, c, -1)
    key = _layer_key(seed, pair.producer)
    keep = keep_count(c, ratio)
    x_hat = None
    if criterion.startswith("thinet"):
        img, _, _, oc = sample_positions(key, n, (1, 1), w.shape[-1], samples_per_image)
        zeros = jnp.zeros_like(img)
        x_hat = ops.contributions(f[:, None], w[None], img, zeros, zeros, oc, padding="VALID")
    scores = lambda: _scores(criterion, producer, f[:, None], key)
    kept, scale = _select(criterion, x_hat, keep, scores)

    def head_inputs(new, errors):
        k = w[:, kept, :] * jnp.asarray(scale).astype(w.dtype)[None, :, None]
        new.head[0].kernel[...] = k.reshape(-1, k.shape[-1])
        if fc.bias is not None:
            new.head[0].bias[...] = fc.bias[...]

    return _rebuild(model, meta, pair, producer, kept, head_inputs)


def _rebuild(model, meta, pair, producer, kept, consumer_inputs):
    """The smaller model: ``pair.producer`` keeps the filters ``kept`` (with their bias and
    BN), ``consumer_inputs(new, errors)`` fills the consumer, everything else is copied.
    Returns ``(new_model, new_meta, kept)``."""
    new_meta = _shrunk_meta(meta, pair, len(kept))
    new = export.build(new_meta, dtype=getattr(producer.conv, "dtype", None))
    export.copy_matching(new, model)
    _, nprod = _find(new, pair.producer)
    errors: dict[str, float] = {}
    _prune_outputs(producer.conv, nprod.conv, kept, errors)
    if nprod.conv.bias is not None:
        nprod.conv.bias[...] = producer.conv.bias[...][kept]
    if getattr(nprod, "bn", None) is not None:
        for attr in ("scale", "bias", "mean", "var"):
            if getattr(producer.bn, attr) is not None:  # a BatchNorm may have no scale
                getattr(nprod.bn, attr)[...] = getattr(producer.bn, attr)[...][kept]
    consumer_inputs(new, errors)
    if errors:
        new_meta = dict(new_meta, projection_error=errors)
    return new, new_meta, kept


def _check_prunable(spec) -> None:
    where = f"ThiNet: layer {spec.name!r}"
    if spec.conv_kind.learns_locations:
        raise ValueError(f"{where} is {spec.kind.upper()}: freeze its locations first "
                         f"(fsjax.nn.freeze_dfs, or config.locations.freeze_epoch), then it "
                         f"prunes as an FS layer")
    if spec.feature_group_count != 1:
        raise ValueError(f"{where} is a grouped conv (feature_group_count="
                         f"{spec.feature_group_count}); ThiNet prunes ungrouped convs")


def _prune_outputs(old, new, kept, errors: dict) -> None:
    """Layer i loses the filters not in ``kept``: a layer whose kind slices its stored form
    (KS/WKSC: shared kernel and per-pair weights) keeps it, others get the sliced dense
    kernel, projected."""
    sliced = (old.spec.conv_kind.slice_outputs(old.spec, old.stored_arrays(), kept)
              if new.spec.kind == old.spec.kind else None)
    if sliced is not None:
        new.set_stored(sliced)
        return
    _set_kernel(new, old.dense_kernel()[..., kept], errors)


def _prune_inputs(old, new, kept, kept_groups, scale, errors: dict) -> None:
    """Layer i+1 loses the input channels not in ``kept`` and rescales the others by the
    least-squares ``scale`` (one per kept channel, or per kept group of a KS/WKSC layer, where
    it is folded into that group's shared kernel)."""
    scale = jnp.asarray(scale)
    sliced = (old.spec.conv_kind.slice_inputs(old.spec, old.stored_arrays(), kept, kept_groups,
                                              scale)
              if new.spec.kind == old.spec.kind else None)
    if sliced is not None:
        new.set_stored(sliced)
        return
    dense = old.dense_kernel()
    per_channel = jnp.repeat(scale, len(kept) // len(kept_groups))
    _set_kernel(new, dense[:, :, kept, :] * per_channel.astype(dense.dtype)[None, None, :, None],
                errors)


def _set_kernel(layer, dense, errors: dict) -> None:
    """Give a rebuilt layer the pruned dense kernel: its kind's least-squares projection
    (the kernel itself for a dense layer; an FS layer's summary at the same compression and
    the new length; a KS/WKSC layer's shared kernel, weights 1), recording for a compressed
    layer the relative error ``||materialised - dense|| / ||dense||`` in ``errors``."""
    layer.set_stored(layer.spec.conv_kind.project(layer.spec, dense))
    if not layer.spec.conv_kind.compressed:
        return
    err = jnp.linalg.norm(layer.dense_kernel() - dense) / jnp.maximum(jnp.linalg.norm(dense),
                                                                       1e-30)
    errors[layer.spec.name] = float(err)


def _shrunk_meta(meta, pair, keep):
    kw = dict(meta.get("model_kw", {}))
    model = export.build(meta)
    if pair.slot[0] == "widths":  # one per conv of model.layers (VGG-16, airbench)
        widths = [x.conv.spec.out_features for x in model.layers]
        widths[pair.slot[1]] = keep
        kw["widths"] = widths
    else:
        mids = kw.get("mid_widths") or [
            [getattr(b, f"conv{j + 1}").conv.spec.out_features for j in range(b.n_mid)]
            for b in model.blocks]
        mids = [list(m) for m in mids]
        mids[pair.slot[1]][pair.slot[2]] = keep
        kw["mid_widths"] = mids
    meta = dict(meta, model_kw=kw)
    meta.pop("layers", None)
    return meta


def published_architecture(name: str) -> dict:
    """Model metadata of the published ThiNet ImageNet architectures (no data needed).

    VGG-16: ``vgg16`` (the original, FC head), ``vgg16_thinet_conv`` (50% of conv1_1..conv4_3
    filters pruned; the train-from-scratch row has the same architecture),
    ``vgg16_thinet_gap`` (ThiNet-Conv with the FC layers replaced by global average pooling
    and one FC) and ``vgg16_thinet_tiny`` (25% of conv1_1..conv5_2 and 50% of conv5_3 kept,
    GAP head), as in the authors' released prototxts. ResNet-50 (Caffe stride)
    ThiNet-70/50/30 (30/50/70% of branch2a/2b filters pruned).
    """
    vgg = dict(model="vgg16", num_classes=1000, conv=dict(kind="dense"))
    if name == "vgg16":
        return dict(vgg, model_kw=dict(variant="imagenet"))
    if name.startswith("vgg16_") and name[6:] in VGG16_TARGETS:
        t = VGG16_TARGETS[name[6:]]
        kw = dict(variant="imagenet", widths=target_widths(name[6:]))
        return dict(vgg, model_kw=dict(kw, head=t["head"]) if t["head"] else kw)
    ratios = {"resnet50_thinet70": 0.3, "resnet50_thinet50": 0.5, "resnet50_thinet30": 0.7}
    if name in ratios:
        base = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
        mids = [[keep_count(w, ratios[name])] * 2 for w in base]
        return dict(model="resnet50", num_classes=1000, conv=dict(kind="dense"),
                    model_kw=dict(stem="imagenet", stride_on="1x1", mid_widths=mids))
    valid = ["vgg16"] + [f"vgg16_{t}" for t in VGG16_TARGETS] + list(ratios)
    raise ValueError(f"unknown published architecture {name!r}; valid: {', '.join(valid)}")


def paper_counts(model: nnx.Module, input_shape) -> tuple[int, float]:
    """(parameters as the ThiNet papers count them -- weights, BN included, conv/FC biases
    excluded --, FLOPs = 2 x MACs)."""
    from fsjax import report

    rows = report.layer_rows(model, input_shape)
    total = report.summarize(rows)
    biases = 0
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Linear) and node.bias is not None:
            biases += node.bias.shape[0]
        spec = getattr(node, "spec", None)
        if spec is not None and getattr(node, "bias", None) is not None:
            biases += node.bias.shape[0]
    return total["stored_params"] - biases, 2.0 * total["macs"]
