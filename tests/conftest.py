import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# tests never write into the user's TFDS data dir or cache
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="fsjax-tfds-")
os.environ["FSJAX_CACHE"] = tempfile.mkdtemp(prefix="fsjax-cache-")
# one XLA compilation cache for the whole run: made here in pytest's main process, inherited by
# the xdist workers and the processes the tests start (resume after kill, multi-process). Many
# tests compile the same programs (a model's step in several tests, a job resumed in a new
# process), and XLA:CPU compiles of the larger ones take tens of seconds. The cache's key covers
# the program and the compile options, so a test that changes either still compiles. A fresh
# directory per run unless JAX_COMPILATION_CACHE_DIR is set; the summary says what it saved.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ  # made by this process
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="fsjax-xla-cache-")
_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]

import jax  # noqa: E402
import jax.monitoring  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

_SAVED = {"hits": 0, "seconds": 0.0}


def _on_duration(event, seconds, **_):
    if event == "/jax/compilation_cache/compile_time_saved_sec":
        _SAVED["hits"] += 1
        _SAVED["seconds"] += seconds


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker: its counts to the main process
        session.config.workeroutput["xla_cache_saved"] = dict(_SAVED)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # xdist, in the main process: a worker's counts
    saved = getattr(node, "workeroutput", {}).get("xla_cache_saved", {})
    _SAVED["hits"] += saved.get("hits", 0)
    _SAVED["seconds"] += saved.get("seconds", 0.0)


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(
        f"XLA compilation cache ({_CACHE}): {_SAVED['hits']} hits in the test processes, "
        f"{_SAVED['seconds']:.0f} s of compiling saved")


@pytest.fixture
def standin_genotype():
    """A small valid DARTS genotype, as a search's genotype.json holds it: for the tests that
    build a NAS network's config or job without running a search."""
    cell = [["sep_conv_3x3", 0], ["max_pool_3x3", 1]] * 4
    return {"genotype": {"normal": cell, "reduce": cell, "concat": [2, 3, 4, 5]}}


def pytest_unconfigure(config):
    if _OWN_CACHE:  # pytest's main process: the run's cache goes with it
        shutil.rmtree(_CACHE, ignore_errors=True)
