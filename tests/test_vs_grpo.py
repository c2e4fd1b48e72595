"""benchmarks/vs_grpo.py (and its vs_grpo_race.py): the time-to-reach ratio, the rounds curve,
the race to GRPO's final accuracy and the table, on hand-made run folders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark_script

BENCH = "toy-eval"
KEY = f"eval/{BENCH}/pass@1"


@pytest.fixture(scope="module")
def vs():
    return load_benchmark_script("vs_grpo")


@pytest.fixture(scope="module")
def rc(vs):
    return sys.modules["vs_grpo_race"]


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


def _work(tmp_path: Path, target: float, rm_extra: dict | None = None) -> Path:
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
            **(rm_extra or {}),
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
    assert "**3.0x**" in md and "3.3 min" in md
    assert "not" not in "\n".join(vs._reach_lines(s))

    s = vs.summarize(_work(tmp_path / "b", target=0.50), ["cmd"])
    t = s["time_to_reach"]
    # not reached: the whole 960 s budget over 200 s is a lower bound
    assert not t["reached"] and t["ratio_is_lower_bound"] and t["ratio"] == pytest.approx(4.8)
    assert "**> 4.8x**" in vs.table(s)
    vs.plot(s, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


# Three rounds on a 20-problem curve subset. Round costs (s) by stage, hand-chosen:
# r1 = 100 + 20 + 80 = 200; r2 = 5 + 90 + 20 + 85 = 200; r3 = 6 + 94 + 20 + 60 = 180,
# so the rounds sit at 200, 400 and 580 s; evals (999 s) are not counted.
ROUND_STAGES = {
    "sample": 100.0,
    "select": 20.0,
    "train": 80.0,
    "eval_base": 999.0,
    "eval_adapter": 999.0,
    "round2/policy": 5.0,
    "round2/sample": 90.0,
    "round2/select": 20.0,
    "round2/train": 85.0,
    "round2/eval_adapter": 999.0,
    "round3/policy": 6.0,
    "round3/sample": 94.0,
    "round3/select": 20.0,
    "round3/train": 60.0,
    "round3/eval_adapter": 999.0,
}
N_RIGHT = {1: 7, 2: 13, 3: 14}  # the first N of the 20 subset problems right: 35%, 65%, 70%


# Each round's selection over 10 training problems at k = 4 (round 3 has none on disk):
# round 1: pass counts 0,0,0,1,2,2,3,4,4,4 -> 3 never, 3 always, 4 mixed, mean 20/40 = 50%;
# round 2: 0,1,4,4,4,4,4,4,4,4 -> 1 never, 8 always, 1 mixed, mean 33/40 = 82.5%.
SELECTIONS = {
    1: {"pass_count_hist": [3, 1, 2, 1, 3], "k": 4, "problems_kept": 4, "entropy_mean": 0.61},
    2: {"pass_count_hist": [1, 1, 0, 0, 8], "k": 4, "problems_kept": 1, "entropy_mean": 0.305},
}


def _rounds_work(tmp_path: Path) -> Path:
    full = {1: 0.75, 2: 0.8, 3: 0.85}
    entries = [{"round": r, "comparison": {BENCH: {"adapter_pass@1": full[r]}}} for r in (1, 2, 3)]
    extra = {
        "stages": {k: {"wall_time_s": v, "peak_rss_mib": 900.0} for k, v in ROUND_STAGES.items()},
        "config": {"rounds": 3, "sample": {"temperature": 0.7, "top_p": 0.95}},
        "rounds": entries,
    }
    work = _work(tmp_path, target=0.35, rm_extra=extra)
    for r, right in N_RIGHT.items():
        name = "rm_curve_eval.json" if r == 1 else f"rm_curve_eval_round{r}.json"
        correct = {BENCH: {f"q{i}": i < right for i in range(20)}}
        rec = {"metrics": {KEY: right / 20}, "benchmarks": {BENCH: {"n": 20}}, "correct": correct}
        _write(work / name, rec)
    for r, sel in SELECTIONS.items():
        _write(work / "rm" / ("" if r == 1 else f"round{r}") / "selection.json", sel)
    grpo = json.loads((work / "grpo" / "manifest.json").read_text())
    grpo["config"] = {"temperature": 1.0, "top_p": 1.0}
    _write(work / "grpo" / "manifest.json", grpo)
    return work


def test_rounds_curve_race_and_table(vs, rc, tmp_path):
    s = vs.summarize(_rounds_work(tmp_path), ["cmd"])
    rounds = s["rounds"]
    assert [r["round_s"] for r in rounds] == [200.0, 200.0, 180.0]
    assert [r["cumulative_s"] for r in rounds] == [200.0, 400.0, 580.0]
    assert rounds[1]["stages_s"] == {"policy": 5.0, "sample": 90.0, "select": 20.0, "train": 85.0}
    assert [r["full_pass@1"] for r in rounds] == [0.75, 0.8, 0.85]
    # gains over the round before; round 0 is GRPO's step-0 eval of the base (30%)
    assert [r["gain"] for r in rounds] == pytest.approx([0.05, 0.30, 0.05])
    assert rounds[0]["gain_per_min"] == pytest.approx(0.05 / (200 / 60))
    # r2 vs r1: 6 gained, 0 lost: p = 2 / 2^6; r3 vs r2: 1 gained: p = 1
    assert rounds[0]["vs_previous"] is None  # no per-problem record of the base
    mc2, mc3 = rounds[1]["vs_previous"], rounds[2]["vs_previous"]
    assert (mc2["gained"], mc2["lost"], mc2["p_value"]) == (6, 0, pytest.approx(2 / 64))
    assert (mc3["gained"], mc3["lost"], mc3["p_value"]) == (1, 0, 1.0)
    x = s["race"]
    # GRPO ends at 40% (900 s; first at 600 s); round 2 (65%, 400 s) is the first to reach it
    assert (x["grpo_final"], x["grpo_final_at_s"], x["grpo_first_at_s"]) == (0.40, 900.0, 600.0)
    assert x["reached"] and x["reached_round"] == 2 and x["reached_at_s"] == 400.0
    assert x["ratio"] == pytest.approx(400 / 900) and not x["target_met"]
    assert (x["best_round"], x["best"], x["best_at_s"]) == (3, 0.70, 580.0)
    assert x["flattens_at_round"] == 3  # +5 pp, but p = 1
    assert s["methods"]["reasonmaxxer"]["train_s"] == 200.0  # round 1 alone
    assert s["sampling"]["grpo"] == {"temperature": 1.0, "top_p": 1.0}
    assert not s["sampling"]["same"]
    md = vs.table(s)
    assert (
        "| 2 | 3.3 min | 6.7 min | 65.0% | +30.0 pp | +6/−0, p = 0.031 | +9.00 pp | 80.0% |" in md
    )
    assert "in round 2, after 6.7 min: **0.44x** GRPO's time (target <= 0.20x: not met)" in md
    assert "flattens at round 3" in md and "**different**" in md
    assert "ReasonMaxxer (round 1)" in md
    p1, p2, p3 = s["pools"]
    assert p1 == {
        "problems": 10,
        "all_right": 3,
        "none_right": 3,
        "mixed": 4,
        "kept": 4,
        "mean_pass": 0.5,
        "entropy_mean": 0.61,
    }
    assert (p2["all_right"], p2["none_right"], p2["mixed"], p2["mean_pass"]) == (8, 1, 1, 0.825)
    assert p3 is None
    assert "| 2 | round 1's policy | 82.5% | 8 | 1 | 1 (1) | 0.30 |" in md
    # the curve flattens at round 3, whose pool is unknown: no sentence about it
    assert "What round" not in md
    s["race"]["flattens_at_round"] = 2
    assert rc.why_flat(s) == (
        "What round 2 had to learn from, against round 1 (table below): the sampling policy's "
        "mean pass rate on the 10 training problems 50.0% → 82.5%; solved by all k rollouts "
        "3 → 8; mixed success 4 → 1; never solved 3 → 1."
    )
    vs.plot(s, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def _row(r: int, cum: float, acc: float, gain: float, p: float | None = None) -> dict:
    mc = None if p is None else {"gained": 1, "lost": 0, "n": 20, "p_value": p}
    return {"round": r, "cumulative_s": cum, "subset_pass@1": acc, "gain": gain, "vs_previous": mc}


CURVE = [
    {"step": 0, "wall_time_s": 0.0, "pass@1": 0.2},
    {"step": 9, "wall_time_s": 3600.0, "pass@1": 0.6},
]


def test_race_met_not_reached_and_flattening(rc):
    # round 2 at 12 min reaches GRPO's 60-min 60%: 720 / 3600 = 0.2, the target exactly
    met = rc.race([_row(1, 300.0, 0.5, 0.3), _row(2, 720.0, 0.6, 0.1, p=0.01)], CURVE)
    assert met["reached_round"] == 2 and met["ratio"] == pytest.approx(0.2) and met["target_met"]
    assert met["flattens_at_round"] is None
    # never reached: no ratio; a round that loses ground flattens the curve
    miss = rc.race([_row(1, 300.0, 0.5, 0.3), _row(2, 600.0, 0.45, -0.05)], CURVE)
    assert not miss["reached"] and miss["ratio"] is None and not miss["target_met"]
    assert (miss["best_round"], miss["flattens_at_round"]) == (1, 2)
    assert rc.flattens_at([_row(1, 1, 0.5, 0.3), _row(2, 2, 0.5, 0.0)]) == 2  # no gain at all
    s = {"race": miss, "rounds": [{}, {}], "sampling": rc.sampling({}, {})}
    lines = rc.race_lines(s)
    assert "does **not** reach" in lines[0] and "best is 50.0% (round 1, 5.0 min)" in lines[0]
    assert "flattens at round 2" in lines[1] and "(the same)" in lines[2]


def test_round_curve_without_per_problem_records(rc):
    # an older round-1 cache has no per-problem results: no paired test, accuracies still join
    costs = rc.round_costs({k: {"wall_time_s": v} for k, v in ROUND_STAGES.items()}, 2)
    curves = [{"metrics": {KEY: 0.5}}, {"metrics": {KEY: 0.6}, "correct": {BENCH: {"q0": True}}}]
    rows = rc.round_curve(costs, curves, [None, None], KEY, 0.25)
    assert [r["vs_previous"] for r in rows] == [None, None]
    assert [r["gain"] for r in rows] == pytest.approx([0.25, 0.1])
    assert rows[1]["gain_per_min"] == pytest.approx(0.1 / (200 / 60))


def test_round_base_follows_round_models(vs):
    cfg = {"model": {"model": "base-model"}, "round_from": "merged", "round_anchor": "base"}
    rm = Path("w/rm")
    assert vs.round_base(rm, 1, cfg) is None
    assert vs.round_base(rm, 3, cfg) == str(rm / "round3" / "policy")
    assert vs.round_base(rm, 3, {**cfg, "round_from": "adapter"}) is None
    assert vs.curve_cache(Path("w"), 1).name == "rm_curve_eval.json"
    assert vs.curve_cache(Path("w"), 2).name == "rm_curve_eval_round2.json"


def test_rounds_zero_is_an_error(vs, capsys):
    assert vs.main(["--rounds", "0", "--work", "/nonexistent/x", "--out", "/nonexistent/y"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --rounds must be >= 1; got 0"]


@pytest.mark.slow
def test_two_rounds_end_to_end_on_a_tiny_model(
    vs, tmp_path, digit_model_dir, cache_dir, monkeypatch
):
    """The whole script, --rounds 2, on the digit model (about a minute on one CPU thread)."""
    from conftest import cli_env
    from test_pipeline import _sets

    for k, v in cli_env(cache_dir).items():
        monkeypatch.setenv(k, v)
    sets = [s for s in _sets(tmp_path) if not s.startswith("eval.k=")] + ["eval.k=2"]
    evalset = next(s.split("=", 1)[1] for s in sets if s.startswith("eval.benchmarks="))
    trainset = next(s.split("=", 1)[1] for s in sets if s.startswith("sample.train="))
    rm_args = f"--model {digit_model_dir} " + " ".join(f"--set {s}" for s in sets)
    grpo_args = (
        f"--model {digit_model_dir} --threads 1 --train {trainset} --eval-benchmarks {evalset} "
        "--num-generations 4 --batch-size 4 --max-completion-length 8 --eval-max-new-tokens 8 "
        "--max-steps 2 --lora-r 4 --lora-alpha 8"
    )
    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["--work", str(work), "--out", str(out), "--rounds", "2", "--grpo-minutes", "1"]
    assert (
        vs.main([*argv, "--eval-every", "1", "--rm-args", rm_args, "--grpo-args", grpo_args]) == 0
    )
    s = json.loads((out / "vs_grpo.json").read_text())
    stages = json.loads((work / "rm" / "stages.json").read_text())
    r1 = sum(stages[k]["wall_time_s"] for k in ("sample", "select", "train"))
    r2 = sum(stages[f"round2/{k}"]["wall_time_s"] for k in ("policy", "sample", "select", "train"))
    assert [r["cumulative_s"] for r in s["rounds"]] == pytest.approx([r1, r1 + r2])
    rec = json.loads((work / "rm_curve_eval_round2.json").read_text())
    assert rec["adapter"].endswith("round2/adapter") and len(rec["correct"]["sevens_eval"]) == 8
    assert s["rounds"][1]["vs_previous"]["n"] == 8  # paired on the same 8 problems
    assert s["sampling"]["same"] and (out / "vs_grpo.png").is_file()
    assert "| 2 |" in (out / "vs_grpo.md").read_text()
