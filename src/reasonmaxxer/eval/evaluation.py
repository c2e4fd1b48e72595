"""``reasonmaxxer eval``: greedy pass@1 (and avg@k / pass@k at T > 0) on benchmarks.

Writes ``results.json`` (metrics with 95% CIs, the resolved config, model and adapter
identity, versions, git hash, seeds, wall time, tokens) and ``samples.jsonl`` (every prompt,
completion, extracted answer, extraction rule and verdict), like lm-evaluation-harness, so
every number can be traced to the generations behind it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from ..config import EvalConfig, ModelConfig, PromptConfig, to_dict
from ..generation import Completion, SamplingParams, make_generator
from ..io import atomic_write_json, atomic_write_jsonl
from ..runinfo import Timer, provenance
from ..stats import bootstrap_mean_ci, pass_at_k, wilson_interval
from .data import load_benchmarks
from .grading import grade
from .problem import Problem
from .prompting import build_prompt


def score_completions(
    problems: list[Problem], completions: list[list[Completion]], *, timeout_s: float
) -> list[list[dict]]:
    """Grade every completion; one dict per (problem, sample) for samples.jsonl."""
    rows = []
    for prob, comps in zip(problems, completions, strict=True):
        row = []
        for c in comps:
            g = grade(c.text, prob.answer, timeout_s=timeout_s)
            row.append(
                {
                    "completion": c.text,
                    "extracted": g.extracted,
                    "rule": g.rule,
                    "correct": g.correct,
                    "timed_out": g.timed_out,
                    "n_tokens": len(c.token_ids),
                    "finish": c.finish,
                }
            )
        rows.append(row)
    return rows


def summarize(greedy: list[dict], sampled: list[list[dict]] | None, k: int, seed: int = 0) -> dict:
    """Per-benchmark metrics from graded rows (greedy: one row per problem)."""
    n = len(greedy)
    correct = [bool(r["correct"]) for r in greedy]
    c = sum(correct)
    out = {
        "n": n,
        "pass@1": c / n if n else 0.0,
        "pass@1_ci95": list(wilson_interval(c, n)),
        "timeouts": sum(r["timed_out"] for r in greedy),
        "extraction": dict(Counter(r["rule"] for r in greedy)),
        "mean_tokens": sum(r["n_tokens"] for r in greedy) / n if n else 0.0,
        "truncated": sum(r["finish"] == "length" for r in greedy),
    }
    if sampled is not None and k > 1:
        per_problem = [sum(s["correct"] for s in row) / len(row) for row in sampled]
        out["k"] = k
        out["avg@k"] = sum(per_problem) / n if n else 0.0
        out["avg@k_ci95"] = list(bootstrap_mean_ci(per_problem, seed=seed))
        out["pass@k"] = (
            sum(pass_at_k(len(row), sum(s["correct"] for s in row), k) for row in sampled) / n
            if n
            else 0.0
        )
        out["timeouts"] += sum(s["timed_out"] for row in sampled for s in row)
    return out


def benchmark_rows(
    gen,
    problems: list[Problem],
    prompt_cfg: PromptConfig,
    eval_cfg: EvalConfig,
    *,
    seed: int,
    desc: str,
) -> tuple[list[str], list[dict], list[list[dict]] | None]:
    """Prompts, graded greedy rows (one per problem) and graded sampled rows (``k`` per
    problem, or None when ``k == 1``) for one benchmark's ``problems``."""
    tok = gen.tokenizer
    prompts = [build_prompt(tok, p.problem, prompt_cfg) for p in problems]
    greedy_c = gen.generate(
        prompts,
        SamplingParams(eval_cfg.max_new_tokens, temperature=0.0),
        seed=seed,
        desc=f"{desc} greedy",
    )
    greedy = [
        r[0] for r in score_completions(problems, greedy_c, timeout_s=eval_cfg.grader_timeout)
    ]
    sampled = None
    if eval_cfg.k > 1:
        params = SamplingParams(
            eval_cfg.max_new_tokens, eval_cfg.temperature, eval_cfg.top_p, n=eval_cfg.k
        )
        sampled_c = gen.generate(prompts, params, seed=seed, desc=f"{desc} k={eval_cfg.k}")
        sampled = score_completions(problems, sampled_c, timeout_s=eval_cfg.grader_timeout)
    return prompts, greedy, sampled


def evaluate(
    model_cfg: ModelConfig,
    prompt_cfg: PromptConfig,
    eval_cfg: EvalConfig,
    out_dir: str | Path,
    *,
    adapter: str | None = None,
    label: str | None = None,
) -> dict:
    """Run the evaluation and write ``results.json`` + ``samples.jsonl`` into ``out_dir``.

    With ``model_cfg.ray`` set each benchmark is split over Ray workers (:mod:`.scaleout`).
    """
    out_dir = Path(out_dir)
    benches = load_benchmarks(eval_cfg.benchmarks, limit=eval_cfg.limit)
    with Timer() as wall:
        if getattr(model_cfg, "ray", None):
            from ..scaleout.ray_eval import eval_ray

            rows, info, backend, stats = eval_ray(
                model_cfg,
                prompt_cfg,
                eval_cfg,
                out_dir,
                benches,
                rows_fn=benchmark_rows,
                adapter=adapter,
            )
        else:
            rows, info, backend, stats = _generate_rows(
                model_cfg, prompt_cfg, eval_cfg, benches, adapter=adapter, label=label
            )
        results, samples = collect_results(benches, rows, eval_cfg)
    record = {
        "metrics": metrics_of(results),
        "benchmarks": results,
        "config": {
            "model": to_dict(model_cfg),
            "prompt": to_dict(prompt_cfg),
            "eval": to_dict(eval_cfg),
        },
        "model": info.to_dict(),
        "adapter": adapter,
        "seeds": {"eval": eval_cfg.seed},
        "generation": {"backend": backend, **stats},
        "tokens_generated": stats["tokens"],
        "wall_time_s": wall.seconds,
        "provenance": provenance(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out_dir / "samples.jsonl", samples)
    atomic_write_json(out_dir / "results.json", record)
    return record


def _generate_rows(model_cfg, prompt_cfg, eval_cfg, benches: dict, *, adapter, label):
    """Every benchmark's :func:`benchmark_rows` from one local generator; returns
    ``(rows by benchmark, model info, backend name, generation stats)``."""
    gen, info = make_generator(
        model_cfg,
        prompt_cfg,
        adapter=adapter,
        batch_size=eval_cfg.batch_size,
        seed=eval_cfg.seed,
    )
    rows = {
        name: benchmark_rows(
            gen,
            problems,
            prompt_cfg,
            eval_cfg,
            seed=eval_cfg.seed,
            desc=f"{label or 'eval'} {name}",
        )
        for name, problems in benches.items()
    }
    return rows, info, gen.name, dataclasses.asdict(gen.stats)


def collect_results(benches: dict, rows: dict, eval_cfg: EvalConfig) -> tuple[dict, list[dict]]:
    """``(results by benchmark, samples.jsonl rows)`` from each benchmark's
    ``(prompts, greedy, sampled)`` rows: the greedy row of each problem, then its samples."""
    results: dict[str, dict] = {}
    samples: list[dict] = []
    for name, problems in benches.items():
        prompts, greedy, sampled = rows[name]
        results[name] = summarize(greedy, sampled, eval_cfg.k, seed=eval_cfg.seed)
        for i, (p, prompt) in enumerate(zip(problems, prompts, strict=True)):
            base = {"benchmark": name, "id": p.id, "answer": p.answer, "prompt": prompt}
            samples.append({**base, "sample": "greedy", "temperature": 0.0, **greedy[i]})
            for j, s in enumerate(sampled[i] if sampled else []):
                samples.append({**base, "sample": j, "temperature": eval_cfg.temperature, **s})
    return results, samples


def metrics_of(results: dict) -> dict[str, float]:
    """The namespaced metrics ``eval/<benchmark>/<pass@1|avg@k|pass@k>`` of ``results``."""
    metrics = {}
    for name, r in results.items():
        for key in ("pass@1", "avg@k", "pass@k"):
            if key in r:
                metrics[f"eval/{name}/{key}"] = r[key]
    return metrics


def results_table(record: dict, title: str = "results"):
    """A rich Table of one results.json."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("benchmark", "n", "pass@1 [95% CI]", "avg@k", "pass@k", "time-outs"):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for name, r in record["benchmarks"].items():
        lo, hi = r["pass@1_ci95"]
        table.add_row(
            name,
            str(r["n"]),
            f"{100 * r['pass@1']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]",
            f"{100 * r['avg@k']:.1f}% (k={r['k']})" if "avg@k" in r else "-",
            f"{100 * r['pass@k']:.1f}%" if "pass@k" in r else "-",
            str(r["timeouts"]),
        )
    return table
