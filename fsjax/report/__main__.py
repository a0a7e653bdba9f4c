"""CLI: ``python -m fsjax.report --model resnet56 --conv fs --compression 4 --input 32x32x3``."""

from __future__ import annotations

import argparse
import json
import sys

from fsjax import models
from fsjax.report import report


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fsjax.report", description=__doc__)
    p.add_argument("--model", required=True, help=f"one of: {', '.join(sorted(models.MODELS))}")
    p.add_argument("--conv", default="dense", help="dense | fs | dfs | ks | wks")
    p.add_argument("--compression", type=float, default=4.0, help="FS/DFS rho")
    p.add_argument("--group-size", type=int, default=4, help="KS/WKS channels per shared kernel")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input", default="32x32x3", help="HxWxC, e.g. 224x224x3")
    p.add_argument("--model-arg", action="append", default=[],
                   help="extra model option key=value (e.g. stem=imagenet, variant=imagenet)")
    p.add_argument("--json", action="store_true", help="print the totals as JSON too")
    a = p.parse_args(argv)
    try:
        shape = tuple(int(v) for v in a.input.lower().split("x"))
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError
    except ValueError:
        return _fail(f"--input must be HxWxC with positive sizes (e.g. 32x32x3); got {a.input!r}")
    if a.model not in models.MODELS:
        return _fail(f"--model {a.model!r} is not valid; valid: {', '.join(sorted(models.MODELS))}")
    if a.compression < 1:
        return _fail(f"--compression must be >= 1; got {a.compression:g}")
    if a.group_size < 1:
        return _fail(f"--group-size must be a positive int; got {a.group_size}")
    if a.num_classes < 1:
        return _fail(f"--num-classes must be a positive int; got {a.num_classes}")
    extra = {}
    for kv in a.model_arg:
        k, eq, v = kv.partition("=")
        if not eq or not k:
            return _fail(f"--model-arg must be key=value (e.g. depth=8); got {kv!r}")
        try:
            extra[k] = json.loads(v) if v[:1] in "0123456789[{-" or v in ("true", "false") \
                else v
        except json.JSONDecodeError:
            return _fail(f"--model-arg {kv!r}: {v!r} is not a number, list or word")
    if a.model == "ssd":  # the detector's default boxes are built for the input's side
        if shape[0] != shape[1]:
            return _fail(f"--model ssd takes square images; got --input {a.input}")
        extra.setdefault("image_size", shape[0])
        extra.setdefault("in_channels", shape[2])
    try:
        factory = models.ConvFactory(kind=a.conv, compression=a.compression,
                                     group_size=a.group_size)
        model = models.create(a.model, num_classes=a.num_classes, conv=factory, **extra)
    except ValueError as e:
        return _fail(str(e))
    try:
        table, totals = report(model, shape)
    except (ValueError, TypeError, ZeroDivisionError) as e:  # e.g. an input too small
        return _fail(f"{a.model} cannot take a {a.input} input ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''})")
    print(f"model: {models.arch_name(a.model, extra)} ({a.conv}), input {a.input}")
    print(table)
    if a.json:
        print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
