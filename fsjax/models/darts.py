"""DARTS search space (Liu et al. 2019) with every conv built by the conv factory, so the
supernet can be made of DFSConv layers (DFSNet NAS).

``DartsSearch``: the supernet (normal/reduction cells, 4 intermediate nodes, 8 candidate ops per
edge mixed by softmax(alpha)); ``alpha_normal``/``alpha_reduce`` are :class:`ArchParam`.
Options against DARTS's cost and its collapse to parameter-free ops:

- ``partial_channels=K`` (PC-DARTS, Xu et al. 2020): each edge sends 1/K of its channels
  through the candidate ops and the rest past them (max-pooled on reduction edges), then
  shuffles the channels; the ops are K times narrower, so a step costs about 1/K.
- ``edge_norm`` (PC-DARTS): per node, softmax(beta) over its incoming edges weights them
  (``beta_normal``/``beta_reduce``, :class:`ArchParam`); the derivation ranks edges by
  op weight x edge weight.
- ``aux_skip`` (DARTS-, Chu et al. 2021): a call argument, the weight of an extra identity
  added to every stride-1 edge; the trainer decays it from 1 to 0 over the search
  (``config.nas.aux_skip``), so skip connections no longer need to win through alpha.
- ``free_dropout=p`` (P-DARTS's operation-level dropout, Chen et al. 2019, there on skips
  only): dropout of rate ``p`` on the output of every parameter-free candidate (skips and
  pooling) while training, so the supernet cannot lean on them while its convs are untrained.

``derive_genotype``: top-2 incoming edges per node, strongest non-'none' op, at most
``max_skips`` skip connections per cell (P-DARTS; None: no cap) and at most ``max_free``
parameter-free ops (skips and pooling) in the normal cell (P-DARTS's cap extended to pooling,
which the CPU search collapses to instead of skips).
``DartsEval``: the network of a genotype (cutout/aux head/drop path as in DARTS).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fsjax.models.layers import ConvFactory, batch_norm, classifier, max_pool
from fsjax.nn import BatchNorm, Dropout

__all__ = ["PRIMITIVES", "ArchParam", "DartsSearch", "DartsEval", "derive_genotype",
           "draw_genotype", "NODES", "EDGES", "channel_shuffle", "edge_softmax",
           "parametric_edges", "shared_edges"]

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
NODES = 4
EDGES = sum(2 + i for i in range(NODES))  # 14


class ArchParam(nnx.Param):
    """DARTS architecture logits (edges x ops)."""


def _bn(c, factory, rngs, affine):
    bn = batch_norm(c, factory, rngs)
    if not affine:
        bn = BatchNorm(c, momentum=0.9, epsilon=1e-5, use_bias=False, use_scale=False,
                       dtype=factory.dtype, rngs=rngs)
    return bn


class ReLUConvBN(nnx.Module):
    def __init__(self, f, name, cin, cout, k, stride, rngs, affine=True, dilation=1, groups=1):
        pad = dilation * (k - 1) // 2
        self.conv = f(name, cin, cout, k, strides=stride, padding=pad,
                      feature_group_count=groups, dilation=dilation, rngs=rngs)
        self.bn = _bn(cout, f, rngs, affine) if groups == 1 else None

    def __call__(self, x):
        y = self.conv(jax.nn.relu(x))
        return self.bn(y) if self.bn is not None else y


class SepConv(nnx.Module):
    def __init__(self, f, name, c, k, stride, rngs, affine):
        self.dw1 = ReLUConvBN(f, f"{name}.dw1", c, c, k, stride, rngs, affine, groups=c)
        self.pw1 = f(f"{name}.pw1", c, c, 1, rngs=rngs)
        self.bn1 = _bn(c, f, rngs, affine)
        self.dw2 = ReLUConvBN(f, f"{name}.dw2", c, c, k, 1, rngs, affine, groups=c)
        self.pw2 = f(f"{name}.pw2", c, c, 1, rngs=rngs)
        self.bn2 = _bn(c, f, rngs, affine)

    def __call__(self, x):
        x = self.bn1(self.pw1(self.dw1(x)))
        return self.bn2(self.pw2(self.dw2(x)))


class DilConv(nnx.Module):
    def __init__(self, f, name, c, k, stride, rngs, affine):
        self.dw = ReLUConvBN(f, f"{name}.dw", c, c, k, stride, rngs, affine, dilation=2,
                             groups=c)
        self.pw = f(f"{name}.pw", c, c, 1, rngs=rngs)
        self.bn = _bn(c, f, rngs, affine)

    def __call__(self, x):
        return self.bn(self.pw(self.dw(x)))


class FactorizedReduce(nnx.Module):
    def __init__(self, f, name, cin, cout, rngs, affine=True):
        self.a = f(f"{name}.a", cin, cout // 2, 1, strides=2, padding="VALID", rngs=rngs)
        self.b = f(f"{name}.b", cin, cout - cout // 2, 1, strides=2, padding="VALID", rngs=rngs)
        self.bn = _bn(cout, f, rngs, affine)

    def __call__(self, x):
        x = jax.nn.relu(x)
        y = jnp.concatenate([self.a(x), self.b(jnp.pad(x[:, 1:, 1:], ((0, 0), (0, 1), (0, 1),
                                                                       (0, 0))))], -1)
        return self.bn(y)


class Pool(nnx.Module):
    def __init__(self, kind, stride):
        self.kind, self.stride = kind, stride

    def __call__(self, x):
        s = (self.stride, self.stride)
        if self.kind == "max":
            return max_pool(x, (3, 3), s, "SAME")
        return nnx.avg_pool(x, window_shape=(3, 3), strides=s, padding="SAME", count_include_pad=False)


class PoolBN(nnx.Module):
    """A pooling op followed by a BatchNorm without scale or bias: DARTS's search puts one
    after every pooling candidate, so its output is on the convs' normalised scale (a max
    pool's is not: max of 9 values), and alpha compares the ops fairly."""

    def __init__(self, kind, stride, c, factory, rngs):
        self.pool = Pool(kind, stride)
        self.bn = _bn(c, factory, rngs, affine=False)

    def __call__(self, x):
        return self.bn(self.pool(x))


class Zero(nnx.Module):
    def __init__(self, stride):
        self.stride = stride

    def __call__(self, x):
        return jnp.zeros_like(x[:, :: self.stride, :: self.stride])


class Identity(nnx.Module):
    def __call__(self, x):
        return x


def make_op(prim, f, name, c, stride, rngs, affine, pool_bn=False):
    if prim == "none":
        return Zero(stride)
    if prim in ("max_pool_3x3", "avg_pool_3x3"):  # the search's ops are affine=False
        if pool_bn or not affine:
            return PoolBN(prim[:3], stride, c, f, rngs)
        return Pool(prim[:3], stride)
    if prim == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(f, name, c, c, rngs, affine)
    k = int(prim[-1])
    if prim.startswith("sep"):
        return SepConv(f, name, c, k, stride, rngs, affine)
    if prim.startswith("dil"):
        return DilConv(f, name, c, k, stride, rngs, affine)
    raise ValueError(f"unknown DARTS op {prim!r}; valid: {', '.join(PRIMITIVES)}")


class _Preprocess(nnx.Module):
    def __init__(self, f, name, c_pp, c_p, c, reduction_prev, rngs, affine):
        self.p0 = (FactorizedReduce(f, f"{name}.pre0", c_pp, c, rngs, affine) if reduction_prev
                   else ReLUConvBN(f, f"{name}.pre0", c_pp, c, 1, 1, rngs, affine))
        self.p1 = ReLUConvBN(f, f"{name}.pre1", c_p, c, 1, 1, rngs, affine)


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """``(..., C)`` -> ``(..., C)`` with channel ``g * (C / groups) + i`` moved to
    ``i * groups + g`` (PC-DARTS's shuffle after the partial-channel concat)."""
    *lead, c = x.shape
    return x.reshape(*lead, groups, c // groups).swapaxes(-1, -2).reshape(*lead, c)


class SearchCell(nnx.Module):
    def __init__(self, f, name, c_pp, c_p, c, reduction, reduction_prev, rngs,
                 primitives=PRIMITIVES, partial=1, free_dropout=0.0):
        if c % partial:
            raise ValueError(f"partial_channels={partial} must divide the cell's {c} channels")
        self.pre = _Preprocess(f, name, c_pp, c_p, c, reduction_prev, rngs, affine=False)
        self.reduction, self.partial = reduction, partial
        ops, strides = [], []
        for j in range(NODES):
            for i in range(2 + j):
                stride = 2 if reduction and i < 2 else 1
                ops.append(nnx.List([make_op(p, f, f"{name}.e{len(ops)}.{p}", c // partial,
                                             stride, rngs, False) for p in primitives]))
                strides.append(stride)
        self.edges = nnx.List(ops)
        self.strides = tuple(strides)
        self.free = tuple(p != "none" and not _parametric(p) for p in primitives)
        self.drop = Dropout(free_dropout) if free_dropout else None

    def _op(self, e, j, x):
        y = self.edges[e][j](x)
        return self.drop(y) if self.drop is not None and self.free[j] else y

    def _edge(self, e, h, weights, aux_skip):
        k = self.partial
        part = h[..., :h.shape[-1] // k] if k > 1 else h
        out = sum(weights[e, j] * self._op(e, j, part) for j in range(len(self.edges[e])))
        if k > 1:  # the other channels go past the ops
            rest = h[..., h.shape[-1] // k:]
            if self.strides[e] == 2:
                rest = max_pool(rest, (2, 2))
            out = channel_shuffle(jnp.concatenate([out, rest], -1), k)
        if aux_skip is not None and self.strides[e] == 1:
            out = out + aux_skip * h
        return out

    def __call__(self, s0, s1, weights, edge_weights=None, aux_skip=None):
        states = [self.pre.p0(s0), self.pre.p1(s1)]
        e = 0
        for j in range(NODES):
            acc = 0
            for i in range(2 + j):
                h = self._edge(e, states[i], weights, aux_skip)
                acc = acc + (h if edge_weights is None else edge_weights[e] * h)
                e += 1
            states.append(acc)
        return jnp.concatenate(states[2:], -1)


def edge_softmax(beta: jax.Array) -> jax.Array:
    """``(EDGES,)`` edge logits -> weights, a softmax over each node's incoming edges."""
    out, start = [], 0
    for j in range(NODES):
        out.append(jax.nn.softmax(beta[start:start + 2 + j]))
        start += 2 + j
    return jnp.concatenate(out)


class DartsSearch(nnx.Module):
    """Supernet: ``cells`` cells (reductions at 1/3 and 2/3), ``channels`` initial channels;
    ``primitives``: the candidate ops (default: the DARTS set; a subset makes tiny tests fast);
    ``partial_channels``, ``edge_norm``: PC-DARTS; ``free_dropout``: P-DARTS's dropout on the
    parameter-free candidates (module docstring). Call with ``aux_skip`` (a number, DARTS-'s
    auxiliary skip weight; None: none)."""

    def __init__(self, num_classes, *, cells=8, channels=16, primitives=PRIMITIVES,
                 partial_channels=1, edge_norm=False, free_dropout=0.0, in_channels=3,
                 factory=ConvFactory(), rngs, **_):
        primitives = tuple(primitives)
        bad = set(primitives) - set(PRIMITIVES)
        if bad or "none" not in primitives:
            raise ValueError(f"primitives must include 'none' and come from {PRIMITIVES}; "
                             f"got {primitives}")
        self.primitives = primitives
        c = channels
        self.stem = factory("stem", in_channels, 3 * c, 3, rngs=rngs)
        self.stem_bn = batch_norm(3 * c, factory, rngs)
        c_pp, c_p, cur, red_prev, cs = 3 * c, 3 * c, c, False, []
        for i in range(cells):
            red = i in (cells // 3, 2 * cells // 3)
            if red:
                cur *= 2
            cs.append(SearchCell(factory, f"cell{i}", c_pp, c_p, cur, red, red_prev, rngs,
                                 primitives, partial_channels, free_dropout))
            c_pp, c_p, red_prev = c_p, NODES * cur, red
        self.cells = nnx.List(cs)
        self.fc = classifier(factory, c_p, num_classes, rngs)
        key = rngs.params()
        k1, k2 = jax.random.split(key)
        n_ops = len(primitives)
        self.alpha_normal = ArchParam(1e-3 * jax.random.normal(k1, (EDGES, n_ops)))
        self.alpha_reduce = ArchParam(1e-3 * jax.random.normal(k2, (EDGES, n_ops)))
        self.edge_norm = bool(edge_norm)
        self.beta_normal = ArchParam(jnp.zeros(EDGES)) if edge_norm else nnx.data(None)
        self.beta_reduce = ArchParam(jnp.zeros(EDGES)) if edge_norm else nnx.data(None)

    def arch_weights(self) -> dict:
        """Softmax op weights ``(EDGES, ops)`` and edge weights ``(EDGES,)`` (ones without
        edge normalisation) of both cell kinds, as NumPy arrays."""
        out = {}
        for kind in ("normal", "reduce"):
            out[kind] = np.asarray(jax.nn.softmax(getattr(self, f"alpha_{kind}")[...], -1))
            beta = getattr(self, f"beta_{kind}")
            out[f"edges_{kind}"] = (np.asarray(edge_softmax(beta[...])) if beta is not None
                                    else np.ones(EDGES))
        return out

    def __call__(self, x, aux_skip=None):
        s0 = s1 = self.stem_bn(self.stem(x))
        w = {k: jax.nn.softmax(getattr(self, f"alpha_{k}")[...], -1).astype(x.dtype)
             for k in ("normal", "reduce")}
        b = {k: edge_softmax(getattr(self, f"beta_{k}")[...]).astype(x.dtype)
             if self.edge_norm else None for k in ("normal", "reduce")}
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = s1, cell(s0, s1, w[kind], b[kind], aux_skip)
        return self.fc(s1.mean((1, 2)))

    def genotype(self, max_skips: int | None = None, max_free: int | None = None) -> dict:
        a = self.arch_weights()
        return derive_genotype(np.log(a["normal"]), np.log(a["reduce"]), self.primitives,
                               edges_normal=a["edges_normal"], edges_reduce=a["edges_reduce"],
                               max_skips=max_skips, max_free=max_free)


def _parametric(op: str) -> bool:
    return op.startswith(("sep_conv", "dil_conv"))


def derive_genotype(alpha_normal, alpha_reduce, primitives=PRIMITIVES, *, edges_normal=None,
                    edges_reduce=None, max_skips: int | None = None,
                    max_free: int | None = None) -> dict:
    """DARTS derivation: per node, the 2 incoming edges with the strongest non-'none' op
    (softmax weight, times the edge's weight when ``edges_*`` are given: PC-DARTS's edge
    normalisation), each with that op. ``max_skips`` (P-DARTS): while a cell has more skip
    connections, the weakest one is replaced by that edge's strongest other op. ``max_free``:
    the same for the normal cell's parameter-free ops (skips and pooling): while it has more,
    the weakest is replaced by that edge's strongest parametric op (the reduction cell keeps
    its pooling: downsampling is its job). Returns
    ``{"normal": [[op, input], ...] (8), "reduce": [...], "concat": [2, 3, 4, 5]}``."""
    primitives = tuple(primitives)
    n_ops = len(primitives)
    none = primitives.index("none")
    skip = primitives.index("skip_connect") if "skip_connect" in primitives else None
    convs = [k for k, p in enumerate(primitives) if _parametric(p)]
    if max_free is not None and (max_free < 0 or not convs):
        raise ValueError(f"max_free needs a parametric candidate op and a count >= 0; got "
                         f"{max_free} with candidates {primitives}")

    def replace_weakest(gene, chosen, is_capped, allowed):
        """The capped op of ``gene`` with the smallest weight -> the strongest ``allowed`` op
        of its edge."""
        weakest = min((g for g in range(len(gene)) if is_capped(gene[g][0])),
                      key=lambda g: chosen[g][0][chosen[g][1]])
        row = chosen[weakest][0]
        k = max(allowed, key=lambda k: row[k])
        gene[weakest][0] = primitives[k]
        chosen[weakest] = (row, k)

    def parse(alpha, edges, cap_free):
        w = np.asarray(jax.nn.softmax(jnp.asarray(alpha), -1))
        if w.shape != (EDGES, n_ops):
            raise ValueError(f"alphas must be ({EDGES}, {n_ops}); got {w.shape}")
        ew = np.ones(EDGES) if edges is None else np.asarray(edges)
        gene, chosen, start = [], [], 0
        for j in range(NODES):
            n = 2 + j
            ws = w[start:start + n] * ew[start:start + n, None]
            strength = [max(ws[i][k] for k in range(n_ops) if k != none) for i in range(n)]
            top = sorted(range(n), key=lambda i: -strength[i])[:2]
            for i in sorted(top):
                k = max((k for k in range(n_ops) if k != none), key=lambda k, i=i: ws[i][k])
                gene.append([primitives[k], i])
                chosen.append((ws[i], k))
            start += n
        is_skip = lambda op: op == "skip_connect"  # noqa: E731
        while max_skips is not None and skip is not None and \
                sum(is_skip(op) for op, _ in gene) > max_skips:
            replace_weakest(gene, chosen, is_skip, [k for k in range(n_ops)
                                                    if k not in (none, skip)])
        is_free = lambda op: not _parametric(op)  # noqa: E731
        while cap_free and sum(is_free(op) for op, _ in gene) > max_free:
            replace_weakest(gene, chosen, is_free, convs)
        return gene

    return {"normal": parse(alpha_normal, edges_normal, max_free is not None),
            "reduce": parse(alpha_reduce, edges_reduce, False),
            "concat": list(range(2, 2 + NODES))}


def parametric_edges(gene) -> int:
    """How many of a cell's chosen ops have weights (convs; not pooling, skip or none)."""
    return sum(_parametric(op) for op, _ in gene)


def shared_edges(gene_a, gene_b) -> int:
    """How many of two cells' chosen edges agree: the same op from the same input into the
    same node (each node has 2 edges, in either order). Two searches' overlap."""
    if len(gene_a) != len(gene_b) or len(gene_a) % 2:
        raise ValueError(f"shared_edges: cells of 2 edges per node and equal length; got "
                         f"{len(gene_a)} and {len(gene_b)} edges")
    n = 0
    for j in range(0, len(gene_a), 2):
        rest = [tuple(e) for e in gene_b[j:j + 2]]
        for e in (tuple(e) for e in gene_a[j:j + 2]):
            if e in rest:
                rest.remove(e)
                n += 1
    return n


class EvalCell(nnx.Module):
    def __init__(self, f, name, gene, c_pp, c_p, c, reduction, reduction_prev, drop, rngs,
                 pool_bn=False):
        self.pre = _Preprocess(f, name, c_pp, c_p, c, reduction_prev, rngs, affine=True)
        self.reduction = reduction
        self.inputs = tuple(int(i) for _, i in gene)
        self.ops = nnx.List([make_op(op, f, f"{name}.n{k // 2}.{op}", c,
                                     2 if reduction and i < 2 else 1, rngs, True, pool_bn)
                             for k, (op, i) in enumerate(gene)])
        self.drop = Dropout(drop, broadcast_dims=(1, 2, 3)) if drop else None

    def __call__(self, s0, s1):
        states = [self.pre.p0(s0), self.pre.p1(s1)]
        for j in range(NODES):
            outs = []
            for k in (2 * j, 2 * j + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.drop is not None and not isinstance(self.ops[k], Identity):
                    h = self.drop(h)
                outs.append(h)
            states.append(outs[0] + outs[1])
        return jnp.concatenate(states[2:], -1)


class DartsEval(nnx.Module):
    """Network of a genotype: ``cells`` (20), ``channels`` (36), auxiliary head at 2/3 depth
    (train mode returns ``(logits, aux_logits)``), drop path ``drop_path``.

    ``pool_bn``: each pooling op is followed by a BatchNorm without scale or bias, as in the
    search's supernet (DARTS's evaluation network has none). A cell of max-pools alone sums
    and stacks maxima, whose mean grows from cell to cell; a last cell of them gave the
    classifier features so large that SGD at the fast recipe's lr diverged from the first
    steps (docs/results.md); the BatchNorm keeps every op's output on the convs' scale."""

    def __init__(self, num_classes, *, genotype, cells=20, channels=36, auxiliary=True,
                 drop_path=0.2, pool_bn=False, in_channels=3, factory=ConvFactory(), rngs, **_):
        if not isinstance(genotype, dict) or {"normal", "reduce"} - set(genotype):
            raise ValueError("genotype must be a dict with 'normal' and 'reduce' lists "
                             "(from train.nas derive)")
        c = channels
        self.stem = factory("stem", in_channels, 3 * c, 3, rngs=rngs)
        self.stem_bn = batch_norm(3 * c, factory, rngs)
        c_pp, c_p, cur, red_prev, cs = 3 * c, 3 * c, c, False, []
        self.aux_at = 2 * cells // 3
        aux_c = None
        for i in range(cells):
            red = i in (cells // 3, 2 * cells // 3)
            if red:
                cur *= 2
            gene = genotype["reduce" if red else "normal"]
            cs.append(EvalCell(factory, f"cell{i}", gene, c_pp, c_p, cur, red, red_prev,
                               drop_path, rngs, pool_bn))
            c_pp, c_p, red_prev = c_p, NODES * cur, red
            if i == self.aux_at:
                aux_c = c_p
        self.cells = nnx.List(cs)
        self.fc = classifier(factory, c_p, num_classes, rngs)
        head = [factory("aux.conv1", aux_c, 128, 1, rngs=rngs), batch_norm(128, factory, rngs),
                factory("aux.conv2", 128, 768, 2, padding="VALID", rngs=rngs),
                batch_norm(768, factory, rngs),
                classifier(factory, 768, num_classes, rngs)] if auxiliary else None
        self.aux = nnx.List(head) if head else None
        self.training = True

    def train(self, **kw):  # noqa: D102 (nnx mode switch; also toggles the aux output)
        super().train(**kw)
        self.training = True

    def eval(self, **kw):  # noqa: D102
        super().eval(**kw)
        self.training = False

    def __call__(self, x):
        s0 = s1 = self.stem_bn(self.stem(x))
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_at and self.aux is not None and self.training:
                a = nnx.avg_pool(jax.nn.relu(s1), window_shape=(5, 5), strides=(3, 3), padding="VALID")
                a = jax.nn.relu(self.aux[1](self.aux[0](a)))
                a = jax.nn.relu(self.aux[3](self.aux[2](a)))
                aux = self.aux[4](a.mean((1, 2)))
        logits = self.fc(s1.mean((1, 2)))
        return (logits, aux) if aux is not None else logits


def draw_genotype(genotype: dict, path: str) -> str:
    """PNG drawing of the normal and reduction cells: inputs on the left, the intermediate
    nodes on a diagonal, each chosen op on a curved edge with its label on the curve."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5))
    fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.02, wspace=0.04)  # final
    for ax, kind in zip(axes, ("normal", "reduce"), strict=True):
        pos = {0: (0.0, 2.0), 1: (0.0, -2.0)}
        for j in range(NODES):
            pos[2 + j] = (2.4 + 2.4 * j, 2.4 - 1.6 * j)
        out = (2.4 + 2.4 * NODES, -0.4)
        names = {0: "c_{k-2}", 1: "c_{k-1}"}
        ax.set_xlim(-1.2, out[0] + 1.0)
        ax.set_ylim(-3.6, 3.4)
        placed = [(*ax.transData.transform(p), 22, 14) for p in [*pos.values(), out]]
        for k, (op, i) in enumerate(genotype[kind]):
            dst = 2 + k // 2
            (x0, y0), (x1, y1) = pos[int(i)], pos[dst]
            rad = 0.3 if k % 2 == 0 else -0.3
            ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(
                arrowstyle="->", lw=1.2, shrinkA=14, shrinkB=14,
                connectionstyle=f"arc3,rad={rad}"))
            # a point of matplotlib's arc3 Bezier curve (built in display space), the one
            # nearest the middle whose label box clears the nodes and the labels placed so far
            (a0, b0), (a1, b1) = ax.transData.transform([(x0, y0), (x1, y1)])
            ca, cb = (a0 + a1) / 2 + rad * (b1 - b0), (b0 + b1) / 2 - rad * (a1 - a0)
            w, h = 3.8 * len(op) + 8, 11
            for t in (0.5, 0.38, 0.62, 0.28, 0.72, 0.2, 0.8):
                pa = (1 - t) ** 2 * a0 + 2 * (1 - t) * t * ca + t * t * a1
                pb = (1 - t) ** 2 * b0 + 2 * (1 - t) * t * cb + t * t * b1
                if all(abs(pa - qa) > w + qw or abs(pb - qb) > h + qh
                       for qa, qb, qw, qh in placed):
                    break
            placed.append((pa, pb, w, h))
            lx, ly = ax.transData.inverted().transform((pa, pb))
            ax.text(lx, ly, op, fontsize=8, ha="center", va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="0.7", alpha=0.95),
                    zorder=3)
        for n, (x, y) in pos.items():
            if n >= 2:
                ax.annotate("", out, (x, y), arrowprops=dict(arrowstyle="->", lw=0.6, alpha=0.35,
                                                            shrinkA=12, shrinkB=14))
            ax.text(x, y, f"${names[n]}$" if n < 2 else str(n - 2), ha="center", va="center",
                    fontsize=11, zorder=4,
                    bbox=dict(boxstyle="round", fc="lightblue" if n < 2 else "lightyellow"))
        ax.text(*out, "$c_k$", ha="center", va="center", fontsize=11, zorder=4,
                bbox=dict(boxstyle="round", fc="lightgreen"))
        ax.set_title(f"{kind} cell (edges: chosen op; grey: concatenated into the output)")
        ax.axis("off")
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    return path


def _derive_at(record: dict, primitives, **caps) -> dict:
    """The genotype derived from one epoch's logged architecture weights."""
    a = {k: np.log(np.maximum(np.asarray(record["arch"][k]), 1e-30)) for k in ("normal", "reduce")}
    return derive_genotype(a["normal"], a["reduce"], primitives,
                           edges_normal=record["arch"].get("edges_normal"),
                           edges_reduce=record["arch"].get("edges_reduce"), **caps)


def plot_arch_evolution(records: list[dict], primitives, path: str,
                        max_skips: int | None = None, max_free: int | None = None) -> str:
    """PNG of a search's architecture per epoch (``records``: the trainer's metrics with an
    ``arch`` entry, :meth:`DartsSearch.arch_weights` as lists): for each cell kind, the mean
    softmax weight of every candidate op over the 14 edges, and how many of the 8 edges of the
    genotype derived at that epoch are parametric (convs)."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in records if r.get("arch")]
    if not recs:
        raise ValueError("no architecture weights in these records (not a DARTS search run?)")
    ep = [r["epoch"] for r in recs]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), gridspec_kw=dict(width_ratios=(2, 1)))
    for row, kind in enumerate(("normal", "reduce")):
        w = np.asarray([r["arch"][kind] for r in recs])             # (epochs, edges, ops)
        ax = axes[row, 0]
        for k, prim in enumerate(primitives):
            ax.plot(ep, w[:, :, k].mean(1), marker=".", label=prim,
                    ls="--" if prim in ("none", "skip_connect") or "pool" in prim else "-")
        ax.set(xlabel="epoch", ylabel="mean softmax weight over the 14 edges",
               title=f"{kind} cell: op weights")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        caps = dict(max_skips=max_skips, max_free=max_free)
        capped = caps["max_skips"] is not None or caps["max_free"] is not None
        ax = axes[row, 1]
        variants = [("as the weights rank them", {}), ("with the caps", caps)] if capped \
            else [(None, {})]
        for label, kw in variants:
            counts = [parametric_edges(_derive_at(r, primitives, **kw)[kind]) for r in recs]
            ax.plot(ep, counts, marker="o", ls="-" if kw or not capped else "--", label=label)
        if kind == "normal":
            ax.axhline(6, color="0.5", ls=":", label="target: 6 of 8")
        ax.set(xlabel="epoch", ylabel="parametric edges of 8", ylim=(-0.3, 8.3),
               title=f"{kind} cell: derived genotype")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=100)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    return path
