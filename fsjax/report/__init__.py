"""Compression report: per-layer stored vs dense-equivalent parameters, MACs and bytes.

Units: *parameters* are counts of stored numbers; *MACs* are multiply-accumulates per image
(1 MAC = 2 FLOPs); *bytes* are at the stored precision. ``macs`` counts what the layer
executes (an FS layer runs a dense conv on its materialised kernel, so the same MACs as dense);
``macs_reuse`` is the FSNet paper's theoretical count when products of an input pixel with an
FS entry are computed once and reused (not what XLA executes).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax.spec import ConvSpec, record_calls

__all__ = ["LayerRow", "layer_rows", "summarize", "format_table", "report"]


@dataclasses.dataclass
class LayerRow:
    name: str
    kind: str
    shape: str
    stored: int
    dense: int
    macs: int
    macs_reuse: int
    bytes: int
    bits: int = 32

    @property
    def compression(self) -> float:
        return self.dense / max(self.stored, 1)


def _conv_macs(spec: ConvSpec, in_shape, out_shape) -> tuple[int, int]:
    r = spec.rank
    pix_in = int(np.prod(in_shape[-r - 1:-1]))
    pix_out = int(np.prod(out_shape[-r - 1:-1]))
    return spec.conv_kind.macs(spec, pix_in, pix_out)


def _collect(model: nnx.Module, input_shape):
    graphdef, state = nnx.split(model)

    def fwd(state, x):
        m = nnx.merge(graphdef, state)
        m.eval()
        return m(x)

    with record_calls() as calls:
        jax.eval_shape(fwd, state, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    return calls


def _itemsize(model) -> int:
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return leaves[0].dtype.itemsize if leaves else 4


def layer_rows(model: nnx.Module, input_shape=(32, 32, 3), bits: dict | None = None):
    """One :class:`LayerRow` per conv call, then FC layers, then a BatchNorm row.

    ``bits``: optional ``{layer name: bits}`` for quantized layers (bytes = ceil(n*bits/8)).
    """
    bits = bits or {}
    size = _itemsize(model)
    rows, conv_params = [], 0
    for spec, xin, yout in _collect(model, input_shape):
        macs, reuse = _conv_macs(spec, xin.shape, yout.shape)
        stored = spec.stored_params()
        conv_params += stored
        b = bits.get(spec.name, size * 8)
        rows.append(LayerRow(spec.name, spec.kind, "x".join(map(str, spec.kernel_shape)),
                             stored, spec.dense_params(), macs, reuse, -(-stored * b // 8), b))
    fc_params = 0
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Linear):
            name = ".".join(map(str, path))
            n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(node, nnx.Param)))
            fc_params += n
            b = bits.get(name, size * 8)
            rows.append(LayerRow(name, "fc", f"{node.in_features}x{node.out_features}", n, n,
                                 node.in_features * node.out_features,
                                 node.in_features * node.out_features, -(-n * b // 8), b))
    total = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    other = total - conv_params - fc_params
    if other:
        rows.append(LayerRow("batchnorm+other", "bn", "-", other, other, 0, 0, other * size,
                             size * 8))
    return rows


def summarize(rows) -> dict:
    stored = sum(r.stored for r in rows)
    dense = sum(r.dense for r in rows)
    return dict(stored_params=stored, dense_params=dense, compression=dense / max(stored, 1),
                macs=sum(r.macs for r in rows), macs_reuse=sum(r.macs_reuse for r in rows),
                bytes=sum(r.bytes for r in rows))


def _fmt(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def format_table(rows, totals: dict | None = None) -> str:
    totals = totals or summarize(rows)
    head = ("layer", "kind", "kernel (HWIO)", "stored", "dense-eq", "rho", "MACs",
            "MACs reuse*", "bits", "bytes")
    body = [(r.name, r.kind, r.shape, f"{r.stored:,}", f"{r.dense:,}", f"{r.compression:.2f}",
             _fmt(r.macs), _fmt(r.macs_reuse), str(r.bits), _fmt(r.bytes)) for r in rows]
    body.append(("TOTAL", "", "", f"{totals['stored_params']:,}", f"{totals['dense_params']:,}",
                 f"{totals['compression']:.2f}", _fmt(totals["macs"]),
                 _fmt(totals["macs_reuse"]), "", _fmt(totals["bytes"])))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
    notes = ("MACs: multiply-accumulates per image executed (1 MAC = 2 FLOPs); "
             "*MACs reuse: FSNet's theoretical product-reuse count, not executed. "
             "stored/dense-eq: parameter counts (BN and FC included); bytes at stored precision.")
    return "\n".join([line(head), sep, *map(line, body[:-1]), sep, line(body[-1]), notes])


def report(model: nnx.Module, input_shape=(32, 32, 3), bits=None) -> tuple[str, dict]:
    """Return the formatted table and the totals dict for ``model`` at ``input_shape`` (HWC)."""
    rows = layer_rows(model, input_shape, bits)
    totals = summarize(rows)
    return format_table(rows, totals), totals


def location_rows(model: nnx.Module) -> list[dict]:
    """Learned DFS locations per layer: how far they moved from the FSNet layout (in FS
    entries, circular distance) and how much neighbouring filters overlap.

    ``overlap``: mean fraction of a filter shared with the next filter's segment (rounded
    locations); FSNet's uniform layout gives ``max(0, 1 - L/(cout*K))``.
    """
    from fsjax.nn import DFSConv

    rows = []
    for path, node in nnx.iter_graph(model):
        if not isinstance(node, DFSConv):
            continue
        s = node.spec
        L = s.length
        k = s.fan_in
        loc = np.asarray(jax.device_get(node.location_values()), np.float64)
        init = s.np_offsets().astype(np.float64)
        d = np.abs(loc - init) % L
        moved = np.minimum(d, L - d)
        r = np.sort(np.floor(loc + 0.5) % L)
        gaps = np.diff(np.concatenate([r, r[:1] + L]))
        overlap = np.clip(1 - gaps / k, 0, 1)
        rows.append(dict(name=s.name or ".".join(map(str, path)), length=L, filters=len(loc),
                         mean_moved=float(moved.mean()), max_moved=float(moved.max()),
                         overlap=float(overlap.mean()),
                         fsnet_overlap=float(max(0.0, 1 - L / (len(loc) * k)))))
    return rows


def format_locations(rows) -> str:
    if not rows:
        return "no DFS layers"
    head = f"{'layer':<28}{'L':>8}{'filters':>8}{'mean moved':>12}{'max moved':>11}" \
           f"{'overlap':>9}{'FSNet':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:<28}{r['length']:>8}{r['filters']:>8}{r['mean_moved']:>12.2f}"
                     f"{r['max_moved']:>11.2f}{r['overlap']:>9.3f}{r['fsnet_overlap']:>7.3f}")
    lines.append("moved: distance from the FSNet layout in FS entries; overlap: mean fraction "
                 "of a filter shared with the next segment.")
    return "\n".join(lines)
