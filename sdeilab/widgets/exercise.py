"""Check cells that speak, and predict-then-run exercises, for the curriculum notebooks.

A "Check yourself" cell states claims about the run, one line each, instead of a wall of bare
asserts::

    with Checks() as check:
        check("the SMC was UNDEFINED at EL1: ESR_EL1 = 0x02000000", exc.esr == 0x0200_0000)
        check("every call on firmware was an SMC", conduits == {"smc"}, conduits)

prints ``✓ claim`` or ``✗ claim (detail)`` per line as it goes, then a summary, and raises
AssertionError naming every failed claim at the end of the block, so a notebook test still fails
(and reports all the failures, not only the first).

An exercise asks the student to predict what a change will do before running it::

    exercise = Exercise("What does CPU_ON of a CPU that is already on return?",
                        ["SUCCESS", "ALREADY_ON", "ON_PENDING"])
    exercise.predict(prediction)      # prediction = None until the student writes one in
    ...                               # the change, run
    exercise.reveal(actual)           # "you predicted X; the run shows Y: ✓ your prediction held"

The reveal judges the prediction in words and returns whether it held; it never raises on it
(a notebook test runs with no prediction at all). What the run must show is checked with
:class:`Checks` beside it. In a live kernel ``predict`` also shows the choices as radio buttons;
clicking one sets the prediction, so the reveal cell can be run again without editing code.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

__all__ = ["Checks", "Exercise"]

PASS, FAIL = "✓", "✗"


class Checks:
    """Claims checked one by one, printed as they are made; :meth:`done` raises if any failed."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.results: list[tuple[str, bool]] = []
        if title:
            print(title)

    def __call__(self, claim: str, ok: object, detail: object = None) -> bool:
        """Record ``claim`` as holding if ``ok`` is true; print it with ✓ or ✗ (and ``detail`` when
        it fails: what was found instead). Returns whether it held."""
        held = bool(ok)
        self.results.append((claim, held))
        shown = "" if held or detail is None else f"  ({_short(detail)})"
        print(f"{PASS if held else FAIL} {claim}{shown}")
        return held

    @property
    def failed(self) -> list[str]:
        return [claim for claim, held in self.results if not held]

    def done(self) -> None:
        """Print the summary; raise AssertionError listing the failed claims, if any."""
        failed = self.failed
        if failed:
            raise AssertionError(f"{len(failed)} of {len(self.results)} claims failed:\n"
                                 + "\n".join(f"{FAIL} {claim}" for claim in failed))
        print(f"all {len(self.results)} claims hold" if len(self.results) != 1 else "the claim holds")

    def __enter__(self) -> Checks:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:  # an exception inside the block already says what went wrong
            self.done()


def _short(value: object, limit: int = 300) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Exercise:
    """A question with a few answers; the student predicts one, a run reveals the right one."""

    def __init__(self, question: str, choices: Sequence[str]) -> None:
        if len(set(choices)) != len(choices) or len(choices) < 2:
            raise ValueError(f"an exercise needs at least two distinct choices, not {list(choices)}")
        self.question = question
        self.choices = list(choices)
        self.prediction: str | None = None

    def predict(self, choice: str | None) -> Exercise:
        """Take the student's ``choice`` (one of the choices, or None: not yet) and show the question."""
        if choice is not None and choice not in self.choices:
            raise ValueError(f"predict one of {self.choices}, not {choice!r}")
        self.prediction = choice
        if not self._show_buttons():
            print(self.question)
            for option in self.choices:
                print(f"  {'(*)' if option == choice else '( )'} {option}")
            if choice is None:
                print("no prediction yet: set `prediction` to one of the choices above, run this cell again, "
                      "then the next")
        return self

    def reveal(self, actual: str, why: str = "") -> bool | None:
        """Say what the run showed against the prediction; True or False if one was made, else None."""
        found = actual if actual in self.choices else f"{actual} (none of the choices)"
        tail = f"\n  why: {why}" if why else ""
        if self.prediction is None:
            print(f"no prediction made; the run shows: {found}{tail}")
            return None
        held = self.prediction == actual
        verdict = f"{PASS} your prediction held" if held else f"{FAIL} not what you predicted"
        print(f"you predicted: {self.prediction}; the run shows: {found}: {verdict}{tail}")
        return held

    def _show_buttons(self) -> bool:
        """Radio buttons bound to the prediction, in a live kernel; False where there is none."""
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return False
        shell: Any = get_ipython()
        if shell is None or not hasattr(shell, "kernel"):
            return False
        import ipywidgets as w

        buttons = w.RadioButtons(options=self.choices, value=self.prediction, layout=w.Layout(width="auto"))

        def chosen(change: dict[str, Any]) -> None:
            self.prediction = change["new"]

        buttons.observe(chosen, names="value")
        display(w.VBox([w.HTML(f"<b>{_html(self.question)}</b>"), buttons,
                        w.HTML("<i>pick one (or set <code>prediction</code>), then run the next cells</i>")]))
        return True


def _html(text: str) -> str:
    from html import escape

    return escape(text)
