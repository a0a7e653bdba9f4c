"""Default config of the NNX example: a small CNN with FS and DFS convs on Fashion-MNIST.

Command (from the repository root, after ``make install`` and ``make data``)::

    python -m examples.nnx_fs_dfs.main --workdir /tmp/nnx_fs_dfs \
        --config examples/nnx_fs_dfs/configs/default.py

Measured on the 2-core development CPU: see examples/README.md.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.dataset = "fashion_mnist"    # any fsjax.data.load name: fashion_mnist, cifar10, synthetic
    c.data_limit = 0               # >0: a class-stratified subset of the training set
    c.compression = 4.0            # rho of the FS and DFS layers
    c.num_epochs = 2
    c.batch_size = 128
    c.learning_rate = 0.1          # SGD (momentum 0.9), cosine decay, for the weights
    c.weight_decay = 5e-4
    c.location_lr = 1e-3           # Adam for the DFS locations (DFSNet's choice)
    c.freeze_locations_epoch = 1   # DFS locations stop moving from this epoch on
    c.seed = 0
    return c
