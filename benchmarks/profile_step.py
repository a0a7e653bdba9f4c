"""Where a training step's time goes: a ``jax.profiler`` trace of the trainer's step, its
XLA:CPU thunk events summed per HLO instruction, each named by the JAX primitive behind it.

    python -m benchmarks.profile_step [--config configs/cifar10/fast.py:dense] [--batch 512]
        [--steps 3] [--top 15] [--json-dir DIR] [--small]

The step is ``benchmarks.common.train_state``'s (the trainer's ``make_train_step``, synthetic
images), compiled with the trainer's options and CPU forms and warmed up first; ``--steps``
steps run under the profiler. XLA:CPU's thunk executor logs one event per instruction of the
entry computation (a fusion, a convolution, a custom call); the compiled HLO gives each its
opcode and the ``op_name`` metadata of the JAX primitive it computes (for a fusion without
its own metadata, the first op inside it). Printed: the ``--top`` instructions by time per
step and the totals per primitive, each as ms per step and share of all thunk time. The
profiler adds its own overhead, so the shares mean more than the milliseconds; run it on an
otherwise quiet core (``taskset -c 0``) and give the other figures with it. This is the method
of docs/performance.md's profiles, as a script.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import importlib
import json
import re
import tempfile

import jax
import jax.numpy as jnp

from benchmarks.common import print_table, train_state, write_json
from fsjax import ops

_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w\-]+)\(")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLS = re.compile(r"calls=%?([\w.\-]+)")


def load_config(spec: str):
    """``configs/x/y.py:arg`` (as ``train.main --config``) -> the config."""
    path, _, arg = spec.partition(":")
    if not path.endswith(".py"):
        raise ValueError(f"--config must be a config file path like configs/cifar10/fast.py:dense;"
                         f" got {spec!r}")
    mod = importlib.import_module(path[:-3].replace("/", "."))
    return mod.get_config(arg) if arg else mod.get_config()


def hlo_names(hlo: str) -> dict:
    """Each instruction of the compiled HLO text -> ``(opcode, primitive)``: the last part of
    its ``op_name`` (or of the first op_name inside the computation it calls), else ''."""
    comps, cur, instrs = {}, None, {}
    for line in hlo.splitlines():
        if not line.startswith(" ") and "{" in line:
            cur = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            comps[cur] = []
            continue
        m = _INSTR.match(line)
        if m and cur is not None:
            comps[cur].append(line)
            instrs[m.group(1)] = (m.group(2), line)

    def primitive(line, depth=0):
        m = _OP_NAME.search(line)
        if m:
            return m.group(1).rsplit("/", 1)[-1]
        c = _CALLS.search(line)
        if c and depth < 3:
            for inner in comps.get(c.group(1), ()):
                p = primitive(inner, depth + 1)
                if p:
                    return p
        return ""

    return {name: (op, primitive(line)) for name, (op, line) in instrs.items()}


def thunk_times(trace_dir: str, names: dict) -> dict:
    """Microseconds per HLO instruction summed over the trace's events."""
    path = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)[0]
    with gzip.open(path) as f:
        t = json.load(f)
    events = t["traceEvents"] if isinstance(t, dict) else t
    out = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in names:
            out[e["name"]] += e.get("dur", 0.0)
    return out


def profile(c, batch: int, steps: int) -> tuple[list, list]:
    """``(instruction rows, primitive rows)``, times in ms per step, shares of thunk time."""
    _, ts, step = train_state(c)
    x = jax.random.randint(jax.random.key(0), (batch, 32, 32, 3), 0, 256).astype(jnp.uint8)
    y = jnp.arange(batch) % 10
    key = jax.random.key(1)
    f = jax.jit(step, donate_argnums=(0,), compiler_options=ops.compiler_options())
    compiled = f.lower(ts, x, y, key).compile()
    names = hlo_names(compiled.as_text())
    for _ in range(2):  # warm-up
        ts, _ = compiled(ts, x, y, key)
    jax.block_until_ready(ts)
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(steps):
                ts, _ = compiled(ts, x, y, key)
            jax.block_until_ready(ts)
        times = thunk_times(d, names)
    total = sum(times.values()) or 1.0
    rows = [dict(instruction=n, opcode=names[n][0], primitive=names[n][1] or "-",
                 ms=round(us / 1e3 / steps, 2), share=round(us / total, 4))
            for n, us in times.most_common()]
    by_prim = collections.Counter()
    for n, us in times.items():
        by_prim[names[n][1] or names[n][0]] += us
    prims = [dict(primitive=p, ms=round(us / 1e3 / steps, 2), share=round(us / total, 4))
             for p, us in by_prim.most_common()]
    return rows, prims


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/cifar10/fast.py:dense")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--json-dir", default=None)
    ap.add_argument("--small", action="store_true", help="a tiny fast network, batch 16, 1 step")
    a = ap.parse_args(argv)
    c = load_config(a.config)
    if a.small:
        c.model_kw.widths = (8, 16, 16)
        a.batch, a.steps = 16, 1
    rows, prims = profile(c, a.batch, a.steps)
    print(f"{a.config}, batch {a.batch}, {a.steps} profiled steps: "
          f"{sum(r['ms'] for r in rows):.1f} ms of thunks per step")
    print_table(rows[:a.top], ["instruction", "opcode", "primitive", "ms", "share"])
    print()
    print_table(prims[:a.top], ["primitive", "ms", "share"])
    write_json(a.json_dir, "profile_step", rows, primitives=prims, config=a.config,
               batch=a.batch, steps=a.steps)
    return prims


if __name__ == "__main__":
    main()
