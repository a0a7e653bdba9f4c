"""fsjax: Filter Summary, kernel-sharing, ThiNet pruning and quantization for JAX/Flax."""

__version__ = "0.1.0"
