"""The whole §4 diagnostic: cache the teacher, train the student, evaluate student, teacher
and base, and write the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...config import to_dict
from ...io import iter_jsonl
from ..outputs import write_record
from ..pair import set_threads
from .cache import choose_problems, ensure_cache, load_cache
from .config import ADAPTER, CACHE, DistillConfig
from .plots import plot_distill
from .student import train_student


def evaluate_model(
    cfg: DistillConfig, model: str, adapter: str | None, out: Path, label: str
) -> dict:
    """Greedy pass@1 of ``model`` (+ ``adapter``) on ``cfg.benchmarks`` via the eval stage."""
    from ...config import EvalConfig, ModelConfig
    from ...eval.evaluation import evaluate

    model_cfg = ModelConfig(
        model=model,
        gen_dtype=cfg.dtype,
        backend=cfg.backend,
        trust_remote_code=cfg.trust_remote_code,
        threads=cfg.threads,
    )
    eval_cfg = EvalConfig(
        benchmarks=cfg.benchmarks,
        limit=cfg.limit,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.gen_batch_size,
        grader_timeout=cfg.grader_timeout,
    )
    return evaluate(model_cfg, cfg.prompt, eval_cfg, out, adapter=adapter, label=label)


def greedy_correct(eval_dir: Path) -> dict[tuple[str, str], bool]:
    """(benchmark, problem id) -> whether the greedy sample of an eval folder is correct."""
    return {
        (r["benchmark"], r["id"]): bool(r["correct"])
        for r in iter_jsonl(eval_dir / "samples.jsonl")
        if r["sample"] == "greedy"
    }


def distill_table(evals: dict[str, dict], trainable_frac: float) -> list[dict]:
    """One row per (model, benchmark) of the eval records."""
    table = []
    for who, rec in evals.items():
        for name, r in rec["benchmarks"].items():
            table.append(
                {
                    "model": who,
                    "benchmark": name,
                    "n": r["n"],
                    "pass@1": r["pass@1"],
                    "pass@1_ci95": r["pass@1_ci95"],
                    "mean_tokens": r["mean_tokens"],
                    "truncated": r["truncated"],
                    "trainable_frac": trainable_frac if who == "student" else None,
                }
            )
    return table


def eval_comparison(evals: dict[str, dict], correct: dict[str, dict]) -> dict:
    """Per benchmark: each model's pass@1, the student's distance to the teacher, the share
    of the teacher-base gap it closes, and paired McNemar tests against teacher and base."""
    from ...stats import mcnemar_exact

    per_bench = {}
    for name in evals["student"]["benchmarks"]:
        acc = {who: evals[who]["benchmarks"][name]["pass@1"] for who in evals}
        gap = acc["teacher"] - acc["base"]
        keys = sorted(k for k in correct["student"] if k[0] == name)
        per_bench[name] = {
            **{f"{who}_pass@1": a for who, a in acc.items()},
            "student_minus_teacher": acc["student"] - acc["teacher"],
            "gap_closed": (acc["student"] - acc["base"]) / gap if gap else None,
            "student_vs_teacher": mcnemar_exact(
                [correct["teacher"][k] for k in keys], [correct["student"][k] for k in keys]
            ),
            "student_vs_base": mcnemar_exact(
                [correct["base"][k] for k in keys], [correct["student"][k] for k in keys]
            ),
        }
    return per_bench


def _evaluate_all(cfg: DistillConfig, out: Path) -> dict[str, dict]:
    if not cfg.eval:
        return {}
    student = str(out / ADAPTER)
    return {
        "student": evaluate_model(cfg, cfg.model, student, out / "eval_student", "student"),
        "teacher": evaluate_model(
            cfg, cfg.teacher or cfg.model, cfg.teacher_adapter, out / "eval_teacher", "teacher"
        ),
        "base": evaluate_model(cfg, cfg.model, None, out / "eval_base", "base"),
    }


def run_distill(cfg: DistillConfig, out: str | Path) -> dict:
    """The whole §4 diagnostic on ``cfg``; writes ``distill.json`` etc. into ``out``."""
    import gc

    from ...generation import pick_backend
    from ...runinfo import Timer, provenance

    pick_backend(cfg.backend, adapter=cfg.teacher_adapter)  # a bad --backend fails before work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_threads(cfg)
    with Timer() as wall:
        problems = choose_problems(cfg)
        cache_stats, reused = ensure_cache(cfg, problems, out / CACHE)
        rows, ids, logprobs = load_cache(out / CACHE)
        gc.collect()
        train = train_student(cfg, rows, ids, logprobs, out)
        gc.collect()
        evals = _evaluate_all(cfg, out)
    table = distill_table(evals, train["trainable_frac"])
    log = train.pop("log")
    summary: dict[str, Any] = {
        **{k: v for k, v in train.items() if k != "model"},
        "teacher_rollouts": {k: v for k, v in cache_stats.items() if k != "teacher"},
        "cache_reused": reused,
        "wall_time_s": wall.seconds,
    }
    if evals:
        correct = {who: greedy_correct(out / f"eval_{who}") for who in evals}
        summary["eval"] = eval_comparison(evals, correct)
    record = {
        "table": table,
        "summary": summary,
        "config": to_dict(cfg),
        "models": {
            "base": train["model"],
            "teacher": cache_stats.get("teacher"),
            "adapter": str(out / ADAPTER),
        },
        "provenance": provenance(),
    }
    write_record(out, "distill", record, cfg)
    plot_distill(log, table, train["trainable_frac"], out / "plots")
    return record
