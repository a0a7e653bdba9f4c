"""ThiNet on CIFAR-10 (JPEG copy) VGG-16: prune 50% of the filters of conv1_1..conv4_3.

``configs/thinet/vgg16_cifar.py:<criterion>`` with criterion thinet (default), thinet_stepwise,
thinet_stepwise_exact,
random, weight_sum or apoz. Command::

    python -m train.prune --config configs/thinet/vgg16_cifar.py:thinet --workdir runs/thinet

(add ``--config.prune.source=runs/vgg16-dense`` to start from a trained dense run).
Result: docs/results.md (not run on a GPU yet: no GPU was available to this session).
"""

import ml_collections

from configs.cifar10.models import get_config as cifar_config


def get_config(criterion: str = "thinet"):
    c = cifar_config("vgg16,dense")
    c.num_epochs = 40
    c.schedule.name = "cosine"
    c.optimizer.lr = 0.05
    c.prune = ml_collections.ConfigDict(dict(
        source="", ratio=0.5, criterion=criterion, layers=(), samples_per_class=10,
        samples_per_image=10, finetune_epochs=1, finetune_lr=0.01, final_epochs=20,
        final_lr=0.01))
    return c
