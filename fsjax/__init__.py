"""fsjax: Filter Summary, kernel-sharing, ThiNet pruning and quantization for JAX/Flax.

Subpackages are imported on first use (``import fsjax; fsjax.nn.FSConv``): ``ops`` (the math),
``nn`` (Flax NNX layers), ``linen`` (Flax Linen layers), ``models`` (the zoo), ``optim``,
``prune`` (ThiNet), ``quant``, ``report``, ``export``, ``deploy``, ``data``, ``spec``.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("ops", "nn", "linen", "models", "optim", "prune", "quant", "report", "export",
               "deploy", "data", "spec")
__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"fsjax.{name}")
    raise AttributeError(f"module 'fsjax' has no attribute {name!r}")
