"""Every notebook's figures in a real browser, in JupyterLab and as a Voila app (issue 14).

Each notebook of notebooks/ (but 01_dashboard, which tests/test_browser.py drives) is run top to
bottom in JupyterLab (``sdeilab lab``, the file browser open beside it) and, at the same time in a
second page, as a Voila app (``sdeilab dashboard FOLDER``, the notebook's app): two kernels on two
cores. Then, in each page, at 1280x800, 1440x900 and 1920x1080, the test scrolls to every figure of
the cells' outputs (inline matplotlib's pictures, ipympl's canvas), saves its screenshot and fails when

* a cell raised or wrote to stderr, or Voila did not show every cell;
* a cell that draws a figure (``plt.show()``, a ``TimelineView``) shows none;
* a picture did not load;
* a picture is shown at an aspect more than 2% off its own;
* a picture is shown narrower than its own width (shrunk: its text smaller than it was drawn);
* a figure is wider than its output area (clipped, or a sideways scroll bar), or lies outside the
  window once scrolled to;
* JupyterLab's output column at 1280x800 is narrower than NOTEBOOK_COLUMN_PX.

The servers, JupyterLab's page and Voila's page are shared by the module's tests (one JupyterLab,
loaded once, opens each notebook in turn; one Voila serves the whole folder): a notebook's test
costs its two runs and its checks, not three page loads and a server start.

Screenshots: the test's tmp folder, and test-artifacts/ with SDEILAB_ARTIFACTS=1 (tests/browser.py),
named ``<test>-NN-<lab|voila>-<size>-figNN.png`` (Voila's with ``-voila`` after the test's name).
Notebook 40 boots Debian's Linux (about 30 s each, in both pages): it is marked ``linux`` too.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sdeilab.viz import style

if TYPE_CHECKING:
    from .browser import WidgetPage

pytest_plugins = ("tests.browser",)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
COVERED_ELSEWHERE = {"01_dashboard"}  # tests/test_browser.py, with its own layout checks
BOOTS_LINUX = {"40_linux_sdei_driver"}
VIEWPORTS = ((1280, 800), (1440, 900), (1920, 1080))
# JupyterLab's output column (``.jp-OutputArea-output``'s clientWidth) at 1280x800 with the file
# browser open, the narrowest a figure is shown in (1008 at 1440x900, 1488 at 1920x1080): figures
# are drawn at most 840 px wide (at 100 dpi) to be shown there at their own size, their text at
# the points it was drawn in. A static check of the figures' text (tests/test_figure_quality.py)
# may take that for granted: the test below fails if the column gets narrower.
NOTEBOOK_COLUMN_PX = style.NOTEBOOK_COLUMN_PX  # one number for both tests and the figures' width
ASPECT_TOLERANCE = 0.02
# A whole notebook, with the other page's kernel running beside it on a 2-core machine (notebook 40
# alone takes about 40 s; the slowest of the others 15 s).
RUN_MS = 300_000
FIGURE_MS = 30_000  # the figures' pictures and canvases drawn once the cells have run
# What draws a figure in a cell's source: pyplot's show, and the interactive timeline (ipympl).
DRAWS_A_FIGURE = re.compile(r"\bplt\.show\(\)|\bTimelineView\(")

NAMES = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb") if path.stem not in COVERED_ELSEWHERE)


def _cells(name: str) -> list[dict[str, object]]:
    cells: list[dict[str, object]] = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
    return cells


def expected_figures(name: str) -> dict[int, int]:
    """Cell index (markdown cells counted) -> how many figures its source draws (comments ignored)."""
    expected = {}
    for index, cell in enumerate(_cells(name)):
        code = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith("#"))
        if cell["cell_type"] == "code" and (count := len(DRAWS_A_FIGURE.findall(code))):
            expected[index] = count
    return expected


def _source(cell: dict[str, object]) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else str(source)


def _check_figures(page: WidgetPage, where: str, expected: dict[int, int]) -> list[str]:
    """Every figure of the page at each of VIEWPORTS: screenshots, and what is wrong with them;
    in JupyterLab at the narrowest, its output column's width too."""
    found = page.expect_figures(expected, timeout_ms=FIGURE_MS)
    problems = []
    for width, height in VIEWPORTS:
        page.resize(width, height)
        if where == "lab" and (width, height) == VIEWPORTS[0]:
            column = page.output_column_width()
            if column < NOTEBOOK_COLUMN_PX:
                problems.append(f"{where}-{width}x{height}: JupyterLab's output column is {column} px wide, "
                                f"less than NOTEBOOK_COLUMN_PX ({NOTEBOOK_COLUMN_PX}): a figure drawn to fit "
                                f"it is shrunk")
        problems += page.figure_problems(f"{where}-{width}x{height}", tolerance=ASPECT_TOLERANCE)
        page.mark(f"{len(found)} figures at {width}x{height}")
    return problems


def test_the_notebooks_are_all_here() -> None:
    # A notebook added to notebooks/ is tested here without a change; these are the ones of issue 14.
    assert {"00_tour", "02_your_own_guest", "10_conduits", "31_normal_vs_critical",
            "40_linux_sdei_driver"} <= set(NAMES)
    # The count of figures a notebook draws, by cell (markdown cells counted).
    assert expected_figures("00_tour") == {5: 1}
    assert sum(expected_figures("31_normal_vs_critical").values()) == 3  # two pyplot figures, one timeline


@pytest.mark.browser
@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.linux] if name in BOOTS_LINUX else [])
                                  for name in NAMES])
def test_notebook_figures(name: str, lab_server, voila_folder_server, reused_widget_page) -> None:  # type: ignore[no-untyped-def]
    notebook = NOTEBOOKS / f"{name}.ipynb"
    expected = expected_figures(name)
    lab, voila = reused_widget_page, reused_widget_page.companion("voila")
    voila.settle_ms = 50  # Voila's page stays where it is scrolled to (JupyterLab's moves again)
    # Both pages at once: the two kernels run side by side (notebook 40's module build too:
    # scripts/build-linux-module.sh lets kernels build it at once). JupyterLab's page, loaded by the
    # first test, opens each notebook in turn; Voila's server serves the whole folder.
    lab.start_notebook(lab_server(NOTEBOOKS), notebook.name, reuse=True)
    voila.start_dashboard(voila_folder_server(NOTEBOOKS), notebook.name)
    try:
        lab.begin_run_all(notebook.name)
        lab.end_run_all(notebook.name, timeout_ms=RUN_MS)
        errors = lab.error_outputs() + lab.widget_errors()
        assert not errors, f"JupyterLab: a cell raised, wrote to stderr or shows a widget error: {errors}"
        voila.wait_dashboard(len(_cells(name)), timeout_ms=RUN_MS)
        errors = voila.widget_errors()
        assert not errors, f"Voila: a widget shows an error: {errors}"
        # The file browser open beside the notebook, as Lab starts for a user: its narrowest output.
        lab.page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
        lab.page.wait_for_function("() => !window.jupyterapp.shell.leftCollapsed")
        problems = _check_figures(lab, "lab", expected) + _check_figures(voila, "voila", expected)
        assert not problems, "\n".join(problems)
    finally:
        with contextlib.suppress(Exception):
            lab.shutdown_kernel()  # Lab keeps a notebook's kernel when its page closes; a session runs many
