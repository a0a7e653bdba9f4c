"""Train a model: ``python -m train.main --config configs/<...>.py [--config.key=value ...]
[--workdir DIR]``. With no arguments it runs the embedded default (configs/default.py) in
``runs/default`` and prints a results table. Re-running the same command resumes."""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

from train import cli

_DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "configs", "default.py")
CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT, "config file (get_config())",
                                         lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "run directory (default: runs/<config name>)")


COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "multi-process: host:port of process 0 (jax.distributed)")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-process: number of processes")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-process: this process's index")
HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout_seconds", 100, "multi-process: a process silent this long is presumed "
    "dead and the others stop")
CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_NTASKS",
               "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def distributed_init():
    """Start JAX's distributed runtime: from the flags, or auto-detected (TPU pods, Slurm,
    Open MPI, ...) when a cluster environment is present; nothing for one process. On the CPU
    the collectives go through gloo."""
    import jax

    if COORDINATOR.value is None and not any(v in os.environ for v in CLUSTER_ENV):
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kw = dict(heartbeat_timeout_seconds=HEARTBEAT.value)
    if COORDINATOR.value is not None:
        kw.update(coordinator_address=COORDINATOR.value, num_processes=NUM_PROCESSES.value,
                  process_id=PROCESS_ID.value)
    jax.distributed.initialize(**kw)


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)")
    logging.set_verbosity(logging.WARNING)  # Orbax/TFDS info lines would drown the progress
    c = CONFIG.value
    if cli.SHOW.value:
        print(cli.show_config(c))
        return
    from train import configlib

    cli.guarded(configlib.validate, c)  # before any work, also before the cluster starts
    cli.guarded(distributed_init)
    from train.trainer import run

    name = config_name(flags.FLAGS["config"])
    workdir = WORKDIR.value or default_workdir(name)
    cli.guarded(run, c, workdir, config_name=name)


def config_name(flag) -> str:
    """The config as the user named it, relative to the project when it is inside it:
    ``configs/cifar10/models.py:resnet56,dense``."""
    raw = flag.serialize().split("=", 1)[-1] or _DEFAULT
    path, sep, arg = raw.partition(":")
    root = os.path.dirname(os.path.dirname(_DEFAULT))
    full = os.path.abspath(path)
    shown = os.path.relpath(full, root) if full.startswith(root + os.sep) else path
    return shown + sep + arg


def default_workdir(name: str) -> str:
    """``runs/<config file stem>[-<config arg>]``: ``runs/models-resnet56,dense``."""
    path, _, arg = name.partition(":")
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("runs", stem + (f"-{arg}" if arg else ""))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
