"""ThiNet on CIFAR-10 (JPEG copy) VGG-16: prune 50% of the filters of conv1_1..conv4_3.

``configs/thinet/vgg16_cifar.py:<criterion>`` with criterion thinet (default), thinet_stepwise,
thinet_stepwise_exact,
random, weight_sum or apoz. Command::

    python -m train.prune --config configs/thinet/vgg16_cifar.py:thinet --workdir runs/thinet

(add ``--config.prune.source=runs/vgg16-dense`` to start from a trained dense run).
Result: docs/results.md (not run on a GPU yet: no GPU was available to this session).
"""

from configs.cifar10.models import get_config as cifar_config
from train.configlib import prune_block


def get_config(criterion: str = "thinet"):
    c = cifar_config("vgg16,dense")
    c.num_epochs = 40
    c.schedule.name = "cosine"
    c.optimizer.lr = 0.05
    return prune_block(c, criterion=criterion, final_epochs=20)
