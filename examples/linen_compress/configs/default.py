"""Default config of the Linen example: train a plain Linen CNN, compress it to FS with
``fsjax.linen.compress`` (kernels projected), fine-tune, and compare.

Command (from the repository root, after ``make install`` and ``make data``)::

    python -m examples.linen_compress.main --workdir /tmp/linen_compress \
        --config examples/linen_compress/configs/default.py

Measured on the 2-core development CPU: see examples/README.md.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.dataset = "fashion_mnist"    # any fsjax.data.load name: fashion_mnist, cifar10, synthetic
    c.data_limit = 0               # >0: a class-stratified subset of the training set
    c.kind = "fs"                  # fs | dfs | ks | wks
    c.compression = 4.0            # FS/DFS rho
    c.group_size = 4               # KS/WKS channels per shared kernel
    c.dense_epochs = 1             # the original model's training
    c.finetune_epochs = 1          # the compressed model's
    c.batch_size = 128
    c.learning_rate = 0.05         # Adam-free: SGD momentum 0.9, cosine decay
    c.seed = 0
    return c
