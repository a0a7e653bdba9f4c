"""Import checkpoints of the official FSNet PyTorch code (SDL-ASU/FSNet) into the zoo's ResNet.

The official CIFAR ResNets (``models/resnet_cifar.py``: ``resnet_cifar_fm{20,...,1202}`` with
``BasicBlock_cifar_dws``, ``resnet_cifar_fm164`` with ``Bottleneck_cifar_dws``, and their dense
counterparts ``resnet{N}_cifar``) are the zoo's CIFAR ResNets with 'B' shortcuts, PyTorch's
symmetric padding (``torch_padding=True``) and, for each ``Conv2d_dws``, an FS layer in the
official layout (``layout='official'``: its filter starts, see
:func:`fsjax.ops.fs_official_index`). No PyTorch is needed: pass the state dict as NumPy
arrays::

    sd = torch.load("checkpoint.pth.tar", map_location="cpu")["state_dict"]
    model, meta = load_official_resnet({k: v.numpy() for k, v in sd.items()})
    logits = model(images_nhwc)          # eval mode; NHWC images, normalised as in training
    fsjax.export.save("runs/official", model, meta)   # optional: fsjax's own format

Names map as ``conv1/bn1 -> stem``, ``layer{s}.{b}.conv{j}/bn{j} -> blocks[...].conv{j}``,
``layer{s}.{b}.downsample.{0,1} -> blocks[...].shortcut.proj``, ``fc -> fc`` (transposed);
a ``module.`` prefix (DataParallel) is dropped. Every array must be used and every parameter
given, or a ValueError names the key.
"""

from __future__ import annotations

import math
import re

import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax.models import MODELS, ConvFactory, create

__all__ = ["load_official_resnet", "infer_compression"]

_BN = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def _strip(state_dict) -> dict[str, np.ndarray]:
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    out = {}
    for k, v in state_dict.items():
        k = k[len("module."):] if k.startswith("module.") else k
        out[k] = np.asarray(v)
    return out


def _architecture(sd: dict) -> tuple[str, int, list[int]]:
    """(block kind, blocks per stage, stage widths) from the state dict's names and shapes."""
    blocks: dict[int, set[int]] = {}
    for k in sd:
        m = re.match(r"layer(\d+)\.(\d+)\.", k)
        if m:
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if sorted(blocks) != [1, 2, 3]:
        raise ValueError(f"not an official CIFAR ResNet state dict: expected stages layer1..3; "
                         f"found {sorted(blocks) or 'none'}")
    counts = {s: len(b) for s, b in blocks.items()}
    if len(set(counts.values())) != 1 or any(b != set(range(len(b))) for b in blocks.values()):
        raise ValueError(f"official CIFAR ResNets have the same number of blocks in each "
                         f"stage; found {counts}")
    block = "bottleneck" if any(k.startswith("layer1.0.conv3.") for k in sd) else "basic"
    widths = []
    for s in (1, 2, 3):
        key = f"layer{s}.0.bn1.weight"
        if key not in sd:
            raise ValueError(f"the state dict has no {key!r}")
        widths.append(int(sd[key].shape[0]))
    return block, counts[1], widths


def _convs(block: str, n: int, widths: list[int], stem: int, in_channels: int):
    """``(official name, zoo layer name, zoo module path, kernel shape HWIO)`` of every conv,
    plus the BN and FC names, in model order."""
    out = [("conv1", "stem", ("stem",), (3, 3, in_channels, stem), "bn1")]
    cin, exp = stem, (4 if block == "bottleneck" else 1)
    for s, w in enumerate(widths, 1):
        for b in range(n):
            stride = 2 if s > 1 and b == 0 else 1
            pre = f"layer{s}.{b}"
            idx = (s - 1) * n + b
            mids = [(3, cin, w), (3, w, w)] if exp == 1 else [(1, cin, w), (3, w, w), (1, w, 4 * w)]
            for j, (k, ci, co) in enumerate(mids, 1):
                out.append((f"{pre}.conv{j}", f"stage{s}.block{b}.conv{j}",
                            ("blocks", idx, f"conv{j}"), (k, k, ci, co), f"{pre}.bn{j}"))
            if stride != 1 or cin != w * exp:
                out.append((f"{pre}.downsample.0", f"stage{s}.block{b}.shortcut",
                            ("blocks", idx, "shortcut", "proj"), (1, 1, cin, w * exp),
                            f"{pre}.downsample.1"))
            cin = w * exp
    return out, cin


def infer_compression(lengths: dict[str, tuple[int, int]]) -> float:
    """The roundest ratio rho with ``int(total / rho) == L`` for every FS layer (the official
    ``reduced_weights``), from ``{name: (total dense weights, L)}``. ValueError if none."""
    lo = max(t / (L + 1) for t, L in lengths.values())
    hi = min(t / L for t, L in lengths.values())
    for digits in range(7):
        r = math.floor(hi * 10 ** digits) / 10 ** digits
        if r > lo and r >= 1 and all(int(t / r) == L for t, L in lengths.values()):
            return r
    raise ValueError(f"no single compression ratio gives the summaries' lengths "
                     f"({dict(list(lengths.items())[:4])} ...); the official code uses one ratio "
                     f"for all layers")


def load_official_resnet(state_dict, *, compression: float | None = None,
                         in_channels: int = 3) -> tuple[nnx.Module, dict]:
    """A zoo ResNet holding an official FSNet CIFAR ResNet's weights, in eval mode.

    Args:
      state_dict: ``{name: array}`` of ``resnet_cifar_fm*`` / ``resnet*_cifar`` (NumPy arrays,
        or anything ``np.asarray`` reads; a checkpoint dict with a ``'state_dict'`` entry is
        accepted too).
      compression: the ratio the checkpoint was trained with; default: inferred from the
        summaries' lengths (:func:`infer_compression`). Checked against every layer.
      in_channels: image channels (3; not recorded in a summary).
    Returns:
      ``(model, meta)``; ``meta`` rebuilds the architecture (:func:`fsjax.export.build`) and
      goes with :func:`fsjax.export.save`.
    """
    sd = _strip(state_dict)
    block, n, widths = _architecture(sd)
    if "bn1.weight" not in sd or "fc.weight" not in sd:
        raise ValueError("not an official CIFAR ResNet state dict: 'bn1.weight' or 'fc.weight' "
                         "is missing")
    stem = int(sd["bn1.weight"].shape[0])
    num_classes = int(sd["fc.weight"].shape[0])
    convs, feat = _convs(block, n, widths, stem, in_channels)
    fs_len, dense = {}, []
    for off, zoo, _, shape, _ in convs:
        if f"{off}.filtermap" in sd:
            fs_len[off] = (int(np.prod(shape)), int(sd[f"{off}.filtermap"].shape[0]))
        elif f"{off}.weight" in sd:
            dense.append(zoo)
        else:
            raise ValueError(f"the state dict has neither {off}.filtermap nor {off}.weight")
    if fs_len:
        if compression is None:
            compression = infer_compression(fs_len)
        for off, (total, L) in fs_len.items():
            if int(total / compression) != L:
                raise ValueError(f"{off}.filtermap has {L} entries; compression {compression} "
                                 f"gives int({total}/{compression}) = {int(total / compression)}")
    per = 9 if block == "bottleneck" else 6
    depth = per * n + 2
    name = "resnet164" if block == "bottleneck" else "resnet56"
    kw = dict(widths=tuple(widths), depth=depth, torch_padding=True, in_channels=in_channels)
    if stem != widths[0]:
        kw["stem_width"] = stem
    conv = dict(kind="fs" if fs_len else "dense", compression=float(compression or 4.0),
                layout="official", min_params=0, overrides={z: "dense" for z in dense})
    if f"resnet{depth}" in MODELS and (block == "bottleneck") == (depth == 164):
        name = f"resnet{depth}"
    model = create(name, num_classes=num_classes, conv=ConvFactory(**conv), **kw)
    _load(model, sd, convs, feat)
    model.eval()
    meta = dict(model=name, model_kw=kw, conv=conv, num_classes=num_classes,
                source=f"official FSNet PyTorch state dict ({block} ResNet-{depth})")
    return model, meta


def _node(model, path):
    for p in path:
        model = model[p] if isinstance(p, int) else getattr(model, p)
    return model


def _put(var, value, key):
    value = np.asarray(value)
    if value.shape != tuple(var[...].shape):
        raise ValueError(f"{key} has shape {value.shape}; the model needs "
                         f"{tuple(var[...].shape)}")
    var[...] = jnp.asarray(value, var[...].dtype)


def _load(model, sd: dict, convs, feat: int) -> None:
    used = set()

    def take(key):
        if key not in sd:
            raise ValueError(f"the state dict has no {key!r}")
        used.add(key)
        return sd[key]

    for off, _, path, _, bn_name in convs:
        unit = _node(model, path)
        layer = unit.conv
        if layer.spec.conv_kind.param == "fs":
            _put(layer.fs, take(f"{off}.filtermap"), f"{off}.filtermap")
        else:  # PyTorch OIHW -> HWIO
            _put(layer.kernel, np.transpose(take(f"{off}.weight"), (2, 3, 1, 0)), f"{off}.weight")
        for t, f in _BN.items():
            _put(getattr(unit.bn, f), take(f"{bn_name}.{t}"), f"{bn_name}.{t}")
        used.add(f"{bn_name}.num_batches_tracked")
    _put(model.fc.kernel, np.transpose(take("fc.weight")), "fc.weight")
    _put(model.fc.bias, take("fc.bias"), "fc.bias")
    left = sorted(set(sd) - used)
    if left:
        raise ValueError(f"{len(left)} array(s) of the state dict have no place in the "
                         f"{feat}-feature ResNet: {', '.join(left[:6])}")
