"""The ThiNet paper's VGG-16 table as CIFAR-10 (JPEG copy) runs, one command per row:
``configs/thinet/vgg16_rows.py:<row>[,<width>]``.

Rows (the ImageNet architectures are ``fsjax.prune.thinet.published_architecture``):

- ``original``: VGG-16 with BN and an FC head (pool5 -> 512 -> 512 -> 10, dropout 0.5), the
  CIFAR analogue of VGG-16's 4096-4096 FC layers.
- ``conv``: ThiNet-Conv, 50% of the filters of conv1_1 .. conv4_3 pruned from ``original``
  (layer by layer, one fine-tuning epoch each, then ``prune.final_epochs``).
- ``scratch``: the ``conv`` run's pruned architecture trained from scratch
  (``config.arch_from``), the paper's control for "is the pruning doing anything".
- ``gap``: ThiNet-GAP, the ``conv`` model with its FC layers replaced by global average
  pooling of conv5_3 and one FC layer (fine-tuned).
- ``tiny``: ThiNet-Tiny, the ``gap`` model pruned to 25% of conv1_1 .. conv5_2 and 50% of
  conv5_3 (conv5_3 is pruned against the FC layer after the pooling).

``width`` (default 1) scales every width, e.g. ``0.25`` for a CPU-sized model whose rows
keep the paper's ratios. Commands, in order (each row reads the previous row's run)::

    python -m train.main --config configs/thinet/vgg16_rows.py:original \\
        --workdir runs/thinet-vgg16/original
    python -m train.prune --config configs/thinet/vgg16_rows.py:conv \\
        --workdir runs/thinet-vgg16/conv
    python -m train.main --config configs/thinet/vgg16_rows.py:scratch \\
        --workdir runs/thinet-vgg16/scratch
    python -m train.prune --config configs/thinet/vgg16_rows.py:gap \\
        --workdir runs/thinet-vgg16/gap
    python -m train.prune --config configs/thinet/vgg16_rows.py:tiny \\
        --workdir runs/thinet-vgg16/tiny

(with ``,0.25`` the directory is ``runs/thinet-vgg16-w0.25/``). Recipe: SGD momentum 0.9,
weight decay 5e-4, batch 128, cosine lr 0.05 for ``num_epochs`` = 30 (original, scratch);
pruning stages fine-tune 1 epoch at lr 0.01, then 10 final epochs at lr 0.01.
Result (docs/results.md): at ``,0.25`` on a 10k-image training subset with short schedules
(2-core CPU, 35 min for all five rows) the top-1 is 34.4 / 38.5 / 43.4 / 45.0 / 50.3% -
undertrained models whose accuracy follows the cumulative epochs; the full recipe has not
been run.
"""

from configs.cifar10.models import get_config as cifar_config
from fsjax.models.vgg import VGG16_WIDTHS
from train.configlib import prune_block

ROWS = ("original", "conv", "scratch", "gap", "tiny")
PRUNED = {"conv": ("original", "thinet_conv"), "gap": ("conv", "thinet_gap"),
          "tiny": ("gap", "thinet_tiny")}


def get_config(arg: str = "original"):
    row, _, width = arg.partition(",")
    if row not in ROWS:
        raise ValueError(f"row {row!r} is not valid; valid: {', '.join(ROWS)}")
    mult = float(width or 1)
    if not 0 < mult <= 4:
        raise ValueError(f"width multiplier must be in (0, 4]; got {width!r}")
    root = "runs/thinet-vgg16" + ("" if mult == 1 else f"-w{mult:g}")
    widths = tuple(max(1, round(v * mult)) for v in VGG16_WIDTHS)
    c = cifar_config("vgg16,dense")
    c.model_kw.widths = widths
    c.model_kw.head = "fc"
    c.model_kw.fc_width = max(1, round(512 * mult))
    c.num_epochs = 30
    c.schedule.name = "cosine"
    c.optimizer.lr = 0.05
    if row == "scratch":
        c.arch_from = f"{root}/conv"
    if row in PRUNED:
        source, target = PRUNED[row]
        prune_block(c, source=f"{root}/{source}" + ("/final" if source != "original" else ""),
                    target=target, base_widths=widths)
    return c
