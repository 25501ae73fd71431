"""The dashboard's logic without a browser: buttons pressed with ``.click()``, fields set as a user
would, and the widgets' values checked (the first of the three test tiers, issue 4 item 6)."""

from __future__ import annotations

import html
import inspect
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from sdeilab.firmware.profiles import PROFILES
from sdeilab.lab.session import Session
from sdeilab.toolchain import build_source_text
from sdeilab.trace import SdeiTransition, SmcccCall
from sdeilab.viz import state_machine, timeline
from sdeilab.viz.timeline import compact_legend_height, recent_window
from sdeilab.widgets import Lab, plots
from sdeilab.widgets.lab import ANY_CPU

ROOT = Path(__file__).resolve().parent.parent
TFTF_STATE = ROOT / "guests" / "sdei" / "tftf_state.elf"
SMP_BOOT = ROOT / "guests" / "smp_boot.elf"

SPIN = """
#include "guest.h"
int main(void)
{
    puts("spinning\\n");
    for (volatile unsigned long i = 0;; i++)
        ;
}
"""


@pytest.fixture(scope="module")
def spin_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source_text(SPIN, "c", tmp_path_factory.mktemp("widgets") / "spin.elf")


def retired(lab: Lab) -> int:
    match = re.search(r"([\d,]+) instructions retired", lab.status.value)
    assert match, lab.status.value
    return int(match.group(1).replace(",", ""))


def changed_cells(lab: Lab) -> int:
    return lab.registers_html.value.count("class='changed'")


def test_step_button_executes_one_instruction_and_the_views_follow() -> None:
    lab = Lab(TFTF_STATE, plots_enabled=False)
    assert "<b>reset</b>" in lab.status.value and retired(lab) == 0
    assert changed_cells(lab) == 0
    pc_before = lab.session.pc(0)
    assert f"=>  {pc_before:010x}" in lab.disasm_html.value
    lab.step_button.click()
    assert "<b>stepped</b> 1 instruction (all CPUs)" in lab.status.value and retired(lab) == 1
    assert changed_cells(lab) >= 1  # PC at least
    pc_after = lab.session.pc(0)
    assert pc_after != pc_before and f"=>  {pc_after:010x}" in lab.disasm_html.value
    assert f"{pc_after:016x}" in lab.registers_html.value
    lab.count.value = 10
    lab.step_button.click()
    assert retired(lab) == 11


def test_step_back_and_reset_buttons() -> None:
    lab = Lab(SMP_BOOT, plots_enabled=False)
    lab.count.value = 5000
    lab.step_button.click()
    registers = lab.registers_html.value
    lab.count.value = 1
    lab.step_button.click()
    assert retired(lab) == 5001
    lab.step_back_button.click()
    assert "<b>step-back</b>" in lab.status.value and retired(lab) == 5000
    assert re.sub(r" class='changed'|background:#ffe08a", "", lab.registers_html.value) == \
        re.sub(r" class='changed'|background:#ffe08a", "", registers)
    assert lab.uart_view.value
    lab.reset_button.click()
    assert "<b>reset</b>" in lab.status.value and retired(lab) == 0 and lab.uart_view.value == ""


def test_event_breakpoint_from_the_fields_then_run() -> None:
    lab = Lab(TFTF_STATE, plots_enabled=False)
    lab.event_entry.value = "SDEI_EVENT_COMPLETE"
    lab.event_cpu.value = 2
    lab.event_add_button.click()
    assert [label for label, _ in lab.bp_list.options] == ["on SDEI_EVENT_COMPLETE on CPU 2"]
    lab.run_button.click()
    info = lab.wait(60)
    assert info is not None and info.reason == "break"
    # The stop speaks: the call, its argument, its result by name and who answered (here CPU 2's
    # COMPLETE of sub-test a, refused: no handler runs).
    assert ("<b>break</b>: <b>SDEI_EVENT_COMPLETE</b>(0) on CPU 2 &rarr; <b>DENIED (-3)</b>, answered by kvm"
            in lab.status.value)
    assert "<b>CPU 2</b>" in lab.disasm_html.value  # the views follow the CPU that stopped
    assert "sdei_event_complete" in lab.disasm_html.value
    assert lab.progress.value == lab.progress.max
    assert lab.uart_view.value == lab.session.uart_text() and "CPU 2" in lab.uart_view.value


def test_address_breakpoint_add_run_and_remove() -> None:
    lab = Lab(SMP_BOOT, plots_enabled=False)
    lab.bp_entry.value = "secondary_main"
    lab.bp_add_button.click()
    assert lab.error == ""
    address = lab.session.address_of("secondary_main")
    assert [label for label, _ in lab.bp_list.options] == [f"0x{address:x} <secondary_main>"]
    lab.run()
    assert "<b>breakpoint</b>" in lab.status.value
    assert f"=>* {address:010x}" in lab.disasm_html.value
    lab.bp_list.value = lab.bp_list.options[0][1]
    lab.bp_remove_button.click()
    assert lab.bp_list.options == ()
    lab.run()
    assert "<b>system-off</b>" in lab.status.value
    assert "CPU_ON(" in lab.uart_view.value


def test_run_until_and_step_firmware_buttons() -> None:
    lab = Lab(SMP_BOOT, plots_enabled=False)
    lab.step_firmware_button.click()
    fact = lab.session.last_stop.fact
    assert isinstance(fact, SmcccCall) and fact == lab.session.trace.of_kind(SmcccCall)[0]
    assert f"<b>break</b>: <b>{fact.name}</b>(" in lab.status.value and " on CPU 0 &rarr; <b>" in lab.status.value
    lab.event_entry.value = "CPU_ON"
    lab.run_until_button.click()
    assert re.search(r"<b>break</b>: <b>CPU_ON(64)?</b>\(\d, 0x[0-9a-f]+ &lt;\w+&gt;, \d+\) on CPU 0 &rarr; <b>SUCCESS",
                     lab.status.value), lab.status.value
    assert lab.bp_list.options == ()  # run until installs no breakpoint


def test_run_then_pause_with_the_buttons(spin_elf: Path) -> None:
    lab = Lab(spin_elf, cpus=2, plots_enabled=False)
    lab.run_button.click()
    assert lab.busy and "<b>running</b>" in lab.status.value
    lab.step_button.click()  # refused while running, shown in the status line
    assert "pause it first" in lab.error and "pause it first" in lab.status.value
    assert lab.wait(0.5) is None  # still running: the guest never stops by itself
    lab.pause_button.click()
    info = lab.wait(30)
    assert info is not None and info.reason == "paused"
    assert not lab.busy and "<b>paused</b>" in lab.status.value and retired(lab) > 0
    assert lab.uart_view.value == "spinning\n"
    lab.step_button.click()
    assert lab.error == "" and retired(lab) == info.retired + 1


def test_errors_are_shown_not_raised() -> None:
    lab = Lab(SMP_BOOT, plots_enabled=False)
    lab.bp_entry.value = "no_such_symbol"
    lab.bp_add_button.click()
    assert "no symbol 'no_such_symbol'" in lab.error and "sdeilab-error" in lab.status.value
    lab.event_entry.value = ""
    lab.run_until_button.click()
    assert "event field" in lab.error
    lab.step_button.click()
    assert lab.error == "" and "sdeilab-error" not in lab.status.value


def test_memory_and_cpu_views() -> None:
    lab = Lab(SMP_BOOT, plots_enabled=False)
    lab.run(2000)
    lab.memory_entry.value = "main"
    address = lab.session.address_of("main")
    assert f"{address:010x}" in lab.memory_html.value
    word = lab.session.memory(address, 4)
    assert word is not None and " ".join(f"{b:02x}" for b in word) in lab.memory_html.value
    lab.memory_entry.value = "nope"
    assert "no symbol" in lab.memory_html.value
    lab.cpu_select.value = 1
    assert "<b>CPU 1</b>" in lab.disasm_html.value
    lab.cpu_select.value = "follow"
    assert "<b>CPU 0</b>" in lab.disasm_html.value


def test_profile_and_quirk_switches_reset_the_guest() -> None:
    lab = Lab(TFTF_STATE, plots_enabled=False)
    lab.step()
    lab.profile_select.value = "firmware"
    assert lab.session.profile.name == "firmware" and lab.session.guest_file.name == "tftf_state-smc.elf"
    assert "<b>reset</b>" in lab.status.value and retired(lab) == 0
    lab.run()
    assert lab.uart_view.value.endswith("tftf_state: PASS\n")
    lab.quirk_boxes["version_1_1"].value = True
    assert lab.session.quirks.version_1_1 and retired(lab) == 0 and lab.uart_view.value == ""
    lab.run()
    # TFTF's scenario runs only on SDEI 1.0.0 (reference section 4): the quirk reached the firmware.
    assert "tftf_state: FAIL" in lab.uart_view.value and "SDEI_VERSION" in lab.uart_view.value
    lab.quirk_boxes["version_1_1"].value = False
    assert not lab.session.quirks.version_1_1 and retired(lab) == 0
    lab.run()
    assert lab.uart_view.value.endswith("tftf_state: PASS\n")


def test_plots_are_drawn_and_follow_the_run() -> None:
    lab = Lab(TFTF_STATE)
    lab.show_event(2000)  # the scenario binds the SP804's SPI to event 2000 (tftf_state.c)
    assert lab.wait_plots(60)
    state, timeline = bytes(lab.state_image.value), bytes(lab.timeline_image.value)
    assert state.startswith(b"\x89PNG") and timeline.startswith(b"\x89PNG")
    drawn = lab.plots_drawn
    lab.step()  # no new fact: the state machine stays, the timeline's cursor moves to the stop
    assert lab.wait_plots(60) and lab.plots_drawn == drawn + 1
    assert bytes(lab.state_image.value) == state and bytes(lab.timeline_image.value) != timeline
    drawn = lab.plots_drawn
    lab.run(2_000_000)
    assert lab.wait_plots(60) and lab.plots_drawn > drawn
    assert bytes(lab.state_image.value) != state and bytes(lab.timeline_image.value) != timeline
    assert 0 in lab.event_select.options and 2000 in lab.event_select.options  # the events the guest used
    before = bytes(lab.state_image.value)
    lab.event_select.value = 0
    assert lab.wait_plots(60) and bytes(lab.state_image.value) != before
    lab.state_cpu.value = 1
    assert lab.wait_plots(60) and bytes(lab.state_image.value).startswith(b"\x89PNG")
    assert lab.plot_error == ""


def test_a_step_updates_the_text_views_without_waiting_for_the_plots() -> None:
    lab = Lab(TFTF_STATE)
    lab.wait_plots(60)
    timings = []
    for _ in range(20):
        began = time.perf_counter()
        lab.step_button.click()
        timings.append(time.perf_counter() - began)
    timings.sort()
    assert timings[len(timings) // 2] < 0.1, timings  # the dashboard's target: under 100 ms a step
    lab.wait_plots(60)


def test_the_state_label_and_only_the_pictures_that_changed_are_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdeilab.widgets import plots

    drawn: list[str] = []
    for name in ("state_machine_png", "timeline_png"):
        original = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _f=original, _n=name, **k: drawn.append(_n) or _f(*a, **k))
    lab = Lab(TFTF_STATE, plots_async=False)
    # The CPU choosers show their "all" entry (ipywidgets 8 shows value None as an empty box).
    assert (lab.state_cpu.label, lab.event_cpu.label, lab.bp_cpu.label) == ("all CPUs", "any CPU", "any CPU")
    lab.show_event(2000)
    assert "no transition yet" in lab.state_label.value
    drawn.clear()
    lab.step_firmware()  # CPU 0's first call, SDEI_VERSION: a new fact, no transition of event 2000
    assert isinstance(lab.session.last_stop.fact, SmcccCall) and drawn == ["timeline_png"]
    lab.run_until("SdeiDispatch")
    assert "state_machine_png" in drawn and ">enabled-running</b>" in lab.state_label.value
    lab.show_event_cpu(1)  # CPU 1 is still off: nothing of event 2000 on it yet
    assert lab.state_cpu.label == "CPU 1" and "no transition yet" in lab.state_label.value
    lab.show_event_cpu(None)
    assert lab.state_cpu.label == "all CPUs" and ">enabled-running</b>" in lab.state_label.value


# --- the pictures kept between drawings (sdeilab/widgets/plots.py: Picture) -------------------------


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def fresh_pixels(draw: Callable[[Axes], object], function: Callable[..., bytes]) -> np.ndarray:
    """The picture as the dashboard would draw it if it kept no figure: a new Figure at the size
    and resolution ``function`` draws at, the view (which puts its axes where they go: the
    dashboard's pictures have a fixed layout), and matplotlib's savefig."""
    parameters = inspect.signature(function).parameters
    figure = Figure(figsize=parameters["size"].default, dpi=parameters["dpi"].default)
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return decoded(out.getvalue())


def assert_pictures_are_fresh(lab: Lab) -> None:
    """Both pictures, pixel for pixel, as a fresh Figure draws what they show."""
    trace, cpus = lab.session.trace, lab.session.cpus
    event, cpu = lab.event_select.value, None if lab.state_cpu.value == ANY_CPU else lab.state_cpu.value
    now = lab.session.last_stop.vtime  # the cursor: the stop (the Lab draws after the run, not during it)

    def state(ax: Axes) -> None:
        ax.set_position((0, 0, 1, 1))  # the compact drawing is in inches: its axes fill the figure
        state_machine(ax, trace, event=event, cpu=cpu, compact=True)

    def lanes(ax: Axes) -> None:
        timeline(ax, trace, cpus=list(range(cpus)), window=recent_window(trace, now), now=now, compact=True)
        width, height = plots.TIMELINE_SIZE
        bottom = compact_legend_height(ax) + plots.TIMELINE_MARGIN
        ax.set_position((plots.TIMELINE_LEFT / width, bottom / height,
                         1 - (plots.TIMELINE_LEFT + plots.TIMELINE_RIGHT) / width,
                         1 - (bottom + plots.TIMELINE_TOP) / height))

    assert np.array_equal(decoded(lab.state_image.value), fresh_pixels(state, plots.state_machine_png))
    assert np.array_equal(decoded(lab.timeline_image.value), fresh_pixels(lanes, plots.timeline_png))


@pytest.mark.parametrize("tile", [plots.TILE, 8])
def test_a_redrawn_picture_is_what_a_fresh_figure_draws(tile: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lab keeps each picture's figure and paints again only what changed (the highlight,
    a count, the time axis): after every step the pictures must still be, pixel for pixel, what
    a fresh Figure draws, and must have changed where the trace did. With 8-pixel tiles an
    artist's extent drawn too tight (a stroke, a glyph's ink) shows as a stale tile."""
    monkeypatch.setattr(plots, "TILE", tile)
    lab = Lab(TFTF_STATE, plots_async=False)
    lab.show_event(2000)
    lab.run_until("SdeiDispatch", cpu=2)  # where notebooks/01_dashboard stops
    assert_pictures_are_fresh(lab)
    fast = lab.state_picture.fast, lab.timeline_picture.fast
    state_changes = 0
    for _ in range(8):
        transitions = len(lab.session.trace.seqs(SdeiTransition, event=2000))
        before = bytes(lab.state_image.value), bytes(lab.timeline_image.value)
        lab.step_firmware()
        assert_pictures_are_fresh(lab)
        assert bytes(lab.timeline_image.value) != before[1]  # a new fact: the time axis grew
        if len(lab.session.trace.seqs(SdeiTransition, event=2000)) != transitions:  # a count changed
            assert bytes(lab.state_image.value) != before[0]
            state_changes += 1
    assert state_changes >= 3
    # The fast paths drew them (not a fresh Figure each time, which would pass the above too).
    assert lab.state_picture.fast - fast[0] == state_changes and lab.timeline_picture.fast - fast[1] == 8
    assert lab.state_picture.tiles_drawn > 0
    # What the state machine shows changes wholesale: another event, one CPU's transitions, a reset.
    for change in (lambda: lab.show_event(0), lambda: lab.show_event_cpu(2), lambda: lab.show_event(2000),
                   lambda: lab.show_event_cpu(None), lab.reset, lab.step_firmware, lab.step_firmware):
        change()
        assert_pictures_are_fresh(lab)
    assert lab.plot_error == ""


# --------------------------------------------------------------------------- every profile, bad input, exit

# A guest in both conduit builds (NAME.elf HVC, NAME-smc.elf SMC): the session loads the one the
# profile needs, so every profile can run it.
VERSIONS = """
#include "guest.h"
int main(void)
{
    int64_t psci = psci_version();
    int64_t sdei = smccc_call(SDEI_VERSION, 0, 0, 0);
    puts(psci == 0x10001 ? "PSCI 1.1\\n" : "PSCI ?\\n");
    puts(sdei < 0 ? "no SDEI\\n" : "SDEI\\n");
    psci_system_off();
}
"""


@pytest.fixture(scope="module")
def versions_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("versions")
    build_source_text(VERSIONS, "c", folder / "versions-smc.elf", defines={"CONDUIT_SMC": ""})
    return build_source_text(VERSIONS, "c", folder / "versions.elf")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_profile_makes_a_session_and_a_dashboard_that_break_on_firmware_calls(
        profile: str, versions_elf: Path) -> None:
    # "kvm" (no SDEI) raised AttributeError in Session.function_names, from break_on and from Lab().
    session = Session(versions_elf, cpus=1, profile=profile)
    assert {"PSCI_VERSION", "SDEI_VERSION", "CPU_ON", "SMCCC_VERSION"} <= session.function_names()
    session.break_on("PSCI_VERSION")
    info = session.run()
    assert info.reason == "break" and info.fact is not None and info.fact.name == "PSCI_VERSION"  # type: ignore[attr-defined]
    assert session.registers(0)["x0"] == 0x1_0001  # every profile answers PSCI: 1.1 (DEN0022)
    lab = Lab(versions_elf, cpus=1, profile=profile, plots_enabled=False)
    assert lab.error == "" and "SDEI_VERSION" in lab.event_entry.options
    assert lab.break_on("SDEI_VERSION") is not None and lab.error == ""
    info = lab.run()
    assert info is not None and info.reason == "break" and info.fact is not None
    assert info.fact.name == "SDEI_VERSION"  # type: ignore[attr-defined]
    x0 = lab.session.registers(0)["x0"]
    # Answered where the profile offers SDEI (1.0, DEN0054), NOT_SUPPORTED (-1) where it does not.
    assert x0 == (0x1_0000_0000_0000 if PROFILES[profile].reaches("sdei") else (1 << 64) - 1)
    lab.run()
    assert lab.uart_view.value == "PSCI 1.1\n" + ("SDEI\n" if PROFILES[profile].reaches("sdei") else "no SDEI\n")


def test_bad_input_is_shown_in_the_status_line_and_changes_nothing(tmp_path: Path) -> None:
    for build in ("tftf_state.elf", "tftf_state-smc.elf"):
        (tmp_path / build).write_bytes((TFTF_STATE.parent / build).read_bytes())
    lab = Lab(tmp_path / "tftf_state.elf", plots_enabled=False)
    lab.step(100)
    for where in ("-1", str(2**70), "0x40000002"):
        lab.bp_entry.value = where
        lab.bp_add_button.click()  # used to raise UcError out of the click, and keep the bad entry
        assert "not" in lab.error and "sdeilab-error" in lab.status.value
        assert lab.session.breakpoints == [] and lab.bp_list.options == ()
    for count, message in ((-5, "at least 0"), (1.5, "whole number")):
        assert lab.step(count) is None and message in lab.error and "sdeilab-error" in lab.status.value  # type: ignore[arg-type]
        assert retired(lab) == 100
    lab.raise_event(5000, -1)
    assert "no CPU -1" in lab.error
    # A predicate that raises: reported, the run stopped cleanly, and running on still passes.
    def boom(fact: object) -> bool:
        raise KeyError("boom")
    assert lab.run_until(boom) is None and "KeyError" in lab.error and "boom" in lab.status.value
    assert lab.session.last_stop.reason == "break" and retired(lab) > 100
    # The guest's files are gone: the switches still work, from the images kept in memory.
    for build in tmp_path.iterdir():
        build.unlink()
    lab.profile_select.value = "firmware"
    assert lab.error == "" and lab.session.guest_file.name == "tftf_state-smc.elf" and retired(lab) == 0
    lab.quirk_boxes["version_1_1"].value = True
    assert lab.error == "" and lab.session.quirks.version_1_1
    lab.reset_button.click()
    assert lab.error == "" and "<b>reset</b>" in lab.status.value
    # A CPU count: refused whole, or applied whole (the CPU choosers follow).
    assert lab.set_cpus(0) is None and "cpus" in lab.error and lab.session.cpus == 4
    assert lab.set_cpus(3) is not None and lab.error == "" and lab.session.cpus == 3
    assert [v for _, v in lab.bp_cpu.options] == [ANY_CPU, 0, 1, 2]
    assert [v for _, v in lab.cpu_select.options] == ["follow", 0, 1, 2]
    lab.run_button.click()
    info = lab.wait(60)
    assert info is not None and info.reason == "system-off" and lab.error == ""
    assert "tftf_state: FAIL" in lab.uart_view.value  # SDEI 1.1 (the quirk): as with 4 CPUs


# Keeps the plot worker drawing on fresh figures (the slow case) or a run going in the background,
# then lets the interpreter exit while it does.
EXIT_SCRIPT = """
import sys, time
import matplotlib
matplotlib.use("Agg")
from sdeilab.widgets import Lab, plots
lab = Lab(sys.argv[1])
what, delay = sys.argv[2], float(sys.argv[3])
if what == "run":
    lab.start()
    time.sleep(delay)
else:
    lab.run(3_000_000)
    end = time.monotonic() + delay
    while time.monotonic() < end:
        lab.state_picture, lab.timeline_picture = plots.Picture(), plots.Picture()
        lab._timeline_drawn = None
        lab.show_event(0)
        time.sleep(0.02)
print("exiting", flush=True)
"""


@pytest.mark.parametrize("what, delays", [("draw", (0.3, 0.6, 0.9, 1.2)), ("run", (0.2, 0.4))])
def test_the_interpreter_exits_cleanly_while_the_dashboard_works(what: str, delays: tuple[float, ...]) -> None:
    # Daemon threads inside matplotlib's Agg or Unicorn at interpreter exit aborted the process
    # (rc 134, "terminate called without an active exception") or crashed it (rc 139): nearly
    # every exit during a background run (Unicorn's exit handler closed the running engine), one
    # exit in five to two while drawing, hence several exits at different moments.
    guest = ROOT / "guests" / "sdei" / "tftf_rm_any.elf"  # about 27,000 facts: slow pictures
    env = {**os.environ, "MPLBACKEND": "Agg"}
    for delay in delays:
        done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(guest), what, str(delay)], cwd=ROOT,
                              capture_output=True, timeout=120, env=env)
        assert done.returncode == 0 and done.stdout == b"exiting\n", (delay, done.returncode, done.stderr[-2000:])


# --- the dashboard as a debugger (issue 14, point 4) ----------------------------------------------------------


def test_the_status_line_speaks_and_says_no_stale_count() -> None:
    lab = Lab(TFTF_STATE, plots_enabled=False)
    lab.step()
    assert "<b>stepped</b> 1 instruction (all CPUs)" in lab.status.value and "budget" not in lab.status.value
    assert lab.progress.layout.visibility == "hidden" and lab.progress_label.value == ""
    lab.break_on("SDEI_EVENT_UNREGISTER", cpu=2)
    lab.run(20_000_000)
    # TFTF's sub-test a on CPU 2: UNREGISTER of an event never registered is refused.
    assert "<b>SDEI_EVENT_UNREGISTER</b>(2000) on CPU 2 &rarr; <b>DENIED (-3)</b>, answered by kvm" in lab.status.value
    assert "ffff" not in lab.status.value
    # Sub-test d's handler unregisters its own event: pending until its COMPLETE.
    pending = "<b>SDEI_EVENT_UNREGISTER</b>(2000) on CPU 2 &rarr; <b>PENDING (-5)</b>, answered by kvm"
    for _ in range(10):
        lab.run(20_000_000)
        if pending in lab.status.value:
            break
    assert pending in lab.status.value, lab.status.value
    assert lab.progress.layout.visibility == "hidden" and lab.progress_label.value == ""


def test_step_and_step_firmware_per_cpu() -> None:
    lab = Lab(TFTF_STATE, plots_enabled=False)
    lab.run_until("CPU_ON", max_instructions=20_000_000)
    lab.step_firmware(1)  # CPU 1's first call, after it came up
    assert lab.session.last_stop.fact.cpu == 1 and "on CPU 1" in lab.status.value
    lab.step_cpu.value = 0
    lab.count.value = 7
    before = list(lab.session.machine.cpu_retired)
    lab.step_button.click()
    after = lab.session.machine.cpu_retired
    assert after[0] - before[0] == 7 and lab.error == ""
    assert "<b>stepped</b> 7 instructions on CPU 0" in lab.status.value
    lab.step_cpu.value = 1
    lab.step_firmware_button.click()
    assert lab.session.last_stop.fact.cpu == 1


def test_recent_calls_step_back_to_the_one_clicked_and_the_sdei_row_follows() -> None:
    lab = Lab(TFTF_STATE, plots_enabled=False)
    lab.run_until("SdeiDispatch", cpu=2, max_instructions=20_000_000)
    # CPU 2 runs the handler of event 2000: the per-CPU SDEI row says so.
    rows = lab.sdei_html.value
    assert "<th style='text-align:right;padding:0 5px'>CPU 2</th>" in rows
    running = re.search(r"<th[^>]*>running</th>(.*?)</tr>", rows)
    depth = re.search(r"<th[^>]*>depth</th>(.*?)</tr>", rows)
    assert running and depth
    assert re.findall(r"<td[^>]*>(.*?)</td>", running.group(1))[2] == "2000"
    assert re.findall(r"<td[^>]*>(.*?)</td>", depth.group(1))[2] == "1"
    lab.step_firmware(2)
    lab.step_firmware(2)
    calls = list(lab.calls_list.options)  # the newest first
    assert len(calls) == 12 and "SDEI_EVENT_DISABLE(2000) on CPU 2 -> SUCCESS (0), by kvm" in calls[0][0]
    assert "SDEI_EVENT_STATUS(2000) on CPU 2 -> 7, by kvm" in calls[1][0]
    label, seq = calls[4]
    retired = lab.session.retired
    lab.calls_list.value = seq  # a click on the fifth last call
    assert lab.error == "" and lab.session.last_stop.fact.seq == seq and lab.session.retired < retired
    assert "<b>step-back</b> to" in lab.status.value
    assert lab.calls_list.options[0] == (label, seq) and lab.calls_list.value is None
    call = lab.session.last_stop.fact
    assert lab.session.trace[seq] == call  # the replay recorded the same call at the same place


def test_the_uart_view_follows_its_output_and_the_platform_is_described() -> None:
    lab = Lab(TFTF_STATE, plots_enabled=False)
    lab.run(20_000_000)
    assert lab.uart_view.value == lab.session.uart_text()
    shown = lab.uart_html.value
    assert "flex-direction:column-reverse" in shown and "tftf_state: PASS" in shown
    assert html.escape(PROFILES["virt"].description) in lab.profile_text.value
    box = lab.quirk_boxes["cpu_off_while_running"]
    assert box.tooltip.startswith("CPU_OFF is allowed while a handler runs")
    lab.set_profile("kvm-sdei")
    assert html.escape(PROFILES["kvm-sdei"].description) in lab.profile_text.value


def css_problems(figure: Figure, css_width: int) -> list[str]:
    """``figure_problems`` in the points a reader sees: the figure at CSS's 96 pixels an inch,
    shown ``css_width`` CSS pixels wide (the <img>'s width). The figure's dpi is put back after."""
    from sdeilab.viz.quality import figure_problems

    dpi = figure.get_dpi()
    try:
        figure.set_dpi(plots.CSS_DPI)
        return figure_problems(figure, display_width=css_width)
    finally:
        figure.set_dpi(dpi)


def test_the_dashboard_pictures_are_readable_at_their_displayed_size() -> None:
    # Each picture is rendered at PIXEL_RATIO times the CSS pixels it is shown at, and shown at
    # its CSS width: there no text is under 10 pt, none overlaps, none is cut.
    lab = Lab(TFTF_STATE, plots_async=False)
    lab.show_event(2000)
    lab.break_on("SDEI_EVENT_COMPLETE", cpu=2)
    lab.run(20_000_000)
    for picture, image, display in ((lab.state_picture, lab.state_image, plots.STATE_DISPLAY),
                                    (lab.timeline_picture, lab.timeline_image, plots.TIMELINE_DISPLAY)):
        assert picture.figure is not None
        pixels = Image.open(io.BytesIO(bytes(image.value))).size
        assert pixels == (display[0] * plots.PIXEL_RATIO, display[1] * plots.PIXEL_RATIO)
        # Never shown narrower than that (wider where the page has room: tests/test_browser.py).
        assert image.layout.min_width == f"{display[0]}px" and image.layout.height == "auto"
        assert css_problems(picture.figure, display[0]) == []
    # Still so on the figures kept and redrawn in place: a step further, one CPU's view.
    lab.step_firmware()
    lab.show_event_cpu(2)
    for picture, display in ((lab.state_picture, plots.STATE_DISPLAY), (lab.timeline_picture, plots.TIMELINE_DISPLAY)):
        assert picture.figure is not None and css_problems(picture.figure, display[0]) == []
    assert_pictures_are_fresh(lab)  # measuring them left the kept figures as they were


def disassembly_text(lab: Lab) -> str:
    """The disassembly panel as it reads: its HTML without tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", lab.disasm_html.value))


def test_the_disassembly_shows_data_as_data() -> None:
    # Words after a function's `ret` are data, not code: the literal pool and padding after
    # sdei_handler_done (its ELF symbol is 60 bytes, and a $d mapping symbol starts at its end,
    # 0x400825f8) and set_vbar's padding and the literal after it (PSCI CPU_OFF's function ID,
    # 0x84000002, for `ldr w0, =...` in secondary_entry). Decoded, they read as SVE loads
    # (`ld1sb {z5.d}, p0/z, [x1, z0.d, uxtw]`) and `udf #0`.
    lab = Lab(TFTF_STATE, plots_enabled=False)
    end = lab.session.address_of("sdei_handler_done") + 60
    assert end == 0x400825F8
    lab.add_breakpoint("sdei_handler_done+0x20")  # the wait loop CPU 2 is in when the notebook ends
    stop = lab.run(20_000_000)
    assert stop is not None and stop.reason == "breakpoint", lab.status.value
    text = disassembly_text(lab)
    lines = {int(m.group(1), 16): m.group(2) for m in re.finditer(r"^[=> *]{3} ([0-9a-f]{10})  (.*)$", text, re.M)}
    assert lines[end - 4] == "ret"  # the function's last instruction is still code
    for address in range(end, max(lines) + 4, 4):
        word = int.from_bytes(lab.session.memory(address, 4), "little")  # type: ignore[arg-type]
        assert lines[address] == f".word 0x{word:08x}", (hex(address), lines[address])
    assert "ld1sb" not in text and "udf" not in text

    lab.remove_breakpoint(lab.session.breakpoints[0])
    lab.reset()
    lab.add_breakpoint("set_vbar")
    lab.run(1_000_000)
    lines = dict(re.findall(r"^[=> *]{3} ([0-9a-f]{10})  (.*)$", disassembly_text(lab), re.M))
    assert lines["00400800c0"] == "ret"
    assert lines["00400800c4"] == ".word 0x00000000"  # padding past set_vbar's 20 bytes
    assert lines["00400800c8"] == ".word 0x84000002"  # the literal: PSCI_CPU_OFF
    assert lines["00400800b0"] == "nop"  # at PC: code
