"""The answer grader for math benchmarks: no model, no files; sympy in a worker process.

Two steps, kept apart so that reports can say *why* a sample was graded the way it was:

1. :func:`extract_answer` pulls the final answer out of a model's text and records which rule
   fired (``"boxed"``, ``"answer_is"``, ``"last_number"`` or ``"none"``).
2. :func:`answers_match` decides whether that answer equals the reference. It tries a cheap,
   exact numeric comparison first, then a normalised string comparison, and only then
   math-verify (sympy), under a time bound. A time-out is reported, never hidden.

Semantics decided here (the tests pin them down):

* **Numbers are compared exactly** with :class:`fractions.Fraction`: ``0.5 == 1/2 == \\frac12``,
  ``1,000 == 1000``, ``18.00 == 18``, ``4.5e33 == 4.5 \\times 10^{33}``. When *both* sides are
  plain numbers this decision is final; no rounding tolerance is applied (``0.33 != 1/3``).
* **Percent is a unit**: a trailing ``%`` / ``\\%`` is stripped like ``^\\circ`` or
  ``\\text{ cm}``, so ``50\\% == 50``, but ``50\\% != 0.5``. (math-verify on its own would read
  ``50\\%`` as ``1/2``; the fast path decides numbers before it is consulted.)
* **Mixed numbers** follow the MATH convention: ``1\\frac{4}{5} == 9/5`` (not ``1 * 4/5``).
* **Several answers** (``69,84``, ``1,-2``, ``3, 5, 7``) are unordered sets, and all of them must
  be given: ``69,84 == 84, 69`` but ``69,84 != 69``. A comma is read as a thousands separator
  only in the exact ``d,ddd`` shape (``1,000``, ``12,345.5``), never in ``69,84`` or ``2500,7500``.
* **Tuples and intervals are ordered** and their brackets matter: ``(1,2) != (2,1)``,
  ``[0,1) != [0,1]``.
* **A final** ``!`` **is a factorial** inside a box or math delimiters (``\\boxed{5!}`` is
  120, never 5). Only in free text ("The answer is 42!") is it read as the end of a sentence,
  and only after a plain number or a word (see :func:`.answers._bang_is_punct`); ``n!``, ``(n+1)!`` and
  ``\\pi!`` keep it.

Time bound: math-verify (sympy) runs in a separate, persistent worker process
(:mod:`reasonmaxxer.eval._mv_worker`, started on the first comparison that needs it, with
``subprocess`` + exec so it is safe in a process with torch threads and never re-imports the
caller's ``__main__``). Each comparison gets a deadline of ``timeout_s`` seconds; when it passes
(or the worker dies) the worker is killed with SIGKILL, which no sympy ``except`` and no long C
call can ignore, the pair is reported ``timed_out`` (never counted equal), and the next
comparison starts a fresh worker. No signals are used, so grading is the same on any thread.
``timeout_s`` must be finite and > 0 (UserError otherwise); values above ``MAX_TIMEOUT_S`` are
clamped. The numeric fast path and the string comparison stay in-process: most answers never
reach the worker. Cost, measured by ``benchmarks/grader_overhead.py`` on 500 symbolic pairs
(``benchmarks/results/grader_overhead.json``; 2 shared CPUs at load average 9-12): math-verify
took 61 ms per pair in-process and 63 ms through the worker (+2%, inside the noise); the
transport itself (wall time minus time inside the worker) had a median of 3 ms there, mostly
waiting for a CPU (0.15 ms on a less busy moment). A cold start costs 2.7 s (importing sympy),
paid once per process; a time-out costs one restart (2.6 s), which begins at once.

Clean-up is bounded too: :func:`.answers.strip_answer` is linear in the answer's length however deep
the nesting (10^4 nested ``\\boxed{}`` take milliseconds, not minutes), and the other
clean-up loops that peel one layer per pass stop after ``answers._MAX_PASSES``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .answers import Extraction, canon, extract_answer, light_clean, normalize, to_fraction
from .verify_worker import MAX_TIMEOUT_S, WORKER, check_timeout, math_verify_bounded

__all__ = [
    "MAX_TIMEOUT_S",
    "WORKER",
    "Extraction",
    "Grade",
    "answers_match",
    "check_timeout",
    "extract_answer",
    "grade",
    "is_correct",
    "math_verify_bounded",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def answers_match(pred: str, reference: str, *, timeout_s: float = 5.0) -> tuple[bool, bool]:
    """(equal, timed_out): is ``pred`` the same answer as ``reference``?

    Order: exact numbers (final when both sides are numbers), then the normalised strings, then
    math-verify in the worker process, bounded by ``timeout_s`` seconds (clamped to
    ``MAX_TIMEOUT_S``). ``timed_out`` is True when math-verify did not give a verdict: the
    bound was hit, or the worker died or could not start; such a pair is never counted equal.
    Errors inside math-verify count as "not equal". Works the same on any thread.

    Raises:
        UserError: ``timeout_s`` is not a finite number > 0. Never raises for any string input.
    """
    timeout_s = check_timeout(timeout_s)
    try:
        if not isinstance(pred, str) or not isinstance(reference, str):
            return False, False
        p_norm, r_norm = normalize(pred), normalize(reference)
        if not p_norm or not r_norm:
            return False, False
        p_num, r_num = to_fraction(p_norm), to_fraction(r_norm)
        if p_num is not None and r_num is not None:
            return p_num == r_num, False
        if canon(p_norm) == canon(r_norm):
            return True, False
        return math_verify_bounded(light_clean(pred), light_clean(reference), timeout_s)
    except Exception:
        logger.debug("answers_match failed; counted as not equal", exc_info=True)
        return False, False


@dataclass(frozen=True)
class Grade:
    """The verdict on one model output, with what was extracted and whether time ran out."""

    correct: bool
    extracted: str | None
    rule: str
    timed_out: bool


def grade(text: str, reference: str, *, timeout_s: float = 5.0) -> Grade:
    """Extract the answer from ``text`` and compare it with ``reference``.

    Never raises for any text; UserError for a ``timeout_s`` that is not finite and > 0.
    """
    timeout_s = check_timeout(timeout_s)
    try:
        ex = extract_answer(text)
    except Exception:
        logger.debug("extract_answer failed", exc_info=True)
        ex = Extraction(None, "none")
    if ex.answer is None:
        return Grade(False, None, ex.rule, False)
    correct, timed_out = answers_match(ex.answer, reference, timeout_s=timeout_s)
    return Grade(correct, ex.answer, ex.rule, timed_out)


def is_correct(text: str, reference: str) -> bool:
    """The plain (prediction_text, reference) -> bool grader, with the default time bound."""
    return grade(text, reference).correct
