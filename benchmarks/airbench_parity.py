"""fsjax's airbench step against the PyTorch reference's, step by step, from the same weights.

    python -m benchmarks.airbench_parity [--steps 5] [--batch 256]

Builds the fsjax network of ``configs/cifar10/fast.py`` (dense), copies its initial weights into
``benchmarks.torch_cifar_reference``'s PyTorch network, and runs ``--steps`` training steps of
both on the same batches (CIFAR-10 JPEG training images, augmentation off, the fsjax
schedule's lr at each step): the recipe's optimizer (Nesterov SGD, L2, BatchNorm biases at 64x
the lr), label smoothing and the lookahead (every 5 steps). Prints, per step, the loss of each,
then the largest relative difference of every parameter and BatchNorm statistic, and the
test-set top-1 of both in eval mode on 2,000 images. Needs PyTorch (the bench extra).
"""

from __future__ import annotations

import argparse

import numpy as np


def _torch_index(i: int) -> tuple[int, int]:
    """fsjax ``layers[i]`` -> (conv, BatchNorm) positions in the PyTorch ``nn.Sequential``."""
    b, j = divmod(i, 2)
    base = 2 + 7 * b
    return (base, base + 2) if j == 0 else (base + 4, base + 5)


def copy_weights(fs_model, net) -> None:
    import torch

    def put(t, a):
        with torch.no_grad():
            t.copy_(torch.from_numpy(np.ascontiguousarray(np.asarray(a))))

    put(net[0].weight, np.transpose(fs_model.whiten.kernel[...], (3, 2, 0, 1)))
    put(net[0].bias, fs_model.whiten.bias[...])
    for i, layer in enumerate(fs_model.layers):
        ci, bi = _torch_index(i)
        put(net[ci].weight, np.transpose(layer.conv.kernel[...], (3, 2, 0, 1)))
        put(net[bi].bias, layer.bn.bias[...])
        put(net[bi].running_mean, layer.bn.mean[...])
        put(net[bi].running_var, layer.bn.var[...])
    put(net[25].weight, np.asarray(fs_model.head[0].kernel[...]).T)


def pairs(params, stats, net):
    """(name, fsjax array, torch array) for every parameter and statistic."""
    out = [("whiten.kernel", np.transpose(params["whiten"]["kernel"], (3, 2, 0, 1)),
            net[0].weight), ("whiten.bias", params["whiten"]["bias"], net[0].bias)]
    for i in range(6):
        ci, bi = _torch_index(i)
        p, s = params["layers"][i], stats["layers"][i]
        out += [(f"layers.{i}.conv", np.transpose(p["conv"]["kernel"], (3, 2, 0, 1)),
                 net[ci].weight), (f"layers.{i}.bn.bias", p["bn"]["bias"], net[bi].bias),
                (f"layers.{i}.bn.mean", s["bn"]["mean"], net[bi].running_mean),
                (f"layers.{i}.bn.var", s["bn"]["var"], net[bi].running_var)]
    out.append(("head", np.asarray(params["head"][0]["kernel"]).T, net[25].weight))
    return [(n, np.asarray(a), b.detach().numpy()) for n, a, b in out]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.airbench_parity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    from benchmarks.torch_cifar_reference import airbench_net, is_bn
    from configs.cifar10.fast import get_config
    from fsjax import data, ops
    from fsjax.data.augment import normalize
    from train.model_fn import ModelFn, make_train_step
    from train.optim import make_optimizer
    from train.trainer import build_model

    torch.set_num_threads(1)
    ds = data.load("cifar10")
    c = get_config("dense")
    c.augment.crop_padding, c.augment.flip, c.augment.alternate_flip = 0, False, False
    steps_per_epoch = 48
    model, _ = build_model(c, 10, 3)
    rng = np.random.default_rng(0)
    sample = ds.train_images[np.sort(rng.choice(50000, 5000, replace=False))]
    model.init_from_data(np.asarray(normalize(jnp.asarray(sample), ds.mean, ds.std)))
    net = airbench_net()
    copy_weights(model, net)
    fn = ModelFn.create(model)
    tx, lr_fn = make_optimizer(c, model, steps_per_epoch)
    p, s = ModelFn.initial(model)
    ts = dict(params=p, stats=s, opt=tx.init(p), step=jnp.zeros((), jnp.int32),
              slow=jax.tree.map(jnp.copy, dict(params=p, stats=s)))
    step = jax.jit(make_train_step(fn, tx, c, ds.mean, ds.std, jnp.float32,
                                   steps_per_epoch=steps_per_epoch),
                   compiler_options=ops.compiler_options())

    lr0, l2 = c.optimizer.lr, c.optimizer.weight_decay
    bn_bias = [q for n, q in net.named_parameters() if q.requires_grad and is_bn(net, n)]
    rest = [q for n, q in net.named_parameters() if q.requires_grad and not is_bn(net, n)
            and n != "0.bias"]
    opt = torch.optim.SGD([dict(params=bn_bias, weight_decay=l2 / 64, scale=64),
                           dict(params=rest, weight_decay=l2, scale=1),
                           dict(params=[net[0].bias], weight_decay=l2, scale=1)],
                          lr=lr0, momentum=c.optimizer.momentum, nesterov=True)
    total = c.num_epochs * steps_per_epoch
    slow = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    prep = lambda x: (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std
    for t in range(a.steps):
        idx = rng.choice(50000, a.batch, replace=False)
        x, y = ds.train_images[idx], ds.train_labels[idx].astype(np.int32)
        ts, m = step(ts, x, y, jax.random.key(t))
        net.train()
        for g in opt.param_groups:
            g["lr"] = g["scale"] * float(lr_fn(t))
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(prep(x)), torch.from_numpy(y).long(), label_smoothing=0.2)
        loss.backward()
        opt.step()
        if (t + 1) % c.lookahead.every == 0:
            d = 0.95 ** 5 * ((t + 1) / total) ** 3
            with torch.no_grad():
                for k, v in net.state_dict().items():
                    if k in slow:
                        slow[k].lerp_(v, 1 - d)
                        v.copy_(slow[k])
        print(f"step {t + 1}: loss fsjax {float(m['loss']) / a.batch:.6f} torch "
              f"{loss.item():.6f}")
    params, stats = jax.device_get(ts["params"]), jax.device_get(ts["stats"])
    print(f"\n{'tensor':<20} max |fsjax - torch| / max |torch|")
    for name, f, t in pairs(params, stats, net):
        print(f"{name:<20} {np.abs(f - t).max() / max(np.abs(t).max(), 1e-12):.3g}")
    idx = rng.choice(10000, 2000, replace=False)
    x, y = ds.test_images[idx], ds.test_labels[idx]
    from train.model_fn import make_eval_step

    ev = jax.jit(make_eval_step(fn, ds.mean, ds.std, jnp.float32))(
        ts["params"], ts["stats"], x, y, np.ones(len(y), bool))
    net.eval()
    with torch.no_grad():
        acc_t = float((net(prep(x)).argmax(1).numpy() == y).mean())
    print(f"\ntest top-1 (2,000 images, eval mode): fsjax {float(ev['correct']) / len(y):.4f} "
          f"torch {acc_t:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
