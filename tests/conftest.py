import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# tests never write into the user's TFDS data dir or cache
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="fsjax-tfds-")
os.environ["FSJAX_CACHE"] = tempfile.mkdtemp(prefix="fsjax-cache-")
# one XLA compilation cache for the whole run, shared by the xdist workers and the processes the
# tests start (resume after kill, multi-process): many tests compile the same programs (a
# model's step in several tests, a job resumed in a new process), and XLA:CPU compiles of the
# larger ones take tens of seconds. The cache's key covers the program and the compile options,
# so a test that changes either still compiles; a fresh directory per run, never the user's.
_run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"fsjax-xla-cache-{_run_id}") if _run_id
    else tempfile.mkdtemp(prefix="fsjax-xla-cache-"))

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
