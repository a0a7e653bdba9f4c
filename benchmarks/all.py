"""Run every benchmark: ``python -m benchmarks.all [--small] [--json-dir DIR]``.
``--small`` runs them at a tiny size on the CPU (the smoke test in tests/ uses it)."""

from __future__ import annotations

import argparse

from benchmarks import inference_latency, layers, thinet_select, thinet_vgg, train_throughput


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    extra = (["--small"] if a.small else []) + (["--json-dir", a.json_dir] if a.json_dir else [])
    out = {}
    for name, mod in (("layers", layers), ("train_throughput", train_throughput),
                      ("inference_latency", inference_latency),
                      ("thinet_select", thinet_select), ("thinet_vgg", thinet_vgg)):
        print(f"== {name}")
        out[name] = mod.main(extra)
    return out


if __name__ == "__main__":
    main()
