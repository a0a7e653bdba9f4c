"""Independent PyTorch references for the CPU CIFAR-10 tables: the same network and recipe.

    python -m benchmarks.torch_cifar_reference --workdir runs/table/torch-dense [--epochs 15]
    python -m benchmarks.torch_cifar_reference --recipe airbench --workdir runs/fast/torch-dense

Both train on the same CIFAR-10 JPEG arrays as fsjax (``fsjax.data.load('cifar10')``), float32,
shuffled by ``numpy`` with the seed, and write ``metrics.jsonl`` (test accuracy per epoch) and
``results.json`` to ``--workdir``; they need the bench extra (PyTorch, CPU build).

``--recipe resnet8`` (the ResNet-8 table, ``configs/cifar10/table.py``): a standard CIFAR
ResNet-8 (``benchmarks.vs_pytorch``'s, widths 16/32/64, one basic block per stage, PyTorch's
default initialisation), batch 128, random crop (pad 4) + flip, SGD Nesterov momentum 0.9,
weight decay 5e-4 on every parameter, one-cycle lr (linear from 0.1/25 to 0.1 over 2 epochs,
cosine to 0), 15 epochs.

``--recipe airbench`` (the fast-network table, ``configs/cifar10/fast.py``), written here from
the published airbench94 recipe (arXiv 2404.00498): a 2x2 whitening conv 3->24 (weights from
the eigenvectors of the covariance of 2x2 patches of 5,000 training images, frozen; its bias
trained for the first 3 epochs), GELU, three blocks conv3x3 -> maxpool2 -> BatchNorm -> GELU
-> conv3x3 -> BatchNorm -> GELU (widths 64/256/256; BatchNorm momentum 0.6, eps 1e-12, no
trainable scale), maxpool 3, linear 256->10 without bias, logits x 1/9; convs initialised by
PyTorch's default with a partial identity (Dirac) in their first ``cin`` filters. Batch 1024,
10 epochs (airbench: 9.9), label smoothing 0.2, SGD Nesterov momentum 0.85 with airbench's
decoupled lr 11.5 and weight decay 0.0153 per 1024 examples (BatchNorm biases at 64x the lr,
the same decay per step), lr x (0.2 -> 1 linear over 23% of the steps, then -> 0.07 linear),
lookahead of the weights and BatchNorm statistics every 5 steps with decay
0.95^5 (t/T)^3 (the weights are the average at the end); a random half of the images
mirrored once, all mirrored on odd epochs, random 2-pixel translations of the reflect-padded
images; test-time augmentation (mirror, and 1-pixel translations up-left / down-right of the
reflect-padded image) at the end, plain evaluation after each epoch.
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
    ap.add_argument("--recipe", choices=("resnet8", "airbench"), default="resnet8")
    ap.add_argument("--epochs", type=int, default=0, help="0: the recipe's (15 | 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--limit", type=int, default=0, help="N train/test images (smoke test)")
    ap.add_argument("--batch", type=int, default=0, help="0: the recipe's (128 | 1024)")
    a = ap.parse_args(argv)
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"the PyTorch reference needs the bench extra: pip install -e .[bench] "
                          f"({e})") from None
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

    def prep(x):  # uint8 NHWC -> normalised float32 NCHW
        return (torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255
                - mean) / std

    recipe = _airbench if a.recipe == "airbench" else _resnet8
    os.makedirs(a.workdir, exist_ok=True)
    t_all = time.perf_counter()
    with open(os.path.join(a.workdir, "metrics.jsonl"), "w") as log:
        res = recipe(a, prep, (xtr, ytr, xte, yte), np.random.default_rng(a.seed), log)
    res.update(wall_s=time.perf_counter() - t_all, threads=a.threads, seed=a.seed,
               framework=f"torch {torch.__version__}", train_examples=len(ytr),
               test_examples=len(yte))
    with open(os.path.join(a.workdir, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))
    return 0


def _log(log, recs, rec):
    recs.append(rec)
    log.write(json.dumps(rec) + "\n")
    log.flush()
    print(f"epoch {rec['epoch']} loss {rec['train_loss']:.4f} test "
          f"{100 * rec['test_accuracy']:.2f}% ({rec['epoch_s']:.0f}s)", flush=True)


def _accuracy(model, x, y, prep, views=None) -> float:
    """Top-1 over ``x`` in batches of 1000; ``views(batch)`` -> logits (TTA), else plain."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), 1000):
            xb = prep(x[i:i + 1000])
            logits = views(xb) if views else model(xb)
            correct += int((logits.argmax(1).numpy() == y[i:i + 1000]).sum())
    return correct / len(y)


def _resnet8(a, prep, arrays, rng, log) -> dict:
    import torch
    import torch.nn.functional as F

    from benchmarks.vs_pytorch import torch_modules

    xtr, ytr, xte, yte = arrays
    epochs = a.epochs or 15
    model = torch_modules()("dense", 8)
    batch, lr, warm_epochs = a.batch or 128, 0.1, 2
    steps = len(ytr) // batch
    total, warm = epochs * steps, warm_epochs * steps
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)

    def lr_at(t):  # fsjax's onecycle (train/optim.py)
        if t < warm:
            return lr / 25 + (lr - lr / 25) * t / warm
        return 0.5 * lr * (1 + math.cos(math.pi * min(t - warm, total - warm) / (total - warm)))

    step, recs = 0, []
    for epoch in range(epochs):
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
        _log(log, recs, dict(epoch=epoch + 1, train_loss=loss_sum / steps,
                             test_accuracy=_accuracy(model, xte, yte, prep), epoch_s=epoch_s,
                             images_per_s=steps * batch / epoch_s))
    return dict(model="ResNet-8 (16/32/64)", recipe="resnet8", accuracy=recs[-1]["test_accuracy"],
                epochs=epochs, params=sum(p.numel() for p in model.parameters()),
                images_per_s=float(np.median([r["images_per_s"] for r in recs[1:] or recs])))


def airbench_net(widths=(64, 256, 256)):
    import torch
    from torch import nn

    class Scaled(nn.Module):
        def forward(self, x):
            return x / 9

    def conv(cin, cout):
        c = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        with torch.no_grad():  # partial identity: filter i passes input channel i (i < cin)
            nn.init.dirac_(c.weight[:min(cin, cout)])
        return c

    def bn(c):
        b = nn.BatchNorm2d(c, eps=1e-12, momentum=0.4)  # running = 0.6 running + 0.4 batch
        b.weight.requires_grad_(False)
        return b

    layers = [nn.Conv2d(3, 24, 2, padding=0, bias=True), nn.GELU()]
    cin = 24
    for w in widths:
        layers += [conv(cin, w), nn.MaxPool2d(2), bn(w), nn.GELU(), conv(w, w), bn(w), nn.GELU()]
        cin = w
    layers += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(cin, 10, bias=False), Scaled()]
    net = nn.Sequential(*layers)
    nn.init.zeros_(net[0].bias)
    net[0].weight.requires_grad_(False)
    return net


def _whiten(conv, x, eps=5e-4):
    """Set a 2x2 conv's 2*12 filters to +-(eigenvectors / sqrt(eigenvalue + eps)) of the
    covariance of all 2x2 patches of ``x`` (N, 3, H, W), largest eigenvalue first."""
    import torch

    n, c, h, w = x.shape
    p = x.unfold(2, 2, 1).unfold(3, 2, 1)               # N, C, H-1, W-1, 2, 2
    p = p.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4).double()
    cov = p.T @ p / len(p)
    val, vec = torch.linalg.eigh(cov)
    val, vec = val.flip(0), vec.flip(1)
    f = (vec / torch.sqrt(val + eps)).T.reshape(c * 4, c, 2, 2).float()
    with torch.no_grad():
        conv.weight.copy_(torch.cat([f, -f]))


def _airbench(a, prep, arrays, rng, log) -> dict:
    import torch
    import torch.nn.functional as F

    xtr, ytr, xte, yte = arrays
    epochs, batch, momentum = a.epochs or 10, a.batch or 1024, 0.85
    model = airbench_net().to(memory_format=torch.channels_last)
    sample = rng.choice(len(ytr), min(5000, len(ytr)), replace=False)  # arrays are class-sorted
    _whiten(model[0], prep(xtr[np.sort(sample)]))
    # airbench's decoupled hyperparameters (per 1024 examples) as a mean-loss SGD: lr and the
    # L2 coefficient; BatchNorm biases get 64x the lr and 1/64 of the coefficient
    lr = 11.5 * batch / 1024 / (1 + 1 / (1 - momentum))
    l2 = 0.0153 / 11.5
    bn_bias = [p for n, p in model.named_parameters() if p.requires_grad and is_bn(model, n)]
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not is_bn(model, n)]
    opt = torch.optim.SGD([dict(params=bn_bias, lr=64 * lr, weight_decay=l2 / 64, scale=64),
                           dict(params=rest, lr=lr, weight_decay=l2, scale=1)],
                          momentum=momentum, nesterov=True)
    steps = len(ytr) // batch
    total = epochs * steps
    warm = int(0.23 * total)
    lr_at = lambda t: 0.2 + 0.8 * t / warm if t < warm else 1 - 0.93 * (t - warm) / (total - warm)
    slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def sync(decay):
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if k in slow:
                    slow[k].lerp_(v, 1 - decay)
                    v.copy_(slow[k])

    base = np.where((rng.random(len(ytr)) < 0.5)[:, None, None, None], xtr[:, :, ::-1], xtr)
    padded = np.pad(base, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    step, recs = 0, []
    for epoch in range(epochs):
        model.train()
        model[0].bias.requires_grad_(epoch < 3)
        t0 = time.perf_counter()
        perm = rng.permutation(len(ytr))[: steps * batch]
        loss_sum = 0.0
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            dy, dx = rng.integers(0, 5, (2, batch))
            x = np.stack([padded[j, y:y + 32, z:z + 32] for j, y, z in
                          zip(idx, dy, dx, strict=True)])
            if epoch % 2:
                x = x[:, :, ::-1]
            for g in opt.param_groups:
                g["lr"] = g["scale"] * lr * lr_at(step)
            opt.zero_grad(set_to_none=True)
            out = model(prep(x).contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(out, torch.from_numpy(ytr[idx]).long(), label_smoothing=0.2)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().item()
            step += 1
            if step % 5 == 0:
                sync(0.95 ** 5 * (step / total) ** 3)
        if epoch == epochs - 1:
            sync(1.0)  # the weights are the lookahead average
        epoch_s = time.perf_counter() - t0
        _log(log, recs, dict(epoch=epoch + 1, train_loss=loss_sum / steps,
                             test_accuracy=_accuracy(model, xte, yte, prep), epoch_s=epoch_s,
                             images_per_s=steps * batch / epoch_s))

    def tta(x):
        mirror = lambda v: 0.5 * (model(v) + model(v.flip(-1)))
        p = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = 0.5 * (mirror(p[:, :, :32, :32]) + mirror(p[:, :, 2:, 2:]))
        return 0.5 * mirror(x) + 0.5 * shifted

    acc_tta = _accuracy(model, xte, yte, prep, tta)
    return dict(model="airbench94 (whiten 24, 64/256/256)", recipe="airbench",
                accuracy=recs[-1]["test_accuracy"], tta_accuracy=acc_tta, epochs=epochs,
                batch=batch, params=sum(p.numel() for p in model.parameters()),
                images_per_s=float(np.median([r["images_per_s"] for r in recs[1:] or recs])))


def is_bn(model, name: str) -> bool:
    import torch

    mod = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(mod, torch.nn.BatchNorm2d)


if __name__ == "__main__":
    raise SystemExit(main())
