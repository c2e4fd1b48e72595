"""Tests for the answer grader.

Most references below are copied verbatim from the bundled benchmark files (the comment after
each case says which), because the awkward cases (``10,\\!080``, ``\\frac{270}7\\text{ degrees}``,
``-1./3``, ``69,84``) are exactly where graders go wrong.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from reasonmaxxer import grading
from reasonmaxxer.grading import Extraction, Grade, answers_match, extract_answer, grade, is_correct

BENCH = Path(grading.__file__).parent / "data" / "benchmarks"


def _answers(name: str) -> set[str]:
    with open(BENCH / f"{name}.jsonl", encoding="utf-8") as f:
        return {json.loads(line)["answer"] for line in f}


# --------------------------------------------------------------------------------------------
# Extraction: (model output, expected extracted answer, expected rule)
# --------------------------------------------------------------------------------------------

EXTRACTION_CASES = [
    ("So the probability is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "boxed"),
    (
        "Polar form: \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        "boxed",
    ),
    ("The set is \\boxed{\\{1\\pm\\sqrt{5},-2\\}}.", "\\{1\\pm\\sqrt{5},-2\\}", "boxed"),
    ("First \\boxed{3}, but on reflection \\boxed{4}.", "4", "boxed"),
    ("Hence \\fbox{42}", "42", "boxed"),
    ("so the answer is $\\boxed 5$.", "5", "boxed"),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}", "boxed"),
    ("\\boxed{\\boxed{7}}", "7", "boxed"),
    # The empty box does not count; "answer is" then yields "\boxed{}", also empty; so the last
    # number wins.
    ("7 + 5 = 12\n\nThe answer is \\boxed{}.", "12", "last_number"),
    # An unterminated last box (a truncated generation) does not count either.
    ("So far \\boxed{3}. Actually it is \\boxed{\\frac{1}{2", "2", "last_number"),
    ("Thus, the answer is 3.5.", "3.5", "answer_is"),
    ("the final answer is: $\\frac{3}{4}$.", "\\frac{3}{4}", "answer_is"),
    ("ANSWER: 1,000", "1,000", "answer_is"),
    ("**Answer:** (C)", "(C)", "answer_is"),
    ("The answer is $x = 1.5$. Then we check it.", "x = 1.5", "answer_is"),
    ("The answer is:\n$$\\dfrac{17}{50}$$\n", "\\dfrac{17}{50}", "answer_is"),
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18", "answer_is"),
    ("The answer is 69, 84.", "69, 84", "answer_is"),
    ("It costs 1,000 dollars in total", "1,000", "last_number"),
    ("so x = -5", "-5", "last_number"),
    ("7-5=2", "2", "last_number"),
    ("the ratio is 3/4.", "3/4", "last_number"),
    ("which gives \\frac{3}{4}", "\\frac{3}{4}", "last_number"),
    ("the flux is 4.5e33 erg/s", "4.5e33", "last_number"),
    ("E = 4.5 \\times 10^{33} erg", "4.5 \\times 10^{33}", "last_number"),
    ("I am not sure.", None, "none"),
    ("", None, "none"),
]


@pytest.mark.parametrize(("text", "answer", "rule"), EXTRACTION_CASES)
def test_extract_answer(text: str, answer: str | None, rule: str) -> None:
    assert extract_answer(text) == Extraction(answer, rule)


# --------------------------------------------------------------------------------------------
# Grading: (model output, reference, expected correct)
# --------------------------------------------------------------------------------------------

GRADE_CASES = [
    # math500
    ("\\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\boxed{(3, \\frac{\\pi}{3})}", "\\left( 3, \\frac{\\pi}{2} \\right)", False),
    ("\\boxed{10080}", "10,\\!080", True),
    ("\\boxed{11111111100}", "11,\\! 111,\\! 111,\\! 100", True),
    ("The answer is $\\$32,348$.", "\\$32,\\!348", True),
    ("\\boxed{90}", "90^\\circ", True),
    ("\\boxed{90^{\\circ}}", "90^\\circ", True),
    ("\\boxed{\\frac{270}{7}}", "\\frac{270}7\\text{ degrees}", True),
    ("\\boxed{864}", "864 \\mbox{ inches}^2", True),
    ("\\boxed{5.4}", "5.4 \\text{ cents}", True),
    ("\\boxed{C}", "\\text{(C)}", True),
    ("\\boxed{\\textbf{(E)}}", "\\text{(C)}", False),
    ("\\boxed{evelyn}", "\\text{Evelyn}", True),
    ("\\boxed{0.34}", "\\dfrac{17}{50}", True),
    ("\\boxed{\\frac{3}{4}}", "\\frac 34", True),
    ("\\boxed{\\frac{9}{5}}", "1\\frac{4}{5}", True),
    ("\\boxed{275/2}", "137 \\frac{1}{2}", True),
    ("\\boxed{5}", "x=5", True),
    ("\\boxed{[-2, 7]}", "x \\in [-2,7]", True),
    ("\\boxed{(-\\infty, 2] }", "(-\\infty, 0]", False),
    ("\\boxed{(3, 4]}", "(3,4]", True),
    ("\\boxed{[3, 4]}", "(3,4]", False),
    ("\\boxed{(0,36) \\setminus \\{9\\}}", "(0,9) \\cup (9,36)", True),
    ("\\boxed{-2, 1+\\sqrt5, 1-\\sqrt5}", "\\{1\\pm\\sqrt{5},-2\\}", True),
    ("\\boxed{1, -2}", "-2,1", True),
    ("\\boxed{-2}", "-2,1", False),
    ("\\boxed{\\sqrt{117}}", "3\\sqrt{13}", True),
    ("\\boxed{6+5i}", "6 - 5i", False),
    ("\\boxed{4211_5}", "4210_{5}", False),
    ("\\boxed{4210_5}", "4210_{5}", True),
    (
        "\\boxed{\\begin{pmatrix} -\\frac13 \\\\ \\frac23 \\\\ \\frac53 \\end{pmatrix}}",
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
        True,
    ),
    ("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}", False),
    # olympiadbench
    ("\\boxed{84, 69}", "69,84", True),
    ("\\boxed{69}", "69,84", False),
    ("\\boxed{(9,5),(6,3),(54,5),(9,3)}", "(6,3),(9,3),(9,5),(54,5)", True),
    ("\\boxed{(6,3),(9,3),(9,5)}", "(6,3),(9,3),(9,5),(54,5)", False),
    ("\\boxed{62.5\\%}", "62.5%", True),
    ("\\boxed{8}", "8 \\%", True),
    ("\\boxed{\\frac{\\sqrt2}{2}}", "\\sqrt{2}/2", True),
    ("\\boxed{-\\frac{1}{1997}}", "\\frac{-1}{1997}", True),
    # minerva_math
    ("\\boxed{4.5 \\times 10^{33}}", "4.5e33", True),
    ("\\boxed{4.6 \\times 10^{33}}", "4.5e33", False),
    ("\\boxed{-\\frac{1}{3}}", "-1./3", True),
    ("\\boxed{0.333}", "0.33", False),
    ("\\boxed{2}", "+2", True),
    # gsm8k, aime24, amc23: plain integers, answers found without a box
    ("She makes 9 * 2 = $18 every day.\n#### 18", "18", True),
    ("Total: 1,000 + 80 = 1,080 dollars", "1080", True),
    ("The answer is 18.00 dollars.", "18", True),
    ("The answer is 19.", "18", False),
    ("so the remainder is \\boxed{25}", "25", True),
    ("7 + 5 = 12\n\nThe answer is \\boxed{}.", "12", True),
    ("I cannot solve this.", "12", False),
]


@pytest.mark.parametrize(("text", "reference", "expected"), GRADE_CASES)
def test_grade(text: str, reference: str, expected: bool) -> None:
    g = grade(text, reference)
    assert g.correct is expected, g
    assert g.timed_out is False
    assert is_correct(text, reference) is expected


def test_references_used_above_are_real() -> None:
    """The awkward references are copied from the data, not invented."""
    used = {
        "math500": [
            "\\left( 3, \\frac{\\pi}{2} \\right)",
            "10,\\!080",
            "11,\\! 111,\\! 111,\\! 100",
            "\\$32,\\!348",
            "90^\\circ",
            "\\frac{270}7\\text{ degrees}",
            "864 \\mbox{ inches}^2",
            "5.4 \\text{ cents}",
            "\\text{(C)}",
            "\\text{Evelyn}",
            "\\dfrac{17}{50}",
            "\\frac 34",
            "1\\frac{4}{5}",
            "137 \\frac{1}{2}",
            "x=5",
            "x \\in [-2,7]",
            "(-\\infty, 0]",
            "(3,4]",
            "(0,9) \\cup (9,36)",
            "\\{1\\pm\\sqrt{5},-2\\}",
            "-2,1",
            "3\\sqrt{13}",
            "6 - 5i",
            "4210_{5}",
            "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
        ],
        "olympiadbench": [
            "69,84",
            "(6,3),(9,3),(9,5),(54,5)",
            "62.5%",
            "8 \\%",
            "\\frac{-1}{1997}",
        ],
        "minerva_math": ["4.5e33", "-1./3", "0.33", "+2"],
        "aime24": ["25"],
        "gsm8k_test": ["18"],
    }
    for name, refs in used.items():
        missing = set(refs) - _answers(name)
        assert not missing, (name, missing)


# --------------------------------------------------------------------------------------------
# answers_match directly: the fast path and its documented semantics
# --------------------------------------------------------------------------------------------

MATCH_CASES = [
    ("1000", "1,000", True),
    ("12345.5", "12,345.5", True),
    ("0.5", "\\frac12", True),
    ("\\tfrac12", "1/2", True),
    ("50\\%", "50", True),
    ("50%", "0.5", False),  # percent is a unit that is stripped, not a division by 100
    ("5, 100", "5100", False),  # ", " separates answers; only "d,ddd" is a thousands comma
    ("(1,2)", "(2,1)", False),
    ("[0,1)", "[0,1]", False),
    ("\\frac{1}{3}", "\\frac{1}{2}", False),
    ("", "5", False),
    ("5", "", False),
]


@pytest.mark.parametrize(("pred", "reference", "expected"), MATCH_CASES)
def test_answers_match(pred: str, reference: str, expected: bool) -> None:
    assert answers_match(pred, reference) == (expected, False)


def test_numbers_never_reach_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain numbers are decided exactly by the fast path, unequal ones included."""

    def boom(pred: str, reference: str) -> bool:
        raise AssertionError("math-verify called for plain numbers")

    monkeypatch.setattr(grading, "_math_verify_equal", boom)
    assert answers_match("1,000", "1000") == (True, False)
    assert answers_match("0.3333", "1/3") == (False, False)
    assert answers_match("4.5 \\times 10^{33}", "4.5e33") == (True, False)


# --------------------------------------------------------------------------------------------
# Time bound, errors, threads
# --------------------------------------------------------------------------------------------


def _slow(pred: str, reference: str) -> bool:
    time.sleep(5)
    return True


def test_timeout_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "_math_verify_equal", _slow)
    t0 = time.monotonic()
    g = grade("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt2}{2}", timeout_s=0.2)
    assert time.monotonic() - t0 < 2
    assert g == Grade(correct=False, extracted="\\sqrt{2}/2", rule="boxed", timed_out=True)


def test_timeout_with_real_math_verify() -> None:
    """A bound far too small for sympy trips; a normal one does not."""
    pred, ref = "\\frac{\\sqrt{3}}{3} + \\sin(x)^2", "\\cos(x)^2 - 1 + \\frac{1}{\\sqrt{3}} + 1"
    assert answers_match(pred, ref, timeout_s=1e-5) == (False, True)
    assert answers_match(pred, "\\frac{\\sqrt{3}}{3} + \\sin^2 x", timeout_s=5.0) == (True, False)


def test_swallowed_interrupt_fires_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """If sympy catches the first interrupt (a bare except), the bound still holds."""
    calls = []

    def swallows_once(pred: str, reference: str) -> bool:
        try:
            time.sleep(5)
        except BaseException:
            calls.append("swallowed")
        time.sleep(5)
        return True

    monkeypatch.setattr(grading, "_math_verify_equal", swallows_once)
    t0 = time.monotonic()
    assert answers_match("\\sqrt{2}", "2^{1/2}", timeout_s=0.1) == (False, True)
    assert calls == ["swallowed"]
    assert time.monotonic() - t0 < 2


def test_callers_alarm_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "_math_verify_equal", _slow)
    fired = []

    def mine(signum: int, frame: object) -> None:
        fired.append(signum)

    old = signal.signal(signal.SIGALRM, mine)
    try:
        signal.setitimer(signal.ITIMER_REAL, 100.0)
        assert answers_match("\\sqrt{2}", "2^{1/2}", timeout_s=0.1) == (False, True)
        assert signal.getsignal(signal.SIGALRM) is mine
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < left <= 100
        assert fired == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_no_timer_left_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grading, "_math_verify_equal", _slow)
    before = signal.getsignal(signal.SIGALRM)
    assert answers_match("\\sqrt{2}", "2^{1/2}", timeout_s=0.05)[1] is True
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before


def test_math_verify_errors_count_as_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(pred: str, reference: str) -> bool:
        raise RuntimeError("sympy exploded")

    monkeypatch.setattr(grading, "_math_verify_equal", broken)
    assert grade("\\boxed{\\sqrt{2}}", "2^{1/2}") == Grade(False, "\\sqrt{2}", "boxed", False)


def test_zero_timeout_counts_as_timed_out() -> None:
    assert answers_match("\\sqrt{2}", "2^{1/2}", timeout_s=0) == (False, True)
    assert answers_match("5", "5.0", timeout_s=0) == (True, False)  # fast path needs no time


def test_off_main_thread_uses_fast_path_only() -> None:
    """Signals need the main thread: there math-verify is skipped rather than left unbounded."""
    out: dict[str, tuple[bool, bool]] = {}

    def work() -> None:
        out["number"] = answers_match("0.5", "\\frac12")
        out["string"] = answers_match("C", "\\text{(C)}")
        out["symbolic"] = answers_match("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}")

    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert out == {"number": (True, False), "string": (True, False), "symbolic": (False, False)}
    # ... while the same symbolic pair is equal on the main thread.
    assert answers_match("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}") == (True, False)


@pytest.mark.parametrize("text", [None, 5, "\\boxed{", "\\boxed{}" * 3, "$$$", "\\frac{"])
def test_grade_never_raises(text: object) -> None:
    g = grade(text, "5")  # type: ignore[arg-type]
    assert g.correct is False
    assert g.timed_out is False
