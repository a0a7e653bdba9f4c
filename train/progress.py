"""Progress bar (epochs, steps, images/s, loss, ETA), JSON-lines metrics, TensorBoard."""

from __future__ import annotations

import json
import os
import sys
import time


class Progress:
    """What a run tells a person. On a terminal (and ``bar``): a one-line bar. Otherwise (a
    log file, ``bar=False``): a line every ``every_s`` seconds with step, loss, images/s and
    ETA. The header, one line per epoch and the final table are always printed unless
    ``quiet``."""

    def __init__(self, total_epochs: int, steps_per_epoch: int, batch: int, bar=True,
                 stream=None, quiet=False, every_s: float = 30.0):
        self.total_epochs, self.steps, self.batch = total_epochs, steps_per_epoch, batch
        self.quiet, self.every_s = quiet, every_s
        self.stream = stream or sys.stderr
        self.tty = bar and not quiet and getattr(self.stream, "isatty", lambda: False)()
        self.run_start = time.perf_counter()
        self.epochs_timed: list[float] = []

    def say(self, text: str):
        if not self.quiet:
            self.stream.write(text + "\n")
            self.stream.flush()

    def start_epoch(self, epoch: int):
        self.epoch, self.t0 = epoch, time.perf_counter()
        self.last_line = self.t0

    def update(self, step: int, loss: float):
        if self.quiet:
            return
        now = time.perf_counter()
        el = now - self.t0
        ips = step * self.batch / max(el, 1e-9)
        eta = (self.steps - step) * el / max(step, 1)
        if self.tty:
            width = 24
            fill = int(width * step / self.steps)
            self.stream.write(f"\repoch {self.epoch + 1}/{self.total_epochs} "
                              f"[{'#' * fill}{'.' * (width - fill)}] {step}/{self.steps} "
                              f"loss {loss:.4f} {ips:,.0f} img/s eta {eta:.0f}s   ")
            self.stream.flush()
        elif now - self.last_line >= self.every_s and step < self.steps:
            self.last_line = now
            self.say(f"epoch {self.epoch + 1}/{self.total_epochs} step {step}/{self.steps} "
                     f"loss {loss:.4f} {ips:,.0f} img/s epoch eta {eta:.0f}s")

    def end_epoch(self, summary: str) -> float:
        el = time.perf_counter() - self.t0
        self.epochs_timed.append(el)
        if not self.quiet:
            left = (self.total_epochs - self.epoch - 1) * el
            self.stream.write(("\r" if self.tty else "") +
                              f"epoch {self.epoch + 1}/{self.total_epochs} {summary} "
                              f"({el:.1f}s, eta {left:.0f}s)" + (" " * 8 if self.tty else "")
                              + "\n")
            self.stream.flush()
        return el


class MetricsLog:
    """``workdir/metrics.jsonl``; on resume, lines past the restored epoch are dropped."""

    def __init__(self, workdir: str, resume_epoch: int, tensorboard: bool = False,
                 writer: bool = True, quiet: bool = False):
        self.path, self.writer = os.path.join(workdir, "metrics.jsonl"), writer
        self.records = [r for r in self.read(self.path) if r.get("epoch", 0) <= resume_epoch]
        self.tb = None
        if not writer:  # another process of a multi-process run writes the files
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.records)
        os.replace(tmp, self.path)
        if tensorboard:  # an optional package: without it, metrics.jsonl only, silently
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                pass
            else:
                self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    @staticmethod
    def read(path: str) -> list[dict]:
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def write(self, record: dict):
        self.records.append(record)
        if not self.writer:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.tb.add_scalar(k, v, record["epoch"])
            self.tb.flush()
