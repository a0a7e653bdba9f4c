"""Model metadata, rebuild, and the compressed export format.

``meta`` (JSON) = ``{"model", "model_kw", "conv" (ConvFactory options), "num_classes",
"layers": [ConvSpec dicts, DFS layers with their learned "locations"], ...}``: enough to rebuild
the architecture, including frozen DFS layers (FS with learned offsets) and pruned widths.

The export writes the *stored* parameters only (FS vectors, shared kernels, locations, BN and
FC), never materialised kernels: ``<path>.npz`` + ``<path>.json``, each written to a temporary
file and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import jax
import numpy as np
from flax import nnx

from fsjax import models
from fsjax.nn.conv import ConvBase, layer_class, like_conv
from fsjax.nn.convert import set_at
from fsjax.spec import ConvSpec

__all__ = ["describe", "build", "apply_layer_meta", "copy_matching", "save", "load",
           "load_state", "flatten", "unflatten", "checksum", "seal", "verify", "read_npz"]


def conv_layers(model: nnx.Module):
    """``(path, layer)`` for every fsjax conv in ``model``."""
    return [(tuple(p), n) for p, n in nnx.iter_graph(model) if isinstance(n, ConvBase) and p]


def describe(model: nnx.Module) -> list[dict]:
    out = []
    for path, layer in conv_layers(model):
        d = layer.spec.to_dict()
        d["path"] = [p if isinstance(p, int) else str(p) for p in path]
        if layer.spec.conv_kind.learns_locations:
            d["locations"] = np.asarray(jax.device_get(layer.location_values())).tolist()
            d["location_mode"] = layer.location_mode
        out.append(d)
    return out


def apply_layer_meta(model: nnx.Module, layers: list[dict]) -> None:
    """Make ``model``'s conv layers match recorded specs (frozen DFS -> FS with its offsets,
    custom FS offsets). Parameters are re-created; load them afterwards."""
    current = {tuple(p): layer for p, layer in conv_layers(model)}
    for d in layers:
        path = tuple(d["path"])
        layer = current.get(path)
        spec = ConvSpec.from_dict({k: v for k, v in d.items()
                                   if k not in ("path", "locations", "location_mode")})
        if layer is None:
            raise ValueError(f"layer {'.'.join(map(str, path))} in the metadata is not in the "
                             f"rebuilt model; the metadata belongs to another architecture")
        if layer.spec == spec:
            continue
        if layer.spec.conv_kind.frozen == spec.kind:  # e.g. a frozen DFS layer: FS, its offsets
            new = like_conv(layer_class(spec.kind), layer, None, **spec.geometry(),
                            name=spec.name, **spec.conv_kind.spec_options(spec))
            set_at(model, path, new)
        else:
            raise ValueError(f"layer {spec.name!r}: metadata says {spec.kind} {spec.kernel_shape}"
                             f" but the rebuilt model has {layer.spec.kind} "
                             f"{layer.spec.kernel_shape}")


def build(meta: dict, dtype=None) -> nnx.Module:
    """Rebuild the architecture described by ``meta`` (parameters freshly initialised)."""
    conv = dict(meta.get("conv", {}))
    conv["overrides"] = dict(conv.get("overrides", {}))
    factory = models.ConvFactory(dtype=dtype, **conv)
    model = models.create(meta["model"], num_classes=meta["num_classes"], conv=factory,
                          **meta.get("model_kw", {}))
    apply_layer_meta(model, meta.get("layers", []))
    return model


def flatten(tree, prefix="") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = np.asarray(jax.device_get(v))
    return out


def unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, v in flat.items():
        node = out
        parts = key.split("/")
        for p in parts[:-1]:
            node = node.setdefault(int(p) if p.isdigit() else p, {})
        last = parts[-1]
        node[int(last) if last.isdigit() else last] = v
    return out


def checksum(arrays: dict, meta: dict) -> str:
    """SHA-256 over every array (name, dtype, shape, bytes, in name order) and the metadata
    (canonical JSON, without its ``sha256`` field)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True).encode())
    return h.hexdigest()


def seal(arrays: dict, meta: dict) -> dict:
    """``meta`` with the arrays' manifest (shape, dtype) and :func:`checksum`."""
    meta = dict(meta, arrays={k: dict(shape=list(np.shape(v)), dtype=np.asarray(v).dtype.str)
                              for k, v in sorted(arrays.items())})
    return dict(meta, sha256=checksum(arrays, meta))


def read_npz(file: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (no pickles); a file that is not one is an error naming it."""
    try:
        with np.load(file, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("not an .npz archive")
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        why = "not an .npz archive" if "pickle" in str(e) else (
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated or corrupt'}")
        raise ValueError(f"{file} is not a readable fsjax export ({why})") from None


def verify(file: str, arrays: dict, meta: dict) -> None:
    """Every array present with the recorded shape and dtype, nothing extra, and the checksum
    over arrays and metadata intact; otherwise ValueError naming the file and the array."""
    manifest = meta.get("arrays")
    if manifest is None or "sha256" not in meta:
        raise ValueError(f"{file}: no checksum in its metadata (written by an older fsjax, or "
                         f"edited); re-export it")
    for k, spec in manifest.items():
        if k not in arrays:
            raise ValueError(f"{file}: array {k!r} is missing")
        a = arrays[k]
        if list(a.shape) != spec["shape"] or a.dtype.str != spec["dtype"]:
            raise ValueError(f"{file}: array {k!r} is {a.dtype.str}{list(a.shape)}, the metadata "
                             f"says {spec['dtype']}{spec['shape']}")
    extra = sorted(set(arrays) - set(manifest))
    if extra:
        raise ValueError(f"{file}: array {extra[0]!r} is not in its metadata")
    if checksum(arrays, meta) != meta["sha256"]:
        raise ValueError(f"{file}: checksum mismatch - the arrays or the metadata were changed "
                         f"after export")


def save(path: str, model: nnx.Module, meta: dict) -> tuple[str, str]:
    """Write the stored parameters (``.npz``) and metadata (``.json``, with the arrays'
    manifest and a SHA-256 over both); returns both paths."""
    meta = dict(meta, layers=describe(model))
    arrays = flatten({"params": nnx.to_pure_dict(nnx.state(model, nnx.Param)),
                      "stats": nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))})
    meta = seal(arrays, meta)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    npz, js = path + ".npz", path + ".json"
    np.savez(npz + ".tmp.npz", **arrays)
    with open(js + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(npz + ".tmp.npz", npz)
    os.replace(js + ".tmp", js)
    return npz, js


def load_state(model: nnx.Module, params: dict, stats: dict | None = None,
               strict: str | None = None) -> nnx.Module:
    """Copy pure-dict ``params``/``stats`` into ``model`` (shapes must match). ``strict`` (a
    file name for the message): every parameter and statistic of the model must be given,
    with its shape."""
    if strict:
        for kind, given, name in ((nnx.Param, params, "params"), (nnx.BatchStat, stats or {},
                                                                  "stats")):
            want = flatten(nnx.to_pure_dict(nnx.state(model, kind)), name + "/")
            have = flatten(given, name + "/")
            for k, v in want.items():
                if k not in have:
                    raise ValueError(f"{strict}: the model needs array {k!r}, which is missing")
                if np.shape(have[k]) != np.shape(v):
                    raise ValueError(f"{strict}: array {k!r} has shape {np.shape(have[k])}, the "
                                     f"model built from the metadata needs {np.shape(v)}")
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    if stats:
        s = nnx.state(model, nnx.BatchStat)
        nnx.replace_by_pure_dict(s, stats)
        nnx.update(model, s)
    return model


def copy_matching(dst: nnx.Module, src: nnx.Module) -> None:
    """Copy every parameter and batch statistic of ``src`` into ``dst`` where the path and shape
    match (BN, FC, biases, same-kind convs)."""
    for kind in (nnx.Param, nnx.BatchStat):
        d = nnx.to_pure_dict(nnx.state(dst, kind))
        s = nnx.to_pure_dict(nnx.state(src, kind))

        def merge(d, s):
            out = {}
            for k, v in d.items():
                if isinstance(v, dict):
                    out[k] = merge(v, s.get(k, {}) if isinstance(s.get(k), dict) else {})
                elif k in s and not isinstance(s[k], dict) and np.shape(s[k]) == np.shape(v):
                    out[k] = s[k]
                else:
                    out[k] = v
            return out

        state = nnx.state(dst, kind)
        nnx.replace_by_pure_dict(state, merge(d, s))
        nnx.update(dst, state)


def load(path: str, dtype=None) -> tuple[nnx.Module, dict]:
    """Rebuild a model from :func:`save` output alone; returns ``(model, meta)``."""
    js, npz = path + ".json", path + ".npz"
    for f in (js, npz):
        if not os.path.exists(f):
            raise FileNotFoundError(f"export file {f} is missing")
    try:
        with open(js) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{js} is not valid JSON ({e})") from None
    arrays = read_npz(npz)
    verify(js, arrays, meta)
    model = build(meta, dtype)
    tree = unflatten(arrays)
    load_state(model, tree.get("params", {}), tree.get("stats", {}), strict=js)
    return model, meta
