"""Synthetic arithmetic: determinism, split disjointness, correct answers, level ranges."""

from __future__ import annotations

import re

import pytest

from reasonmaxxer.errors import UserError
from reasonmaxxer.eval.arith import LEVELS, generate, space_size, split_key


def _recompute(op: str, operands: list[int]) -> int:
    """Independent check: substitute the operands and let Python evaluate the expression."""
    expr = re.sub(r"[a-d]", lambda m: str(operands["abcd".index(m.group())]), op)
    assert re.fullmatch(r"[0-9+\-*]+", expr)
    return eval(expr)


def _canon(p) -> tuple:
    return (p.meta["op"], tuple(p.meta["operands"]))


def test_deterministic():
    a = generate(60, level=3, seed=7, style="mixed")
    b = generate(60, level=3, seed=7, style="mixed")
    assert a == b and [p.meta for p in a] == [p.meta for p in b]
    assert [p.problem for p in a] != [p.problem for p in generate(60, level=3, seed=8)]


def test_prefix_stable_and_style_independent_selection():
    small, big = generate(20, level=2), generate(80, level=2)
    assert small == big[:20]
    expr, word = generate(30, level=4, style="expr"), generate(30, level=4, style="word")
    assert [_canon(p) for p in expr] == [_canon(p) for p in word]
    assert all(p.problem.startswith("What is ") for p in expr)
    assert all(not p.problem.startswith("What is ") for p in word)


def test_mixed_style_uses_both():
    styles = {p.meta["style"] for p in generate(40, level=2, style="mixed")}
    assert styles == {"expr", "word"}


@pytest.mark.parametrize("level", [2, 3])
def test_train_eval_disjoint(level):
    n_train = space_size(level, "train")
    n = min(3000, n_train)
    train = generate(n, level=level, split="train")
    evals = generate(min(3000, space_size(level, "eval")), level=level, split="eval")
    train_keys = {split_key(*_canon(p)) for p in train}
    assert not train_keys & {split_key(*_canon(p)) for p in evals}
    assert not {_canon(p) for p in train} & {_canon(p) for p in evals}
    assert space_size(level, "train") + space_size(level, "eval") == space_size(level, "all")
    assert 0.1 < n_train / space_size(level, "all") < 0.3


def test_whole_level2_space_partitions():
    train = generate(space_size(2, "train"), level=2, split="train")
    evals = generate(space_size(2, "eval"), level=2, split="eval")
    everything = generate(space_size(2, "all"), level=2, split="all")
    assert {_canon(p) for p in train} | {_canon(p) for p in evals} == {
        _canon(p) for p in everything
    }
    assert space_size(2, "eval") >= 500  # the documented default arith spec fits


@pytest.mark.parametrize("level", LEVELS)
def test_answers_correct_and_unique(level):
    problems = generate(200 if level > 1 else 80, level=level, seed=3)
    assert len({_canon(p) for p in problems}) == len(problems)
    assert len({p.id for p in problems}) == len(problems)
    for p in problems:
        assert p.answer == str(_recompute(p.meta["op"], p.meta["operands"]))
        assert int(p.answer) >= 0
        assert p.meta["level"] == level and p.meta["style"] in ("expr", "word")
        assert "=" not in p.problem
        assert p.problem.endswith("?")
        numbers = {int(x) for x in re.findall(r"\d+", p.problem)}
        assert numbers <= set(p.meta["operands"])  # text shows operands only, never the result


def test_level_ranges():
    for p in generate(space_size(2, "all"), level=2, split="all"):
        assert p.meta["op"] in ("a+b", "a-b")
        assert all(0 <= x <= 20 for x in p.meta["operands"])
    for p in generate(100, level=1, split="all"):
        assert p.meta["op"] == "a+b" and all(0 <= x <= 9 for x in p.meta["operands"])
    for p in generate(200, level=3):
        assert all(10 <= x <= 99 for x in p.meta["operands"])
    assert {p.meta["op"].count("+") + p.meta["op"].count("-") for p in generate(50, level=4)} == {2}


def test_ids_and_benchmark_name():
    p = generate(18, level=2, split="eval", seed=0)[17]
    assert p.id == "arith-l2-eval-s0-00017" and p.benchmark == "arith-l2-eval"
    assert generate(1, level=1, seed=4, style="word")[0].benchmark == "arith-l1-eval-s4-word"


def test_n_too_large():
    max_n = space_size(1, "train")
    assert len(generate(max_n, level=1, split="train")) == max_n
    with pytest.raises(UserError, match=f"only {max_n}"):
        generate(max_n + 1, level=1, split="train")


def test_bad_parameters():
    for kwargs in ({"level": 0}, {"split": "holdout"}, {"style": "poem"}):
        with pytest.raises(UserError):
            generate(1, **kwargs)
    with pytest.raises(UserError):
        generate(-1)


@pytest.mark.parametrize("level", LEVELS)
def test_heldout_wording_same_problems_other_words(level):
    """``style=heldout`` asks the same problems as the other styles (same ids, operands and
    answers) in words no other style uses, and every wording states every operand."""
    n = min(120, space_size(level, "eval"))
    held = generate(n, level=level, style="heldout")
    others = {s: generate(n, level=level, style=s) for s in ("mixed", "expr", "word")}
    for ps in others.values():
        assert [(p.id, p.answer, _canon(p)) for p in ps] == [
            (p.id, p.answer, _canon(p)) for p in held
        ]

    def shape(text: str) -> str:  # the wording with its numbers blanked out
        return re.sub(r"\d+", "#", text)

    seen = {shape(p.problem) for ps in others.values() for p in ps}
    assert not seen & {shape(p.problem) for p in held}
    for p in held:
        assert p.meta["style"] == "heldout" and p.benchmark == f"arith-l{level}-eval-heldout"
        numbers = [int(x) for x in re.findall(r"\d+", p.problem)]
        assert sorted(numbers) == sorted(p.meta["operands"]), p.problem
    assert len({shape(p.problem).split()[0] for p in held}) > 1  # more than one wording


def test_heldout_spec_parses():
    from reasonmaxxer.eval.data import load_benchmark

    probs = load_benchmark("arith:level=2,n=5,style=heldout")
    assert [p.benchmark for p in probs] == ["arith-l2-eval-heldout"] * 5


def test_heldout_templates_share_nothing_with_the_training_styles():
    """Template by template, not only text by text: no held-out wording is one of its
    family's word templates, and none writes an operator symbol as ``expr`` does."""
    from reasonmaxxer.eval.arith import _LEVEL_FAMILIES

    for families in _LEVEL_FAMILIES.values():
        for fam in families:
            assert fam.heldout and set(fam.heldout).isdisjoint(fam.words), fam.op
            for template in fam.heldout:
                assert not re.search(r"[+*=]|\d\s*-\s*\d|\}\s*-\s*\{", template), template
