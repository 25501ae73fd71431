"""A room of three: ``sdeilab hub`` on loopback, three students logged in at once through the
login form and the REST API, their servers started, notebook 00 run in each through the Jupyter
server API, each student's outputs and traces in that student's folder only, one copy reset with
``sdeilab notebooks --reset``, and the hub stopped with no process of its tree left behind.

Every wait has a deadline (tests/hub_client.py); on a failure the hub's log is printed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, run_cli
from tests.hub_client import Hub, Student

pytestmark = pytest.mark.hub

STUDENTS = ("ada", "grace", "linus")
NOTEBOOK = "00_tour.ipynb"
NOTEBOOK_S = 300  # notebook 00 in one kernel, three kernels sharing two cores (about 12 s alone)
# Run after the notebook, in the same kernel: who and where the kernel is, as files in its folder.
WHOAMI = "import os, pathlib; pathlib.Path('whoami.txt').write_text(os.environ['USER'] + '\\n' + os.getcwd())"


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _has_outputs(path: Path) -> bool:
    notebook = nbformat.read(path, as_version=4)
    return any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


@pytest.fixture
def hub(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Hub]:
    running = Hub(tmp_path)
    failed_before = request.session.testsfailed
    try:
        running.start()
        yield running
    finally:
        running.kill()  # a no-op when the test stopped it; ends the whole tree after a failure
        if request.session.testsfailed != failed_before or running.process is None or running.process.returncode \
                not in (0, 143):
            print(f"---- the hub's log ({running.log}) ----\n{running.log_text()[-20000:]}")


def test_a_room_of_three(hub: Hub) -> None:
    curriculum = ROOT / "notebooks"
    pristine = _snapshot(curriculum)
    students = [Student(hub, name) for name in STUDENTS]

    def arrive(student: Student) -> None:
        student.log_in()
        student.start_server()

    with ThreadPoolExecutor(len(students)) as pool:  # at once, as a room does at nine o'clock
        list(pool.map(arrive, students))
    listed = {user["name"] for user in hub.api("GET", "/users").json()}
    assert listed == set(STUDENTS)
    for student in students:
        folder = hub.user_folder(student.name)
        assert (folder / NOTEBOOK).read_bytes() == (curriculum / NOTEBOOK).read_bytes()
        names = {item["name"] for item in student.server_api("GET", "/contents/").json()["content"]}
        assert NOTEBOOK in names and "00_tour.py" in names  # the server's root is the student's copy

    def work(student: Student) -> None:
        ran = student.run_notebook(NOTEBOOK, timeout=NOTEBOOK_S, extra=[WHOAMI])
        student.save_notebook(NOTEBOOK, ran)

    with ThreadPoolExecutor(len(students)) as pool:
        list(pool.map(work, students))

    for student in students:
        folder = hub.user_folder(student.name)
        assert (folder / "whoami.txt").read_text().splitlines() == [student.name, str(folder)]
        assert (folder / "tour.trace.json").stat().st_size > 0  # the notebook's trace, written in its folder
        assert _has_outputs(folder / NOTEBOOK)
    # Nothing landed anywhere else: not in the curriculum, not beside the hub's own files.
    assert _snapshot(curriculum) == pristine
    assert not list(hub.folder.glob("*.trace.json")) and not list(hub.data.glob("*.trace.json"))
    assert sorted(p.name for p in (hub.data / "users").iterdir()) == sorted(STUDENTS)

    # One student starts over: the notebook comes back pristine, their other files stay.
    ada, grace = hub.user_folder("ada"), hub.user_folder("grace")
    result = run_cli("notebooks", ada, "--reset")
    assert result.returncode == 0, result.stderr
    assert (ada / NOTEBOOK).read_bytes() == (curriculum / NOTEBOOK).read_bytes()
    assert (ada / "whoami.txt").exists() and (ada / "tour.trace.json").exists()
    assert not any(cell.get("outputs") for cell in students[0].read_notebook(NOTEBOOK).cells)  # as served
    assert _has_outputs(grace / NOTEBOOK)  # the others' copies are theirs

    # One server stopped through the API, the rest by the hub's own shutdown, one with a kernel still
    # open (a student who never closed the tab).
    students[2].stop_server()
    students[1].open_kernel(NOTEBOOK).execute("x = 1", time.monotonic() + NOTEBOOK_S, where="a kernel left open")
    tree = hub.descendants()
    commands = " ".join(" ".join(p.cmdline()) for p in tree)
    assert "configurable-http-proxy" in commands and "jupyterhub_idle_culler" in commands
    assert commands.count("jupyterhub.singleuser") == 2 and "ipykernel" in commands
    left = hub.stop()
    assert left == [], f"processes left behind: {left}"
    assert hub.process is not None and hub.process.returncode in (0, 143)
