"""What the command-line entry points share: flag parsing that turns a bad flag or config
key into one line (exit 2; ``--debug`` shows the traceback), ``--show_config``, and the
error handling around a run.

Used by ``train.main``, ``train.prune`` and ``train.compress`` (absl + ml_collections config
flags); ``train.eval``, ``train.nas`` and ``fsjax.report`` take plain arguments and print the
same kind of line.
"""

from __future__ import annotations

import difflib
import re
import sys

from absl import flags

DEBUG = flags.DEFINE_bool("debug", False, "show tracebacks instead of one-line errors")
SHOW = flags.DEFINE_bool("show_config", False, "print the resolved config with one-line help "
                         "per key, then exit")

ERRORS = (ValueError, FileNotFoundError, RuntimeError, FloatingPointError, OSError)


def fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def one_line(e: BaseException) -> str:
    """A readable single line for an exception raised while parsing or running."""
    text = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip()
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    if any(x.startswith("Traceback") for x in lines):  # a config file's get_config() failed
        return f"config file: {lines[-1]}"
    m = re.search(r"No such file or directory: '([^']+)'", text)
    if m and "config" in text.lower():
        return f"config file {m.group(1)} does not exist"
    m = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
    if m:
        return (f"config key {m.group(2)!r} does not exist; did you mean {m.group(1)!r}? "
                "(--show_config lists every key)")
    return " ".join(lines)[:500] if lines else type(e).__name__


def _unknown_key(argv, e) -> str | None:
    """Name the --config.<key> flag that failed, with the closest valid key."""
    from train import configlib

    valid = sorted(configlib._flat_keys(configlib.base()))
    for arg in argv:
        m = re.match(r"--config\.([\w.]+)", arg)
        if m and m.group(1) not in valid:
            key = m.group(1)
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean config.{close[0]}?" if close else ""
            return (f"{arg.split('=')[0]}: config.{key} is not a config key{hint} "
                    "(--show_config lists every key)")
    return None


def parse_flags(argv):
    """``flags_parser`` for ``absl.app.run``: one line and exit 2 for a bad flag."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # absl/ml_collections raise many types for bad flags
        if "--debug" in argv:
            raise
        fail(_unknown_key(argv, e) or one_line(e))


def show_config(c) -> str:
    """``key = value  # help`` for every key of ``c``."""
    from train import configlib

    lines = []
    for key in sorted(configlib._flat_keys(c)):
        v = configlib._get(c, key)
        if hasattr(v, "items") and key not in ("conv.overrides", "quant.overrides"):
            continue
        if hasattr(v, "to_dict"):
            v = v.to_dict()
        help_ = configlib.HELP.get(key, "")
        lines.append(f"{key} = {v!r}" + (f"  # {help_}" if help_ else ""))
    return "\n".join(lines)


def guarded(fn, *args, **kw):
    """Run ``fn``; a user-facing error becomes one line and exit 2 (``--debug``: raise)."""
    try:
        return fn(*args, **kw)
    except ERRORS as e:
        if DEBUG.value:
            raise
        fail(one_line(e))


def run_config_tool(fn, what: str, example: str, default_workdir: str) -> None:
    """Run ``python -m train.<tool> --config FILE [--config.key=value ...] [--workdir DIR]``:
    define the two flags (only here, so importing a tool defines none), parse them, then
    ``fn(config, workdir)`` with this module's error handling."""
    from absl import app, logging
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, f"{what} config",
                                             lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, f"run directory (default: {default_workdir})")

    def main(argv):
        if len(argv) > 1:
            fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)")
        logging.set_verbosity(logging.WARNING)
        if config.value is None:
            fail(f"--config is required (e.g. --config {example})")
        if SHOW.value:
            print(show_config(config.value))
            return
        guarded(fn, config.value, workdir.value or default_workdir)

    app.run(main, flags_parser=parse_flags)
