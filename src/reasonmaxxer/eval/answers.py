"""Answers as text: step 1 of grading pulls the final answer out of a model's text, recording
which rule fired (``"boxed"``, ``"answer_is"``, ``"last_number"`` or ``"none"``); the
normalisation and the exact numeric reading that step 2 (:func:`.grading.answers_match`)
compares live here too, because extraction consults them (is a final ``!`` a factorial?).

A final ``!`` is a factorial inside a box or math delimiters (``\\boxed{5!}`` is 120, never
5); only in free text ("The answer is 42!") is it read as the end of a sentence, and only after
a plain number or a word (:func:`_bang_is_punct`). :func:`strip_answer` is linear in the
answer's length however deep the nesting (10^4 nested ``\\boxed{}`` take milliseconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Extraction",
    "canon",
    "extract_answer",
    "light_clean",
    "normalize",
    "strip_answer",
    "to_fraction",
]


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
        last = strip_answer(last)
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
    norm = normalize(rest)
    return to_fraction(norm) is not None or _BANG_WORD_RE.search(canon(norm)) is not None


def strip_answer(s: str, *, free_text: bool = False) -> str:
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
    ans = strip_answer(line, free_text=True)
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


def light_clean(s: str) -> str:
    """Presentation-only clean-up, safe to hand to math-verify as well."""
    s = strip_answer(s)
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


def normalize(s: str) -> str:
    """Strip presentation and units, for the numeric fast path and the string comparison."""
    s = light_clean(s)
    if s.count("=") == 1 or (s.count("=") == 0 and "\\in" in s):
        stripped = _LEAD_VAR_RE.sub("", s, count=1)
        if stripped and "=" not in stripped:
            s = stripped
    for _ in range(_MAX_PASSES):  # units may be stacked: "30^\circ \text{ }", "5\%."
        prev = s
        s = _DEGREE_RE.sub("", s).strip()
        s = _PERCENT_RE.sub("", s).strip()
        m = _UNIT_TEXT_RE.match(s)
        if m and to_fraction(m.group("num")) is not None:
            s = m.group("num").strip()
        m = _UNIT_WORD_RE.match(s)
        if (
            m
            and to_fraction(m.group("num")) is not None
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


def to_fraction(s: str) -> Fraction | None:
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
            a = to_fraction(m.group("a").strip("{}"))
            b = to_fraction(m.group("b").strip("{}"))
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


def canon(s: str) -> str:
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
