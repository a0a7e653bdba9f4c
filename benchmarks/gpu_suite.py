"""The GPU suite: one short call that measures fsjax on one GPU, and a merge into the docs.

    python -m benchmarks.gpu_suite --out DIR [--data-dir CIFAR_JPEG] [--parts speed,accuracy,thinet]
    python -m benchmarks.gpu_suite --merge DIR [--docs docs/results.md] [--readme README.md]
    python -m benchmarks.gpu_suite --small --out DIR        # the same code on the CPU, toy sizes

Parts, in this order, each with its own time cap (``CAPS``, seconds; about 8 minutes in all on
an H100/H200, compilation included), each writing ``DIR/<part>.json`` as soon as it is done, so
a run cut off still leaves the finished parts:

1. ``speed``: a whole training epoch from device memory (random uint8 images; speed does not
   depend on their content), bfloat16 compute, of CIFAR ResNet-18 (batch 512) and the fast
   network ``airbench`` (batch 512 and 1024): fsjax dense, FS rho=4, DFS rho=4 and WKSC g=4
   (the trainer's own epoch runner and step), and the same dense networks in PyTorch (eager,
   channels_last + bf16 autocast, and ``torch.compile``), interleaved round by round; images/s
   (the median round; compilation excluded), and for fsjax dense the share of the step spent
   outside the convs (1 - the convs' forward + backward alone, timed at their shapes, over the
   step).
2. ``accuracy``: the fast CIFAR-10 recipe (``configs/cifar10/fast.py``, the CPU table's config)
   dense and FS rho=4 on the CIFAR-10 JPEG copy: top-1 with and without TTA, training time and
   the time to 94% (plain top-1 after an epoch) where it is reached.
3. ``thinet``: ThiNet selection + least squares at C=512, m=100,000 (``benchmarks.
   thinet_select``, fsjax only) and inference latency at batch 1/64/512 of dense, FS per call,
   FS materialised, WKSC and ThiNet-pruned models (``benchmarks.inference_latency``).

``--merge DIR`` turns those files into the "GPU" section of docs/results.md and the GPU rows
of the README's headline table (between ``<!-- gpu-suite:begin -->`` and ``<!-- gpu-suite:end
-->``, written anew each time), on any machine. docs/gpu.md says what the GPU machine needs
and how the output comes back.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

CAPS = {"speed": 270, "accuracy": 150, "thinet": 60}
BEGIN, END = "<!-- gpu-suite:begin -->", "<!-- gpu-suite:end -->"
KINDS = ("dense", "fs4", "dfs4", "wks4")


def _config(model: str, variant: str, batch: int, small: bool):
    from configs.cifar10.fast import get_config as fast
    from configs.cifar10.models import get_config as zoo

    c = fast(variant) if model == "airbench" else zoo(f"resnet18,{variant}")
    c.unlock()
    c.batch_size, c.compute_dtype = batch, "bfloat16"
    c.locations.freeze_epoch = -1
    if small:  # toy widths, the same code
        c.model_kw.widths = (8, 8, 8) if model == "airbench" else (8, 8, 16, 16)
        if model == "resnet18":
            c.model_kw.depths = (1, 1, 1, 1)
    return c


def _fsjax_epoch(model: str, variant: str, batch: int, n: int, small: bool):
    """``(run_epoch() -> seconds, steps, the model)`` of one fsjax variant, data on device."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from train.loop import Runner, make_mesh
    from train.model_fn import ModelFn, make_eval_step, make_train_step
    from train.optim import make_optimizer, param_labels
    from train.trainer import build_model

    c = _config(model, variant, batch, small)
    m, _ = build_model(c, 10, 3, jnp.dtype(jnp.bfloat16))
    fn = ModelFn.create(m)
    steps = n // batch
    tx, _ = make_optimizer(c, m, steps)
    p, s = ModelFn.initial(m)
    ts = dict(params=p, stats=s, opt=tx.init(p), step=jnp.zeros((), jnp.int32))
    if c.lookahead.every:
        ts["slow"] = jax.tree.map(jnp.copy, dict(params=p, stats=s))
    mean, std = (0.5,) * 3, (0.25,) * 3
    step = make_train_step(fn, tx, c, mean, std, jnp.dtype(jnp.bfloat16), None,
                           param_labels(m), steps)
    runner = Runner(step, make_eval_step(fn, mean, std, jnp.dtype(jnp.bfloat16)), make_mesh(),
                    batch, batch, True)
    rng = np.random.default_rng(0)
    data = runner.put_replicated(rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
                                 rng.integers(0, 10, n).astype(np.int32))
    state = {"ts": jax.device_put(ts, runner.repl), "epoch": 0}

    def run_epoch():
        t0 = time.perf_counter()
        state["ts"], _ = runner.train_epoch(state["ts"], data, n, 0, state["epoch"])
        jax.block_until_ready(state["ts"]["params"])
        state["epoch"] += 1
        return time.perf_counter() - t0

    return run_epoch, steps, m


def _conv_seconds(model, batch: int) -> float:
    """Forward + backward of every conv of ``model`` alone (dense kernels of its shapes,
    bfloat16), one jitted program; median seconds."""
    import dataclasses

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from benchmarks.common import timeit
    from fsjax import ops
    from fsjax.spec import record_calls

    g, st = nnx.split(model)
    with record_calls() as calls:
        jax.eval_shape(lambda s: nnx.merge(g, s)(jnp.zeros((batch, 32, 32, 3), jnp.bfloat16)), st)
    specs = [(dataclasses.replace(spec, kind="dense"), x.shape) for spec, x, _ in calls]
    args = [(jnp.ones(shape, jnp.bfloat16), jnp.full(spec.kernel_shape, 0.01, jnp.bfloat16))
            for spec, shape in specs]

    def all_convs(args):
        def loss(a):
            return sum(jnp.sum(spec.apply(x, k, None).astype(jnp.float32))
                       for (spec, _), (x, k) in zip(specs, a, strict=True))
        return jax.grad(loss)(args)

    f = jax.jit(all_convs, compiler_options=ops.compiler_options())
    return timeit(f, args, runs=10)


def _torch_epoch(model: str, batch: int, n: int, small: bool, compiled: bool):
    """``run_epoch() -> seconds`` of the dense network in PyTorch (channels_last, bf16
    autocast, SGD momentum), data on the device; None without PyTorch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    from benchmarks.torch_cifar_reference import airbench_net

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    net = (airbench_net((8, 8, 8) if small else (64, 256, 256)) if model == "airbench"
           else _torch_resnet18(small))
    net = net.to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([q for q in net.parameters() if q.requires_grad], lr=0.01,
                          momentum=0.9, nesterov=True)
    fwd = torch.compile(net) if compiled else net
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g).to(dev)
    y = torch.randint(0, 10, (n,), generator=g).to(dev)
    steps = n // batch

    def run_epoch():
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=dev)
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            xb = (x[idx].permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
            xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev, dtype=torch.bfloat16):
                loss = F.cross_entropy(fwd(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return time.perf_counter() - t0

    return run_epoch


def _torch_resnet18(small: bool):
    """CIFAR ResNet-18 (3x3 stem, basic blocks 2-2-2-2, widths 64-512) in PyTorch."""
    from torch import nn

    widths, depths = ((8, 8, 16, 16), (1, 1, 1, 1)) if small else ((64, 128, 256, 512),
                                                                   (2, 2, 2, 2))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.sc = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                     nn.BatchNorm2d(cout)) if stride != 1 or cin != cout
                       else nn.Identity())

        def forward(self, x):
            return (self.b2(self.c2(self.b1(self.c1(x)).relu())) + self.sc(x)).relu()

    layers, cin = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                   nn.ReLU()], widths[0]
    for i, (w, d) in enumerate(zip(widths, depths, strict=True)):
        for j in range(d):
            layers.append(Block(cin, w, 2 if i and not j else 1))
            cin = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def speed(out: str, small: bool, deadline: float) -> list[dict]:
    n = 64 if small else 50_000
    plan = [("resnet18", 512), ("airbench", 512), ("airbench", 1024)]
    kinds, compiles = KINDS, (False, True)
    if small:  # every code path once: the kinds differ only in the model they build
        plan, kinds, compiles = [("resnet18", 16), ("airbench", 16)], ("dense", "wks4"), (False,)
    rows, runs = [], []
    for model, batch in plan:
        for kind in kinds:
            if time.time() > deadline:
                break
            run, steps, m = _fsjax_epoch(model, kind, batch, n, small)
            run()  # compiles
            row = dict(model=model, batch=batch, framework="fsjax", variant=kind, steps=steps)
            if kind == "dense":
                row["conv_s_per_step"] = _conv_seconds(m, batch)
            runs.append((row, run))
        for compiled in compiles:
            run = _torch_epoch(model, batch, n, small, compiled)
            if run is None or time.time() > deadline:
                continue
            run()  # warm-up (and torch.compile's compilation)
            runs.append((dict(model=model, batch=batch, framework="torch",
                              variant="compile" if compiled else "eager", steps=n // batch), run))
    times = {id(r): [] for r, _ in runs}
    for _ in range(1 if small else 3):  # rounds, each variant one epoch, interleaved
        for row, run in runs:
            if time.time() < deadline or not times[id(row)]:
                times[id(row)].append(run())
    for row, _ in runs:
        t = statistics.median(times[id(row)])
        row.update(epoch_s=t, images_per_s=row["steps"] * row["batch"] / t,
                   rounds=len(times[id(row)]))
        if "conv_s_per_step" in row:
            row["outside_convs"] = max(0.0, 1 - row["conv_s_per_step"] * row["steps"] / t)
        rows.append(row)
    return rows


def accuracy(out: str, small: bool, deadline: float, data_dir: str) -> list[dict]:
    from configs.cifar10.fast import get_config
    from train.progress import MetricsLog
    from train.trainer import run

    rows = []
    for variant in ("dense", "fs4"):
        if time.time() > deadline:
            rows.append(dict(variant=variant, skipped="time cap"))
            continue
        c = get_config(variant)
        c.unlock()
        c.data_dir, c.quiet, c.keep_checkpoints, c.keep_best = data_dir, True, 1, False
        if small:
            c.dataset, c.data_limit, c.num_epochs, c.batch_size = "synthetic", 64, 2, 16
            c.schedule.warmup_epochs, c.model_kw.widths = 0.5, (8, 8, 8)
        wd = os.path.join(out, "runs", variant)
        r = run(c, wd)
        recs, total, reached = MetricsLog.read(os.path.join(wd, "metrics.jsonl")), 0.0, None
        for rec in recs:
            total += rec["epoch_s"]
            if reached is None and rec["test_accuracy"] >= 0.94:
                reached = total
        rows.append(dict(variant=variant, accuracy=r["accuracy"],
                         tta_accuracy=r.get("tta_accuracy"), epochs=r["epochs"],
                         train_s=total, time_to_94_s=reached, images_per_s=r["images_per_s"],
                         stored_params=r["stored_params"], dataset=r["dataset"],
                         subset=r.get("subset", "")))
    return rows


def thinet(out: str, small: bool, deadline: float) -> list[dict]:
    from benchmarks import inference_latency, thinet_select

    sel = thinet_select.main((["--small"] if small else ["--C", "512", "--m", "100000"])
                             + ["--no-reference"])
    lat = inference_latency.main(["--small"] if small else ["--models", "resnet18,vgg16",
                                                            "--dtype", "bfloat16"])
    return [dict(part="thinet_select", **r) for r in sel] + \
        [dict(part="inference_latency", **r) for r in lat]


def run_suite(out: str, parts, small: bool, data_dir: str) -> dict:
    from benchmarks.common import environment

    os.makedirs(out, exist_ok=True)
    done = {}
    for part in parts:
        t0 = time.time()
        deadline = t0 + CAPS[part]
        print(f"== {part} (cap {CAPS[part]} s)", flush=True)
        if part == "speed":
            rows = speed(out, small, deadline)
        elif part == "accuracy":
            rows = accuracy(out, small, deadline, data_dir)
        else:
            rows = thinet(out, small, deadline)
        rec = dict(part=part, rows=rows, env=environment(), wall_s=time.time() - t0,
                   small=small, date=time.strftime("%Y-%m-%d"))
        with open(os.path.join(out, f"{part}.json"), "w") as f:
            json.dump(rec, f, indent=1, default=float)
        done[part] = rec
    return done


# ------------------------------------------------------------------------------ merge


def _load(d: str) -> dict:
    out = {}
    for part in CAPS:
        path = os.path.join(d, f"{part}.json")
        if os.path.exists(path):
            with open(path) as f:
                out[part] = json.load(f)
    return out


def section(d: str) -> tuple[str, list[str]]:
    """``(markdown section for docs/results.md, README headline rows)`` from a suite's
    output folder."""
    res = _load(d)
    if not res:
        raise FileNotFoundError(f"no gpu suite output (speed.json, accuracy.json, thinet.json) "
                                f"in {d}")
    env = next(iter(res.values()))["env"]
    where = (f"{env['devices']}x {env['device']}, jax {env['jax']}, revision `{env['git']}`, "
             f"{next(iter(res.values()))['date']}")
    small = any(r.get("small") for r in res.values())
    lines = ["## GPU suite (`python -m benchmarks.gpu_suite`)", "",
             f"Measured on {where}" + (" - SMOKE RUN at toy sizes (--small), not a result"
                                       if small else "") + ".", ""]
    head = []
    if "speed" in res:
        rows = res["speed"]["rows"]
        lines += ["| model | batch | framework | variant | images/s | vs fsjax dense | "
                  "outside convs |", "|" + " --- |" * 7]
        for r in rows:
            base = next((b for b in rows if b["model"] == r["model"] and b["batch"] == r["batch"]
                         and b["framework"] == "fsjax" and b["variant"] == "dense"), None)
            rel = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else "-"
            out = f"{100 * r['outside_convs']:.0f}%" if "outside_convs" in r else "-"
            lines.append(f"| {r['model']} | {r['batch']} | {r['framework']} | {r['variant']} | "
                         f"{r['images_per_s']:,.0f} | {rel} | {out} |")
        for model, batch in sorted({(r["model"], r["batch"]) for r in rows}):
            mine = {r["variant"]: r for r in rows if r["model"] == model and r["batch"] == batch
                    and r["framework"] == "fsjax"}
            torch = [r for r in rows if r["model"] == model and r["batch"] == batch
                     and r["framework"] == "torch"]
            if "dense" in mine and torch:
                best = max(torch, key=lambda r: r["images_per_s"])
                head.append(f"| {model} training, batch {batch}, bf16 ({env['device']}): fsjax "
                            f"dense vs PyTorch's best ({best['variant']}) | "
                            f"{mine['dense']['images_per_s'] / best['images_per_s']:.2f}x "
                            f"images/s | `benchmarks.gpu_suite`, {where} |")
        lines.append("")
    if "accuracy" in res:
        lines += ["| fast recipe | top-1 % | top-1 % TTA | train s | time to 94% | images/s |",
                  "|" + " --- |" * 6]
        for r in res["accuracy"]["rows"]:
            if "skipped" in r:
                lines.append(f"| {r['variant']} | not run: {r['skipped']} | | | | |")
                continue
            t94 = f"{r['time_to_94_s']:.0f} s" if r["time_to_94_s"] is not None else "not reached"
            tta = f"{100 * r['tta_accuracy']:.2f}" if r.get("tta_accuracy") is not None else "-"
            lines.append(f"| {r['variant']} | {100 * r['accuracy']:.2f} | {tta} | "
                         f"{r['train_s']:.0f} | {t94} | {r['images_per_s']:,.0f} |")
            head.append(f"| fast CIFAR-10 recipe, {r['variant']}, {r['epochs']} epochs on "
                        f"{env['device']} | {100 * r['accuracy']:.2f}% ({tta} TTA) in "
                        f"{r['train_s']:.0f} s | `benchmarks.gpu_suite`, {where} |")
        lines.append("")
    if "thinet" in res:
        sel = [r for r in res["thinet"]["rows"] if r["part"] == "thinet_select"]
        lat = [r for r in res["thinet"]["rows"] if r["part"] == "inference_latency"]
        for r in sel:
            lines.append(f"ThiNet selection + least squares, C={r.get('C')}, m={r.get('m')}: "
                         f"{r.get('fsjax_s', float('nan')):.3f} s.")
        if lat:
            lines += ["", "| model | variant | batch | ms | vs dense |", "|" + " --- |" * 5]
            lines += [f"| {r['model']} | {r['variant']} | {r['batch']} | {r['ms']:.3f} | "
                      f"{r['vs_dense']:.2f}x |" for r in lat]
        lines.append("")
    return "\n".join(lines), head


def _replace(text: str, body: str) -> str:
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        return text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def merge(d: str, docs: str, readme: str) -> int:
    body, head = section(d)
    table = "\n".join(["| on a GPU | figure | command, where, when |", "| --- | --- | --- |",
                       *head]) if head else "GPU rows: not run (no GPU suite output merged)."
    if "SMOKE RUN" in body:
        table = "GPU rows: only a CPU smoke run of the suite was merged (not a result)."
    for path, new in ((docs, body), (readme, table)):
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(_replace(text, new))
        print(f"updated {path}")
    print(body)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_suite", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="where the parts' JSON files go")
    ap.add_argument("--merge", default=None, help="a suite's output folder to merge")
    ap.add_argument("--docs", default="docs/results.md")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--small", action="store_true", help="toy sizes (the CPU smoke test)")
    ap.add_argument("--parts", default=",".join(CAPS))
    ap.add_argument("--data-dir", default="", help="CIFAR-10 JPEG folder or tarballs")
    a = ap.parse_args(argv)
    if a.merge:
        return merge(a.merge, a.docs, a.readme)
    if not a.out:
        print("error: give --out DIR (run the suite) or --merge DIR", file=sys.stderr)
        return 2
    parts = [p for p in a.parts.split(",") if p]
    bad = [p for p in parts if p not in CAPS]
    if bad:
        print(f"error: unknown part(s) {', '.join(bad)}; valid: {', '.join(CAPS)}",
              file=sys.stderr)
        return 2
    run_suite(a.out, parts, a.small, a.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
