"""The race half of ``vs_grpo.py``: ReasonMaxxer's rounds as a curve against GRPO's, as pure
functions from a run's records to numbers and markdown (tested on hand-made folders in
``tests/test_vs_grpo.py``).

A round's cost is the wall time of the method's stages (``RM_STAGES``; round r >= 2 also its
``policy`` stage, the merge of adapter r-1 that round r samples from); evals are measurement.
Its accuracy is the same greedy curve eval GRPO's periodic eval runs (same subset, precision
and decoding), so the two curves share one axis.
"""

from __future__ import annotations

from reasonmaxxer.stats import format_p, mcnemar_exact

RM_STAGES = ("sample", "select", "train")  # the method's cost; evals are measurement
ROUND_STAGES = ("policy", *RM_STAGES)  # round r >= 2 first folds adapter r-1 into its weights
TARGET_RATIO = 0.2  # issue 13: GRPO's final accuracy in at most 1/5 of GRPO's time
FLAT_P = 0.05  # a round whose paired gain over the one before is not significant adds nothing


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def time_to_reach(evals: list[dict], key: str, target: float) -> dict:
    """First periodic eval at or above ``target``, and the best one, from GRPO's eval rows."""
    rows = [e for e in evals if key in e]
    hit = next((e for e in rows if e[key] >= target - 1e-12), None)
    best = max(rows, key=lambda e: (e[key], -e["wall_time_s"]))
    return {
        "target": target,
        "reached": hit is not None,
        "reached_at_s": hit["wall_time_s"] if hit else None,
        "reached_at_step": hit["step"] if hit else None,
        "best": best[key],
        "best_at_s": best["wall_time_s"],
        "best_at_step": best["step"],
    }


def round_costs(stages: dict, n: int) -> list[dict]:
    """Per round r = 1..n: its method stages' wall times (s), their sum ``round_s`` and the sum
    over rounds 1..r ``cumulative_s``, from a run's ``manifest["stages"]`` (stage names
    prefixed ``round{r}/`` for r >= 2; evals are not counted)."""
    rows, total = [], 0.0
    for r in range(1, n + 1):
        prefix, names = ("", RM_STAGES) if r == 1 else (f"round{r}/", ROUND_STAGES)
        parts = {name: stages[prefix + name]["wall_time_s"] for name in names}
        total += sum(parts.values())
        rows.append(
            {"round": r, "stages_s": parts, "round_s": sum(parts.values()), "cumulative_s": total}
        )
    return rows


def round_curve(
    costs: list[dict], curves: list[dict], full: list, key: str, base_acc: float
) -> list[dict]:
    """``costs`` (:func:`round_costs`) joined with each round's curve-eval record and full-eval
    greedy pass@1 (``curves[r-1]``, ``full[r-1]``): its curve-eval accuracy on ``key``, the gain
    over the round before (round 0: ``base_acc``, the base on the same subset), that gain per
    minute of the round, and a paired McNemar test against the round before where both
    records hold per-problem results."""
    bench = key.split("/")[1]
    rows, prev_acc, prev = [], base_acc, None
    for cost, ev, full_acc in zip(costs, curves, full, strict=True):
        acc = ev["metrics"][key]
        now = ev.get("correct", {}).get(bench)
        mc = mcnemar_exact([prev[i] for i in now], list(now.values())) if now and prev else None
        per_min = (acc - prev_acc) / (cost["round_s"] / 60) if cost["round_s"] > 0 else None
        rows.append(
            {
                **cost,
                "subset_pass@1": acc,
                "full_pass@1": full_acc,
                "gain": acc - prev_acc,
                "gain_per_min": per_min,
                "vs_previous": mc,
            }
        )
        prev_acc, prev = acc, now
    return rows


def flattens_at(rounds: list[dict]) -> int | None:
    """The first round r >= 2 that adds nothing detectable over round r-1 (a gain <= 0, or a
    paired McNemar p >= ``FLAT_P``); None while every round still gains."""
    for r in rounds[1:]:
        mc = r["vs_previous"]
        if r["gain"] <= 0 or (mc is not None and mc["p_value"] >= FLAT_P):
            return r["round"]
    return None


def race(rounds: list[dict], grpo_curve: list[dict]) -> dict:
    """The issue's target: the cumulative time of the first round at or above GRPO's final
    curve-eval accuracy, over GRPO's training time at that final eval (met at <=
    ``TARGET_RATIO``); plus the best round and where the rounds curve flattens."""
    final = grpo_curve[-1]
    goal = final["pass@1"] - 1e-12
    first = next(c for c in grpo_curve if c["pass@1"] >= goal)
    hit = next((r for r in rounds if r["subset_pass@1"] >= goal), None)
    ratio = hit["cumulative_s"] / final["wall_time_s"] if hit and final["wall_time_s"] else None
    best = max(rounds, key=lambda r: (r["subset_pass@1"], -r["round"]))
    return {
        "grpo_final": final["pass@1"],
        "grpo_final_at_s": final["wall_time_s"],
        "grpo_first_at_s": first["wall_time_s"],
        "reached": hit is not None,
        "reached_round": hit["round"] if hit else None,
        "reached_at_s": hit["cumulative_s"] if hit else None,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "target_met": ratio is not None and ratio <= TARGET_RATIO,
        "best_round": best["round"],
        "best": best["subset_pass@1"],
        "best_at_s": best["cumulative_s"],
        "flattens_at_round": flattens_at(rounds),
    }


def round_pool(selection: dict) -> dict:
    """What a round's sampling policy left to learn from, from its ``selection.json``: the
    training problems solved by all ``k`` rollouts, by none, and by some (the mixed-success
    pool selection draws from), the policy's mean pass rate over them, and the mean entropy
    (nats) of the kept rollouts' tokens under the model that scored them: the base in round 1,
    the round's sampling policy after."""
    hist, k = selection["pass_count_hist"], selection["k"]
    total = sum(hist)
    return {
        "problems": total,
        "all_right": hist[k],
        "none_right": hist[0],
        "mixed": total - hist[k] - hist[0],
        "kept": selection["problems_kept"],
        "mean_pass": sum(c * n for c, n in enumerate(hist)) / (k * total) if total else None,
        "entropy_mean": selection.get("entropy_mean"),
    }


def pool_table(s: dict) -> list[str]:
    """Per round, the training problems as its sampling policy saw them (markdown rows)."""
    rows = [
        "| round | sampled from | mean pass rate on the training problems | all k right | "
        "none right | mixed (kept) | mean token entropy of the kept rollouts |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, p in enumerate(s["pools"], start=1):
        if p is None:
            continue
        source = "base" if r == 1 else f"round {r - 1}'s policy"
        ent = "-" if p["entropy_mean"] is None else f"{p['entropy_mean']:.2f}"
        rows.append(
            f"| {r} | {source} | {pct(p['mean_pass'])} | {p['all_right']} | {p['none_right']} | "
            f"{p['mixed']} ({p['kept']}) | {ent} |"
        )
    return rows


def why_flat(s: dict) -> str | None:
    """The flattening round's pool against round 1's, in words (None when the curve has not
    flattened or either pool is unknown)."""
    f, pools = s["race"]["flattens_at_round"], s.get("pools") or []
    if not f or len(pools) < f or pools[0] is None or pools[f - 1] is None:
        return None
    a, b = pools[0], pools[f - 1]
    return (
        f"What round {f} had to learn from, against round 1 (table below): the sampling "
        f"policy's mean pass rate on the {b['problems']} training problems "
        f"{pct(a['mean_pass'])} → {pct(b['mean_pass'])}; solved by all k rollouts "
        f"{a['all_right']} → {b['all_right']}; mixed success {a['mixed']} → {b['mixed']}; "
        f"never solved {a['none_right']} → {b['none_right']}."
    )


def sampling(rm_cfg: dict, grpo_cfg: dict) -> dict:
    """Both methods' rollout temperature and top-p as run (from their resolved configs)."""
    s = {
        "grpo": {k: grpo_cfg.get(k) for k in ("temperature", "top_p")},
        "reasonmaxxer": {k: rm_cfg.get("sample", {}).get(k) for k in ("temperature", "top_p")},
    }
    return {**s, "same": s["grpo"] == s["reasonmaxxer"]}


def rounds_table(s: dict) -> list[str]:
    """ReasonMaxxer's accuracy per round against its cumulative method time (markdown rows)."""
    rows = [
        f"| round | method time | cumulative | curve eval pass@1 (first {s['curve_subset_n']}) | "
        "gain | vs previous round (paired) | gain per min | full eval pass@1 |",
        "|---|---|---|---|---|---|---|---|",
        f"| base | - | 0.0 min | {pct(s['methods']['base']['subset_pass@1'])} | | | | |",
    ]
    for r in s["rounds"]:
        mc = r["vs_previous"]
        paired = f"+{mc['gained']}/−{mc['lost']}, p = {format_p(mc['p_value'])}" if mc else "-"
        per_min = "-" if r["gain_per_min"] is None else f"{100 * r['gain_per_min']:+.2f} pp"
        rows.append(
            f"| {r['round']} | {r['round_s'] / 60:.1f} min | {r['cumulative_s'] / 60:.1f} min | "
            f"{pct(r['subset_pass@1'])} | {100 * r['gain']:+.1f} pp | {paired} | {per_min} | "
            f"{pct(r['full_pass@1'])} |"
        )
    return rows


def race_lines(s: dict) -> list[str]:
    """The issue's target and where the rounds curve flattens, in words."""
    x, smp = s["race"], s["sampling"]
    goal = (
        f"GRPO's final curve-eval accuracy ({pct(x['grpo_final'])} at "
        f"{x['grpo_final_at_s'] / 60:.1f} min; first reached at "
        f"{x['grpo_first_at_s'] / 60:.1f} min)"
    )
    if x["reached"]:
        verdict = "met" if x["target_met"] else "not met"
        lines = [
            f"**Race:** ReasonMaxxer reaches {goal} in round {x['reached_round']}, after "
            f"{x['reached_at_s'] / 60:.1f} min: **{x['ratio']:.2f}x** GRPO's time (target <= "
            f"{x['target_ratio']:.2f}x: {verdict})."
        ]
    else:
        lines = [
            f"**Race:** ReasonMaxxer does **not** reach {goal} in {len(s['rounds'])} round(s); "
            f"its best is {pct(x['best'])} (round {x['best_round']}, "
            f"{x['best_at_s'] / 60:.1f} min)."
        ]
    f = x["flattens_at_round"]
    lines.append(
        f"The rounds curve flattens at round {f}: it adds no gain over round {f - 1}, or none a "
        f"paired McNemar test detects at p < {FLAT_P} (gain per round in the table)."
        if f
        else f"The rounds curve has not flattened within {len(s['rounds'])} round(s)."
    )
    if why := why_flat(s):
        lines.append(why)
    g, r = smp["grpo"], smp["reasonmaxxer"]
    lines.append(
        f"Rollout sampling: GRPO T = {g['temperature']} / top-p {g['top_p']}, ReasonMaxxer T = "
        f"{r['temperature']} / top-p {r['top_p']}"
        + (" (the same)." if smp["same"] else " (**different**: measured as run, not equalised).")
    )
    return lines
