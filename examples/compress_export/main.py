"""Command line of the compress-and-deploy example: ``python -m examples.compress_export.main --workdir DIR
--config examples/compress_export/configs/default.py [--config.key=value ...]``."""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from examples.compress_export import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/compress_export", "where results.json goes")
config_flags.DEFINE_config_file("config", "examples/compress_export/configs/default.py",
                                "the example's config", lock_config=True)


def main(argv):
    del argv
    os.makedirs(FLAGS.workdir, exist_ok=True)
    result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    for r in result["rows"]:
        print(f"{r['step']:<32} {100 * r['accuracy']:6.2f}%")


if __name__ == "__main__":
    app.run(main)
