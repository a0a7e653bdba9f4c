"""ThiNet filter pruning of zoo models: pick the channels layer i+1 needs, drop the other
filters of layer i (and their BN channels), rescale layer i+1 by least squares, and rebuild a
physically smaller model.

Prunable pairs (the papers' choice): VGG-16 ``conv1_1 .. conv4_3`` (each with its next conv);
ResNet basic blocks: ``conv1`` (-> ``conv2``); bottlenecks: ``conv1`` and ``conv2``
(branch2a/2b, -> ``conv2``/``conv3``). Shortcuts and block outputs are never pruned.
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
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax import export, ops
from fsjax.ops.thinet import least_squares_scale, sample_positions, select_channels
from fsjax.spec import record_calls

__all__ = ["select_channels", "least_squares_scale", "Pair", "prunable_pairs", "prune_pair",
           "CRITERIA", "keep_count"]

CRITERIA = ("thinet", "thinet_stepwise", "thinet_stepwise_exact", "random", "weight_sum", "apoz")
VGG_DEFAULT = tuple(f"conv{s}_{i}" for s, n in ((1, 2), (2, 2), (3, 3), (4, 3))
                    for i in range(1, n + 1))


@dataclasses.dataclass(frozen=True)
class Pair:
    producer: str   # conv whose filters are removed
    consumer: str   # next conv, whose input channels are removed and rescaled
    slot: tuple     # where the producer's width lives in model_kw: ("widths", i) or
                    # ("mid_widths", block, j)


def prunable_pairs(meta: dict, layers=None) -> list[Pair]:
    """Pairs of ``meta['model']`` in forward order; ``layers`` filters producers (VGG default:
    conv1_1..conv4_3; ResNets: all eligible)."""
    name = meta["model"]
    if name == "vgg16":
        names = [f"conv{s}_{i}" for s, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                 for i in range(1, n + 1)]
        want = set(layers or VGG_DEFAULT)
        return [Pair(a, b, ("widths", i)) for i, (a, b) in enumerate(zip(names[:-1], names[1:], strict=True))
                if a in want]
    if not name.startswith("resnet"):
        raise ValueError(f"ThiNet pairs are defined for vgg16 and the ResNets; got {name!r}")
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


def _capture_input(model, images, name, batch=256):
    graphdef, state = nnx.split(model)

    @jax.jit
    def fwd(state, x):
        m = nnx.merge(graphdef, state)
        m.eval()
        with record_calls() as calls:
            m(x)
        for spec, xin, _ in calls:
            if spec.name == name:
                return xin
        raise ValueError(f"conv {name!r} was not called")

    return jnp.concatenate([fwd(state, images[i:i + batch]) for i in range(0, len(images), batch)])


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
    ppath, producer = _find(model, pair.producer)
    cpath, consumer = _find(model, pair.consumer)
    for layer in (producer.conv, consumer.conv):
        _check_prunable(layer.spec)
    x_in = _capture_input(model, images, pair.consumer)
    c = x_in.shape[-1]
    # a kernel-sharing consumer keeps whole groups (channels sharing one kernel), so the
    # pruned layer has valid groups again: select among groups of g channels
    g = c // consumer.conv.spec.groups if consumer.conv.spec.kind in ("ks", "wks") else 1
    keep = max(1, keep_count(c, ratio) // g)
    # a stable per-layer key (Python's str hash differs between processes)
    key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(pair.producer.encode()) % 2 ** 31)
    w_kernel = consumer.conv.dense_kernel()
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
        method = {"thinet": "greedy", "thinet_stepwise": "stepwise",
                  "thinet_stepwise_exact": "stepwise_exact"}[criterion]
        kept = select_channels(x_hat, keep, method)
        scale = least_squares_scale(x_hat, x_hat.sum(1), kept)
    else:
        scores = np.asarray(_scores(criterion, producer, x_in, key)).reshape(c // g, g).sum(1)
        kept = np.sort(np.argsort(-scores)[:keep]).astype(np.int32)
        scale = jnp.ones(len(kept))
    kept_groups, kept = kept, (kept[:, None] * g + np.arange(g)).reshape(-1).astype(np.int32)
    new_meta = _shrunk_meta(meta, pair, len(kept))
    new = export.build(new_meta, dtype=getattr(producer.conv, "dtype", None))
    export.copy_matching(new, model)
    _, nprod = _find(new, pair.producer)
    _, ncons = _find(new, pair.consumer)
    errors: dict[str, float] = {}
    _prune_outputs(producer.conv, nprod.conv, kept, errors)
    if nprod.conv.bias is not None:
        nprod.conv.bias[...] = producer.conv.bias[...][kept]
    if getattr(nprod, "bn", None) is not None:
        for attr in ("scale", "bias", "mean", "var"):
            getattr(nprod.bn, attr)[...] = getattr(producer.bn, attr)[...][kept]
    _prune_inputs(consumer.conv, ncons.conv, kept, kept_groups, scale, errors)
    if ncons.conv.bias is not None:
        ncons.conv.bias[...] = consumer.conv.bias[...]
    if errors:
        new_meta = dict(new_meta, projection_error=errors)
    return new, new_meta, kept


def _check_prunable(spec) -> None:
    where = f"ThiNet: layer {spec.name!r}"
    if spec.kind == "dfs":
        raise ValueError(f"{where} is DFS: freeze its locations first (fsjax.nn.freeze_dfs, or "
                         f"config.locations.freeze_epoch), then it prunes as an FS layer")
    if spec.feature_group_count != 1:
        raise ValueError(f"{where} is a grouped conv (feature_group_count="
                         f"{spec.feature_group_count}); ThiNet prunes ungrouped convs")


def _prune_outputs(old, new, kept, errors: dict) -> None:
    """Layer i loses the filters not in ``kept``: a KS/WKSC layer keeps its factored form
    (shared kernel and per-pair weights sliced), others get the sliced dense kernel."""
    if old.spec.kind in ("ks", "wks") and new.spec.kind == old.spec.kind:
        new.kernel[...] = old.kernel[...][..., kept]
        if old.alpha is not None:
            a = old.alpha[...]
            new.alpha[...] = a[:, kept] if a.ndim == 2 else a
        return
    _set_kernel(new, old.dense_kernel()[..., kept], errors)


def _prune_inputs(old, new, kept, kept_groups, scale, errors: dict) -> None:
    """Layer i+1 loses the input channels not in ``kept`` and rescales the others by the
    least-squares ``scale`` (one per kept channel, or per kept group of a KS/WKSC layer, where
    it is folded into that group's shared kernel)."""
    scale = jnp.asarray(scale)
    if old.spec.kind in ("ks", "wks") and new.spec.kind == old.spec.kind:
        k = old.kernel[...][:, :, kept_groups, :]
        new.kernel[...] = k * scale.astype(k.dtype)[None, None, :, None]
        if old.alpha is not None:
            new.alpha[...] = old.alpha[...][kept]
        return
    dense = old.dense_kernel()
    per_channel = jnp.repeat(scale, len(kept) // len(kept_groups))
    _set_kernel(new, dense[:, :, kept, :] * per_channel.astype(dense.dtype)[None, None, :, None],
                errors)


def _set_kernel(layer, dense, errors: dict) -> None:
    """Give a rebuilt layer the pruned dense kernel: directly, or for an FS layer (same
    compression, new length) as the least-squares summary, or for a KS/WKSC layer as the
    least-squares shared kernel (weights 1), recording the relative error
    ``||materialised - dense|| / ||dense||`` in ``errors``."""
    if layer.spec.kind in ("ks", "wks"):  # e.g. a dense layer whose new width now groups
        layer.kernel[...] = ops.ks_project(dense, layer.spec.groups,
                                           layer.spec.feature_group_count).astype(
            layer.kernel[...].dtype)
        if layer.alpha is not None:
            layer.alpha[...] = jnp.ones_like(layer.alpha[...])
    elif layer.spec.kind != "fs":
        layer.kernel[...] = dense.astype(layer.kernel[...].dtype)
        return
    else:
        fs = ops.fs_project(dense, layer.spec.length, index=layer.spec.fs_table())
        layer.fs[...] = fs.astype(layer.fs[...].dtype)
    err = jnp.linalg.norm(layer.dense_kernel() - dense) / jnp.maximum(jnp.linalg.norm(dense),
                                                                       1e-30)
    errors[layer.spec.name] = float(err)


def _shrunk_meta(meta, pair, keep):
    kw = dict(meta.get("model_kw", {}))
    model = export.build(meta)
    if pair.slot[0] == "widths":
        widths = list(kw.get("widths") or [x.conv.spec.out_features for x in model.layers])
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

    VGG-16 ThiNet-Conv (50% of conv1_1..conv4_3 filters pruned); ResNet-50 (Caffe stride)
    ThiNet-70/50/30 (30/50/70% of branch2a/2b filters pruned).
    """
    if name == "vgg16_thinet_conv":
        widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
        widths = [keep_count(w, 0.5) if i < 10 else w for i, w in enumerate(widths)]
        return dict(model="vgg16", num_classes=1000,
                    model_kw=dict(variant="imagenet", widths=widths), conv=dict(kind="dense"))
    ratios = {"resnet50_thinet70": 0.3, "resnet50_thinet50": 0.5, "resnet50_thinet30": 0.7}
    if name in ratios:
        base = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
        mids = [[keep_count(w, ratios[name])] * 2 for w in base]
        return dict(model="resnet50", num_classes=1000, conv=dict(kind="dense"),
                    model_kw=dict(stem="imagenet", stride_on="1x1", mid_widths=mids))
    raise ValueError(f"unknown published architecture {name!r}; valid: vgg16_thinet_conv, "
                     f"{', '.join(ratios)}")


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
