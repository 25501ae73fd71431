"""HTML for the dashboard's text views, built from the session's data (no widgets here).

Kept apart from the widgets so a view can be checked as a string, and so the same tables serve
a notebook that wants one view without the whole dashboard (``IPython.display.HTML(...)``).
"""

from __future__ import annotations

from html import escape

from sdeilab.firmware.session import REGISTERS, CpuView, DisasmLine, StopInfo, pstate_text
from sdeilab.viz.style import CURRENT

CHANGED_STYLE = "background:#ffe08a"
_MONO = "font-family:monospace;font-size:12px;line-height:1.25"


def status_html(stop: StopInfo, running: bool = False, note: str = "", error: str = "",
                retired: int | None = None) -> str:
    """One line: what the machine is doing or why it stopped, where, and how far it has come."""
    if running:
        head = "<b>running</b>"
    else:
        head = f"<b>{escape(stop.reason)}</b>: {escape(stop.detail)}"
    where = f" &middot; CPU {stop.cpu}" if stop.cpu is not None and not running else ""
    count = stop.retired if retired is None else retired
    parts = [f'<span class="sdeilab-status">{head}{where} &middot; {count:,} instructions retired</span>']
    if note:
        parts.append(f' <span class="sdeilab-note">{escape(note)}</span>')
    if error:
        parts.append(f' <span class="sdeilab-error" style="color:#b00020">{escape(error)}</span>')
    return "".join(parts)


def registers_html(views: list[CpuView]) -> str:
    """A register table with one column per CPU; cells that changed since the stop before are
    highlighted (class ``changed``)."""
    head = "".join(f"<th style='text-align:right;padding:0 8px'>CPU {v.cpu}<br>"
                   f"<span style='font-weight:normal'>{escape(v.state)}</span></th>" for v in views)
    rows = []
    for name in REGISTERS:
        cells = []
        for view in views:
            value = view.registers[name]
            changed = name in view.changed
            style = f"text-align:right;padding:0 8px;{CHANGED_STYLE if changed else ''}"
            title = f" title='{escape(pstate_text(value))}'" if name == "PSTATE" else ""
            css = " class='changed'" if changed else ""
            cells.append(f"<td{css} style='{style}'{title}>{value:016x}</td>")
        rows.append(f"<tr><th style='text-align:left;padding:0 8px'>{name}</th>{''.join(cells)}</tr>")
    decoded = "".join(f"<td style='text-align:right;padding:0 8px'>{escape(pstate_text(v.registers['PSTATE']))}</td>"
                      for v in views)
    rows.append(f"<tr><th style='text-align:left;padding:0 8px'></th>{decoded}</tr>")
    return (f"<table class='sdeilab-registers' style='{_MONO};border-collapse:collapse'>"
            f"<tr><th></th>{head}</tr>{''.join(rows)}</table>")


def disassembly_html(cpu: int, lines: list[DisasmLine], symbolize: str = "") -> str:
    """Instructions around PC: ``=>`` marks PC, ``*`` a breakpoint, labels on their own line."""
    out = [f"<div style='{_MONO}'><b>CPU {cpu}</b> {escape(symbolize)}<pre style='margin:0'>"]
    for line in lines:
        if line.label:
            out.append(f"{escape(line.label)}:\n")
        mark = "=>" if line.current else "  "
        bp = "*" if line.breakpoint else " "
        text = f"{mark}{bp} {line.address:010x}  {escape(line.text)}"
        out.append(f"<b class='pc'>{text}</b>\n" if line.current else text + "\n")
    out.append("</pre></div>")
    return "".join(out)


def memory_html(address: int, data: bytes | None, width: int = 16) -> str:
    """A hex dump: address, bytes, and the printable ASCII."""
    if data is None:
        return f"<pre style='{_MONO}'>0x{address:x}: no RAM here</pre>"
    lines = []
    for offset in range(0, len(data), width):
        row = data[offset:offset + width]
        hexes = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{address + offset:010x}  {hexes:<{3 * width}} {escape(text)}")
    return f"<pre class='sdeilab-memory' style='{_MONO};margin:0'>" + "\n".join(lines) + "</pre>"


def state_label_html(event: int, cpu: int | None, state: str | None) -> str:
    """The state the state machine picture highlights, in words (class ``sdeilab-state``): the
    last SdeiTransition's new state for ``event`` (on ``cpu``; None: all CPUs)."""
    who = "all CPUs" if cpu is None else f"CPU {cpu}"
    if state is None:
        return (f"<span style='{_MONO}'>SDEI event {event} ({who}): "
                "<span class='sdeilab-state'>no transition yet</span></span>")
    # The picture's colours for the current state (sdeilab.viz.state_machine: fill and halo).
    return (f"<span style='{_MONO}'>SDEI event {event} ({who}): <b class='sdeilab-state' "
            f"style='background:#FDEBC8;outline:2px solid {CURRENT};padding:0 4px'>{escape(state)}</b></span>")
