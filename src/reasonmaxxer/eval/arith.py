"""Seeded synthetic arithmetic: a benchmark whose difficulty we can dial to a small model's edge.

The CPU testbed model (SmolLM2-135M-Instruct) scores ~0% on GSM8K, so real benchmarks cannot
show it improving. These five levels run from trivial to out of reach for it:

====  ==========================================================  =======================
level problems                                                     canonical problems
====  ==========================================================  =======================
1     ``a + b``, a, b in 0..9                                      100
2     ``a + b`` or ``a - b``, a, b in 0..20 (result >= 0)          672
3     ``a + b`` or ``a - b``, a, b in 10..99 (result >= 0)         12195
4     two operations ``a ± b ± c``, a, b, c in 1..20               20390
5     ``a × b + c``, ``a × b - c``, ``a × b + c - d``;             27224
      a, b in 2..9, c, d in 1..20
====  ==========================================================  =======================

Every intermediate result is non-negative, so each problem also reads sensibly as a word
problem ("gives 5 away" never exceeds what is held).

Splits. Each canonical problem (pattern + ordered operands, independent of style and
template) goes to ``train`` or ``eval`` by a SHA-256 hash of its *normalised* form: the
multiset of added and of subtracted terms, with factors of a product sorted. ``3 + 4``,
``4 + 3`` and, at level 4, ``3 + 9 - 2`` / ``9 - 2 + 3`` therefore always share a split, so
no problem in ``train`` is just a reordering of one in ``eval``. About 20% of the groups are
``train`` (:data:`TRAIN_PERMILLE`), the rest ``eval``; ``all`` is their union. The hash does
not depend on the level, seed or n, so the assignment never changes between runs.

``dev`` (for picking checkpoints) and ``test`` divide ``eval`` by the same hash: the next
:data:`DEV_PERMILLE` of the groups after ``train`` are ``dev``, the rest ``test``. So ``dev``
shares no group with ``train`` or ``test``, and ``train``/``eval`` are as they always were
(every eval set measured so far stays valid); ``dev`` is inside ``eval``, so a run that picks
checkpoints on ``dev`` evaluates on ``test`` (a run checks, :func:`canonical_keys`).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

from ..errors import UserError
from .problem import Problem

LEVELS = (1, 2, 3, 4, 5)
SPLITS = ("train", "eval", "dev", "test", "all")
STYLES = ("expr", "word", "mixed", "heldout")
TRAIN_PERMILLE = 200
"""Share of canonical problem groups assigned to ``train``, in thousandths."""
DEV_PERMILLE = 100
"""Share of the groups, next after ``train``'s, that ``dev`` takes out of ``eval``."""

DEFAULT_N = 500
"""Size of an ``arith`` spec without ``n=``: this, or the whole split if it is smaller."""

_SPEC_KEYS = ("level", "n", "split", "seed", "style")


@dataclass(frozen=True)
class _Family:
    """One operation pattern: letters are the operands in order, ``*`` binds tighter."""

    op: str
    ranges: tuple[range, ...]
    words: tuple[str, ...]
    heldout: tuple[str, ...]
    """Wordings no other style uses (plain phrasings and other stories): ``style=heldout``."""


# Word templates. Keys: name/He (subject), friend, friend2; a..d bare numbers; A..D a number
# with the object noun in agreement ("1 apple", "3 apples"); oa..od that noun alone; objs the
# plural; Ka "<a> boxes"; cont the container singular.
_ADD = (
    "{name} has {A}. {He} gets {b} more. How many {objs} does {name} have now?",
    "{name} collected {A} in the morning and {B} in the afternoon. "
    "How many {objs} did {name} collect in total?",
    "A basket holds {A}. {name} puts {b} more {ob} into the basket. "
    "How many {objs} are in the basket now?",
    "{name} has {A} and {friend} has {B}. How many {objs} do they have together?",
)
_SUB = (
    "{name} has {A}. {He} gives {B} to {friend}. How many {objs} does {name} have left?",
    "A table holds {A}. {name} takes {B} away. How many {objs} are left on the table?",
    "{name} had {A}. {He} lost {b} of them. How many {objs} does {name} have now?",
    "{name} has {A} and {friend} has {B}. How many more {objs} does {name} have than {friend}?",
)
_ADD_ADD = (
    "{name} has {A}. {He} gets {B} from {friend} and then finds {c} more. "
    "How many {objs} does {name} have now?",
    "{name} collected {A} on Monday, {B} on Tuesday and {C} on Wednesday. "
    "How many {objs} did {name} collect in total?",
)
_ADD_SUB = (
    "{name} has {A}. {He} gets {b} more and then gives {C} to {friend}. "
    "How many {objs} does {name} have now?",
    "A box holds {A}. {name} puts in {b} more, then takes out {C}. "
    "How many {objs} are in the box now?",
)
_SUB_ADD = (
    "{name} has {A}. {He} gives {B} to {friend} and then buys {c} more. "
    "How many {objs} does {name} have now?",
    "A box holds {A}. {name} takes out {B}, then puts in {C}. How many {objs} are in the box now?",
)
_SUB_SUB = (
    "{name} has {A}. {He} gives {B} to {friend} and {C} to {friend2}. "
    "How many {objs} does {name} have left?",
    "A shelf holds {A}. {name} takes {B} and {friend} takes {C}. "
    "How many {objs} are left on the shelf?",
)
_MUL_ADD = (
    "{name} has {Ka} with {B} in each {cont}, and {c} more {oc} on the side. "
    "How many {objs} does {name} have in total?",
    "{name} buys {Ka} of {objs}. Each {cont} holds {B}. {He} already had {C}. "
    "How many {objs} does {name} have now?",
)
_MUL_SUB = (
    "{name} has {Ka} with {B} in each {cont}. {He} gives {C} to {friend}. "
    "How many {objs} does {name} have left?",
    "A shop has {Ka} of {objs} with {b} in each {cont}. It sells {C}. "
    "How many {objs} does the shop have left?",
)
_MUL_ADD_SUB = (
    "{name} has {Ka} with {B} in each {cont}. {He} finds {c} more {oc} and then gives {D} "
    "to {friend}. How many {objs} does {name} have now?",
    "A shop has {Ka} of {objs} with {b} in each {cont}. It gets {c} more {oc} and sells {D}. "
    "How many {objs} does the shop have now?",
)

# Held-out wordings (``style=heldout``): phrasings and stories that neither ``expr`` ("What is
# 3 + 4?") nor the word templates above use, so a model trained on ``mixed`` problems can be
# measured on the same problems worded in a way it never saw. Same fields as above.
_ADD_HELD = (
    "What is {a} plus {b}?",
    "Find the sum of {a} and {b}.",
    "Add {b} to {a}. What number do you get?",
    "{name} walked {a} km on Saturday and {b} km on Sunday. "
    "How many km did {name} walk over the weekend?",
    "A bowl holds {A}. {friend} drops in another {b}. How many {objs} are in the bowl now?",
)
_SUB_HELD = (
    "What is {a} minus {b}?",
    "Subtract {b} from {a}.",
    "What number is {b} less than {a}?",
    "{name} had ${a} and spent ${b} on lunch. How many dollars does {name} have left?",
    "A bowl holds {A}. {friend} takes out {b}. How many {objs} remain in the bowl?",
)
_ADD_ADD_HELD = (
    "What is {a} plus {b} plus {c}?",
    "Find the total of {a}, {b} and {c}.",
    "{name}'s reading log shows {a}, {b} and {c} pages for Monday, Tuesday and Wednesday. "
    "How many pages did {name} read?",
)
_ADD_SUB_HELD = (
    "Start with {a}, add {b}, then subtract {c}. What is the result?",
    "{name} had ${a}, earned ${b} more and spent ${c}. How many dollars does {name} have now?",
)
_SUB_ADD_HELD = (
    "Start with {a}, subtract {b}, then add {c}. What is the result?",
    "A bus carries {a} passengers. At a stop it lets off {b} and takes on {c}. "
    "How many passengers are on the bus now?",
)
_SUB_SUB_HELD = (
    "Start with {a}, subtract {b}, then subtract {c}. What is the result?",
    "A bus carries {a} passengers. It lets off {b} at the first stop and {c} at the second. "
    "How many passengers are still on the bus?",
)
_MUL_ADD_HELD = (
    "Multiply {a} by {b}, then add {c}. What do you get?",
    "A theatre has {a} rows of {b} seats and {c} extra chairs. "
    "How many places to sit are there in all?",
)
_MUL_SUB_HELD = (
    "Multiply {a} by {b}, then subtract {c}. What do you get?",
    "A baker makes {a} trays of {b} rolls and sells {c} of them. How many rolls are left?",
)
_MUL_ADD_SUB_HELD = (
    "Multiply {a} by {b}, add {c}, then subtract {d}. What is the result?",
    "A baker makes {a} trays of {b} rolls, bakes {c} more and sells {d}. How many rolls are left?",
)

_R1 = range(0, 10)
_R2 = range(0, 21)
_R3 = range(10, 100)
_R4 = range(1, 21)
_DIGIT = range(2, 10)

_LEVEL_FAMILIES: dict[int, tuple[_Family, ...]] = {
    1: (_Family("a+b", (_R1, _R1), _ADD, _ADD_HELD),),
    2: (_Family("a+b", (_R2, _R2), _ADD, _ADD_HELD), _Family("a-b", (_R2, _R2), _SUB, _SUB_HELD)),
    3: (_Family("a+b", (_R3, _R3), _ADD, _ADD_HELD), _Family("a-b", (_R3, _R3), _SUB, _SUB_HELD)),
    4: (
        _Family("a+b+c", (_R4,) * 3, _ADD_ADD, _ADD_ADD_HELD),
        _Family("a+b-c", (_R4,) * 3, _ADD_SUB, _ADD_SUB_HELD),
        _Family("a-b+c", (_R4,) * 3, _SUB_ADD, _SUB_ADD_HELD),
        _Family("a-b-c", (_R4,) * 3, _SUB_SUB, _SUB_SUB_HELD),
    ),
    5: (
        _Family("a*b+c", (_DIGIT, _DIGIT, _R4), _MUL_ADD, _MUL_ADD_HELD),
        _Family("a*b-c", (_DIGIT, _DIGIT, _R4), _MUL_SUB, _MUL_SUB_HELD),
        _Family("a*b+c-d", (_DIGIT, _DIGIT, _R4, _R4), _MUL_ADD_SUB, _MUL_ADD_SUB_HELD),
    ),
}

_PEOPLE = (
    ("Tom", "He"),
    ("Anna", "She"),
    ("Ben", "He"),
    ("Lily", "She"),
    ("Sam", "He"),
    ("Mia", "She"),
    ("Jack", "He"),
    ("Emma", "She"),
    ("Leo", "He"),
    ("Zoe", "She"),
    ("Max", "He"),
    ("Nora", "She"),
)
_OBJECTS = (
    ("apple", "apples"),
    ("marble", "marbles"),
    ("sticker", "stickers"),
    ("cookie", "cookies"),
    ("coin", "coins"),
    ("shell", "shells"),
    ("pencil", "pencils"),
    ("card", "cards"),
    ("stamp", "stamps"),
    ("balloon", "balloons"),
)
_CONTAINERS = (("box", "boxes"), ("bag", "bags"), ("basket", "baskets"), ("jar", "jars"))


def _terms(op: str) -> list[tuple[str, list[int]]]:
    """Split a pattern into signed terms, each a list of operand positions to multiply."""
    out: list[tuple[str, list[int]]] = []
    for sign, term in re.findall(r"([+-]?)([a-z](?:\*[a-z])*)", op):
        out.append((sign or "+", [ord(ch) - ord("a") for ch in term.split("*")]))
    return out


def evaluate(op: str, operands: tuple[int, ...] | list[int]) -> int | None:
    """Value of ``op`` on ``operands`` left to right, or None if a partial result goes negative."""
    value = 0
    for sign, factors in _terms(op):
        term = 1
        for i in factors:
            term *= operands[i]
        value = value + term if sign == "+" else value - term
        if value < 0:
            return None
    return value


def split_key(op: str, operands: tuple[int, ...] | list[int]) -> str:
    """Order-free form of a problem: reorderings of the same sum must land in the same split."""
    pos: list[str] = []
    neg: list[str] = []
    for sign, factors in _terms(op):
        term = "*".join(str(v) for v in sorted(operands[i] for i in factors))
        (pos if sign == "+" else neg).append(term)
    return "+".join(sorted(pos)) + "-" + "-".join(sorted(neg))


def _permille(op: str, operands: tuple[int, ...] | list[int]) -> int:
    """The group's place in 0..999, by a stable hash (never Python's salted ``hash``)."""
    digest = hashlib.sha256(("arith|" + split_key(op, operands)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1000


def split_of(op: str, operands: tuple[int, ...] | list[int]) -> str:
    """``"train"`` or ``"eval"``, by a stable hash (never Python's salted ``hash``)."""
    return "train" if _permille(op, operands) < TRAIN_PERMILLE else "eval"


def in_split(op: str, operands: tuple[int, ...] | list[int], split: str) -> bool:
    """Whether a problem falls in ``split`` (``dev`` and ``test`` divide ``eval``)."""
    if split == "all":
        return True
    p = _permille(op, operands)
    if split == "train":
        return p < TRAIN_PERMILLE
    if split == "eval":
        return p >= TRAIN_PERMILLE
    if split == "dev":
        return TRAIN_PERMILLE <= p < TRAIN_PERMILLE + DEV_PERMILLE
    return p >= TRAIN_PERMILLE + DEV_PERMILLE  # test


@lru_cache(maxsize=32)
def _pools(level: int, split: str) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Every valid canonical problem of each family of ``level`` that falls in ``split``."""
    pools = []
    for fam in _LEVEL_FAMILIES[level]:
        pool = tuple(
            ops
            for ops in product(*fam.ranges)
            if evaluate(fam.op, ops) is not None and in_split(fam.op, ops, split)
        )
        pools.append(pool)
    return tuple(pools)


def _check(level: int, split: str, style: str | None = None) -> None:
    if level not in LEVELS:
        raise UserError(f"arith level must be one of {', '.join(map(str, LEVELS))}, got {level!r}")
    if split not in SPLITS:
        raise UserError(f"arith split must be one of {', '.join(SPLITS)}, got {split!r}")
    if style is not None and style not in STYLES:
        raise UserError(f"arith style must be one of {', '.join(STYLES)}, got {style!r}")


def space_size(level: int, split: str) -> int:
    """How many distinct problems ``generate`` can return for this level and split."""
    _check(level, split)
    return sum(len(p) for p in _pools(level, split))


def canonical_keys(problems: list[Problem]) -> set[str]:
    """Order-free identities of arith problems (op + operands, whatever the wording): two sets
    are disjoint when these are. Problems without arith metadata are keyed by their text."""
    out = set()
    for p in problems:
        m = p.meta or {}
        if "op" in m and "operands" in m:
            out.add(f"arith|{split_key(m['op'], m['operands'])}")
        else:
            out.add(p.problem.strip())
    return out


def benchmark_name(level: int, split: str, seed: int = 0, style: str = "mixed") -> str:
    """Short name, e.g. ``arith-l2-eval``; seed and style appear only when not the default."""
    name = f"arith-l{level}-{split}"
    if seed != 0:
        name += f"-s{seed}"
    if style != "mixed":
        name += f"-{style}"
    return name


def expression(op: str, operands: tuple[int, ...] | list[int]) -> str:
    """Human form of a problem, e.g. ``3 × 4 + 5``."""
    text = re.sub(r"[a-z]", lambda m: str(operands[ord(m.group()) - ord("a")]), op)
    return re.sub(r"([+\-*])", r" \1 ", text).replace("*", "×")


def _word_text(template: str, operands: tuple[int, ...], rng: random.Random) -> str:
    (name, he), (friend, _), (friend2, _) = rng.sample(_PEOPLE, 3)
    single, plural = rng.choice(_OBJECTS)
    cont, conts = rng.choice(_CONTAINERS)
    fields: dict[str, object] = {
        "name": name,
        "He": he,
        "friend": friend,
        "friend2": friend2,
        "objs": plural,
        "cont": cont,
    }
    for i, v in enumerate(operands):
        letter = "abcd"[i]
        noun = single if v == 1 else plural
        fields[letter] = v
        fields["o" + letter] = noun
        fields[letter.upper()] = f"{v} {noun}"
    fields["Ka"] = f"{operands[0]} {cont if operands[0] == 1 else conts}"
    return template.format(**fields)


def generate(
    n: int, *, level: int = 2, split: str = "eval", seed: int = 0, style: str = "mixed"
) -> list[Problem]:
    """``n`` distinct problems of ``level`` from ``split``, reproducible from the arguments.

    Raises :class:`UserError` for a bad parameter or when ``n`` exceeds the split's space.
    """
    _check(level, split, style)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"arith n must be a non-negative integer, got {n!r}")
    total = space_size(level, split)
    if n > total:
        raise UserError(
            f"arith level {level} split {split} has only {total} distinct problems; "
            f"asked for n={n} (use n<={total}, another split, or a higher level)"
        )
    families = _LEVEL_FAMILIES[level]
    # Selection depends on (level, split, seed) only; wording also on style.
    pick_rng = random.Random(f"arith-pick|{level}|{split}|{seed}")
    text_rng = random.Random(f"arith-text|{level}|{split}|{seed}|{style}")
    queues = []
    for pool in _pools(level, split):
        queue = list(pool)
        pick_rng.shuffle(queue)
        queues.append(queue)
    cursors = [0] * len(queues)
    name = benchmark_name(level, split, seed, style)
    out: list[Problem] = []
    for idx in range(n):
        live = [i for i, q in enumerate(queues) if cursors[i] < len(q)]
        f = live[pick_rng.randrange(len(live))]
        operands = queues[f][cursors[f]]
        cursors[f] += 1
        fam = families[f]
        answer = evaluate(fam.op, operands)
        expr = expression(fam.op, operands)
        if style == "heldout":
            word, template = None, text_rng.choice(fam.heldout)
            text = _word_text(template, operands, text_rng)
        else:
            word = style == "word" or (style == "mixed" and text_rng.random() < 0.5)
            template = text_rng.choice(fam.words)
            text = _word_text(template, operands, text_rng) if word else f"What is {expr}?"
        out.append(
            Problem(
                id=f"arith-l{level}-{split}-s{seed}-{idx:05d}",
                problem=text,
                answer=str(answer),
                benchmark=name,
                solution=f"{expr} = {answer}",
                meta={
                    "level": level,
                    "style": style if word is None else "word" if word else "expr",
                    "op": fam.op,
                    "operands": list(operands),
                },
            )
        )
    return out


def parse_spec(spec: str) -> dict:
    """Parse ``arith`` or ``arith:level=2,n=500,split=eval,seed=0,style=mixed``.

    Returns a dict with all five keys; ``n`` is None when not given (see :data:`DEFAULT_N`).
    """
    spec = spec.strip()
    params: dict = {"level": 2, "n": None, "split": "eval", "seed": 0, "style": "mixed"}
    if spec == "arith":
        return params
    if not spec.startswith("arith:"):
        raise UserError(f"not an arith spec: {spec!r} (expected arith or arith:key=value,...)")
    seen: set[str] = set()
    for part in spec[len("arith:") :].split(","):
        part = part.strip()
        if not part:
            continue
        key, eq, value = (s.strip() for s in part.partition("="))
        if not eq or key not in _SPEC_KEYS:
            raise UserError(
                f"bad arith parameter {part!r} in {spec!r}: expected key=value with key in "
                f"{', '.join(_SPEC_KEYS)}"
            )
        if key in seen:
            raise UserError(f"arith parameter {key!r} given twice in {spec!r}")
        seen.add(key)
        if key in ("level", "n", "seed"):
            try:
                params[key] = int(value)
            except ValueError:
                raise UserError(
                    f"bad arith parameter {part!r} in {spec!r}: {key} must be an integer"
                ) from None
        else:
            params[key] = value
    _check(params["level"], params["split"], params["style"])
    if params["n"] is not None and params["n"] < 1:
        raise UserError(f"bad arith parameter in {spec!r}: n must be at least 1")
    return params
