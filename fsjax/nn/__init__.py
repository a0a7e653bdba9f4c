"""Flax NNX layers (the recommended front end)."""

from fsjax.nn.conv import Conv, ConvBase, DFSConv, FSConv, KSConv, Location, ShareWeight, layer_class
from fsjax.nn.convert import convert, dense_convs, freeze_dfs, materialize
from fsjax.nn.dropout import Dropout, dropout_key
from fsjax.nn.jit import jit
from fsjax.nn.norm import BatchNorm

__all__ = ["jit", "layer_class", "BatchNorm", "Conv", "ConvBase", "DFSConv", "Dropout", "FSConv",
           "KSConv", "Location", "ShareWeight", "convert", "dense_convs", "dropout_key",
           "freeze_dfs", "materialize"]
