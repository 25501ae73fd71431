"""Shared helpers: building throwaway guests and running guests on the lab."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdeilab.cpu.unicorn_backend import DIRECT_SWITCH, direct_paths
from sdeilab.toolchain import build_source_text

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``SDEILAB_DIRECT`` leaving fast paths out the whole suite runs on the fallbacks; a test of
    what only a fast path can do (``@pytest.mark.fast_paths("record")``) is skipped, as
    tests/test_fallbacks.py checks what the fallback does there instead."""
    allowed = direct_paths()
    for item in items:
        for mark in item.iter_markers("fast_paths"):
            missing = set(mark.args) - allowed
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"{DIRECT_SWITCH} leaves out {', '.join(sorted(missing))}"))


@pytest.fixture
def asm_guest(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Build an assembly guest (linked with the guest library) and return its ELF path."""

    def build(text: str, name: str = "guest") -> Path:
        return build_source_text(text, "asm", tmp_path / f"{name}.elf")

    return build


def run_cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """``sdeilab ...`` as a user runs it: a separate process, stdout and stderr kept apart."""
    # Standard input is /dev/null: `run` forwards its standard input to the guest (a terminal in raw mode).
    return subprocess.run([sys.executable, "-m", "sdeilab.cli", *map(str, args)], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd=ROOT)
