"""Default config of the compress-and-deploy example: a trained model -> FS by projection ->
fine-tune -> 8-bit weights -> an int8 ONNX file run in onnxruntime.

Command (from the repository root, after ``make install`` and ``make data``)::

    python -m examples.compress_export.main --workdir /tmp/compress_export \
        --config examples/compress_export/configs/default.py

``--config.source=PATH`` starts from a model you trained: an fsjax export (``PATH.npz`` +
``PATH.json``, e.g. from ``python -m train.eval --workdir RUN --export PATH``); without it a
dense ``config.model`` is trained first for ``config.dense_epochs``. Measured on the 2-core
development CPU: see examples/README.md.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.dataset = "fashion_mnist"    # any fsjax.data.load name: fashion_mnist, cifar10, synthetic
    c.data_limit = 0               # >0: a class-stratified subset of the training set
    c.source = ""                  # an fsjax export path (no suffix); "": train config.model
    c.model = "resnet8"            # zoo model trained when there is no source
    c.dense_epochs = 2
    c.compression = 4.0            # FS rho of the converted convs
    c.finetune_epochs = 1
    c.bits = 8                     # post-training weight quantization
    c.batch_size = 128
    c.learning_rate = 0.1          # SGD momentum 0.9, cosine; fine-tuning at 0.1x
    c.calibration_images = 256     # int8 ONNX activation ranges
    c.seed = 0
    return c
