"""benchmarks/vs_grpo.py: the time-to-reach ratio and the table, on hand-made run folders."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vs_grpo.py"
BENCH = "toy-eval"
KEY = f"eval/{BENCH}/pass@1"


@pytest.fixture(scope="module")
def vs():
    spec = importlib.util.spec_from_file_location("vs_grpo", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


EVALS = [
    {"step": 0, "wall_time_s": 0.0, KEY: 0.30},
    {"step": 10, "wall_time_s": 300.0, KEY: 0.36},
    {"step": 20, "wall_time_s": 600.0, KEY: 0.42},
    {"step": 30, "wall_time_s": 900.0, KEY: 0.40},
]


def test_time_to_reach(vs):
    r = vs.time_to_reach(EVALS, KEY, 0.40)
    assert r["reached"] and r["reached_at_s"] == 600.0 and r["reached_at_step"] == 20
    assert (r["best"], r["best_at_s"]) == (0.42, 600.0)
    r = vs.time_to_reach(EVALS, KEY, 0.50)
    assert not r["reached"] and r["reached_at_s"] is None
    assert (r["best"], r["best_at_step"]) == (0.42, 20)


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in obj))
    else:
        path.write_text(json.dumps(obj))


def _eval(folder: Path, correct: list[bool]) -> None:
    n, c = len(correct), sum(correct)
    _write(
        folder / "results.json",
        {"benchmarks": {BENCH: {"n": n, "pass@1": c / n, "pass@1_ci95": [0.0, 1.0]}}},
    )
    rows = [
        {"benchmark": BENCH, "id": f"p{i}", "sample": "greedy", "correct": ok}
        for i, ok in enumerate(correct)
    ]
    _write(folder / "samples.jsonl", rows)


def _work(tmp_path: Path, target: float) -> Path:
    work = tmp_path / "work"
    prov = {"host": {"argv": ["reasonmaxxer", "run"]}}
    base = [True, False, False, False]
    rm = [True, True, True, False]
    grpo = [True, True, False, False]
    _eval(work / "rm" / "eval" / "base", base)
    _eval(work / "rm" / "eval" / "adapter", rm)
    _eval(work / "grpo" / "eval_full", grpo)
    stages = {"sample": 100.0, "select": 20.0, "train": 80.0, "eval_base": 999.0}
    _write(
        work / "rm" / "manifest.json",
        {
            "stages": {k: {"wall_time_s": v, "peak_rss_mib": 900.0} for k, v in stages.items()},
            "counts": {"rollout_tokens": 5000},
            "comparison": {BENCH: {"pass@1_mcnemar": {"gained": 2, "lost": 0, "p_value": 0.5}}},
            "config": {},
            "provenance": prov,
        },
    )
    _write(work / "rm" / "train.json", {"tokens_processed": 7000, "steps": 12})
    timing = {"train": 960.0, "generation": 500.0, "reward": 10.0, "rollout_other": 50.0}
    _write(
        work / "grpo" / "manifest.json",
        {
            "timing_s": {**timing, "optimisation": 400.0},
            "tokens": {"generated": 90000, "forward_backward": 120000},
            "steps": 32,
            "stopped_by": "time_budget",
            "peak_rss_mib": 1500.0,
            "evals": EVALS,
            "config": {},
            "provenance": prov,
        },
    )
    _write(
        work / "rm_curve_eval.json",
        {"metrics": {KEY: target}, "benchmarks": {BENCH: {"n": 100}}},
    )
    return work


def test_summary_ratio_and_table(vs, tmp_path):
    s = vs.summarize(_work(tmp_path, target=0.40), ["cmd"])
    m = s["methods"]
    # ReasonMaxxer's cost is sample + select + train = 200 s; its evals are not counted.
    assert m["reasonmaxxer"]["train_s"] == 200.0
    assert m["grpo"]["scoring_s"] == 60.0 and m["grpo"]["optimizer_steps"] == 32
    assert (m["base"]["pass@1"], m["reasonmaxxer"]["pass@1"], m["grpo"]["pass@1"]) == (
        0.25,
        0.75,
        0.5,
    )
    assert m["base"]["subset_pass@1"] == 0.30  # GRPO's step-0 eval
    t = s["time_to_reach"]
    assert t["reached"] and t["ratio"] == pytest.approx(600.0 / 200.0)
    assert t["grpo_time_to_its_best_over_rm"] == pytest.approx(3.0)
    # paired: GRPO vs base gains p1 only; ReasonMaxxer vs GRPO gains p2 only
    g = s["paired_tests"]["grpo_vs_base"]["pass@1_mcnemar"]
    assert (g["gained"], g["lost"]) == (1, 0)
    r = s["paired_tests"]["reasonmaxxer_vs_grpo"]["pass@1_mcnemar"]
    assert (r["gained"], r["lost"]) == (1, 0)
    md = vs.table(s)
    assert "**3.0x**" in md and "3.3 min" in md and "not" not in md

    s = vs.summarize(_work(tmp_path / "b", target=0.50), ["cmd"])
    t = s["time_to_reach"]
    # not reached: the whole 960 s budget over 200 s is a lower bound
    assert not t["reached"] and t["ratio_is_lower_bound"] and t["ratio"] == pytest.approx(4.8)
    assert "**> 4.8x**" in vs.table(s)
    vs.plot(s, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
