"""Every figure the notebooks draw is readable at the size it is displayed.

Each notebook's code runs here as its kernel would run it (the .py form, cell after cell, up to
its last figure), with ``plt.show`` replaced by a hook that keeps the figure: so the figures
checked are the notebooks' own, drawn by the same calls on the same guests. Each is then
checked by ``sdeilab.viz.quality.figure_problems`` at 100 dpi, the resolution JupyterLab's
inline backend renders at, as shown in its narrowest output column (848 CSS px, a 1280-px
window; a wider figure is scaled down to it, its text with it): text at least 10 pt, no two
texts overlapping, nothing outside the figure or clipped, one legend, distinct tick labels.

Notebook 40 boots Debian's kernel (about half a minute, and the kernel must be in .cache): its
run is in the ``linux`` tier; a small synthetic trace with the same shape (a CPU hotplugged
twice, far from vtime 0, in a window of microseconds) checks its timeline in the fast tier.

Set SDEILAB_FIGURES to a folder to keep each figure as a PNG there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
jupytext = pytest.importorskip("jupytext")

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # before pyplot: the notebooks import it

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sdeilab.trace import PowerTransition, SdeiMask, SmcccCall, SmcccReturn, TraceLog  # noqa: E402
from sdeilab.viz import figure_legend, style, timeline  # noqa: E402
from sdeilab.viz.panels import call_ladder, ladder_rows  # noqa: E402
from sdeilab.viz.quality import figure_problems  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DISPLAY_DPI = style.NOTEBOOK_DPI  # JupyterLab's inline backend: rcParams' figure.dpi, one pixel per CSS px
# Checked as shown in JupyterLab's output column at 1280 px: a wider figure is scaled down to it.
COLUMN_PX = style.NOTEBOOK_COLUMN_PX
DRAWING = ("00_tour", "11_where_sdei_lives", "12_cpu_on_masking", "20_psci_and_cpu_on", "30_sdei_event_lifecycle",
           "31_normal_vs_critical", "32_nmi_watchdog", "33_complete_vs_resume")
LINUX = "40_linux_sdei_driver"


def notebook_figures(name: str, workdir: Path) -> list[Figure]:
    """Run notebook ``name``'s code up to its last ``plt.show()``; the figures it showed, in order."""
    cells = [c.source for c in jupytext.read(NOTEBOOKS / f"{name}.py").cells if c.cell_type == "code"]
    last = max(i for i, source in enumerate(cells) if "plt.show()" in source)
    shown: list[Figure] = []

    def show(*_args: object, **_kwargs: object) -> None:
        shown.append(plt.gcf())
        plt.close(plt.gcf())  # closed to pyplot, still drawable: the next cell starts a new figure

    original, here = plt.show, Path.cwd()
    plt.show = show  # type: ignore[assignment]
    os.chdir(workdir)  # a notebook's scratch files land in the test's folder
    try:
        namespace: dict[str, object] = {"__name__": "__main__"}
        for i, source in enumerate(cells[: last + 1]):
            code = "\n".join(line for line in source.splitlines() if not line.startswith(("%", "!")))
            exec(compile(code, f"{name}.py cell {i}", "exec"), namespace)
    finally:
        plt.show = original  # type: ignore[assignment]
        os.chdir(here)
        plt.close("all")
    return shown


def report(name: str, figures: list[Figure]) -> list[str]:
    """Each figure's problems, prefixed with the figure's place; saves PNGs when SDEILAB_FIGURES is set."""
    folder = os.environ.get("SDEILAB_FIGURES")
    problems = []
    for i, figure in enumerate(figures):
        figure.set_dpi(DISPLAY_DPI)
        problems += [f"{name} figure {i}: {p}" for p in figure_problems(figure, display_width=COLUMN_PX)]
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            figure.savefig(Path(folder) / f"{name}-{i}.png", dpi=DISPLAY_DPI)
    return problems


@pytest.mark.parametrize("name", DRAWING)
def test_notebook_figures_are_readable(name: str, tmp_path: Path) -> None:
    figures = notebook_figures(name, tmp_path)
    assert figures, f"{name} showed no figure"
    problems = report(name, figures)
    assert problems == [], "\n".join(problems)


@pytest.mark.linux
@pytest.mark.skipif(not (ROOT / ".cache" / "debian-arm64").is_dir(), reason="Debian's kernel is not in .cache")
def test_linux_notebook_figures_are_readable(tmp_path: Path) -> None:
    problems = report(LINUX, notebook_figures(LINUX, tmp_path))
    assert problems == [], "\n".join(problems)


# --- notebook 40's timelines, on a synthetic trace ----------------------------------------------------

BOOTED = 1_000_000_000  # about where Debian's boot puts the hotplug cycles: the "1.0005 s" ticks of issue 14
CPU_ON, CPU_OFF = 0xC4000003, 0x84000002  # PSCI function IDs (DEN0022 5.1): the names are what the timeline reads
PE_MASK, PE_UNMASK = 0xC400002B, 0xC400002C


def hotplug_trace(cycles: int = 2) -> tuple[TraceLog, list[tuple[int, int]]]:
    """Two CPUs; CPU 1 goes down (PE_MASK, CPU_OFF) and CPU 0 brings it up (CPU_ON, then CPU 1 unmasks), as
    Linux's hotplug does; returns the trace and each cycle's (start, end) vtime."""
    log = TraceLog()
    t = BOOTED
    for cpu in (0, 1):
        log.add(PowerTransition, cpu, 0, "off", "on", "boot")

    def call(cpu: int, fid: int, name: str, args: tuple[int, ...], result: int | None, layer: str = "kvm") -> None:
        log.add(SmcccCall, cpu, t, "hvc", fid, name, args)
        if result is not None:
            log.add(SmcccReturn, cpu, t, fid, name, (result,), layer)

    spans = []
    for _ in range(cycles):
        start = t
        call(1, PE_MASK, "SDEI_PE_MASK", (), 1)
        log.add(SdeiMask, 1, t, True, "call")
        t += 300
        call(1, CPU_OFF, "CPU_OFF", (), None)
        log.add(PowerTransition, 1, t, "on", "off", "cpu-off")
        t += 900
        call(0, CPU_ON, "CPU_ON64", (1, 0x40080000, 0), 0)
        log.add(PowerTransition, 1, t, "off", "on-pending", "cpu-on")
        log.add(PowerTransition, 1, t, "on-pending", "on", "cpu-on")
        log.add(SdeiMask, 1, t, True, "cpu-on")
        t += 700
        call(1, PE_UNMASK, "SDEI_PE_UNMASK", (), 0)
        log.add(SdeiMask, 1, t, False, "call")
        spans.append((start, t))
        t += 20_000
    return log, spans


def synthetic_40() -> list[Figure]:
    log, spans = hotplug_trace()
    figure, axes = plt.subplots(2, 1, figsize=(style.NOTEBOOK_WIDTH, 6), layout="constrained")
    for ax, window, title in zip(axes, ((spans[0][0] - 20_000, spans[-1][1] + 20_000),
                                        (spans[0][0] - 2_000, spans[0][1] + 2_000)),
                                 ("both hotplug cycles of CPU 1", "the first cycle"), strict=True):
        timeline(ax, log, cpus=[0, 1], window=window)
        ax.set_title(f"Debian 6.1 on virt: {title}", fontsize=style.TITLE)
    figure_legend(figure)
    plt.close(figure)  # closed to pyplot, still drawable
    # The notebook's zoom on one cycle, as a call ladder: rows microseconds apart a second into the run.
    cycle = [f for f in log if spans[0][0] <= f.vtime <= spans[0][1]]
    height = 0.32 * len(ladder_rows(log, cycle, cpus=[0, 1])) + 2
    ladder, ax = plt.subplots(figsize=(style.NOTEBOOK_WIDTH, height), layout="constrained")
    call_ladder(ax, log, cycle, cpus=[0, 1], title="Debian 6.1 on virt: CPU 1's first hotplug cycle, call by call")
    plt.close(ladder)
    return [figure, ladder]


def test_hotplug_timelines_like_notebook_40_are_readable() -> None:
    problems = report("40-synthetic", synthetic_40())
    assert problems == [], "\n".join(problems)
