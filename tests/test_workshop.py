"""The workshop's pieces that need no running hub: ``sdeilab notebooks`` (a student's private,
resettable copy of the curriculum), ``sdeilab hub``'s refusals, and the container and Binder
set-ups naming the README's scripts (docs/workshop.md)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import nbformat

from tests.conftest import ROOT, run_cli

CURRICULUM = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _one_line_refusal(result: object, *words: str) -> None:
    stderr = result.stderr.decode()  # type: ignore[attr-defined]
    assert result.returncode == 2, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("sdeilab: ")
    for word in words:
        assert word in last, last


def test_notebooks_copies_every_notebook_and_its_pair(tmp_path: Path) -> None:
    dest = tmp_path / "student" / "work"  # made, parents and all
    result = run_cli("notebooks", dest)
    assert result.returncode == 0, result.stderr
    for notebook in CURRICULUM:
        assert (dest / notebook.name).read_bytes() == notebook.read_bytes()
        pair = notebook.with_suffix(".py")
        assert (dest / pair.name).read_bytes() == pair.read_bytes()
        # jupytext takes a pair's inputs from the newer file: the two must not look out of step
        assert (dest / notebook.name).stat().st_mtime == (dest / pair.name).stat().st_mtime
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no temporary file or probe left


def test_reset_restores_a_modified_notebook_and_keeps_other_files(tmp_path: Path) -> None:
    assert run_cli("notebooks", tmp_path).returncode == 0
    tour, pair = tmp_path / "00_tour.ipynb", tmp_path / "00_tour.py"
    edited = nbformat.read(tour, as_version=4)
    edited.cells[0].source = "# my notes"
    nbformat.write(edited, tour)
    pair.write_text("# my notes\n")
    (tmp_path / "mine.ipynb").write_text("{}")
    (tmp_path / "tour.trace.json").write_text("[]")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "00_tour.ipynb").write_text("a student's own copy elsewhere")

    again = run_cli("notebooks", tmp_path)  # without --reset, the student's edits stay
    assert again.returncode == 0 and "# my notes" in tour.read_text()

    result = run_cli("notebooks", tmp_path, "--reset")
    assert result.returncode == 0, result.stderr
    assert tour.read_bytes() == (ROOT / "notebooks" / "00_tour.ipynb").read_bytes()
    assert pair.read_bytes() == (ROOT / "notebooks" / "00_tour.py").read_bytes()
    assert (tmp_path / "mine.ipynb").read_text() == "{}"
    assert (tmp_path / "tour.trace.json").read_text() == "[]"
    assert (tmp_path / "sub" / "00_tour.ipynb").read_text() == "a student's own copy elsewhere"


def test_reset_of_one_notebook_leaves_the_others(tmp_path: Path) -> None:
    assert run_cli("notebooks", tmp_path).returncode == 0
    for name in ("00_tour.ipynb", "10_conduits.ipynb"):
        (tmp_path / name).write_text("edited")
    assert run_cli("notebooks", tmp_path, "--reset", "00_tour").returncode == 0
    assert (tmp_path / "00_tour.ipynb").read_bytes() == (ROOT / "notebooks" / "00_tour.ipynb").read_bytes()
    assert (tmp_path / "10_conduits.ipynb").read_text() == "edited"


def test_a_missing_notebook_comes_back_without_touching_a_half_pair(tmp_path: Path) -> None:
    assert run_cli("notebooks", tmp_path).returncode == 0
    (tmp_path / "00_tour.ipynb").unlink()
    (tmp_path / "00_tour.py").write_text("# edited in the text view\n")
    (tmp_path / "10_conduits.ipynb").unlink()
    (tmp_path / "10_conduits.py").unlink()
    assert run_cli("notebooks", tmp_path).returncode == 0
    assert (tmp_path / "10_conduits.ipynb").exists()  # gone entirely: copied again
    # half a pair is the student's: a pristine .ipynb beside it would fight their .py
    assert not (tmp_path / "00_tour.ipynb").exists()
    assert (tmp_path / "00_tour.py").read_text() == "# edited in the text view\n"


def test_a_symlink_under_a_curriculum_name_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep")
    dest = tmp_path / "work"
    dest.mkdir()
    (dest / "00_tour.ipynb").symlink_to(elsewhere)
    assert run_cli("notebooks", dest, "--reset").returncode == 0
    assert elsewhere.read_text() == "keep"
    assert not (dest / "00_tour.ipynb").is_symlink()


def test_notebooks_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    _one_line_refusal(run_cli("notebooks", target), str(target), "not a folder")


def test_notebooks_refuses_an_unwritable_folder(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes through mode bits: a folder of the kernel's own instead
        target = Path("/proc/self/fdinfo")
    else:
        target = tmp_path / "locked"
        target.mkdir()
        target.chmod(0o500)
    _one_line_refusal(run_cli("notebooks", target), str(target), "not writable")


def test_notebooks_refuses_the_curriculum_itself_and_unknown_names(tmp_path: Path) -> None:
    _one_line_refusal(run_cli("notebooks", ROOT / "notebooks", "--reset"), "curriculum's own folder")
    _one_line_refusal(run_cli("notebooks", tmp_path, "no_such_notebook"), "no notebook 'no_such_notebook'")


def test_hub_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _one_line_refusal(run_cli("hub", "--data", tmp_path / "hub", "--port", port), f"port {port}", "in use")


def test_hub_refuses_bad_settings(tmp_path: Path) -> None:
    _one_line_refusal(run_cli("hub", "--data", tmp_path, "--ip", "not-an-ip"), "not an IP address")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _one_line_refusal(run_cli("hub", "--data", afile, "--port", "1"), "not a folder")
    short = _run_with_env({"SDEILAB_HUB_PASSWORD": "short"}, "hub", "--data", tmp_path)
    _one_line_refusal(short, "at least 8 characters")


def _run_with_env(extra: dict[str, str], *args: str | Path) -> object:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sdeilab.cli", *map(str, args)], capture_output=True,
                          timeout=120, cwd=ROOT, env={**os.environ, **extra})


# The image and Binder run the README's set-up, so the fresh-machine test covers their steps.
README_SETUP = "./scripts/setup.sh"


def _commands(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_readme_names_the_setup_script() -> None:
    assert f"{README_SETUP} && .venv/bin/python -m pytest" in (ROOT / "README.md").read_text()


def test_the_image_is_bookworm_set_up_by_the_readme_script() -> None:
    commands = _commands(ROOT / "deploy/Dockerfile")
    assert re.fullmatch(r"FROM\s+\S*debian:bookworm", commands[0]), commands[0]
    assert any(line.startswith("RUN") or line.startswith("&&") for line in commands)
    assert any(README_SETUP in line for line in commands), f"deploy/Dockerfile does not run {README_SETUP}"
    # the set-up's own package list, not a second one kept by hand
    assert not any("qemu-system-arm" in line or "chromium" in line for line in commands)


def test_binder_builds_the_same_image() -> None:
    # repo2docker builds binder/Dockerfile when there is one (its other configuration files would be
    # ignored, so there are none): the README's Debian set-up cannot run on repo2docker's Ubuntu base
    # with apt.txt and a postBuild that has no root (docs/workshop.md).
    assert (ROOT / "binder/Dockerfile").read_text() == (ROOT / "deploy/Dockerfile").read_text()
    assert sorted(p.name for p in (ROOT / "binder").iterdir()) == ["Dockerfile"]
