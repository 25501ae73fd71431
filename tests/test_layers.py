"""The layering rule of DESIGN.md section 1, checked on the source: each layer imports only lower ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sdeilab"
ORDER = ["trace", "cpu", "machine", "firmware", "viz", "widgets"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_each_layer_imports_only_layers_below_it() -> None:
    problems = []
    for rank, layer in enumerate(ORDER):
        for path in (PACKAGE / layer).rglob("*.py") if (PACKAGE / layer).is_dir() else []:
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] == "sdeilab" and len(parts) > 1 and parts[1] in ORDER:
                    if ORDER.index(parts[1]) > rank:
                        problems.append(f"{path.relative_to(PACKAGE)} imports {name}")
                elif parts[0] == "sdeilab" and len(parts) > 1 and parts[1] == "toolchain" and layer != "widgets":
                    problems.append(f"{path.relative_to(PACKAGE)} imports the toolchain")
    assert problems == []


def test_only_the_unicorn_adapter_imports_unicorn() -> None:
    users = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if any(n.split(".")[0] == "unicorn" for n in _imports(p))]
    assert users == ["cpu/unicorn_backend.py"]


def test_trace_imports_no_other_layer() -> None:
    for path in (PACKAGE / "trace").rglob("*.py"):
        assert not [n for n in _imports(path) if n.startswith("sdeilab.") and not n.startswith("sdeilab.trace")]
