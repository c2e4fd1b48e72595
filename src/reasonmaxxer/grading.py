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
  and only after a plain number or a word (see :func:`_bang_is_punct`); ``n!``, ``(n+1)!`` and
  ``\\pi!`` keep it.

Time bound: math-verify (sympy) runs in a separate, persistent worker process
(:mod:`reasonmaxxer._mv_worker`, started on the first comparison that needs it, with
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

Clean-up is bounded too: :func:`_strip_answer` is linear in the answer's length however deep
the nesting (10^4 nested ``\\boxed{}`` take milliseconds, not minutes), and the other
clean-up loops that peel one layer per pass stop after ``_MAX_PASSES``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import numbers
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import UserError

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
            last = tok.group(0).rstrip(".,;:?") if tok else None  # "!": factorial
            pos = j + (tok.end() if tok else 0)
        else:  # "\boxed" followed by something else: a mention, not a box
            pos = j
    if last is not None:
        last = _strip_answer(last)
    return last or None


_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_PUNCT = ".,;:?"  # always punctuation at the end of an answer; "!" only in free text (below)
_BANG_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}$")


def _brace_partners(s: str) -> dict[int, int]:
    """``{open index: close index}`` for every matched brace of ``s``, in one pass.

    Escaped ``\\{``/``\\}`` do not count, as in :func:`_match_brace`; for a ``{`` that is not
    itself escaped the partner is the index :func:`_match_brace` would return.
    """
    out: dict[int, int] = {}
    stack: list[int] = []
    for m in re.finditer(r"\\.|[{}]", s, re.DOTALL):
        c = m.group(0)
        if c == "{":
            stack.append(m.start())
        elif c == "}" and stack:
            out[stack.pop()] = m.start()
    return out


def _bang_is_punct(rest: str) -> bool:
    """In free text, is a final ``!`` after ``rest`` punctuation (not a factorial)?

    Yes when ``rest`` is, once units and a leading ``x =`` are stripped, a plain number ("The
    answer is 42!", "x = 5!", "90^\\circ!") or ends in a word of two or more letters ("yes!",
    "\\text{Evelyn}!"); no after anything else: a single letter, a bracket, a LaTeX command, a
    list ("n!", "(n+1)!", "\\pi!", "3, 5, 7!").
    """
    norm = _normalize(rest)
    return _to_fraction(norm) is not None or _BANG_WORD_RE.search(_canon(norm)) is not None


def _strip_answer(s: str, *, free_text: bool = False) -> str:
    """Strip whitespace, markdown bold, math delimiters, wrapping boxes and final punctuation.

    Repeats until nothing changes (``**$\\boxed{5}$.**`` -> ``5``). Runs in time linear in
    ``len(s)`` however deep the nesting: it moves two indices over ``s`` (no re-slicing) and
    matches braces once, up front. A final ``.,;:?`` is dropped unless escaped (``\\,``);
    a final ``!`` is a factorial (kept), except in ``free_text`` outside any delimiter or box,
    where :func:`_bang_is_punct` decides.
    """
    i, j = 0, len(s)
    partners: dict[int, int] | None = None
    dollars: list[int] | None = None  # dollars[p]: unescaped "$" in s[:p]
    has_dollar = "$" in s
    while True:
        before = (i, j)
        while i < j and (s[i].isspace() or s[i] == "*"):
            i += 1
        while j > i and (s[j - 1].isspace() or s[j - 1] == "*"):
            j -= 1
        # One layer of $..$, \(..\), \[..\] or \boxed{..}; inside it "!" is maths.
        for left, right in _DELIMS:
            if (
                j - i >= len(left) + len(right)
                and s.startswith(left, i)
                and s.startswith(right, j - len(right))
                and not (
                    right[0] == "$" and j - len(right) - 1 >= i and s[j - len(right) - 1] == "\\"
                )
            ):
                i, j, free_text = i + len(left), j - len(right), False
                break
        else:
            m = _BOX_CMD_RE.match(s, i, j)
            if m:
                k = m.end()
                while k < j and s[k] == " ":
                    k += 1
                if k < j and s[k] == "{":
                    if partners is None:
                        partners = _brace_partners(s)
                    if partners.get(k) == j - 1:
                        i, j, free_text = k + 1, j - 1, False
        while i < j and s[i].isspace():
            i += 1
        while j > i and s[j - 1].isspace():
            j -= 1
        # Final punctuation; the first character of the run stays when a backslash escapes it.
        r = j
        while r > i and s[r - 1] in _PUNCT:
            r -= 1
        if free_text and r > i and s[r - 1] == "!":
            q = r
            while q > i and s[q - 1] in _PUNCT + "!":
                q -= 1
            q2 = q + 1 if q > i and s[q - 1] == "\\" else q
            if q2 < j and _bang_is_punct(s[i:q2].strip()):
                r = q
        if r < j:
            if r > i and s[r - 1] == "\\":
                r += 1
            if r < j:
                j = r
                while j > i and s[j - 1].isspace():
                    j -= 1
        # A lone math "$" left by a cut sentence.
        if has_dollar:
            if dollars is None:
                dollars = [0]
                for p, c in enumerate(s):
                    dollars.append(dollars[-1] + (c == "$" and (p == 0 or s[p - 1] != "\\")))
            n = dollars[j] - dollars[i] + (j > i and s[i] == "$" and i > 0 and s[i - 1] == "\\")
            if n == 1:
                if s.startswith("$", i):
                    i, free_text = i + 1, False
                elif j > i and s[j - 1] == "$":
                    j, free_text = j - 1, False
        if (i, j) == before:
            return s[i:j]


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
    ans = _strip_answer(line, free_text=True)
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


_MAX_PASSES = 16  # clean-up loops that peel one layer per pass stop here (real answers need 1-3)
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
    for _ in range(_MAX_PASSES):  # units may be stacked: "30^\circ \text{ }", "5\%."
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
        if s == prev:
            break
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
    for _ in range(_MAX_PASSES):  # nested \text{\textbf{..}}; bounded, each pass is O(len)
        prev = s
        s = _TEXT_CMD_RE.sub(r"\1", s)
        if s == prev:
            break
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
# math-verify in a worker process, under a deadline
# --------------------------------------------------------------------------------------------

MAX_TIMEOUT_S = 600.0  # larger finite time-outs are clamped to this (no comparison needs more)
_START_TIMEOUT_S = 300.0  # importing sympy + math-verify in a fresh worker (slow, busy machines)
_BOOT = (
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[1])\n"
    "import importlib.util as u\n"
    "spec = u.spec_from_file_location('_reasonmaxxer_mv_worker', sys.argv[2])\n"
    "mod = u.module_from_spec(spec)\n"
    "spec.loader.exec_module(mod)\n"
    "mod.main()\n"
)


def _check_timeout(timeout_s: float) -> float:
    """``timeout_s`` as a float in ``(0, MAX_TIMEOUT_S]``; UserError if not finite and > 0."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real):
        raise UserError(f"grader time-out must be a number of seconds, got {timeout_s!r}")
    try:
        t = float(timeout_s)
    except OverflowError:  # an int too large for a float: finite, so clamped below
        t = MAX_TIMEOUT_S if timeout_s > 0 else -math.inf
    if not math.isfinite(t) or t <= 0:
        raise UserError(f"grader time-out must be a finite number of seconds > 0, got {t}")
    return min(t, MAX_TIMEOUT_S)


_TIMED_OUT = object()  # what _Worker._read_line returns when the deadline passes


class _Worker:
    """One persistent math-verify process, used by one comparison at a time (a lock).

    :meth:`compare` sends a pair and waits for the verdict until a deadline; on the deadline,
    or if the process died, it kills the process, reports the comparison as not done and at
    once starts a replacement, which imports sympy while the caller goes on. A comparison waits
    for its worker to be ready *before* its deadline starts. A process that is found dead
    between comparisons is replaced silently. Replies are read by the calling thread itself
    (a selector with the deadline as its time-out): no helper thread, no signals.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._selector: selectors.BaseSelector | None = None
        self._buf = bytearray()
        self._ready = False
        self._next_id = 0
        self.starts = 0  # processes started so far (tests and the benchmark read it)
        self.last_worker_s = 0.0  # seconds the last verdict took inside the worker

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def compare(self, pred: str, reference: str, timeout_s: float) -> tuple[bool, bool]:
        """(equal, not_done) for one pair, within ``timeout_s`` seconds of sending it."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is not None:
                self._kill()  # died while idle
            if self._proc is None:
                self._spawn()
            if not self._wait_ready():
                return False, True
            assert self._proc is not None
            self._next_id += 1
            rid = self._next_id
            msg = json.dumps({"id": rid, "pred": pred, "ref": reference}) + "\n"
            deadline = time.monotonic() + timeout_s
            try:
                self._proc.stdin.write(msg.encode("utf-8"))
                self._proc.stdin.flush()
            except OSError:  # it died between the check and the write
                self._restart()
                return False, True
            try:
                while True:
                    line = self._read_line(deadline)
                    if line is _TIMED_OUT or line is None:  # the deadline, or it died mid-way
                        self._restart()
                        return False, True
                    reply = json.loads(line)
                    if reply.get("id") == rid:
                        break
            except BaseException:  # e.g. Ctrl-C: don't leave the next caller a busy worker
                self._restart()
                raise
            self.last_worker_s = float(reply.get("s", 0.0))
            if reply.get("error"):
                logger.debug("math-verify raised %s; counted as not equal", reply["error"])
            return bool(reply["equal"]), False

    def _read_line(self, deadline: float) -> Any:
        """The worker's next line (bytes), None at end of file, _TIMED_OUT after ``deadline``."""
        assert self._proc is not None and self._selector is not None
        fd = self._proc.stdout.fileno()
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                return _TIMED_OUT
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk

    def _spawn(self) -> None:
        """Start a worker process without waiting for it (it reports when it is ready)."""
        self.starts += 1
        worker_file = str(Path(__file__).with_name("_mv_worker.py"))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(sys.path), worker_file],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except (OSError, ValueError) as e:
            logger.warning("cannot start the math-verify worker: %s", e)
            return
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout.fileno(), selectors.EVENT_READ)
        self._proc, self._selector, self._buf, self._ready = proc, selector, bytearray(), False

    def _wait_ready(self) -> bool:
        """Wait for the worker's start-up message; False (logged, worker gone) if it fails."""
        if self._ready:
            return True
        if self._proc is None:
            return False
        line = self._read_line(time.monotonic() + _START_TIMEOUT_S)
        if line is _TIMED_OUT:
            hello = {"error": f"not ready after {_START_TIMEOUT_S:g} s"}
        else:
            hello = json.loads(line) if line else {"error": "exited during start-up"}
        if not hello.get("ready"):
            logger.warning("math-verify worker failed to start: %s", hello.get("error"))
            self._kill()
            return False
        self._ready = True
        return True

    def _restart(self) -> None:
        self._kill()
        self._spawn()

    def _kill(self) -> None:
        """Kill the worker (if any), reap it and close our ends of its pipes."""
        proc, selector = self._proc, self._selector
        self._proc, self._selector, self._buf, self._ready = None, None, bytearray(), False
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover (an unkillable process)
            logger.warning("math-verify worker %d did not exit after SIGKILL", proc.pid)
        if selector is not None:
            selector.close()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def close(self) -> None:
        """Stop the worker: close its stdin (it exits), then kill it if it lingers."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    proc.stdin.close()
                    proc.wait(timeout=2)
            self._kill()

    def forget(self) -> None:
        """In a forked child: drop the parent's worker without touching it.

        Its pipes are kept referenced, never closed or finalised here: the fork may have
        caught the parent in the middle of a write, holding the pipe's buffer lock.
        """
        self._lock = threading.Lock()
        if self._proc is not None:
            _INHERITED.append((self._proc, self._selector))
        self._proc, self._selector, self._buf, self._ready = None, None, bytearray(), False


_INHERITED: list[tuple] = []  # a forked child's copies of its parent's worker


_WORKER = _Worker()
atexit.register(_WORKER.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WORKER.forget)


def _math_verify_bounded(pred: str, reference: str, timeout_s: float) -> tuple[bool, bool]:
    """(equal, timed_out): math-verify on the worker, within ``timeout_s`` seconds."""
    return _WORKER.compare(pred, reference, timeout_s)


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
    timeout_s = _check_timeout(timeout_s)
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
        return _math_verify_bounded(_light_clean(pred), _light_clean(reference), timeout_s)
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
    timeout_s = _check_timeout(timeout_s)
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
