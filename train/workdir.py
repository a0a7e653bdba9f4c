"""A run directory: one writer at a time, and the configs it has seen.

- ``.lock``: an ``fcntl`` lock held while a run writes the directory; a second run on it is
  refused, and a dead process leaves nothing stuck (the OS drops its lock).
- ``config.json``: the config the run started with, never overwritten;
  ``config_history.jsonl``: every config the run has been resumed with, one line each, with
  the keys that changed. A resumed run may only change keys that extend or observe it
  (:data:`EXTENDING`); anything else is refused with the differing keys.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time

from train.results import write_json

EXTENDING = ("num_epochs", "progress", "quiet", "log_every_s", "tensorboard",
             "keep_checkpoints", "keep_best", "resume_step", "eval_batch_size",
             "steps_per_call", "on_device")


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("overrides",):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


class Workdir:
    def __init__(self, path: str):
        self.path = path
        self.created = not os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        self._fd = None

    def lock(self) -> None:
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RuntimeError(f"workdir {self.path} is in use by another run (pid {owner}); "
                               f"wait for it or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def unlock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    # --- configs ---------------------------------------------------------------------------
    def _last_config(self) -> dict | None:
        hist = os.path.join(self.path, "config_history.jsonl")
        if os.path.exists(hist):
            with open(hist) as f:
                lines = [x for x in f if x.strip()]
            if lines:
                return json.loads(lines[-1])["config"]
        first = os.path.join(self.path, "config.json")
        if os.path.exists(first):
            with open(first) as f:
                return json.load(f)
        return None

    def check_config(self, config: dict, defaults: dict | None = None) -> list[str]:
        """The keys that changed since the run's last config (only :data:`EXTENDING` ones may);
        raises ValueError naming the others. A key the saved config lacks that holds its
        default (``defaults``: the schema's config) was added by a newer fsjax: not a change,
        so runs started by an older version resume."""
        old = self._last_config()
        if old is None:
            return []
        a, b = flatten(old), flatten(config)
        d = flatten(defaults) if defaults is not None else {}
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)
                         and not (k not in a and k in d and d[k] == b[k]))
        bad = [k for k in changed if k not in EXTENDING]
        if bad:
            shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in bad[:6])
            more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
            raise ValueError(
                f"workdir {self.path} holds a run with a different config: {shown}{more}; "
                f"only {', '.join(EXTENDING)} may change when resuming - use another --workdir "
                f"for a new run")
        return changed

    def record_config(self, config: dict, changed: list[str]) -> None:
        """Write ``config.json`` once and a history line for every new config."""
        first = os.path.join(self.path, "config.json")
        if not os.path.exists(first):
            write_json(first, config)
        elif not changed:
            return
        line = dict(time=time.strftime("%Y-%m-%dT%H:%M:%S"), changed=changed, config=config)
        with open(os.path.join(self.path, "config_history.jsonl"), "a") as f:
            f.write(json.dumps(line) + "\n")

    def remove_if_unused(self) -> None:
        """After a failed start: a directory this run created and left without a
        checkpoint or metrics is removed."""
        if not self.created:
            return
        # any step folder counts (mid-epoch ones too), an unfinished orbax temporary too:
        # removal stays cautious
        steps = [n for sub in ("checkpoints", "checkpoints-partial")
                 if os.path.isdir(ck := os.path.join(self.path, sub))
                 for n in os.listdir(ck) if n[0].isdigit()]
        metrics = os.path.join(self.path, "metrics.jsonl")
        if not steps and not (os.path.exists(metrics) and os.path.getsize(metrics)):
            shutil.rmtree(self.path, ignore_errors=True)
