"""The check and exercise helpers of the notebooks: claims in words, failures still fail."""

from __future__ import annotations

import pytest

from sdeilab.widgets.exercise import Checks, Exercise


def test_checks_print_each_claim_and_pass(capsys: pytest.CaptureFixture[str]) -> None:
    with Checks() as check:
        assert check("one is one", 1 == 1)
        check("a list is not empty", [0])
    assert capsys.readouterr().out.splitlines() == ["✓ one is one", "✓ a list is not empty", "all 2 claims hold"]


def test_checks_raise_with_every_failed_claim(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AssertionError) as raised, Checks() as check:
        check("holds", True)
        check("first failure", False, {"found": 2})
        check("second failure", [])
    assert "2 of 3 claims failed" in str(raised.value)
    assert "✗ first failure" in str(raised.value) and "✗ second failure" in str(raised.value)
    out = capsys.readouterr().out
    assert "✗ first failure  ({'found': 2})" in out and "all" not in out


def test_checks_leave_an_exception_of_the_block_alone() -> None:
    with pytest.raises(KeyError), Checks() as check:
        check("fails", False)
        raise KeyError("x")


def test_exercise_reveals_without_judging_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    exercise = Exercise("Which?", ["A", "B"])
    assert exercise.predict(None).reveal("B") is None
    assert "no prediction made; the run shows: B" in capsys.readouterr().out
    assert exercise.predict("A").reveal("B", "because") is False
    out = capsys.readouterr().out
    assert "you predicted: A; the run shows: B: ✗ not what you predicted" in out and "why: because" in out
    assert exercise.predict("B").reveal("B") is True
    assert exercise.reveal("C") is False and "C (none of the choices)" in capsys.readouterr().out


def test_exercise_refuses_a_prediction_that_is_not_a_choice() -> None:
    with pytest.raises(ValueError, match="predict one of"):
        Exercise("Which?", ["A", "B"]).predict("a")
    with pytest.raises(ValueError, match="two distinct choices"):
        Exercise("Which?", ["A", "A"])
