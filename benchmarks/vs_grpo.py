"""ReasonMaxxer vs full RL (TRL GRPO), measured side by side on one machine.

    python benchmarks/vs_grpo.py --work runs/vs_grpo --out benchmarks/results/vs_grpo \
        --grpo-minutes 60 --rounds 3

Same model, training problems, prompts, reward, rollout sampling (T, top-p, length, K) and LoRA
shape, same held-out problems: ``reasonmaxxer grpo`` takes the model, prompt, problems and
sampling from the packaged default config (``grpo_defaults``; T = 0.7 / top-p 0.95 today), its
LoRA shape from the ``LoraSpec`` defaults (equal to the packaged config's). ``--rm-args`` and
``--grpo-args`` can still make them differ: the table states both methods' T / top-p as run.
Until 2026-12-01 GRPO sampled at T = 1.0 / top-p 1.0 against ReasonMaxxer's 0.7 / 0.95:
``results/vs_grpo_T1.0_2threads`` was measured that way; ``results/vs_grpo`` (2026-12-02) at
0.7 / 0.95 on both sides, the two run side by side with one thread each.
Steps, each skipped when its output already exists, so an interrupted comparison resumes:

1. ``reasonmaxxer run --rounds N --out WORK/rm``: ReasonMaxxer with the default config (sample,
   select, train, then eval of base and adapter on the full eval set; rounds 2..N in
   ``rm/round{r}/``, each resampling from the previous round's policy).
2. ``reasonmaxxer grpo --out WORK/grpo --max-minutes M``: GRPO with a periodic greedy pass@1 on
   the first ``--eval-limit`` eval problems (the accuracy-vs-wall-time curve).
3. Every round's ReasonMaxxer adapter through that same periodic-eval procedure (GRPO's
   precision: float32 weights, bf16 autocast only where ``auto`` picks it, on a CUDA GPU;
   greedy; same subset), so the two curves compare like with like.
4. ``eval`` of GRPO's final adapter with the ReasonMaxxer run's eval config (the full eval set,
   greedy and avg@k), paired with the base and ReasonMaxxer evals of step 1.

Round r sits at the cumulative method time of rounds 1..r: sample + select + train, plus for
r >= 2 the ``policy`` stage (adapter r-1 folded into the weights round r samples from). Evals
are measurement and are not counted, on either side.

Writes ``OUT/vs_grpo.json`` (every number, the commands, versions), ``OUT/vs_grpo.md`` (the
tables and the race: ReasonMaxxer's time to GRPO's final accuracy, where its rounds curve
flattens, and each round's training problems as its sampling policy saw them) and
``OUT/vs_grpo.png`` (accuracy vs training wall time, both curves, base as a line).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from vs_grpo_race import (  # benchmarks/vs_grpo_race.py, next to this script
    pct,
    pool_table,
    race,
    race_lines,
    round_costs,
    round_curve,
    round_pool,
    rounds_table,
    sampling,
    time_to_reach,
)

from reasonmaxxer.config import build_run_config
from reasonmaxxer.eval.comparison import compare
from reasonmaxxer.io import atomic_write_json, atomic_write_text, read_json
from reasonmaxxer.method.rounds import round_dir, round_models
from reasonmaxxer.runinfo import provenance
from reasonmaxxer.stats import format_p


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "reasonmaxxer", *args]  # cmd[2:] reads "reasonmaxxer ..."


def _argv(manifest: dict) -> str:
    """The command line a run was actually made with (its manifest's provenance)."""
    argv = manifest["provenance"]["host"]["argv"]
    return shlex.join(["reasonmaxxer", *argv[1:]])


def _run(cmd: list[str], log: Path) -> None:
    print("$", shlex.join(cmd[2:]), flush=True)
    with log.open("a") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"error: {cmd[3]} failed with exit {proc.returncode}; see {log}")


def curve_cache(work: Path, r: int) -> Path:
    """Round ``r``'s curve-eval record (round 1 keeps the name it had before rounds)."""
    return work / ("rm_curve_eval.json" if r == 1 else f"rm_curve_eval_round{r}.json")


def round_base(rm: Path, r: int, cfg: dict) -> str | None:
    """The weights round ``r``'s adapter sits on when they are not the base model (the run's
    resolved config ``cfg``), as its own round eval loads them: the merged policy under
    ``round_from: merged``."""
    if r == 1:
        return None
    base = cfg["model"]["model"]
    from_, anchor = cfg.get("round_from", "adapter"), cfg.get("round_anchor", "base")
    m = round_models(rm, r, base=base, round_from=from_, anchor=anchor)
    return None if m["train_base"] == base else m["train_base"]


def curve_eval(adapter: Path, grpo_dir: Path, cache: Path, base: str | None = None) -> dict:
    """``adapter`` (on ``base``, default GRPO's model) through GRPO's periodic eval: same
    subset, precision and decoding; with each problem's correctness for paired tests."""
    if cache.is_file():
        return read_json(cache)
    from reasonmaxxer.baselines.grpo import PolicyEval, build_grpo_config
    from reasonmaxxer.eval.prompting import stop_strings
    from reasonmaxxer.models import load_model

    cfg = build_grpo_config(str(grpo_dir / "config.yaml"))
    model_path = base or cfg.model.model
    model, tok, _ = load_model(model_path, adapter=str(adapter), dtype=cfg.model.dtype)
    metrics, results, samples = PolicyEval(tok, cfg, stop_strings(tok, cfg.prompt))(model, 0)
    correct: dict[str, dict[str, bool]] = {}
    for row in samples:
        correct.setdefault(row["benchmark"], {})[row["id"]] = bool(row["correct"])
    out = {
        "adapter": str(adapter),
        "model": model_path,
        "metrics": metrics,
        "benchmarks": results,
        "correct": correct,
    }
    atomic_write_json(cache, out)
    return out


def read_rounds(work: Path, rm_m: dict, bench: str, key: str, base_acc: float) -> list[dict]:
    """:func:`round_curve` of the run ``work/rm`` (manifest ``rm_m``) and its curve evals."""
    n = rm_m["config"].get("rounds", 1)
    curves = [read_json(curve_cache(work, r)) for r in range(1, n + 1)]
    entries = rm_m.get("rounds") or [{"comparison": rm_m["comparison"]}]
    full = [e["comparison"][bench].get("adapter_pass@1") for e in entries]
    return round_curve(round_costs(rm_m["stages"], n), curves, full, key, base_acc)


def _methods(work: Path, rm_m: dict, g_m: dict, bench: str, rm_r1: dict) -> dict:
    """Cost, tokens and accuracy per method (ReasonMaxxer: round 1, ``rm_r1``)."""
    rm, grpo = work / "rm", work / "grpo"
    train_json = read_json(rm / "train.json")
    st = rm_r1["stages_s"]
    t = g_m["timing_s"]
    methods = {
        "base": {"train_s": 0.0},
        "reasonmaxxer": {
            "train_s": rm_r1["round_s"],
            "generation_s": st["sample"],
            "scoring_s": st["select"],
            "optimisation_s": st["train"],
            "tokens_generated": rm_m["counts"]["rollout_tokens"],
            "forward_backward_tokens": train_json["tokens_processed"],
            "optimizer_steps": train_json["steps"],
            "peak_rss_mib": rm_m["stages"]["train"].get("peak_rss_mib"),
            "subset_pass@1": rm_r1["subset_pass@1"],
        },
        "grpo": {
            "train_s": t["train"],
            "generation_s": t["generation"],
            "scoring_s": t["reward"] + t["rollout_other"],
            "optimisation_s": t["optimisation"],
            "tokens_generated": g_m["tokens"]["generated"],
            "forward_backward_tokens": g_m["tokens"]["forward_backward"],
            "optimizer_steps": g_m["steps"],
            "stopped_by": g_m["stopped_by"],
            "peak_rss_mib": g_m["peak_rss_mib"],
        },
    }
    full = {
        "base": rm / "eval" / "base",
        "reasonmaxxer": rm / "eval" / "adapter",
        "grpo": grpo / "eval_full",
    }
    for name, folder in full.items():
        r = read_json(folder / "results.json")["benchmarks"][bench]
        methods[name].update({k: r.get(k) for k in ("n", "pass@1", "pass@1_ci95")})
        methods[name].update({k: r.get(k) for k in ("avg@k", "avg@k_ci95")})
    return methods


def _pool(rm: Path, r: int) -> dict | None:
    """:func:`round_pool` of round ``r``'s selection, when the run folder has it."""
    path = round_dir(rm, r) / "selection.json"
    return round_pool(read_json(path)) if path.is_file() else None


def summarize(work: Path, commands: list[str]) -> dict:
    rm, grpo = work / "rm", work / "grpo"
    rm_m, g_m = read_json(rm / "manifest.json"), read_json(grpo / "manifest.json")
    bench = next(iter(rm_m["comparison"]))
    key = next(k for k in g_m["evals"][0] if k.startswith("eval/") and "pass@1" in k)
    curve = [
        {"step": e["step"], "wall_time_s": e["wall_time_s"], "pass@1": e[key]} for e in g_m["evals"]
    ]
    rounds = read_rounds(work, rm_m, bench, key, curve[0]["pass@1"])  # GRPO's step 0: the base
    methods = _methods(work, rm_m, g_m, bench, rounds[0])
    methods["base"]["subset_pass@1"] = curve[0]["pass@1"]
    methods["grpo"]["subset_pass@1"] = curve[-1]["pass@1"]
    rm_time, budget = rounds[0]["round_s"], g_m["timing_s"]["train"]
    reach = time_to_reach(g_m["evals"], key, rounds[0]["subset_pass@1"])
    ratio = {
        **reach,
        "reasonmaxxer_s": rm_time,
        "grpo_budget_s": budget,
        # reached: GRPO time to reach ÷ RM time; not reached: a lower bound (the whole budget)
        "ratio": (reach["reached_at_s"] if reach["reached"] else budget) / rm_time,
        "ratio_is_lower_bound": not reach["reached"],
        "grpo_time_to_its_best_over_rm": reach["best_at_s"] / rm_time,
    }
    tests = {
        "grpo_vs_base": compare(rm / "eval" / "base", grpo / "eval_full")[bench],
        "reasonmaxxer_vs_grpo": compare(grpo / "eval_full", rm / "eval" / "adapter")[bench],
        "reasonmaxxer_vs_base": rm_m["comparison"][bench],
    }
    return {
        "benchmark": bench,
        "curve_metric": key,
        "curve_subset_n": read_json(curve_cache(work, 1))["benchmarks"][key.split("/")[1]]["n"],
        "methods": methods,
        "time_to_reach": ratio,
        "rounds": rounds,
        "race": race(rounds, curve),
        "pools": [_pool(rm, r["round"]) for r in rounds],
        "sampling": sampling(rm_m["config"], g_m["config"]),
        "paired_tests": tests,
        "grpo_curve": curve,
        "grpo_config": g_m["config"],
        "reasonmaxxer_config": rm_m["config"],
        "commands": commands,
        "provenance": provenance(),
    }


def _methods_table(s: dict) -> list[str]:
    m = s["methods"]
    rm = "ReasonMaxxer" + (" (round 1)" if len(s["rounds"]) > 1 else "")
    rows = [f"| | base | {rm} | GRPO |", "|---|---|---|---|"]
    ci = "{} [{}, {}]"

    def row(label, fn, key=None):
        cell = lambda r: fn(r) if key is None or r.get(key) is not None else "-"  # noqa: E731
        rows.append(f"| {label} | " + " | ".join(cell(m[k]) for k in m) + " |")

    row(
        f"greedy pass@1, {s['benchmark']} (n={m['base']['n']}) [95% CI]",
        lambda r: ci.format(*map(pct, (r["pass@1"], *r["pass@1_ci95"]))),
    )
    row("avg@k at T>0", lambda r: pct(r.get("avg@k")))
    row(f"curve eval pass@1 (first {s['curve_subset_n']})", lambda r: pct(r["subset_pass@1"]))
    row("training wall time", lambda r: f"{r['train_s'] / 60:.1f} min" if r["train_s"] else "-")
    for key, label in (
        ("generation_s", "· generation"),
        ("scoring_s", "· scoring (RM: entropies; GRPO: reward, ref log-probs)"),
        ("optimisation_s", "· optimisation"),
    ):
        row(label, lambda r, key=key: f"{r[key]:.0f} s", key)
    row("tokens generated", lambda r: f"{r['tokens_generated']:,}", "tokens_generated")
    row(
        "forward+backward tokens",
        lambda r: f"{r['forward_backward_tokens']:,}",
        "forward_backward_tokens",
    )
    row("optimizer steps", lambda r: str(r["optimizer_steps"]), "optimizer_steps")
    row("peak RSS", lambda r: f"{r['peak_rss_mib']:.0f} MiB", "peak_rss_mib")
    return rows


def _reach_lines(s: dict) -> list[str]:
    t = s["time_to_reach"]
    if t["reached"]:
        lines = [
            f"GRPO reached ReasonMaxxer's curve-eval accuracy ({pct(t['target'])}) at step "
            f"{t['reached_at_step']}, {t['reached_at_s'] / 60:.1f} min of training: "
            f"**{t['ratio']:.1f}x** ReasonMaxxer's {t['reasonmaxxer_s'] / 60:.1f} min."
        ]
    else:
        lines = [
            f"GRPO did **not** reach ReasonMaxxer's curve-eval accuracy ({pct(t['target'])}) "
            f"within its {t['grpo_budget_s'] / 60:.0f}-min budget (best {pct(t['best'])} at step "
            f"{t['best_at_step']}): the ratio is a lower bound, **> {t['ratio']:.1f}x** "
            f"ReasonMaxxer's {t['reasonmaxxer_s'] / 60:.1f} min."
        ]
    for name, label in (
        ("reasonmaxxer_vs_base", "ReasonMaxxer vs base"),
        ("grpo_vs_base", "GRPO vs base"),
        ("reasonmaxxer_vs_grpo", "ReasonMaxxer vs GRPO"),
    ):
        mc = s["paired_tests"][name]["pass@1_mcnemar"]
        lines.append(
            f"- {label} (greedy pass@1, paired): +{mc['gained']}/−{mc['lost']}, "
            f"McNemar p = {format_p(mc['p_value'])}"
        )
    return lines


def table(s: dict) -> str:
    """The whole markdown: methods side by side, GRPO's time to ReasonMaxxer round 1, paired
    tests, then the rounds and the race."""
    parts = [*_methods_table(s), "", *_reach_lines(s), "", *rounds_table(s), "", *race_lines(s)]
    if any(p is not None for p in s.get("pools") or []):
        parts += ["", *pool_table(s)]
    return "\n".join(parts) + "\n"


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    curve, base = s["grpo_curve"], 100 * s["methods"]["base"]["subset_pass@1"]
    xs, ys = [c["wall_time_s"] / 60 for c in curve], [100 * c["pass@1"] for c in curve]
    ax.plot(xs, ys, "o-", color="#d62728", label="GRPO (TRL), periodic eval")
    rounds, x = s["rounds"], s["race"]
    rx, ry = [r["cumulative_s"] / 60 for r in rounds], [100 * r["subset_pass@1"] for r in rounds]
    ax.plot([0, rx[0]], [base, ry[0]], "-", color="#1f77b4", lw=1, alpha=0.5)
    cost = "sample + select + train" + (" (+ merge from r2)" if len(rounds) > 1 else "")
    label = f"ReasonMaxxer rounds 1-{len(rounds)}, {cost}"
    ax.plot(rx, ry, "*-", color="#1f77b4", markersize=12, label=label)
    for r, px, py in zip(rounds, rx, ry, strict=True):
        ax.annotate(f"r{r['round']}", (px, py), textcoords="offset points", xytext=(4, 4))
    ax.axhline(100 * x["grpo_final"], color="#d62728", ls=":", lw=1, label="GRPO's final")
    target_min = x["target_ratio"] * x["grpo_final_at_s"] / 60
    ax.axvline(target_min, color="gray", ls=":", lw=1, label="1/5 of GRPO's time")
    ax.axhline(base, color="gray", ls="--", label="base")
    ax.set_xlabel("training wall time (min; evaluations excluded)")
    ax.set_ylabel(f"greedy pass@1 on {s['curve_subset_n']} held-out problems (%)")
    ax.set_title(f"accuracy vs training time: {s['benchmark']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def _grpo_full_eval(work: Path) -> None:
    """Step 4: GRPO's final adapter through the ReasonMaxxer run's eval config."""
    if (work / "grpo" / "eval_full" / "results.json").is_file():
        return
    from reasonmaxxer.eval.evaluation import evaluate

    cfg = build_run_config(str(work / "rm" / "config.yaml"))
    adapter = str(work / "grpo" / "adapter")
    evaluate(
        cfg.model, cfg.prompt, cfg.eval, work / "grpo" / "eval_full", adapter=adapter, label="grpo"
    )


def _rounds_done(rm: Path, n: int) -> bool:
    """``rm`` holds a finished run of exactly ``n`` rounds (more rounds resume it)."""
    return (rm / "manifest.json").is_file() and read_json(rm / "manifest.json")["config"].get(
        "rounds", 1
    ) == n


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/vs_grpo", help="run folders (rm/, grpo/)")
    ap.add_argument("--out", default="benchmarks/results/vs_grpo", help="JSON, table and plot")
    ap.add_argument("--grpo-minutes", type=float, default=60.0, help="GRPO training budget")
    ap.add_argument("--grpo-lr", type=float, default=1e-4, help="GRPO learning rate")
    ap.add_argument("--eval-limit", type=int, default=100, help="GRPO periodic-eval subset size")
    ap.add_argument("--eval-every", type=int, default=10, help="GRPO steps between evals")
    ap.add_argument("--rounds", type=int, default=1, help="ReasonMaxxer rounds (the curve)")
    ap.add_argument("--rm-args", default="", help="extra flags for `reasonmaxxer run`")
    ap.add_argument("--grpo-args", default="", help="extra flags for `reasonmaxxer grpo`")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.rounds < 1:
        print(f"error: --rounds must be >= 1; got {args.rounds}", file=sys.stderr)
        return 2
    work, out = Path(args.work), Path(args.out)
    rm, grpo = work / "rm", work / "grpo"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    rm_cmd = _cli("run", "--out", str(rm), "--rounds", str(args.rounds), *shlex.split(args.rm_args))
    grpo_cmd = _cli(
        *("grpo", "--out", str(grpo), "--max-minutes", str(args.grpo_minutes)),
        *("--max-steps", "1000", "--lr", str(args.grpo_lr), "--rollout-generator", "reasonmaxxer"),
        *("--eval-every", str(args.eval_every), "--eval-limit", str(args.eval_limit)),
        *shlex.split(args.grpo_args),
    )
    if not _rounds_done(rm, args.rounds):
        _run(rm_cmd, work / "rm.log")
    if not (grpo / "manifest.json").is_file():
        _run(grpo_cmd, work / "grpo.log")
    rm_cfg = read_json(rm / "manifest.json")["config"]
    for r in range(1, args.rounds + 1):
        adapter, base = round_dir(rm, r) / "adapter", round_base(rm, r, rm_cfg)
        curve_eval(adapter, grpo, curve_cache(work, r), base=base)
    _grpo_full_eval(work)
    commands = [
        _argv(read_json(rm / "manifest.json")),
        _argv(read_json(grpo / "manifest.json")),
        "python " + shlex.join(["benchmarks/vs_grpo.py", *(argv or sys.argv[1:])]),
    ]
    s = summarize(work, commands)
    md = table(s)
    atomic_write_json(out / "vs_grpo.json", s)
    atomic_write_text(out / "vs_grpo.md", md)
    plot(s, out / "vs_grpo.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
