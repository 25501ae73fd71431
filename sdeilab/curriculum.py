"""A student's private copy of the curriculum: ``sdeilab notebooks DEST [NOTEBOOK...] [--reset]``.

The curriculum is the repository's ``notebooks/*.ipynb`` with their jupytext pairs (``*.py``,
``percent`` format). Nothing else needs copying for them to run from another folder: they reach
the shipped guests through the installed package (``sdeilab.toolchain.guests_dir()``) and Debian's
kernel through ``sdeilab.linux.debian.cache_dir()``, and whatever they write (traces such as
``tour.trace.json``) goes to the kernel's working folder, the copy's.

A notebook and its pair are one unit. jupytext takes a paired notebook's inputs from the text
file, so a pristine ``.py`` written beside a student's edited ``.ipynb`` would silently replace
the student's cells: a plain copy therefore adds a notebook only when neither of its files is
there (a notebook added to the curriculum later arrives, nothing the student has is touched),
and ``--reset`` rewrites both files of each notebook, with the same modification time so that
jupytext sees them as in step. Every file is written to a temporary name in DEST and renamed
into place: a notebook is never half written, and a symbolic link under a curriculum name is
replaced, never followed. Files that are not the curriculum's (the student's own notebooks,
traces, checkpoints) are never touched.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PAIR_SUFFIX = ".py"  # jupytext's pair of every notebook (metadata formats "ipynb,py:percent")


class CurriculumError(Exception):
    """DEST cannot take the curriculum (a file, unwritable, the curriculum's own folder, an unknown
    notebook name); the message says which and why, in one line."""


@dataclass
class CopyReport:
    copied: list[str] = field(default_factory=list)  # notebooks written (new, or restored by --reset)
    kept: list[str] = field(default_factory=list)  # notebooks already there, left as the student has them


def source_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "notebooks"


def notebook_names() -> list[str]:
    """The curriculum's notebooks by stem (``00_tour``), in order."""
    return sorted(path.stem for path in source_dir().glob("*.ipynb"))


def _unit(stem: str) -> list[str]:
    names = [f"{stem}.ipynb"]
    if (source_dir() / f"{stem}{PAIR_SUFFIX}").is_file():
        names.append(f"{stem}{PAIR_SUFFIX}")
    return names


def _check_dest(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise CurriculumError(f"{dest} is not a folder")
    if dest.is_dir() and dest.resolve() == source_dir():
        raise CurriculumError(f"{dest} is the curriculum's own folder (give a student's working folder)")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CurriculumError(f"cannot create {dest}: {error.strerror or error}") from None
    # A probe file rather than os.access, which answers yes to root wherever the mode bits say no
    # and knows nothing of special file systems.
    try:
        fd, probe = tempfile.mkstemp(prefix=".sdeilab-probe-", dir=dest)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise CurriculumError(f"{dest} is not writable: {error.strerror or error}") from None


def _write(source: Path, target: Path, mtime: float) -> None:
    data = source.read_bytes()
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.utime(temporary, (mtime, mtime))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def copy_curriculum(dest: Path, *, reset: bool = False, only: list[str] | None = None) -> CopyReport:
    """Copy the curriculum into ``dest`` (made if missing); with ``reset``, restore pristine copies.

    ``only`` limits the work to some notebooks, by stem or file name (``00_tour``, ``00_tour.ipynb``).
    Raises :class:`CurriculumError` for a DEST or a name that will not do, before writing anything.
    """
    names = notebook_names()
    if only:
        wanted = []
        for name in only:
            stem = Path(name).stem if name.endswith((".ipynb", PAIR_SUFFIX)) else name
            if stem not in names:
                raise CurriculumError(f"no notebook {name!r} in the curriculum (one of: {', '.join(names)})")
            wanted.append(stem)
        names = [n for n in names if n in wanted]
    _check_dest(dest)
    report = CopyReport()
    now = time.time()
    for stem in names:
        unit = _unit(stem)
        present = [name for name in unit if os.path.lexists(dest / name)]
        if present and not reset:
            report.kept.append(stem)
            continue
        for name in unit:
            target = dest / name
            if target.is_dir() and not target.is_symlink():
                raise CurriculumError(f"{target} is a folder where the curriculum's {name} belongs")
            try:
                _write(source_dir() / name, target, now)
            except OSError as error:
                raise CurriculumError(f"cannot write {target}: {error.strerror or error}") from None
        report.copied.append(stem)
    return report
