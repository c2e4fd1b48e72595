"""benchmarks/compare_evals.py: pass@1 per run, mean ± sd per group and the paired tests,
against values worked out by hand on four problems."""

import json
import math
import subprocess
import sys

import pytest
from conftest import BENCHMARKS, load_benchmark_script


def _eval(folder, correct):
    folder.mkdir(parents=True)
    rows = [
        {"benchmark": "b", "id": str(i), "sample": "greedy", "correct": c}
        for i, c in enumerate(correct)
    ]
    rows.append({"benchmark": "b", "id": "0", "sample": "s1", "correct": True})  # not greedy
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_groups_and_pairs_by_hand(tmp_path):
    mod = load_benchmark_script("compare_evals")
    groups = {
        "a": [_eval(tmp_path / "a1", [1, 0, 0, 0]), _eval(tmp_path / "a2", [1, 1, 0, 0])],
        "b": [_eval(tmp_path / "b1", [1, 1, 1, 0]), _eval(tmp_path / "b2", [0, 1, 1, 1])],
    }
    record = mod.compare(groups)
    assert record["n"] == 4
    assert record["groups"]["a"]["pass@1"] == [0.25, 0.5]
    assert record["groups"]["a"]["mean"] == pytest.approx(0.375)
    assert record["groups"]["a"]["sd"] == pytest.approx(0.1767767)  # sd of (0.25, 0.5)
    assert record["groups"]["b"]["mean"] == pytest.approx(0.75)
    (pair,) = record["pairs"]
    first, second = pair["run_by_run"]
    assert (first["gained"], first["lost"]) == (2, 0)  # a1 -> b1: problems 1, 2 gained
    assert (second["gained"], second["lost"]) == (2, 1)  # a2 -> b2: 2, 3 gained, 0 lost
    assert first["p_value"] == pytest.approx(0.5)  # 2 * P(Bin(2, 1/2) = 0)
    # seed-averaged: a = (1, .5, 0, 0), b = (.5, 1, 1, .5): mean difference 0.375
    assert pair["seed_averaged"]["diff"] == pytest.approx(0.375)
    # Welch over runs: a (.25, .5) var 1/32, b (.75, .75) var 0: t = .375 / sqrt(1/64) = 3 on
    # 1 df, the Cauchy: p = 1 - 2 atan(3) / pi
    w = pair["seed_level"]
    assert (w["t"], w["df"]) == (pytest.approx(3.0), pytest.approx(1.0))
    assert w["p_value"] == pytest.approx(1 - 2 * math.atan(3) / math.pi, abs=1e-6)


def test_folders_on_other_problems_are_one_error_line(tmp_path):
    a = _eval(tmp_path / "a", [1, 0])
    b = _eval(tmp_path / "b", [1, 0, 1])
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare_evals.py"), "--out", str(out)]
        + ["--group", "x", str(a), "--group", "y", str(b)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "scores other problems" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_against_one_group_with_holm_by_hand(tmp_path):
    mod = load_benchmark_script("compare_evals")
    groups = {
        "x": [_eval(tmp_path / "x1", [1] * 8), _eval(tmp_path / "x2", [1] * 8)],
        "base": [_eval(tmp_path / "b", [0] * 8)],
        "y": [_eval(tmp_path / "y1", [0] * 8)],
    }
    record = mod.compare(groups, against="base")
    assert [p["groups"] for p in record["pairs"]] == [["base", "x"], ["base", "y"]]
    sx, sy = (p["seed_averaged"] for p in record["pairs"])
    # x beats the base on every problem: no resample reaches 0, p 0, entered as its bound
    # 2/2000; y is the base: every difference 0, p 1. Holm: 2 x 0.001 = 0.002 and
    # max(0.002, 1) = 1.
    assert (sx["diff"], sx["p_value"], sy["diff"], sy["p_value"]) == (1.0, 0.0, 0.0, 1.0)
    assert sx["holm_p"] == pytest.approx(0.002) and sx["holm_p_is_bound"]
    assert sy["holm_p"] == 1.0 and not sy["holm_p_is_bound"]
    assert "| ≤ 0.002 |" in mod.markdown(record)
    assert len(mod.compare(groups)["pairs"]) == 3  # without --against: every pair


def test_against_an_unknown_group_is_one_error_line(tmp_path):
    a = _eval(tmp_path / "a", [1, 0])
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare_evals.py"), "--out", str(tmp_path / "r.json")]
        + ["--group", "x", str(a), "--against", "nope"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "--against nope: no such --group" in proc.stderr.strip().splitlines()[-1]
