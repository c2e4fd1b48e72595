"""The answer grader for math benchmarks: pure functions, no model, no files.

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

Time bound: math-verify's own time-outs use ``signal.alarm`` with whole seconds and, by default,
turn a time-out into a plain ``False`` (only ``raise_on_error=True`` re-raises its
``TimeoutException``, a ``BaseException``). This module instead runs math-verify with its
time-outs disabled and bounds the whole comparison (both parses and the verify) itself, with
``signal.setitimer`` (sub-second, re-fired if sympy swallows the first interrupt), restoring any
alarm the caller had. Signals only work in the main thread: **off the main thread, math-verify is
not called**; only the numeric fast path and the string comparison run (a one-time warning is
logged). Like math-verify's own guard, the signal cannot interrupt a single long C call.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = ["Extraction", "Grade", "answers_match", "extract_answer", "grade", "is_correct"]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extraction:
    """The final answer found in a model's text, and the rule that found it."""

    answer: str | None
    rule: str  # "boxed" | "answer_is" | "last_number" | "none"


_BOX_CMD_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _match_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx``; escaped ``\\{``/``\\}`` don't count."""
    depth = 0
    i = open_idx
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _last_box(text: str) -> str | None:
    """Content of the last top-level ``\\boxed{}``/``\\fbox{}``/``\\boxed x``.

    None when there is no box, or when the last one is empty or unterminated: such a box does
    not count as an answer.
    """
    pos = 0
    last: str | None = None
    while True:
        m = _BOX_CMD_RE.search(text, pos)
        if m is None:
            break
        j = m.end()
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "{":
            close = _match_brace(text, j)
            if close is None:  # unterminated: everything after it is inside it
                last = None
                break
            last = text[j + 1 : close]
            pos = close + 1
        elif j > m.end():  # "\boxed 5": a single token after whitespace
            tok = re.match(r"[^\s$]+", text[j:])
            last = tok.group(0).rstrip(".,;:!?") if tok else None
            pos = j + (tok.end() if tok else 0)
        else:  # "\boxed" followed by something else: a mention, not a box
            pos = j
    if last is not None:
        last = _strip_answer(last)
    return last or None


def _unwrap_once(s: str) -> str:
    """Remove one layer of ``$..$``, ``\\(..\\)``, ``\\[..\\]`` or ``\\boxed{..}`` around ``s``."""
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if (
            len(s) >= len(left) + len(right)
            and s.startswith(left)
            and s.endswith(right)
            and not (right[0] == "$" and s[: -len(right)].endswith("\\"))  # "\$" is a dollar
        ):
            return s[len(left) : len(s) - len(right)].strip()
    m = _BOX_CMD_RE.match(s)
    if m:
        j = m.end()
        while j < len(s) and s[j] == " ":
            j += 1
        if j < len(s) and s[j] == "{" and _match_brace(s, j) == len(s) - 1:
            return s[j + 1 : -1].strip()
    return s


_MATH_DOLLAR_RE = re.compile(r"(?<!\\)\$")


def _strip_answer(s: str) -> str:
    """Strip whitespace, markdown bold, math delimiters, a wrapping box and trailing punctuation."""
    prev = None
    while prev != s:
        prev = s
        s = s.strip().strip("*").strip()
        s = _unwrap_once(s)
        s = re.sub(r"(?<!\\)[.,;:!?]+$", "", s).strip()
        if len(_MATH_DOLLAR_RE.findall(s)) == 1:  # a lone math "$" left by a cut sentence
            if s.startswith("$"):
                s = s[1:]
            elif s.endswith("$"):
                s = s[:-1]
    return s


_ANSWER_IS_RE = re.compile(r"\banswer\s*(?:is\b\s*:?|:)|####", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")


def _answer_is(text: str) -> str | None:
    """X in the last "The answer is X" / "Final answer: X" / "#### X"; None if X is empty."""
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    lines = rest.split("\n")
    line = lines[0].strip().strip("*").strip()
    if not line:  # "The answer is:\n$$ x $$": take the next non-empty line
        line = next((ln.strip() for ln in lines[1:] if ln.strip()), "")
    # A math-delimited answer runs to its closing delimiter (it may contain ". ").
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if line.startswith(left):
            close = re.compile(r"(?<!\\)" + re.escape(right)).search(line, len(left))
            if close:
                line = line[: close.end()]
            break
    else:
        m = _SENTENCE_END_RE.search(line)  # "is 3.5. Then" -> "3.5"; decimals are kept
        if m:
            line = line[: m.start()]
    ans = _strip_answer(line)
    return ans or None


_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_LAST_NUMBER_RE = re.compile(
    r"(?<![\w.\\])-?(?:"
    r"\\[dt]?frac\{\d+\}\{\d+\}"  # \frac{3}{4}
    rf"|{_NUM}\s*(?:\\times|\\cdot)\s*10\^(?:\{{-?\d+\}}|\d)"  # 4.5 \times 10^{33}
    rf"|{_NUM}/\d+(?!\d|\.\d)"  # 3/4
    rf"|{_NUM}(?:[eE][-+]?\d+(?!\d|\.\d))?"  # 1,000  3.5  4.5e33
    r")"
)


def extract_answer(text: str) -> Extraction:
    """Find the final answer in ``text``.

    Rules, first that fires wins: the last top-level ``\\boxed{}``/``\\fbox{}`` (brace-matched;
    an empty or unterminated last box does not count), then the last "answer is X" /
    "Answer: X" / "#### X", then the last number (``-3``, ``1,000``, ``3.5``, ``3/4``,
    ``\\frac{3}{4}``, ``4.5e33``). Each rule only looks at its *last* occurrence; if that is
    empty the next rule is tried, so a model's final (empty) box never resurrects an earlier one.
    """
    if not isinstance(text, str) or not text.strip():
        return Extraction(None, "none")
    boxed = _last_box(text)
    if boxed:
        return Extraction(boxed, "boxed")
    ans = _answer_is(text)
    if ans:
        return Extraction(ans, "answer_is")
    nums = list(_LAST_NUMBER_RE.finditer(text))
    if nums:
        return Extraction(nums[-1].group(0).strip(), "last_number")
    return Extraction(None, "none")


# --------------------------------------------------------------------------------------------
# Normalisation and the exact numeric fast path
# --------------------------------------------------------------------------------------------


def _light_clean(s: str) -> str:
    """Presentation-only clean-up, safe to hand to math-verify as well."""
    s = _strip_answer(s)
    s = s.replace("\\$", "").replace("$", "")
    # "\!" glues digit groups ("10,\!080"), so it goes; thin spaces and friends become
    # spaces; a LaTeX row break "\\" is kept whole.
    s = re.sub(r"\\!\s*", "", s)
    s = re.sub(
        r"\\\\|\\[,;:> ]|\\q?quad(?![A-Za-z])|\\displaystyle(?![A-Za-z])",
        lambda m: m.group(0) if m.group(0) == "\\\\" else " ",
        s,
    )
    s = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", s)
    s = s.replace("{,}", ",").replace("~", " ")
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"(?<!\\)\.\s*$", "", s)
    return re.sub(r"\s+", " ", s).strip()


_MATH_WORDS = {"and", "or", "to", "of", "pi", "sqrt", "times", "plus", "minus", "over", "root"}
_UNIT_TEXT_RE = re.compile(
    r"^(?P<num>.+?)\s*\\(?:text|mbox|mathrm|textrm|rm)\s*\{\s*[A-Za-z][A-Za-z .]*\}"
    r"(?:\^\{?\d\}?)?$"
)
_UNIT_WORD_RE = re.compile(r"^(?P<num>.+?)\s+(?P<words>[A-Za-z]{2,}\.?(?:\s+[A-Za-z]{2,}\.?)?)$")
_DEGREE_RE = re.compile(r"\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree)$")
_PERCENT_RE = re.compile(r"\s*(?:\\%|%|\\text\{\s*\\?%\s*\})$")
_LEAD_VAR_RE = re.compile(r"^(?:[A-Za-z]|\\[A-Za-z]+)\s*(?:=|\\in\b)\s*")


def _normalize(s: str) -> str:
    """Strip presentation and units, for the numeric fast path and the string comparison."""
    s = _light_clean(s)
    if s.count("=") == 1 or (s.count("=") == 0 and "\\in" in s):
        stripped = _LEAD_VAR_RE.sub("", s, count=1)
        if stripped and "=" not in stripped:
            s = stripped
    prev = None
    while prev != s:  # units may be stacked: "30^\circ \text{ }", "5\%."
        prev = s
        s = _DEGREE_RE.sub("", s).strip()
        s = _PERCENT_RE.sub("", s).strip()
        m = _UNIT_TEXT_RE.match(s)
        if m and _to_fraction(m.group("num")) is not None:
            s = m.group("num").strip()
        m = _UNIT_WORD_RE.match(s)
        if (
            m
            and _to_fraction(m.group("num")) is not None
            and not {w.rstrip(".").lower() for w in m.group("words").split()} & _MATH_WORDS
        ):
            s = m.group("num").strip()
    return s


_DEC = r"(?:\d+(?:\.\d*)?|\.\d+)"
_INT_OR_DEC_RE = re.compile(rf"[-+]?{_DEC}(?:[eE][-+]?\d{{1,3}})?")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SLASH_RE = re.compile(rf"(?P<sign>[-+]?)(?P<a>{_DEC})/(?P<b>{_DEC})")
_FRAC_ARG = r"(?:\{[^{}]*\}|\d)"
_FRAC_RE = re.compile(rf"(?P<sign>[-+]?)(?P<whole>\d+)?\\frac(?P<a>{_FRAC_ARG})(?P<b>{_FRAC_ARG})")
_SCI_RE = re.compile(
    rf"(?P<m>[-+]?{_DEC})(?:\\times|\\cdot|\*|×)10\^(?:\{{(?P<e1>[-+]?\d{{1,3}})\}}|(?P<e2>\d))"
)


def _to_fraction(s: str) -> Fraction | None:
    """``s`` as an exact number if it is a plain one (int, decimal, a/b, \\frac, mixed, 1e5)."""
    if re.search(r",\s", s):  # "5, 100" is a list of two answers, not 5100
        return None
    s = re.sub(r"\s+", "", s)
    if not s or len(s) > 200:
        return None
    try:
        if _THOUSANDS_RE.fullmatch(s):
            s = s.replace(",", "")
        if _INT_OR_DEC_RE.fullmatch(s):
            return Fraction(s)
        m = _SLASH_RE.fullmatch(s)
        if m:
            val = Fraction(m.group("a")) / Fraction(m.group("b"))
            return -val if m.group("sign") == "-" else val
        m = _FRAC_RE.fullmatch(s)
        if m:
            a = _to_fraction(m.group("a").strip("{}"))
            b = _to_fraction(m.group("b").strip("{}"))
            if a is None or b is None:
                return None
            val = a / b
            if m.group("whole"):  # mixed number, MATH convention: 1\frac{4}{5} = 9/5
                if a < 0 or b < 0:
                    return None
                val = int(m.group("whole")) + val
            return -val if m.group("sign") == "-" else val
        m = _SCI_RE.fullmatch(s)
        if m:
            return Fraction(m.group("m")) * Fraction(10) ** int(m.group("e1") or m.group("e2"))
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|textrm|rm)\s*\{([^{}]*)\}")


def _canon(s: str) -> str:
    """A spacing- and markup-free form for the plain string comparison."""
    prev = None
    while prev != s:
        prev = s
        s = _TEXT_CMD_RE.sub(r"\1", s)
    s = re.sub(r"\s+", "", s)
    s = s.replace("\\{", "{").replace("\\}", "}")
    s = re.sub(r"([_^])\{(\w)\}", r"\1\2", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    m = re.fullmatch(r"\(([A-Za-z])\)", s)  # multiple choice: "(C)" -> "C"
    if m:
        s = m.group(1)
    if len(s) >= 2 and s.isalpha():  # words ("Evelyn", "east"): case does not matter
        s = s.casefold()
    return s


# --------------------------------------------------------------------------------------------
# math-verify under a time bound
# --------------------------------------------------------------------------------------------


class _VerifyTimeout(BaseException):
    """Raised from our SIGALRM handler; a BaseException so sympy's ``except Exception`` misses it."""


_REFIRE_S = 0.05  # if something swallows the interrupt, it comes again this often
_mv: tuple[Callable[..., Any], Callable[..., Any]] | None = None
_warned_thread = False


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its own time-out is off; here the bound is ours, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in str(record.msg)


def _load_math_verify() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Import math-verify once, outside any time bound (an interrupted sympy import is fatal)."""
    global _mv
    if _mv is None:
        for name in ("math_verify.parser", "math_verify.grader"):
            logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
        from math_verify import parse, verify

        _mv = (parse, verify)
    return _mv


def _math_verify_equal(pred: str, reference: str) -> bool:
    """math-verify's verdict with its own time-outs off; the caller bounds the time."""
    parse, verify = _load_math_verify()

    def _parse(s: str) -> list:
        out = parse(f"\\boxed{{{s}}}", parsing_timeout=None)
        return out or parse(f"${s}$", parsing_timeout=None)

    gold = _parse(reference)
    target = _parse(pred)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=None))


def _can_use_signals() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _run_bounded(fn: Callable[[], bool], timeout_s: float) -> tuple[bool, bool]:
    """Run ``fn`` for at most ``timeout_s`` seconds (main thread only): (result, timed_out).

    The SIGALRM handler raises only while armed, and the caller's handler and pending timer are
    restored afterwards, so nesting inside code that uses ``signal.alarm`` is safe.
    """
    armed = [True]

    def _on_alarm(signum: int, frame: Any) -> None:
        if armed[0]:
            raise _VerifyTimeout()

    old_delay, old_interval = signal.getitimer(signal.ITIMER_REAL)
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    start = time.monotonic()
    result, timed_out = False, False
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout_s, _REFIRE_S)
            result = bool(fn())
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _VerifyTimeout:
        result, timed_out = False, True
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if old_handler is None else old_handler)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)
    return result, timed_out


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def answers_match(pred: str, reference: str, *, timeout_s: float = 5.0) -> tuple[bool, bool]:
    """(equal, timed_out): is ``pred`` the same answer as ``reference``?

    Order: exact numbers (final when both sides are numbers), then the normalised strings, then
    math-verify bounded by ``timeout_s`` for the whole comparison. ``timed_out`` is True only
    when math-verify hit that bound (``timeout_s <= 0`` counts as an exhausted bound). Errors
    inside math-verify count as "not equal". Never raises for any string input.
    """
    global _warned_thread
    try:
        if not isinstance(pred, str) or not isinstance(reference, str):
            return False, False
        p_norm, r_norm = _normalize(pred), _normalize(reference)
        if not p_norm or not r_norm:
            return False, False
        p_num, r_num = _to_fraction(p_norm), _to_fraction(r_norm)
        if p_num is not None and r_num is not None:
            return p_num == r_num, False
        if _canon(p_norm) == _canon(r_norm):
            return True, False
        if not _can_use_signals():
            if not _warned_thread:
                logger.warning(
                    "grading off the main thread: math-verify is skipped (its time bound needs "
                    "signals); only exact numbers and normalised strings are compared"
                )
                _warned_thread = True
            return False, False
        if timeout_s <= 0:
            return False, True
        p_mv, r_mv = _light_clean(pred), _light_clean(reference)
        _load_math_verify()
        return _run_bounded(lambda: _math_verify_equal(p_mv, r_mv), timeout_s)
    except _VerifyTimeout:
        return False, True
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
    """Extract the answer from ``text`` and compare it with ``reference``; never raises."""
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
