"""The code base's import rules, read from the source (no import of the modules)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("fsjax", "train", "benchmarks", "examples", "configs")


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node


def test_no_private_name_crosses_modules():
    """No module of the project imports a ``_private`` name from another of its modules
    (ruff's PLC2701 only sees imports across top-level packages, not inside fsjax)."""
    bad = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in _imports(path):
                if node.module.split(".")[0] not in PACKAGES:
                    continue
                names = [a.name for a in node.names
                         if a.name.startswith("_") and not a.name.startswith("__")]
                if names:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {names} from "
                               f"{node.module}")
    assert not bad, "\n".join(bad)


def test_layers_import_one_way():
    """ops -> spec -> layers -> models -> tools -> train: the library never imports the
    trainer, the benchmarks or the configs, and fsjax.ops imports no other part of fsjax."""
    bad = []
    for path in (ROOT / "fsjax").rglob("*.py"):
        ops = path.relative_to(ROOT).parts[:2] == ("fsjax", "ops")
        for node in _imports(path):
            top = node.module.split(".")[0]
            if top in ("train", "benchmarks", "examples", "configs") or (
                    ops and top == "fsjax" and not node.module.startswith("fsjax.ops")):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}")
    assert not bad, "\n".join(bad)


def test_tools_ask_the_kind():
    """No module outside fsjax/kinds.py compares conv-kind strings (``kind in ("fs", "dfs")``,
    ``spec.kind == "ks"``): the tools ask the :class:`fsjax.kinds.ConvKind` instead."""
    import re

    pattern = re.compile(r"""in \("(dense|fs|dfs|ks|wks)"|kind\s*[!=]=\s*"(dense|fs|dfs|ks|wks)\"""")
    bad = []
    for pkg in ("fsjax", "train"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path == ROOT / "fsjax" / "kinds.py":
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "\n".join(bad)
