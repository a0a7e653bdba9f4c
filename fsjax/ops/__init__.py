"""Pure jax.numpy functions: the single source of fsjax's math (shapes in the docstrings)."""

from fsjax.ops import thinet  # noqa: F401  (module: sample_positions, gram)
from fsjax.ops.conv import canonical_padding, conv2d, conv_output_hw, pair
from fsjax.ops.fs import (
    check_kernel_shape,
    dfs_init_raw,
    dfs_kernel,
    dfs_locations,
    fs_index,
    fs_kernel,
    fs_length,
    fs_offsets,
    fs_project,
    fs_taps,
)
from fsjax.ops.init import fan_in_normal
from fsjax.ops.ks import ks_check, ks_conv, ks_dense_kernel, ks_project, ks_reduce
from fsjax.ops.norm import batch_norm, batch_stats
from fsjax.ops.quant import (
    channel_groups,
    check_bits,
    codebook_dequantize,
    effective_params,
    fake_quant,
    fs_chunk_groups,
    kmeans_quantize,
    pack_bits,
    uniform_dequantize,
    uniform_quantize,
    unpack_bits,
)
from fsjax.ops.thinet import (
    contributions,
    greedy_removal,
    least_squares_scale,
    select_channels,
    stepwise_forward,
)

__all__ = [
    "batch_norm",
    "batch_stats",
    "contributions",
    "greedy_removal",
    "least_squares_scale",
    "select_channels",
    "stepwise_forward",
    "channel_groups",
    "check_bits",
    "codebook_dequantize",
    "effective_params",
    "fake_quant",
    "fs_chunk_groups",
    "kmeans_quantize",
    "pack_bits",
    "uniform_dequantize",
    "uniform_quantize",
    "unpack_bits",
    "canonical_padding",
    "check_kernel_shape",
    "conv2d",
    "conv_output_hw",
    "dfs_init_raw",
    "dfs_kernel",
    "dfs_locations",
    "fan_in_normal",
    "fs_index",
    "fs_kernel",
    "fs_length",
    "fs_offsets",
    "fs_project",
    "fs_taps",
    "ks_check",
    "ks_conv",
    "ks_dense_kernel",
    "ks_project",
    "ks_reduce",
    "pair",
]
