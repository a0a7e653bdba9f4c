"""BatchNorm for NNX models (same variables and semantics as ``nnx.BatchNorm`` over the
feature axis -1).

It updates the running statistics with ``variable.set_value(...)``: flax 0.12's own BatchNorm
assigns with ``variable[...] = ...``, whose sharding check on a tracer costs time linear in the
size of the program being traced, making tracing quadratic in depth (measured: 45 s to trace
the forward of a 2-cell DARTS supernet; see docs/training.md).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from fsjax import ops

__all__ = ["BatchNorm"]


class BatchNorm(nnx.Module):
    def __init__(self, num_features: int, *, momentum: float = 0.99, epsilon: float = 1e-5,
                 use_bias: bool = True, use_scale: bool = True, use_running_average=False,
                 dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
        self.num_features, self.momentum, self.epsilon = num_features, momentum, epsilon
        self.use_running_average = use_running_average
        self.dtype = dtype
        self.mean = nnx.BatchStat(jnp.zeros(num_features, jnp.float32))
        self.var = nnx.BatchStat(jnp.ones(num_features, jnp.float32))
        self.scale = nnx.Param(jnp.ones(num_features, param_dtype)) if use_scale else None
        self.bias = nnx.Param(jnp.zeros(num_features, param_dtype)) if use_bias else None

    def __call__(self, x):
        scale = None if self.scale is None else self.scale.get_value()
        bias = None if self.bias is None else self.bias.get_value()
        if self.use_running_average:
            y = ops.batch_norm(x, self.mean.get_value(), self.var.get_value(), scale, bias,
                               self.epsilon)
        else:
            y, mean, var = ops.batch_norm_train(x, scale, bias, self.epsilon)
            m = self.momentum
            self.mean.set_value(m * self.mean.get_value() + (1 - m) * mean)
            self.var.set_value(m * self.var.get_value() + (1 - m) * var)
        return y.astype(self.dtype) if self.dtype is not None else y
