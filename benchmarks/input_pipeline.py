"""Streaming input pipeline (fsjax.data.stream) on this CPU: decode + augment throughput and
host memory, so users can size ``config.stream.workers``.

    python -m benchmarks.input_pipeline [--images 600] [--memory 2000,20000] [--json-dir out]

Throughput: ImageNet-like JPEGs (generated once under ``$FSJAX_CACHE/bench-jpeg``: 500x375 on
average, quality 90) read, decoded, random-resized-cropped to 224x224 and flipped, as batches of
64 from ``StreamData.train_batches`` with 0 (in the main process), 1 and 2 grain workers, next
to a plain single-process PIL loop doing the same per image; the median of ``--repeats`` passes,
interleaved. Memory: the peak resident memory (main process + workers, sampled every 20 ms)
of one streaming epoch over folders of each ``--memory`` size (small 64x48 JPEGs, 32x32
crops): it should not grow with the data set's size. Training: a streamed run of a CIFAR
ResNet-8 on the first memory folder (``--trainer`` worker counts), with the fraction of each
epoch the device loop waited for input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

import numpy as np

from benchmarks.common import print_table, write_json


def _cache() -> str:
    return os.environ.get("FSJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "fsjax"))


def make_folder(root: str, n: int, size=(500, 375), val: int = 8, seed: int = 0) -> str:
    """``root/train/c<k>/*.JPEG`` (10 classes) and a small ``root/val``; smooth images with
    noise (JPEG sizes like photographs'), sides jittered +-20%. Made once (``.done`` marks it)."""
    from PIL import Image

    if os.path.exists(os.path.join(root, ".done")):
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", val)):
        for i in range(count):
            w, h = (np.asarray(size) * rng.uniform(0.8, 1.2, 2)).astype(int)
            yy, xx = np.mgrid[0:h, 0:w]
            base = (np.sin(xx / rng.uniform(5, 40))[..., None] * rng.uniform(40, 120, 3) +
                    np.cos(yy / rng.uniform(5, 40))[..., None] * rng.uniform(40, 120, 3) + 128)
            x = (base + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
            d = os.path.join(root, split, f"c{i % 10}")
            os.makedirs(d, exist_ok=True)
            Image.fromarray(x).save(os.path.join(d, f"{i:06d}.JPEG"), quality=90)
    open(os.path.join(root, ".done"), "w").close()
    return root


def pil_loop(data, n: int, seed: int = 0) -> float:
    """Images/s of the same work in one plain loop (read, decode, crop, resize, flip)."""
    from fsjax.data import stream

    t = time.perf_counter()
    for i in range(n):
        stream.train_transform(data.train[i], np.random.default_rng([seed, 0, i]), data.size, 3)
    return n / (time.perf_counter() - t)


def streamed(data, batches: int, batch: int, workers: int) -> tuple[float, float]:
    """``(images/s after the first batch, seconds to the first batch)`` through
    ``train_batches`` with ``workers`` grain workers: the steady rate, and the start-up (the
    worker processes are started, once per run and once per evaluation)."""
    t = time.perf_counter()
    it = data.train_batches(0, batch, 1, workers=workers)
    next(it)
    t1 = time.perf_counter()
    for _ in it:
        pass
    return (batches - 1) * batch / (time.perf_counter() - t1), t1 - t


def _rss_tree(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (Linux /proc)."""
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(
                        int(p))
            except OSError:
                continue
    total, todo = 0, [pid]
    while todo:
        q = todo.pop()
        try:
            with open(f"/proc/{q}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
        todo += children.get(q, [])
    return total


def peak_memory(data, batch: int, workers: int) -> tuple[int, float]:
    """(peak resident bytes, seconds) of one streaming epoch, sampled every 20 ms."""
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_tree(os.getpid()))
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    for _ in data.train_batches(0, batch, 1, workers=workers):
        pass
    done.set()
    th.join()
    return peak[0], time.perf_counter() - t


def trainer_wait(root: str, workers: int, epochs: int = 3, image_size: int = 32) -> list[dict]:
    """A streamed training run (CIFAR ResNet-8 on ``image_size`` crops of the folder, batch
    128, float32) with ``workers`` grain workers: per epoch, images/s and the fraction of the
    epoch the device loop waited for input (``input_wait_fraction`` of metrics.jsonl)."""
    import tempfile

    from configs import default
    from train import trainer

    c = default.get_config()
    c.dataset, c.data_dir, c.model = "folder", root, "resnet8"
    c.stream.image_size, c.stream.workers = image_size, workers
    c.batch_size, c.eval_batch_size, c.num_epochs = 128, 100, epochs
    c.quiet, c.tensorboard = True, False
    with tempfile.TemporaryDirectory() as wd:
        trainer.run(c, os.path.join(wd, "run"))
        with open(os.path.join(wd, "run", "metrics.jsonl")) as f:
            recs = [json.loads(x) for x in f]
    return [dict(workers=workers, epoch=r["epoch"], images_per_s=r["images_per_s"],
                 input_wait_fraction=r["input_wait_fraction"]) for r in recs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.input_pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1280, help="JPEGs per throughput pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--memory", default="2000,20000", help="folder sizes for the memory rows")
    ap.add_argument("--trainer", default="1,2", help="worker counts for the training rows")
    ap.add_argument("--json-dir", default="")
    ap.add_argument("--small", action="store_true", help="a tiny run (the smoke test)")
    a = ap.parse_args(argv)
    if a.small:
        a.images, a.repeats, a.workers, a.memory, a.trainer = 64, 1, "0,1", "100,300", ""
    from fsjax.data import stream

    batch = 64
    n = a.images // batch * batch
    root = make_folder(os.path.join(_cache(), f"bench-jpeg-{n}"), n)
    data = stream.image_folder(root, size=224)
    workers = [int(w) for w in a.workers.split(",")]
    runs: dict[str, list[float]] = {}
    starts: dict[str, list[float]] = {}
    for _ in range(a.repeats):  # interleaved passes
        runs.setdefault("PIL loop, 1 process", []).append(pil_loop(data, n))
        for w in workers:
            ips, first = streamed(data, n // batch, batch, w)
            runs.setdefault(f"stream, {w} workers", []).append(ips)
            starts.setdefault(f"stream, {w} workers", []).append(first)
    base = statistics.median(runs["PIL loop, 1 process"])
    rows = [dict(what=k, images_per_s=statistics.median(v), spread=f"{min(v):.0f}-{max(v):.0f}",
                 vs_pil=statistics.median(v) / base,
                 first_batch_s=statistics.median(starts[k]) if k in starts else 0.0)
            for k, v in runs.items()]
    print(f"decode + random-resized crop 224 + flip, {n} JPEGs (stream: images/s after the "
          f"first batch; first_batch_s: worker start-up) "
          f"(~500x375), batch {batch}, {os.cpu_count()} CPUs")
    print_table(rows, ["what", "images_per_s", "spread", "vs_pil", "first_batch_s"])
    mem = []
    for size in [int(s) for s in a.memory.split(",") if s]:
        r = make_folder(os.path.join(_cache(), f"bench-jpeg-small-{size}"), size, (64, 48))
        d = stream.image_folder(r, size=32)
        peak, secs = peak_memory(d, 100, 2)
        mem.append(dict(images=size, peak_rss_mib=peak / 2 ** 20, epoch_s=secs,
                        images_per_s=size // 100 * 100 / secs))
    if mem:
        print("\nhost memory of one streaming epoch (2 workers, batch 100, 32x32 crops)")
        print_table(mem, ["images", "peak_rss_mib", "epoch_s", "images_per_s"])
    wait = []
    if a.trainer and mem:
        r = os.path.join(_cache(), f"bench-jpeg-small-{int(a.memory.split(',')[0])}")
        for w in [int(x) for x in a.trainer.split(",")]:
            wait += trainer_wait(r, w)
        print("\nstreamed training (CIFAR ResNet-8, 32x32 crops, batch 128): the device loop's "
              "wait for input")
        print_table(wait, ["workers", "epoch", "images_per_s", "input_wait_fraction"])
    write_json(a.json_dir or None, "input_pipeline", rows, memory=mem, trainer=wait)
    return rows


if __name__ == "__main__":
    main()
