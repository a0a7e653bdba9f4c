"""Run every benchmark: ``python -m benchmarks.all [--small] [--json-dir DIR]``.
``--small`` runs them at a tiny size on the CPU (the smoke test in tests/ uses it)."""

from __future__ import annotations

import argparse

from benchmarks import (
    cpu_forms,
    deploy_latency,
    inference_latency,
    input_pipeline,
    layers,
    own_loop,
    profile_step,
    thinet_select,
    thinet_vgg,
    train_throughput,
)

BENCHMARKS = (("layers", layers), ("train_throughput", train_throughput),
              ("inference_latency", inference_latency), ("thinet_select", thinet_select),
              ("thinet_vgg", thinet_vgg), ("deploy_latency", deploy_latency),
              ("input_pipeline", input_pipeline), ("cpu_forms", cpu_forms),
              ("own_loop", own_loop), ("profile_step", profile_step))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    extra = (["--small"] if a.small else []) + (["--json-dir", a.json_dir] if a.json_dir else [])
    out = {}
    for name, mod in BENCHMARKS:
        print(f"== {name}")
        try:
            out[name] = mod.main(extra)
        except ImportError as e:  # an optional extra (deploy) that is not installed
            print(f"skipped: {e}")
    return out


if __name__ == "__main__":
    main()
