"""ReasonMaxxer vs full RL (TRL GRPO), measured side by side on one machine.

    python benchmarks/vs_grpo.py --work runs/vs_grpo --out benchmarks/results/vs_grpo \
        --grpo-minutes 60

Same model, training problems, prompts, reward, rollout sampling (T, top-p, length, K) and LoRA
shape (``reasonmaxxer grpo`` takes all of them from the packaged default config), same held-out
problems. Until 2026-12-01 GRPO sampled at T = 1.0 / top-p 1.0 against ReasonMaxxer's 0.7 /
0.95: the committed ``results/vs_grpo`` table was measured that way and is not re-run yet. Steps, each skipped when its
output already exists, so an interrupted comparison resumes:

1. ``reasonmaxxer run --out WORK/rm``: ReasonMaxxer with the default config (sample, select,
   train, then eval of base and adapter on the full eval set).
2. ``reasonmaxxer grpo --out WORK/grpo --max-minutes M``: GRPO with a periodic greedy pass@1 on
   the first ``--eval-limit`` eval problems (the accuracy-vs-wall-time curve).
3. The ReasonMaxxer adapter through that same periodic-eval procedure (fp32 weights, bf16
   autocast, greedy, same subset), so "time for GRPO to reach ReasonMaxxer's accuracy"
   compares like with like.
4. ``eval`` of GRPO's final adapter with the ReasonMaxxer run's eval config (the full eval set,
   greedy and avg@k), paired with the base and ReasonMaxxer evals of step 1.

Writes ``OUT/vs_grpo.json`` (every number, the commands, versions), ``OUT/vs_grpo.md`` (the
table) and ``OUT/vs_grpo.png`` (accuracy vs training wall time, both methods, base as a line).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from reasonmaxxer.comparison import compare
from reasonmaxxer.config import build_run_config
from reasonmaxxer.io import atomic_write_json, atomic_write_text, read_json
from reasonmaxxer.runinfo import provenance
from reasonmaxxer.stats import format_p

RM_STAGES = ("sample", "select", "train")  # the method's cost; evals are measurement


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


def curve_eval(adapter: Path, grpo_dir: Path, cache: Path) -> dict:
    """``adapter`` through GRPO's periodic eval (same subset, precision and decoding)."""
    if cache.is_file():
        return read_json(cache)
    from reasonmaxxer.grpo import PolicyEval, build_grpo_config
    from reasonmaxxer.models import load_model
    from reasonmaxxer.prompting import stop_strings

    cfg = build_grpo_config(str(grpo_dir / "config.yaml"))
    model, tok, _ = load_model(cfg.model.model, adapter=str(adapter), dtype=cfg.model.dtype)
    metrics, results, _ = PolicyEval(tok, cfg, stop_strings(tok, cfg.prompt))(model, 0)
    out = {"adapter": str(adapter), "metrics": metrics, "benchmarks": results}
    atomic_write_json(cache, out)
    return out


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


def summarize(work: Path, commands: list[str]) -> dict:
    rm, grpo = work / "rm", work / "grpo"
    rm_m, g_m = read_json(rm / "manifest.json"), read_json(grpo / "manifest.json")
    train_json = read_json(rm / "train.json")
    stages = rm_m["stages"]
    rm_time = sum(stages[s]["wall_time_s"] for s in RM_STAGES)
    bench = next(iter(rm_m["comparison"]))
    full = {
        "base": read_json(rm / "eval" / "base" / "results.json")["benchmarks"][bench],
        "reasonmaxxer": read_json(rm / "eval" / "adapter" / "results.json")["benchmarks"][bench],
        "grpo": read_json(grpo / "eval_full" / "results.json")["benchmarks"][bench],
    }
    curve_key = next(k for k in g_m["evals"][0] if k.startswith("eval/") and "pass@1" in k)
    rm_curve_eval = read_json(work / "rm_curve_eval.json")
    rm_curve = rm_curve_eval["metrics"][curve_key]
    t = g_m["timing_s"]
    methods = {
        "base": {"train_s": 0.0},
        "reasonmaxxer": {
            "train_s": rm_time,
            "generation_s": stages["sample"]["wall_time_s"],
            "scoring_s": stages["select"]["wall_time_s"],
            "optimisation_s": stages["train"]["wall_time_s"],
            "tokens_generated": rm_m["counts"]["rollout_tokens"],
            "forward_backward_tokens": train_json["tokens_processed"],
            "optimizer_steps": train_json["steps"],
            "peak_rss_mib": stages["train"].get("peak_rss_mib"),
            "subset_pass@1": rm_curve,
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
            "subset_pass@1": g_m["evals"][-1][curve_key],
        },
    }
    methods["base"]["subset_pass@1"] = g_m["evals"][0][curve_key]  # GRPO's step 0 is the base
    for name, r in full.items():
        methods[name].update(
            {
                "n": r["n"],
                "pass@1": r["pass@1"],
                "pass@1_ci95": r["pass@1_ci95"],
                "avg@k": r.get("avg@k"),
                "avg@k_ci95": r.get("avg@k_ci95"),
            }
        )
    reach = time_to_reach(g_m["evals"], curve_key, rm_curve)
    ratio = {
        **reach,
        "reasonmaxxer_s": rm_time,
        "grpo_budget_s": t["train"],
        # reached: GRPO time to reach ÷ RM time; not reached: a lower bound (the whole budget)
        "ratio": (reach["reached_at_s"] if reach["reached"] else t["train"]) / rm_time,
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
        "curve_metric": curve_key,
        "curve_subset_n": rm_curve_eval["benchmarks"][curve_key.split("/")[1]]["n"],
        "methods": methods,
        "time_to_reach": ratio,
        "paired_tests": tests,
        "grpo_curve": [
            {"step": e["step"], "wall_time_s": e["wall_time_s"], "pass@1": e[curve_key]}
            for e in g_m["evals"]
        ],
        "grpo_config": g_m["config"],
        "reasonmaxxer_config": rm_m["config"],
        "commands": commands,
        "provenance": provenance(),
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def table(s: dict) -> str:
    m = s["methods"]
    rows = [
        "| | base | ReasonMaxxer | GRPO |",
        "|---|---|---|---|",
    ]

    def row(label, fn):
        rows.append(
            f"| {label} | " + " | ".join(fn(m[k]) for k in ("base", "reasonmaxxer", "grpo")) + " |"
        )

    n = m["base"]["n"]
    row(
        f"greedy pass@1, {s['benchmark']} (n={n}) [95% CI]",
        lambda r: f"{_pct(r['pass@1'])} [{_pct(r['pass@1_ci95'][0])}, {_pct(r['pass@1_ci95'][1])}]",
    )
    row("avg@k at T>0", lambda r: _pct(r.get("avg@k")))
    row(f"curve eval pass@1 (first {s['curve_subset_n']})", lambda r: _pct(r["subset_pass@1"]))
    row("training wall time", lambda r: f"{r['train_s'] / 60:.1f} min" if r["train_s"] else "-")
    for key, label in (
        ("generation_s", "· generation"),
        ("scoring_s", "· scoring (RM: entropies; GRPO: reward, ref log-probs)"),
        ("optimisation_s", "· optimisation"),
    ):
        row(label, lambda r, key=key: f"{r[key]:.0f} s" if key in r else "-")
    row(
        "tokens generated",
        lambda r: f"{r['tokens_generated']:,}" if "tokens_generated" in r else "-",
    )
    row(
        "forward+backward tokens",
        lambda r: f"{r['forward_backward_tokens']:,}" if "forward_backward_tokens" in r else "-",
    )
    row("optimizer steps", lambda r: str(r.get("optimizer_steps", "-")))
    row("peak RSS", lambda r: f"{r['peak_rss_mib']:.0f} MiB" if r.get("peak_rss_mib") else "-")
    t = s["time_to_reach"]
    tests = s["paired_tests"]
    lines = ["\n".join(rows), ""]
    if t["reached"]:
        lines.append(
            f"GRPO reached ReasonMaxxer's curve-eval accuracy ({_pct(t['target'])}) at step "
            f"{t['reached_at_step']}, {t['reached_at_s'] / 60:.1f} min of training: "
            f"**{t['ratio']:.1f}x** ReasonMaxxer's {t['reasonmaxxer_s'] / 60:.1f} min."
        )
    else:
        lines.append(
            f"GRPO did **not** reach ReasonMaxxer's curve-eval accuracy ({_pct(t['target'])}) "
            f"within its {t['grpo_budget_s'] / 60:.0f}-min budget (best {_pct(t['best'])} at step "
            f"{t['best_at_step']}): the ratio is a lower bound, **> {t['ratio']:.1f}x** "
            f"ReasonMaxxer's {t['reasonmaxxer_s'] / 60:.1f} min."
        )
    for name, label in (
        ("reasonmaxxer_vs_base", "ReasonMaxxer vs base"),
        ("grpo_vs_base", "GRPO vs base"),
        ("reasonmaxxer_vs_grpo", "ReasonMaxxer vs GRPO"),
    ):
        mc = tests[name]["pass@1_mcnemar"]
        lines.append(
            f"- {label} (greedy pass@1, paired): +{mc['gained']}/−{mc['lost']}, "
            f"McNemar p = {format_p(mc['p_value'])}"
        )
    return "\n".join(lines) + "\n"


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    curve = s["grpo_curve"]
    ax.plot(
        [c["wall_time_s"] / 60 for c in curve],
        [100 * c["pass@1"] for c in curve],
        "o-",
        color="#d62728",
        label="GRPO (TRL), periodic eval",
    )
    rm = s["methods"]["reasonmaxxer"]
    ax.plot(
        [rm["train_s"] / 60],
        [100 * rm["subset_pass@1"]],
        "*",
        color="#1f77b4",
        markersize=16,
        label="ReasonMaxxer (sample + select + train)",
    )
    ax.axhline(100 * rm["subset_pass@1"], color="#1f77b4", ls=":", lw=1)
    ax.axhline(100 * s["methods"]["base"]["subset_pass@1"], color="gray", ls="--", label="base")
    n = s["curve_subset_n"]
    ax.set_xlabel("training wall time (min; evaluations excluded)")
    ax.set_ylabel(f"greedy pass@1 on {n} held-out problems (%)")
    ax.set_title(f"accuracy vs training time: {s['benchmark']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/vs_grpo", help="run folders (rm/, grpo/)")
    ap.add_argument("--out", default="benchmarks/results/vs_grpo", help="JSON, table and plot")
    ap.add_argument("--grpo-minutes", type=float, default=60.0, help="GRPO training budget")
    ap.add_argument("--grpo-lr", type=float, default=1e-4, help="GRPO learning rate")
    ap.add_argument("--eval-limit", type=int, default=100, help="GRPO periodic-eval subset size")
    ap.add_argument("--eval-every", type=int, default=10, help="GRPO steps between evals")
    ap.add_argument("--rm-args", default="", help="extra flags for `reasonmaxxer run`")
    ap.add_argument("--grpo-args", default="", help="extra flags for `reasonmaxxer grpo`")
    args = ap.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    rm_cmd = _cli("run", "--out", str(work / "rm"), *shlex.split(args.rm_args))
    grpo_cmd = _cli(
        "grpo",
        "--out",
        str(work / "grpo"),
        "--max-minutes",
        str(args.grpo_minutes),
        "--max-steps",
        "1000",
        "--lr",
        str(args.grpo_lr),
        "--rollout-generator",
        "reasonmaxxer",
        "--eval-every",
        str(args.eval_every),
        "--eval-limit",
        str(args.eval_limit),
        *shlex.split(args.grpo_args),
    )
    if not (work / "rm" / "manifest.json").is_file():
        _run(rm_cmd, work / "rm.log")
    if not (work / "grpo" / "manifest.json").is_file():
        _run(grpo_cmd, work / "grpo.log")
    curve_eval(work / "rm" / "adapter", work / "grpo", work / "rm_curve_eval.json")
    if not (work / "grpo" / "eval_full" / "results.json").is_file():
        from reasonmaxxer.evaluation import evaluate

        cfg = build_run_config(str(work / "rm" / "config.yaml"))
        evaluate(
            cfg.model,
            cfg.prompt,
            cfg.eval,
            work / "grpo" / "eval_full",
            adapter=str(work / "grpo" / "adapter"),
            label="grpo",
        )
    commands = [
        _argv(read_json(work / "rm" / "manifest.json")),
        _argv(read_json(work / "grpo" / "manifest.json")),
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
