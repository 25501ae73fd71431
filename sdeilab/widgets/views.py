"""HTML for the dashboard's text views, built from the session's data (no widgets here).

Kept apart from the widgets so a view can be checked as a string, and so the same tables serve
a notebook that wants one view without the whole dashboard (``IPython.display.HTML(...)``).
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable
from html import escape, unescape
from itertools import pairwise

from sdeilab.lab.session import REGISTERS, CpuView, DisasmLine, StopInfo, pstate_text
from sdeilab.trace import Fact, SdeiDispatch, SmcccCall, SmcccReturn, TraceLog
from sdeilab.viz.names import result_name
from sdeilab.viz.style import CURRENT

CHANGED_STYLE = "background:#ffe08a"
_MONO = "font-family:monospace;font-size:12px;line-height:1.25"
_CELL = "text-align:right;padding:0 5px"  # narrow: 4 CPUs fit beside the pictures (lab.CODE_WIDTH)
# Calls whose x0 is a value when it is not negative (a version, a status, an event number).
VALUE_CALLS = ("VERSION", "STATUS", "GET_INFO", "CONTEXT", "INTERRUPT_BIND", "FEATURES", "PE_MASK", "AFFINITY_INFO")
RETURN_WINDOW = 64  # facts after a call within which its return is looked for
UART_LINES = 400  # the UART view keeps the last lines only: the page need not hold a whole boot log


def status_html(stop: StopInfo, running: bool = False, note: str = "", error: str = "",
                retired: int | None = None, trace: TraceLog | None = None,
                symbolize: Callable[[int], str] | None = None) -> str:
    """One line: what the machine is doing or why it stopped, in words, and how far it has come.

    A stop at a firmware call says the call, its arguments, its result by name and who answered
    it (``SDEI_EVENT_UNREGISTER(2000) on CPU 2 -> PENDING (-5), answered by kvm``), read from
    ``trace``; a step says how many instructions it ran, and where."""
    if running:
        head = "<b>running</b>"
    else:
        head = _stop_text(stop, trace, symbolize)
    count = stop.retired if retired is None else retired
    parts = [f'<span class="sdeilab-status">{head} &middot; {count:,} instructions retired</span>']
    if note:
        parts.append(f' <span class="sdeilab-note">{escape(note)}</span>')
    if error:
        parts.append(f' <span class="sdeilab-error" style="color:#b00020">{escape(error)}</span>')
    return "".join(parts)


def _stop_text(stop: StopInfo, trace: TraceLog | None, symbolize: Callable[[int], str] | None) -> str:
    fact = stop.fact
    said = fact_html(fact, trace, symbolize) if fact is not None else None
    if stop.reason == "budget":
        # A step on one CPU counts that CPU's instructions (the others ran meanwhile).
        one = re.fullmatch(r"(\d+) instructions on CPU (\d+)", stop.detail)
        n = int(one.group(1)) if one else stop.executed
        where = f" on CPU {one.group(2)}" if one else " (all CPUs)"
        return f"<b>stepped</b> {n:,} instruction{'' if n == 1 else 's'}{where}" + _at(stop)
    if said is not None and stop.reason == "step-back":
        return f"<b>step-back</b> to {said}"
    if said is not None:
        return f"<b>{escape(stop.reason)}</b>: {said}"
    text = f"<b>{escape(stop.reason)}</b>: {escape(stop.detail)}"
    if stop.reason == "step-back":
        text += _at(stop)
    return text


def _at(stop: StopInfo) -> str:
    return f" &middot; CPU {stop.cpu} ran last" if stop.cpu is not None else ""


def call_return(trace: TraceLog, call: SmcccCall) -> SmcccReturn | None:
    """The return of ``call``: the firmware records it within the same instruction, a few facts
    later (an SDEI call may record its transition first); None for a call that does not return
    (COMPLETE resumes the interrupted context, CPU_OFF powers the PE down)."""
    end = min(len(trace), call.seq + 1 + RETURN_WINDOW)
    for seq in range(call.seq + 1, end):
        if trace.kind_at(seq) is SmcccReturn and trace.cpu_at(seq) == call.cpu:
            fact = trace[seq]
            if isinstance(fact, SmcccReturn) and fact.fid == call.fid:
                return fact
        if trace.kind_at(seq) is SmcccCall and trace.cpu_at(seq) == call.cpu:
            return None  # the CPU's next call: this one never came back
    return None


def argument_text(value: int, symbolize: Callable[[int], str] | None = None, bare: bool = False) -> str:
    """An argument as a person reads it: small numbers (event numbers, MPIDRs, flags) in decimal,
    addresses in hex with their symbol (``bare``: the symbol alone, where there is one)."""
    if value < 1 << 16:
        return str(value)
    name = symbolize(value) if symbolize is not None else ""
    if name and bare:
        return escape(name)
    return f"0x{value:x} &lt;{escape(name)}&gt;" if name else f"0x{value:x}"


def result_text(code: int, call: str) -> str:
    """``PENDING (-5)``: a return code by name with its value; a value that is no code, as it is."""
    signed = code - (1 << 64) if code >= 1 << 63 else code
    if signed >= 0 and any(word in call for word in VALUE_CALLS):
        return str(signed) if signed < 1 << 16 else f"0x{signed:x}"  # a value, not a return code
    name = result_name(code, call)
    return name if name == str(signed) else f"{name} ({signed})"


def call_text(call: SmcccCall, ret: SmcccReturn | None, symbolize: Callable[[int], str] | None = None,
              html: bool = True, compact: bool = False) -> str:
    """``SDEI_EVENT_UNREGISTER(2000) on CPU 2 -> PENDING (-5), answered by kvm``; ``compact``, for a
    list's line: addresses that have a symbol by their symbol alone, ``..., by kvm``, ``no return``."""
    args = ", ".join(argument_text(a, symbolize, compact) for a in call.args)
    name = f"<b>{escape(call.name)}</b>" if html else call.name
    head = f"{name}({args}) on CPU {call.cpu}"
    if ret is None:
        tail = " -> no return" + ("" if compact else " (the caller does not resume here)")
    else:
        code = ret.results[0] if ret.results else 0
        result = result_text(code, call.name)
        tail = f" -> {'<b>' + result + '</b>' if html else result}, {'by' if compact else 'answered by'} " \
            f"{escape(ret.layer)}"
    text = head + (tail.replace("->", "&rarr;") if html else tail)
    return text if html else unescape(text)


def fact_html(fact: Fact, trace: TraceLog | None, symbolize: Callable[[int], str] | None = None) -> str:
    """A fact the machine stopped at, in words."""
    if isinstance(fact, SmcccCall):
        return call_text(fact, call_return(trace, fact) if trace is not None else None, symbolize)
    if isinstance(fact, SdeiDispatch):
        where = symbolize(fact.handler) if symbolize is not None else ""
        interrupted = symbolize(fact.interrupted_pc) if symbolize is not None else ""
        return (f"SDEI event <b>{fact.event}</b> dispatched on CPU {fact.cpu} to "
                f"{argument_text(fact.handler, lambda _: where)}, interrupting "
                f"{argument_text(fact.interrupted_pc, lambda _: interrupted)}")
    name = getattr(fact, "name", None)
    what = name if isinstance(name, str) else type(fact).__name__
    return f"<b>{escape(what)}</b> on CPU {fact.cpu}"


def recent_calls(trace: TraceLog, count: int = 12,
                 symbolize: Callable[[int], str] | None = None) -> list[tuple[str, int]]:
    """The last ``count`` firmware calls, oldest first, as (label, seq): what the recent-calls
    list shows and what stepping back to one needs. Each is a compact line (``call_text``): a list
    clips its lines, and the status line says it in full."""
    seqs = trace.seqs(SmcccCall)
    out = []
    for seq in seqs[-count:]:
        call = trace[int(seq)]
        assert isinstance(call, SmcccCall)
        label = call_text(call, call_return(trace, call), symbolize, html=False, compact=True)
        out.append((f"#{int(seq)} {label}", int(seq)))
    return out


def sdei_rows_html(pes: list[tuple[int, str, bool | None, list[tuple[int, bool]]]]) -> str:
    """Each CPU's SDEI state, one column a CPU: power, masked, the events whose handlers run (a
    critical one over a normal one) and the nesting depth. ``pes``: (cpu, power state, masked or
    None where the profile has no SDEI here, [(event, critical), ...] bottom first)."""
    cells: dict[str, list[str]] = {"power": [], "SDEI": [], "running": [], "depth": []}
    for _cpu, power, masked, stack in pes:
        cells["power"].append(escape(power))
        cells["SDEI"].append("-" if masked is None else "<b style='color:#b00020'>masked</b>" if masked
                             else "unmasked")
        running = ", ".join(f"{event}{' (critical)' if critical else ''}" for event, critical in stack)
        cells["running"].append(escape(running) or "-")
        cells["depth"].append(str(len(stack)))
    head = "".join(f"<th style='{_CELL}'>CPU {cpu}</th>" for cpu, *_ in pes)
    rows = "".join(f"<tr><th style='{_CELL};text-align:left'>{name}</th>"
                   + "".join(f"<td style='{_CELL}'>{value}</td>" for value in values) + "</tr>"
                   for name, values in cells.items())
    return (f"<table class='sdeilab-sdei' style='{_MONO};border-collapse:collapse'>"
            f"<tr><th></th>{head}</tr>{rows}</table>")


def uart_html(text: str, lines: int = UART_LINES, height_px: int = 96) -> str:
    """The UART's last ``lines`` lines in a box ``height_px`` high that stays scrolled to its end as
    output comes: a column-reverse flex box starts at, and keeps to, its bottom (no script needed).
    Long lines wrap: the box never scrolls sideways."""
    tail = "\n".join(text.splitlines()[-lines:])
    return (f"<div class='sdeilab-uart' style='display:flex;flex-direction:column-reverse;overflow:auto;"
            f"height:{height_px}px;border:1px solid #ccc'><pre style='{_MONO};margin:0;white-space:pre-wrap;"
            f"overflow-wrap:anywhere'>{escape(tail)}</pre></div>")


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a class's attributes (a dataclass's fields), one line each:
    Python keeps no such string at run time, so they are read from the source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


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
