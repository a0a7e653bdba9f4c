"""Quantization of compressed models: post-training (PTQ), quantization-aware training (QAT)
and a real packed export format. The math is in :mod:`fsjax.ops.quant`.

What is quantized (as in the official FSNet code): every conv's *stored* weights (the FS
vector of FS/DFS layers, the kernel of dense/KS layers) and every FC kernel. Biases, BatchNorm,
DFS locations and WKSC channel weights stay float32.

Groups: ``per_channel=False`` uses one min/max range per tensor (the paper's default);
``True`` one per output filter (FS: the chunk of the FS between consecutive segment starts;
kernels: the output channel).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax import export, ops
from fsjax.nn.conv import ConvBase

__all__ = ["QuantConfig", "plan", "fake_quant_params", "quantize_model", "save_packed",
           "load_packed", "bits_by_layer", "effective_params"]

METHODS = ("uniform", "kmeans")


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    """``bits`` (2..8) for every quantized tensor; ``overrides`` ``{glob on layer name: bits}``
    (0 keeps a layer in float); ``method`` 'uniform' | 'kmeans'; ``per_channel``."""

    bits: int = 8
    per_channel: bool = False
    method: str = "uniform"
    overrides: tuple = ()
    quantize_fc: bool = True

    def __post_init__(self):
        ops.check_bits(self.bits, "quantization bits")
        if self.method not in METHODS:
            raise ValueError(f"quantization method must be one of {METHODS}; got {self.method!r}")
        if self.method == "kmeans" and self.per_channel:
            raise ValueError("k-means quantization uses one codebook per tensor; set "
                             "per_channel=False")
        ov = dict(self.overrides)
        for pat, b in ov.items():
            if b != 0:
                ops.check_bits(b, f"quantization bits for {pat!r}")
        object.__setattr__(self, "overrides", tuple(ov.items()))

    @staticmethod
    def from_config(c) -> QuantConfig:
        d = c.to_dict() if hasattr(c, "to_dict") else dict(c)
        return QuantConfig(bits=d["bits"], per_channel=d.get("per_channel", False),
                           method=d.get("method", "uniform"),
                           overrides=tuple(dict(d.get("overrides", {})).items()))

    def bits_for(self, name: str) -> int:
        b = self.bits
        for pat, v in self.overrides:
            if fnmatch.fnmatchcase(name, pat):
                b = v
        return b


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str            # layer name (report key)
    path: tuple          # path of the parameter in the pure-dict params tree
    bits: int
    groups: np.ndarray | None


def plan(model: nnx.Module, q: QuantConfig) -> list[Entry]:
    """The tensors of ``model`` to quantize, with their bits and groups."""
    out = []
    for path, node in nnx.iter_graph(model):
        if not path:
            continue
        path = tuple(path)
        name = ".".join(map(str, path))
        if isinstance(node, ConvBase):
            name = node.spec.name or name
            key = node.spec.conv_kind.param
            shape = node.spec.stored_kernel_shape
            groups = None
            if q.per_channel:
                groups = node.spec.conv_kind.quant_groups(node.spec, shape)
        elif isinstance(node, nnx.Linear) and q.quantize_fc:
            key = "kernel"
            groups = ops.channel_groups(node.kernel.shape) if q.per_channel else None
        else:
            continue
        bits = q.bits_for(name)
        if bits:
            out.append(Entry(name, path + (key,), bits, groups))
    return out


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _replace(tree, path, value):
    if len(path) == 1:
        return {**tree, path[0]: value}
    return {**tree, path[0]: _replace(tree[path[0]], path[1:], value)}


def fake_quant_params(params: dict, entries: list[Entry], method="uniform") -> dict:
    """QAT: the pure-dict ``params`` with every planned tensor fake-quantized (STE)."""
    for e in entries:
        params = _replace(params, e.path, ops.fake_quant(_get(params, e.path), e.bits, e.groups,
                                                         method))
    return params


def quantize_model(model: nnx.Module, q: QuantConfig) -> list[Entry]:
    """PTQ in place: planned tensors are replaced by their dequantized values."""
    entries = plan(model, q)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    qp = fake_quant_params(params, entries, q.method)
    export.load_state(model, jax.device_get(qp))
    return entries


def bits_by_layer(entries: list[Entry]) -> dict[str, int]:
    return {e.name: e.bits for e in entries}


def effective_params(model: nnx.Module, entries: list[Entry]) -> float:
    """FSNet paper's "effective parameters": quantized tensors count ``numel*bits/32 + 2``,
    everything else its size."""
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    total = sum(int(np.prod(np.shape(v))) for v in jax.tree.leaves(params))
    for e in entries:
        n = int(np.prod(np.shape(_get(params, e.path))))
        total += ops.effective_params(n, e.bits) - n
    return total


def save_packed(path: str, model: nnx.Module, meta: dict, q: QuantConfig) -> str:
    """Write ``<path>.fsq.npz``: packed integer codes + ranges/codebooks for planned tensors,
    float32 for the rest, and the metadata (JSON, inside the file). Returns the file path;
    its size on disk is the model size."""
    if any(isinstance(n, ConvBase) and n.spec.conv_kind.learns_locations
           for _, n in nnx.iter_graph(model)):
        raise ValueError("a packed export needs integer segment offsets: freeze DFS layers to "
                         "FS first (DFSConv.to_fs(), or config.locations.freeze_epoch)")
    entries = plan(model, q)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    arrays, qmeta = {}, []
    for i, e in enumerate(entries):
        x = jnp.asarray(_get(params, e.path), jnp.float32)
        if q.method == "uniform":
            codes, lo, step = ops.uniform_quantize(x, e.bits, e.groups)
            arrays[f"q{i}/lo"], arrays[f"q{i}/step"] = np.asarray(lo), np.asarray(step)
        else:
            codes, book = ops.kmeans_quantize(x, e.bits)
            arrays[f"q{i}/codebook"] = np.asarray(book)
        arrays[f"q{i}/codes"] = ops.pack_bits(np.asarray(codes), e.bits)
        qmeta.append(dict(name=e.name, path=list(e.path), bits=e.bits, shape=list(x.shape),
                          per_channel=e.groups is not None))
        params = _replace(params, e.path, None)
    floats = export.flatten({"params": _drop_none(params),
                             "stats": nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))})
    arrays.update(floats)
    full_meta = dict(meta, layers=export.describe(model), quant=dict(
        method=q.method, per_channel=q.per_channel, tensors=qmeta))
    full_meta = export.seal(arrays, full_meta)
    arrays["meta.json"] = np.frombuffer(json.dumps(full_meta).encode(), np.uint8)
    out = path + ".fsq.npz"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez_compressed(out + ".tmp.npz", **arrays)
    os.replace(out + ".tmp.npz", out)
    return out


def _drop_none(tree):
    return {k: _drop_none(v) if isinstance(v, dict) else v for k, v in tree.items()
            if v is not None}


def load_packed(file: str, dtype=None) -> tuple[nnx.Module, dict]:
    """Rebuild and dequantize a model written by :func:`save_packed`."""
    if not os.path.exists(file):
        raise FileNotFoundError(f"quantized export {file} is missing")
    arrays = export.read_npz(file)
    if "meta.json" not in arrays:
        raise ValueError(f"{file} is not a packed fsjax export (no metadata inside)")
    try:
        meta = json.loads(arrays.pop("meta.json").tobytes().decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: its metadata is not valid JSON ({e})") from None
    export.verify(file, arrays, meta)
    model = export.build(meta, dtype)
    tree = export.unflatten({k: v for k, v in arrays.items() if not k.startswith("q")})
    params = tree.get("params", {})
    q = meta["quant"]
    for i, t in enumerate(q["tensors"]):
        path = tuple(int(p) if isinstance(p, int) else p for p in t["path"])
        n = int(np.prod(t["shape"]))
        codes = ops.unpack_bits(arrays[f"q{i}/codes"], t["bits"], n).reshape(t["shape"])
        if q["method"] == "uniform":
            layer = _layer_at(model, path[:-1])
            groups = _groups_for(layer, path[-1], t["shape"]) if t["per_channel"] else None
            value = ops.uniform_dequantize(jnp.asarray(codes), jnp.asarray(arrays[f"q{i}/lo"]),
                                           jnp.asarray(arrays[f"q{i}/step"]), groups)
        else:
            value = ops.codebook_dequantize(jnp.asarray(codes),
                                            jnp.asarray(arrays[f"q{i}/codebook"]))
        params = _insert(params, path, np.asarray(value))
    export.load_state(model, params, tree.get("stats", {}), strict=file)
    return model, meta


def _layer_at(model, path):
    node = model
    for p in path:
        node = node[p] if isinstance(p, int) else getattr(node, p)
    return node


def _groups_for(layer, key, shape):
    if isinstance(layer, ConvBase) and key == layer.spec.conv_kind.param:
        return layer.spec.conv_kind.quant_groups(layer.spec, tuple(shape))
    return ops.channel_groups(tuple(shape))


def _insert(tree, path, value):
    tree = dict(tree)
    if len(path) == 1:
        tree[path[0]] = value
    else:
        tree[path[0]] = _insert(tree.get(path[0], {}), path[1:], value)
    return tree
