"""An independent reference for the CPU CIFAR-10 table: the same ResNet-8 and recipe in PyTorch.

    python -m benchmarks.torch_cifar_reference --workdir runs/table/torch-dense [--epochs 15]

The dense row of docs/results.md ("CIFAR-10 on the CPU") is checked against this: a standard
PyTorch CIFAR ResNet-8 (``benchmarks.vs_pytorch``'s, widths 16/32/64, one basic block per
stage, PyTorch's default initialisation) trained on the same CIFAR-10 JPEG arrays
(``fsjax.data.load('cifar10')``) with the table's recipe (``configs/cifar10/table.py``): batch
128, random crop (pad 4) + flip, SGD Nesterov momentum 0.9, weight decay 5e-4 on every
parameter, one-cycle lr (linear from 0.1/25 to 0.1 over 2 epochs, cosine to 0), 15 epochs,
float32, shuffled by ``numpy`` with the seed. Writes ``metrics.jsonl`` (test accuracy per epoch)
and ``results.json`` to ``--workdir``; needs the bench extra (PyTorch, CPU build).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.torch_cifar_reference",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--limit", type=int, default=0, help="N train/test images (smoke test)")
    a = ap.parse_args(argv)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        raise ImportError(f"the PyTorch reference needs the bench extra: pip install -e .[bench] "
                          f"({e})") from None
    from benchmarks.vs_pytorch import _torch_modules
    from fsjax import data

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    ds = data.load("cifar10", a.data_dir)
    xtr, ytr, xte, yte = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
    if a.limit:  # a class-stratified random subset (the arrays are sorted by class)
        tr, te = (data.stratified_subset(y, a.limit, a.seed) for y in (ytr, yte))
        xtr, ytr, xte, yte = xtr[tr], ytr[tr], xte[te], yte[te]
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    model = _torch_modules()("dense", 8)
    batch, lr, warm_epochs = 128, 0.1, 2
    steps = len(ytr) // batch
    total, warm = a.epochs * steps, warm_epochs * steps
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)

    def lr_at(t):  # fsjax's onecycle (train/optim.py)
        if t < warm:
            return lr / 25 + (lr - lr / 25) * t / warm
        return 0.5 * lr * (1 + math.cos(math.pi * min(t - warm, total - warm) / (total - warm)))

    def prep(x):
        return (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std

    rng = np.random.default_rng(a.seed)
    os.makedirs(a.workdir, exist_ok=True)
    log = open(os.path.join(a.workdir, "metrics.jsonl"), "w")
    t_all, step, recs = time.perf_counter(), 0, []
    for epoch in range(a.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = rng.permutation(len(ytr))[: steps * batch]
        loss_sum = 0.0
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            x = np.pad(xtr[idx], ((0, 0), (4, 4), (4, 4), (0, 0)))
            dy, dx = rng.integers(0, 9, (2, batch))
            x = np.stack([x[i, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32] for i in range(batch)])
            flip = rng.random(batch) < 0.5
            x[flip] = x[flip, :, ::-1]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(prep(x)), torch.from_numpy(ytr[idx]).long())
            loss.backward()
            opt.step()
            loss_sum += loss.detach().item()
            step += 1
        epoch_s = time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(yte), 1000):
                pred = model(prep(xte[i:i + 1000])).argmax(1).numpy()
                correct += int((pred == yte[i:i + 1000]).sum())
        rec = dict(epoch=epoch + 1, train_loss=loss_sum / steps,
                   test_accuracy=correct / len(yte), epoch_s=epoch_s,
                   images_per_s=steps * batch / epoch_s)
        recs.append(rec)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(f"epoch {epoch + 1}/{a.epochs} loss {rec['train_loss']:.4f} "
              f"test {100 * rec['test_accuracy']:.2f}% ({epoch_s:.0f}s)", flush=True)
    res = dict(framework=f"torch {torch.__version__}", model="ResNet-8 (16/32/64)",
               accuracy=recs[-1]["test_accuracy"], epochs=a.epochs,
               params=sum(p.numel() for p in model.parameters()),
               wall_s=time.perf_counter() - t_all, threads=a.threads,
               images_per_s=float(np.median([r["images_per_s"] for r in recs[1:] or recs])))
    with open(os.path.join(a.workdir, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
