"""Conv-kind variants shared by the configs: ``dense``, ``fs<rho>``, ``dfs<rho>``,
``ks<g>``, ``wks<g>`` (g = channels per shared kernel), e.g. ``fs4``, ``dfs2.5``, ``wks8``."""

import re

VARIANT = re.compile(r"^(dense|fs|dfs|ks|wks)([0-9.]*)$")


def apply_variant(c, variant: str):
    m = VARIANT.match(variant)
    if not m or (m.group(1) != "dense" and not m.group(2)):
        raise ValueError(f"conv variant {variant!r} is not valid; valid: dense, fs<rho>, "
                         f"dfs<rho>, ks<g>, wks<g> (e.g. fs4, dfs4, wks8)")
    kind, num = m.group(1), m.group(2)
    c.conv.kind = kind
    if kind in ("fs", "dfs"):
        c.conv.compression = float(num)
    elif kind in ("ks", "wks"):
        c.conv.group_size = int(num)
    return c
