"""Filter pruning. :mod:`fsjax.prune.thinet`: ThiNet (greedy / stepwise selection + least
squares) and the random / weight-sum / APoZ baselines, producing physically smaller models."""

from fsjax.prune import thinet

__all__ = ["thinet"]
