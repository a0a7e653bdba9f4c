"""Timing helpers: compile excluded, block_until_ready, median of many runs; JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time

import jax


def timeit(fn, *args, warmup: int = 2, runs: int = 20, min_time: float = 0.0) -> float:
    """Median seconds of ``fn(*args)`` (already jitted) after ``warmup`` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def environment() -> dict:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=False).stdout.strip()
    except OSError:
        rev = ""
    dev = jax.devices()[0]
    return dict(git=rev, jax=jax.__version__, backend=jax.default_backend(),
                device=getattr(dev, "device_kind", str(dev)), devices=jax.device_count(),
                cpu=platform.processor() or platform.machine(), cores=os.cpu_count())


def write_json(path: str | None, name: str, rows: list, **extra) -> None:
    if not path:
        return
    os.makedirs(path, exist_ok=True)
    out = os.path.join(path, f"{name}.json")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(benchmark=name, env=environment(), rows=rows, **extra), f, indent=1)
    os.replace(tmp, out)


def print_table(rows: list[dict], cols: list[str]) -> None:
    cells = [[str(r.get(c, "")) if not isinstance(r.get(c), float) else f"{r[c]:.4g}"
              for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for x in cells:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)))


def train_state(c, dtype="float32"):
    """The trainer's pieces for config ``c`` on 32x32x3 inputs, 10 classes: ``(fn, ts, step)``
    with ``step(ts, x_uint8, y, key) -> (ts, metrics)`` (``train.model_fn.make_train_step``,
    not jitted) and ``ts`` its initial state."""
    import jax
    import jax.numpy as jnp

    from train.model_fn import ModelFn, make_train_step
    from train.optim import make_optimizer, param_labels
    from train.trainer import build_model

    m, _ = build_model(c, 10, 3, jnp.dtype(dtype))
    fn = ModelFn.create(m)
    tx, _ = make_optimizer(c, m, 100)
    p, s = ModelFn.initial(m)
    ts = dict(params=p, stats=s, opt=tx.init(p), step=jnp.zeros((), jnp.int32))
    if c.lookahead.every:
        ts["slow"] = jax.tree.map(jnp.copy, dict(params=p, stats=s))
    return fn, ts, make_train_step(fn, tx, c, (0.5,) * 3, (0.25,) * 3, jnp.dtype(dtype),
                                   labels_tree=param_labels(m), steps_per_epoch=100)
