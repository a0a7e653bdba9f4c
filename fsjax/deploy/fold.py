"""The inference form of a model: FS/DFS kernels materialised, BatchNorm folded where exact.

Folding (:func:`fsjax.ops.fold_batch_norm`) is exact in real arithmetic where a BatchNorm reads
a conv's output and nothing else does: the zoo's :class:`~fsjax.models.layers.ConvBN` and the
DARTS ``ReLUConvBN`` blocks. Other BatchNorms (pre-activation DenseNet, the DARTS separable and
stem convs written as separate attributes) stay as eval-mode affine ops. KS/WKS layers keep
their factored form (the BN scale goes onto the shared kernel's output axis), so their MAC
saving survives the export.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from fsjax import ops
from fsjax.models.darts import ReLUConvBN
from fsjax.models.layers import ConvBN
from fsjax.nn import BatchNorm
from fsjax.nn.conv import ConvBase
from fsjax.nn.convert import materialize

__all__ = ["inference_model", "fold_batchnorm", "forward_of", "Folded", "logits_of"]

FOLDABLE = (ConvBN, ReLUConvBN)


class Folded(nnx.Module):
    """Stands where a BatchNorm was folded into the conv before it: the identity."""

    def __call__(self, x):
        return x


def fold_batchnorm(model: nnx.Module) -> list[str]:
    """Fold every foldable BatchNorm of ``model`` into its conv, in place (the conv gains a
    bias). Returns the folded blocks' paths."""
    done = []
    for path, node in list(nnx.iter_graph(model)):
        if not isinstance(node, FOLDABLE) or not isinstance(getattr(node, "bn", None), BatchNorm):
            continue
        conv, bn = node.conv, node.bn
        if not isinstance(conv, ConvBase) or not conv.spec.conv_kind.folds_batchnorm:
            continue  # e.g. FS/DFS share weights across filters: materialise them first
        bias = None if conv.bias is None else conv.bias[...]
        k, b = ops.fold_batch_norm(conv.kernel[...], bias, bn.mean.get_value(),
                                   bn.var.get_value(),
                                   None if bn.scale is None else bn.scale.get_value(),
                                   None if bn.bias is None else bn.bias.get_value(), bn.epsilon)
        conv.kernel.set_value(jnp.asarray(k, conv.kernel[...].dtype))
        conv.bias = nnx.Param(b.astype(conv.param_dtype))
        conv.use_bias = True
        conv.spec = dataclasses.replace(conv.spec, use_bias=True)
        node.bn = Folded()
        done.append(".".join(map(str, path)))
    return done


def inference_model(model: nnx.Module, fold: bool = True) -> tuple[nnx.Module, dict]:
    """A copy of ``model`` in eval mode with FS/DFS layers materialised to dense kernels and
    (``fold``) BatchNorm folded; ``model`` is unchanged. Returns ``(model, info)``, info =
    ``{"materialised": [paths], "folded": [paths], "batchnorm_kept": n}``."""
    m = nnx.clone(model)
    m.eval()
    mat = materialize(m)
    folded = fold_batchnorm(m) if fold else []
    kept = sum(isinstance(n, BatchNorm) for _, n in nnx.iter_graph(m))
    return m, {"materialised": mat, "folded": folded, "batchnorm_kept": kept}


def forward_of(model, fold: bool = True):
    """``(forward(x) -> logits, info)`` for an NNX module (its inference form, weights as
    constants) or any callable ``fn(x)`` (e.g. a Linen model: ``lambda x: m.apply(v, x)``;
    exported as it is, nothing folded: info fields are None)."""
    if not isinstance(model, nnx.Module):
        if not callable(model):
            raise TypeError(f"export takes a Flax NNX module or a function x -> logits; got "
                            f"{type(model).__name__}")
        return (lambda x: logits_of(model(x))), dict(materialised=None, folded=None,
                                                       batchnorm_kept=None)
    m, info = inference_model(model, fold)
    graphdef, state = nnx.split(m)
    return (lambda x: logits_of(nnx.merge(graphdef, state)(x))), info


def logits_of(out):
    """A model's logits (DARTS-eval returns ``(logits, aux)`` in training mode only)."""
    return out[0] if isinstance(out, tuple) else out
