"""Command line of the NNX example: ``python -m examples.nnx_fs_dfs.main --workdir DIR
--config examples/nnx_fs_dfs/configs/default.py [--config.key=value ...]``."""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from examples.nnx_fs_dfs import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "/tmp/nnx_fs_dfs", "where results.json goes")
config_flags.DEFINE_config_file("config", "examples/nnx_fs_dfs/configs/default.py",
                                "the example's config", lock_config=True)


def main(argv):
    del argv
    os.makedirs(FLAGS.workdir, exist_ok=True)
    result = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    with open(os.path.join(FLAGS.workdir, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"test accuracy {100 * result['accuracy']:.2f}% with {result['stored_params']:,} "
          f"stored parameters ({result['dense_params']:,} dense-equivalent)")


if __name__ == "__main__":
    app.run(main)
