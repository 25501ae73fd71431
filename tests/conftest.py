"""Shared helpers: building throwaway guests and running guests on the lab."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdeilab.toolchain import build_source_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def asm_guest(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Build an assembly guest (linked with the guest library) and return its ELF path."""

    def build(text: str, name: str = "guest") -> Path:
        return build_source_text(text, "asm", tmp_path / f"{name}.elf")

    return build


def run_cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """``sdeilab ...`` as a user runs it: a separate process, stdout and stderr kept apart."""
    return subprocess.run([sys.executable, "-m", "sdeilab.cli", *map(str, args)], capture_output=True,
                          timeout=timeout, cwd=ROOT)
