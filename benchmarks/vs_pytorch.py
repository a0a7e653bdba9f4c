"""fsjax against PyTorch on the CPU, side by side in one process, interleaved.

    pip install -e .[bench]            # PyTorch, CPU build (see docs/performance.md)
    python -m benchmarks.vs_pytorch [--rounds 15] [--steps 3] [--batch 128]
        [--models resnet20,resnet56] [--kinds dense,fs4,wks4] [--threads 2] [--json-dir DIR]
        [--skip-convs] [--ablate-cpu-forms]

Rows: the whole CIFAR ResNet training step (normalise -> forward -> cross-entropy -> backward
-> SGD momentum 0.9 + weight decay 5e-4, float32, batch 128, BN in training mode) for dense,
FS rho=4 and WKSC g=4; a 3x3 256->256 conv on 32x16x16 (forward, and forward+backward).
fsjax runs the trainer's own jitted step (``train.model_fn.make_train_step``, augmentation
off, input uint8 NHWC); PyTorch runs a model written here with the same architecture and
math (BasicBlock, 'B' shortcuts, FS filters gathered from one summary, WKSC as a weighted
channel-group sum then a conv), input uint8 NCHW. ``--models airbench --kinds dense``: the
fast CIFAR network (``fsjax.models.create('airbench')`` against the PyTorch reference's
network, channels_last; e.g. ``--batch 512``). Each round times ``--steps`` calls of every
variant in turn; ``--ablate-cpu-forms`` adds, to each step's rounds, the same step compiled
without each of fsjax's CPU-only program forms (``fsjax.ops.CPU_FORMS``) and without its
CPU compiler options (``fsjax.ops.CPU_COMPILER_OPTIONS``: JAX's defaults). The table gives
the median over rounds and the spread (25th-75th percentile), compilation and warm-up
excluded. Both frameworks get ``--threads`` threads (XLA:CPU uses every core it sees; run
under ``taskset`` to pin both).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import print_table, train_state, write_json
from fsjax import ops

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # the benchmark says so and stops; nothing else needs PyTorch
    torch = None

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


# --- PyTorch side ----------------------------------------------------------------------------

def torch_modules():
    class FSConv2d(nn.Module):
        """Filters gathered from one summary with fsjax's index table (same math)."""

        def __init__(self, cin, cout, k, stride, rho):
            super().__init__()
            shape = (k, k, cin, cout)
            L = ops.fs_length(shape, rho)
            idx = np.asarray(ops.fs_index(shape, L, ops.fs_offsets(shape, L)))
            self.register_buffer("idx", torch.from_numpy(idx.transpose(3, 2, 0, 1).copy()).long())
            self.fs = nn.Parameter(torch.randn(L) * (2 / (k * k * cin)) ** 0.5)
            self.stride, self.pad = stride, k // 2

        def forward(self, x):
            return F.conv2d(x, self.fs[self.idx], None, self.stride, self.pad)

    class WKSConv2d(nn.Module):
        """Per-input weights, contiguous groups of g channels summed, then a shared kernel."""

        def __init__(self, cin, cout, k, stride, g):
            super().__init__()
            self.groups = cin // g
            self.conv = nn.Conv2d(self.groups, cout, k, stride, k // 2, bias=False)
            self.alpha = nn.Parameter(torch.ones(cin))

        def forward(self, x):
            n, c, h, w = x.shape
            x = (x * self.alpha[None, :, None, None]).view(n, self.groups, c // self.groups, h, w)
            return self.conv(x.sum(2))

    def conv(kind, cin, cout, k, stride):
        if kind.startswith("fs"):
            return FSConv2d(cin, cout, k, stride, float(kind[2:]))
        if kind.startswith("wks") and cin % int(kind[3:]) == 0 and cin > int(kind[3:]):
            return WKSConv2d(cin, cout, k, stride, int(kind[3:]))
        return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)

    class Block(nn.Module):
        def __init__(self, kind, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = conv(kind, cin, cout, 3, stride), nn.BatchNorm2d(cout)
            self.c2, self.b2 = conv(kind, cout, cout, 3, 1), nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(conv(kind, cin, cout, 1, stride), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
            return F.relu(y + (x if self.short is None else self.short(x)))

    class ResNet(nn.Module):
        def __init__(self, kind, depth, num_classes=10):
            super().__init__()
            n = (depth - 2) // 6
            self.stem = nn.Sequential(conv(kind, 3, 16, 3, 1), nn.BatchNorm2d(16), nn.ReLU())
            blocks, c = [], 16
            for s, w in enumerate((16, 32, 64)):
                for b in range(n):
                    blocks.append(Block(kind, c, w, 2 if s and not b else 1))
                    c = w
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(c, num_classes)

        def forward(self, x):
            return self.fc(self.blocks(self.stem(x)).mean((2, 3)))

    return ResNet


def torch_step(model_name, kind, batch):
    memory = torch.contiguous_format
    if model_name == "airbench":  # the fast network (dense only), channels_last (its faster form)
        from benchmarks.torch_cifar_reference import airbench_net

        if kind != "dense":
            raise ValueError("the PyTorch airbench network is dense only")
        memory = torch.channels_last
        model = airbench_net().to(memory_format=memory).train()
    else:
        model = torch_modules()(kind, int(model_name[6:])).train()
    # as optax.sgd(momentum) after add_decayed_weights (the trainer's "sgd")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(batch) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        xf = ((x.float() - mean) / std).contiguous(memory_format=memory)
        loss = F.cross_entropy(model(xf), y)
        loss.backward()
        opt.step()
        return loss

    return step


# --- fsjax side --------------------------------------------------------------------------------

def fsjax_step(model_name, kind, batch, forms=None, options=None):
    """The trainer's step for ``model_name`` / ``kind`` as a no-argument callable; ``forms``:
    compile it with only these CPU-only forms (``fsjax.ops.cpu_forms``), default all;
    ``options``: XLA compiler options (``{name: value}``), default the trainer's
    (``fsjax.ops.compiler_options()``); ``{}``: JAX's defaults."""
    from configs.variants import apply_variant
    from train import configlib
    from train.loop import make_mesh

    c = configlib.base()
    c.model = model_name
    c.augment.flip, c.augment.crop_padding, c.augment.cutout = False, 0, 0
    apply_variant(c, kind)
    _, ts, step = train_state(c)  # normalised with MEAN, STD
    state = dict(ts=ts)
    opts = ops.compiler_options() if options is None else options
    f = jax.jit(step, donate_argnums=(0,), compiler_options=opts)
    x = jax.random.randint(jax.random.key(0), (batch, 32, 32, 3), 0, 256).astype(jnp.uint8)
    y = jnp.arange(batch) % 10
    mesh, P = make_mesh(), jax.sharding.PartitionSpec  # the trainer's 1-D data mesh
    x, y = (jax.device_put(v, jax.sharding.NamedSharding(mesh, P("data"))) for v in (x, y))
    state["ts"] = jax.device_put(state["ts"], jax.sharding.NamedSharding(mesh, P()))
    key = jax.random.key(1)
    if forms is not None:
        with ops.cpu_forms(*forms):
            f = f.lower(state["ts"], x, y, key).compile()

    def step():
        state["ts"], met = f(state["ts"], x, y, key)
        return met["loss"]

    return step


def conv_fns(train: bool):
    """3x3 256->256 conv, 32x16x16, float32: (fsjax fn, torch fn)."""
    xj = jax.random.normal(jax.random.key(0), (32, 16, 16, 256))
    kj = jax.random.normal(jax.random.key(1), (3, 3, 256, 256)) * 0.02
    xt = torch.randn(32, 256, 16, 16)
    kt = torch.randn(256, 256, 3, 3) * 0.02
    if not train:
        fj = jax.jit(lambda x, k: ops.conv(x, k, None, padding="SAME"),
                     compiler_options=ops.compiler_options())
        return (lambda: fj(xj, kj)), (lambda: F.conv2d(xt, kt, None, 1, 1))
    gj = jax.jit(jax.grad(lambda x, k: jnp.sum(ops.conv(x, k, None, padding="SAME") ** 2),
                          argnums=(0, 1)), compiler_options=ops.compiler_options())
    xt.requires_grad_(True)
    kt.requires_grad_(True)

    def torch_train():
        xt.grad = kt.grad = None
        (F.conv2d(xt, kt, None, 1, 1) ** 2).sum().backward()
        return kt.grad

    return (lambda: gj(xj, kj)), torch_train


# --- timing ------------------------------------------------------------------------------------

def interleaved(fns: dict, rounds: int, steps: int, warmup: int = 3) -> dict:
    """Per variant: median and 25th/75th percentile seconds per call over ``rounds`` rounds of
    ``steps`` calls each, variants in turn within a round."""
    def sync(v):
        if torch is not None and isinstance(v, torch.Tensor):
            return v
        return jax.block_until_ready(v)

    for f in fns.values():
        for _ in range(warmup):
            sync(f())
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                sync(f())
            times[k].append((time.perf_counter() - t0) / steps)
    out = {}
    for k, t in times.items():
        q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
        out[k] = dict(median=statistics.median(t), p25=q[0], p75=q[2])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--models", default="resnet20,resnet56")
    ap.add_argument("--kinds", default="dense,fs4,wks4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-convs", action="store_true")
    ap.add_argument("--ablate-cpu-forms", action="store_true",
                    help="also time each step compiled without one of fsjax.ops.CPU_FORMS")
    ap.add_argument("--json-dir")
    a = ap.parse_args(argv)
    if torch is None:
        print("benchmarks.vs_pytorch needs PyTorch, which is not installed: pip install -e "
              ".[bench] (CPU build: pip install torch --index-url "
              "https://download.pytorch.org/whl/cpu)", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    rows = []

    def add(what, res, unit_per_call=None):
        fj, ft = res["fsjax"], res["torch"]
        row = dict(what=what, fsjax_ms=fj["median"] * 1e3,
                   fsjax_spread=f"{fj['p25'] * 1e3:.1f}-{fj['p75'] * 1e3:.1f}",
                   torch_ms=ft["median"] * 1e3,
                   torch_spread=f"{ft['p25'] * 1e3:.1f}-{ft['p75'] * 1e3:.1f}",
                   fsjax_over_torch_time=fj["median"] / ft["median"])
        if unit_per_call:
            row.update(fsjax_img_s=unit_per_call / fj["median"],
                       torch_img_s=unit_per_call / ft["median"])
        rows.append(row)
        print_table([row], list(row))
        sys.stdout.flush()

    if not a.skip_convs:
        for train in (False, True):
            fj, ft = conv_fns(train)
            add(f"conv 3x3 256->256 32x16x16 {'fwd+bwd' if train else 'fwd'}",
                interleaved({"fsjax": fj, "torch": ft}, a.rounds, a.steps))
    for model in a.models.split(","):
        for kind in a.kinds.split(","):
            fns = {"fsjax": fsjax_step(model, kind, a.batch),
                   "torch": torch_step(model, kind, a.batch)}
            ablations = {}
            if a.ablate_cpu_forms:  # the step compiled without each CPU-only form in turn
                for name in ops.CPU_FORMS:
                    ablations[f"without {name}"] = dict(
                        forms=[f for f in ops.CPU_FORMS if f != name])
                ablations["without compiler options"] = dict(options={})
            for name, kw in ablations.items():
                fns[name] = fsjax_step(model, kind, a.batch, **kw)
            res = interleaved(fns, a.rounds, a.steps)
            add(f"{model} {kind} train step b{a.batch}", res, a.batch)
            for name in ablations:
                add(f"{model} {kind} train step b{a.batch}, {name}",
                    dict(fsjax=res[name], torch=res["torch"]), a.batch)
    print()
    print_table(rows, list(rows[0]))
    write_json(a.json_dir, "vs_pytorch", rows, threads=a.threads, torch=torch.__version__,
               rounds=a.rounds, steps=a.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
