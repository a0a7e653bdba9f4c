import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# tests never write into the user's TFDS data dir or cache
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="fsjax-tfds-")
os.environ["FSJAX_CACHE"] = tempfile.mkdtemp(prefix="fsjax-cache-")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
