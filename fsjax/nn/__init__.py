"""Flax NNX layers (the recommended front end)."""

from fsjax.nn.conv import Conv, DFSConv, FSConv, KSConv, Location, ShareWeight
from fsjax.nn.convert import convert, dense_convs

__all__ = ["Conv", "DFSConv", "FSConv", "KSConv", "Location", "ShareWeight", "convert",
           "dense_convs"]
