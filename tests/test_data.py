"""Benchmark loading: bundled files, user JSONL, arith specs, and one-line errors for bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from reasonmaxxer.errors import UserError
from reasonmaxxer.eval.data import (
    BUNDLED,
    Problem,
    benchmark_names,
    load_benchmark,
    load_benchmarks,
    split_specs,
)

EXPECTED_ROWS = {
    "gsm8k": 1319,
    "gsm8k_test": 1319,
    "gsm8k_train": 7473,
    "math500": 500,
    "math_train": 7498,
    "aime24": 30,
    "aime25": 30,
    "amc23": 40,
    "minerva_math": 272,
    "olympiadbench": 675,
}


def _write(path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_bundled_names_cover_expected():
    assert set(benchmark_names()) == set(EXPECTED_ROWS) == set(BUNDLED)


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_bundled_row_counts(name):
    problems = load_benchmark(name)
    assert len(problems) == EXPECTED_ROWS[name]
    assert all(isinstance(p, Problem) and p.benchmark == name for p in problems)
    assert all(p.problem and p.answer for p in problems)
    assert len({p.id for p in problems}) == len(problems)


def test_bundled_fields_and_limit():
    first = load_benchmark("gsm8k", limit=3)
    assert [p.id for p in first] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]
    assert first[0].answer == "18" and first[0].solution and "####" in first[0].solution
    assert "source" in first[0].meta
    assert load_benchmark("aime25", limit=0) == []
    assert all(p.solution is None for p in load_benchmark("amc23"))


def test_user_jsonl(tmp_path):
    path = _write(
        tmp_path / "mine.jsonl",
        [
            json.dumps({"id": "q1", "problem": "1+1?", "answer": "2", "solution": "1+1=2"}),
            "",
            json.dumps({"problem": "2+2?", "answer": 4, "tag": "x"}),
            json.dumps({"problem": "half?", "answer": 0.5}),
        ],
    )
    problems = load_benchmark(path)
    assert [p.id for p in problems] == ["q1", "mine-3", "mine-4"]
    assert [p.answer for p in problems] == ["2", "4", "0.5"]
    assert {p.benchmark for p in problems} == {"mine"}
    assert problems[0].solution == "1+1=2" and problems[1].solution is None
    assert problems[1].meta == {"tag": "x"}
    assert [p.id for p in load_benchmark(path, limit=2)] == ["q1", "mine-3"]


def test_user_jsonl_gz(tmp_path):
    path = tmp_path / "gz_bench.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"problem": "p", "answer": "a"}) + "\n")
    (p,) = load_benchmark(str(path))
    assert p.benchmark == "gz_bench" and p.id == "gz_bench-1"


def test_malformed_line_names_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [json.dumps({"problem": "p", "answer": "a"}), "{oops"])
    with pytest.raises(UserError, match=r"bad\.jsonl:2"):
        load_benchmark(path)


def test_missing_answer_names_line(tmp_path):
    path = _write(
        tmp_path / "noans.jsonl",
        [json.dumps({"problem": "p", "answer": "a"}), "", json.dumps({"problem": "q"})],
    )
    with pytest.raises(UserError, match=r"noans\.jsonl:3: .*answer"):
        load_benchmark(path)


def test_missing_problem_names_line(tmp_path):
    path = _write(tmp_path / "noprob.jsonl", [json.dumps({"answer": "a"})])
    with pytest.raises(UserError, match=r"noprob\.jsonl:1: .*problem"):
        load_benchmark(path)


def test_duplicate_ids(tmp_path):
    row = json.dumps({"id": "same", "problem": "p", "answer": "a"})
    path = _write(tmp_path / "dup.jsonl", [row, row])
    with pytest.raises(UserError, match=r"dup\.jsonl:2: duplicate id 'same' \(first on line 1\)"):
        load_benchmark(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_benchmark(str(tmp_path / "nope.jsonl"))


def test_unknown_name_lists_valid_names():
    with pytest.raises(UserError) as err:
        load_benchmark("gsm9k")
    msg = str(err.value)
    assert "gsm9k" in msg and "\n" not in msg
    assert all(name in msg for name in BUNDLED)


def test_bad_arith_parameter():
    with pytest.raises(UserError, match="bad arith parameter"):
        load_benchmark("arith:level=2,colour=red")
    with pytest.raises(UserError, match="level"):
        load_benchmark("arith:level=9")
    with pytest.raises(UserError, match="integer"):
        load_benchmark("arith:n=many")


def test_split_specs_keeps_arith_commas():
    assert split_specs("gsm8k,arith:level=2,n=50,math500") == [
        "gsm8k",
        "arith:level=2,n=50",
        "math500",
    ]
    assert split_specs("arith:level=1;arith:level=2 , n=5") == [
        "arith:level=1",
        "arith:level=2,n=5",
    ]
    assert split_specs("arith,level=3") == ["arith:level=3"]
    assert split_specs("a/b.jsonl, gsm8k,") == ["a/b.jsonl", "gsm8k"]


def test_load_benchmarks_comma_list_with_arith(tmp_path):
    path = _write(tmp_path / "tiny.jsonl", [json.dumps({"problem": "p", "answer": "1"})])
    out = load_benchmarks(f"aime24,arith:level=2,n=50,split=train,{path};arith", limit=None)
    assert list(out) == ["aime24", "arith-l2-train", "tiny", "arith-l2-eval"]
    assert [len(v) for v in out.values()] == [30, 50, 1, 500]
    assert all(p.benchmark == "arith-l2-train" for p in out["arith-l2-train"])


def test_load_benchmarks_list_and_limit():
    out = load_benchmarks(["amc23", "aime25,arith:level=1"], limit=5)
    assert list(out) == ["amc23", "aime25", "arith-l1-eval"]
    assert all(len(v) == 5 for v in out.values())


def test_arith_default_n_capped_to_split():
    assert len(load_benchmark("arith:level=1,split=train")) < 500


def test_load_benchmarks_errors():
    with pytest.raises(UserError, match="twice"):
        load_benchmarks("gsm8k,gsm8k")
    with pytest.raises(UserError, match="no benchmark"):
        load_benchmarks(" , ")
    with pytest.raises(UserError, match="unknown benchmark 'level=2'"):
        load_benchmarks("gsm8k,level=2")


def test_subset_options_level_n_per_level_and_n(tmp_path):
    path = tmp_path / "levels.jsonl"
    rows = [
        {"id": f"q{i}", "problem": f"p{i}", "answer": "1", "level": f"Level {1 + i % 5}"}
        for i in range(20)
    ]  # levels 1..5, four rows each: q0 L1, q1 L2, ..., q4 L5, q5 L1, ...
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_level = load_benchmark(f"{path}:level=3-4")
    assert [p.id for p in by_level] == ["q2", "q3", "q7", "q8", "q12", "q13", "q17", "q18"]
    strat = load_benchmark(f"{path}:level=3-5,n_per_level=2,seed=0")
    levels = [p.meta["level"] for p in strat]
    assert sorted(levels) == ["Level 3"] * 2 + ["Level 4"] * 2 + ["Level 5"] * 2
    assert [int(p.id[1:]) for p in strat] == sorted(int(p.id[1:]) for p in strat)  # file order
    five = load_benchmark(f"{path}:n=5,seed=3")
    assert len(five) == 5 and five == load_benchmark(f"{path}:n=5,seed=3")  # seeded
    assert five != load_benchmark(f"{path}:n=5,seed=4")
    assert len(load_benchmark(f"{path}:n=50")) == 20  # more than there are: all of them
    # in a spec list, the options stay with their spec
    assert list(load_benchmarks(f"{path}:n=3,seed=1,arith:level=1,n=2")) == [
        "levels",
        "arith-l1-eval",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("math_train:level=3-5", "no `level` field"),
        ("math_train:n=0", "n must be >= 1"),
        ("math_train:n=many", "n must be an integer"),
        ("math_train:colour=red", "bad option"),
        ("math_train:n=1,n=2", "given twice"),
    ],
)
def test_subset_options_bad_input(spec, message):
    with pytest.raises(UserError, match=message):
        load_benchmark(spec)
