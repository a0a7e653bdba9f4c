"""Command line of the Linen example: ``python -m examples.linen_compress.main --workdir DIR
--config examples/linen_compress/configs/default.py [--config.key=value ...]``."""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from examples.linen_compress import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/linen_compress", "where results.json goes")
config_flags.DEFINE_config_file("config", "examples/linen_compress/configs/default.py",
                                "the example's config", lock_config=True)


def main(argv):
    del argv
    os.makedirs(FLAGS.workdir, exist_ok=True)
    result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"dense {100 * result['dense_accuracy']:.2f}% ({result['dense_params']:,} params) -> "
          f"projected {100 * result['projected_accuracy']:.2f}% -> fine-tuned "
          f"{100 * result['accuracy']:.2f}% ({result['stored_params']:,} params)")


if __name__ == "__main__":
    app.run(main)
