"""``analyze disagree`` (paper §3.1, Table 2, Fig. 1): teacher-force the base model's greedy
rollouts through both models and classify every generated position."""

from __future__ import annotations

from pathlib import Path

from ..config import to_dict
from ..io import atomic_write_jsonl
from .config import DisagreeConfig
from .metrics import classify_positions, disagreement_summary, mean_or_none, table2_row
from .outputs import plot_disagree, write_record
from .pair import (
    ModelPair,
    build_prompts,
    gen_model_config,
    load_pair,
    load_problems,
    pair_logits,
    set_threads,
)


def base_rollouts(cfg: DisagreeConfig, backend: str, problems: list) -> tuple[ModelPair, list]:
    """The base model's greedy completion of every problem (on ``backend``), and the loaded
    pair. With vLLM the rollouts come first and the engine is closed before torch loads the
    pair."""
    from ..eval.prompting import stop_strings
    from ..generation import HFGenerator, SamplingParams, make_generator

    greedy = SamplingParams(cfg.max_new_tokens)
    if backend == "vllm":
        gen, _ = make_generator(
            gen_model_config(cfg, cfg.model, backend), cfg.prompt, backend=backend
        )
        prompts = build_prompts(gen.tokenizer, problems, cfg.prompt)
        comps = [c[0] for c in gen.generate(prompts, greedy, desc="base greedy")]
        gen.close()
    pair = load_pair(cfg)
    tok = pair.tokenizer
    prompts = build_prompts(tok, problems, cfg.prompt)
    if backend == "hf":
        with pair.use("base") as base:
            gen = HFGenerator(
                base, tok, batch_size=cfg.gen_batch_size, stop=stop_strings(tok, cfg.prompt)
            )
            comps = [c[0] for c in gen.generate(prompts, greedy, desc="base greedy")]
    return pair, comps


def score_positions(pair: ModelPair, comps: list, cfg: DisagreeConfig) -> dict[int, dict]:
    """Per row with a non-empty completion: the class and base rank of the teacher's top-1,
    the base entropy and whether the base top-1 is the rollout's token, at every position
    (CPU tensors ``[n]``)."""
    import torch
    from tqdm.auto import tqdm

    from ..method.losses import entropy_from_logits

    per_row: dict[int, dict] = {}
    bar = tqdm(total=len(comps), desc="teacher-force", unit="seq", dynamic_ncols=True)
    for i, b_logits, t_logits in pair_logits(
        pair, [c.prompt_ids for c in comps], [c.token_ids for c in comps], cfg.batch_size
    ):
        classes, ranks = classify_positions(b_logits, t_logits, cfg.rerank_k)
        match = b_logits.argmax(-1).cpu() == torch.tensor(comps[i].token_ids)
        per_row[i] = {
            "classes": classes.cpu(),
            "ranks": ranks.cpu(),
            "entropy": entropy_from_logits(b_logits).cpu(),
            "match": match,
        }
        bar.update(1)
    bar.close()
    return per_row


def pooled_summary(
    per_row: dict[int, dict], indices: list[int], graded: list[dict], cfg: DisagreeConfig
) -> tuple[dict, dict]:
    """Table-2 statistics of the positions of rows ``indices`` pooled, and those pooled
    tensors (for the plots)."""
    import torch

    have = [i for i in indices if i in per_row]
    cat = {
        k: torch.cat([per_row[i][k] for i in have])
        if have
        else torch.zeros(0, dtype=torch.float32 if k == "entropy" else torch.long)
        for k in ("classes", "ranks", "entropy", "match")
    }
    s = disagreement_summary(
        cat["classes"], cat["ranks"], cat["entropy"], gate_fracs=cfg.gate_frac_list
    )
    s["problems"] = len(indices)
    s["base_pass@1"] = sum(graded[i]["correct"] for i in indices) / len(indices)
    s["timeouts"] = sum(graded[i]["timed_out"] for i in indices)  # grader time-outs
    s["base_top1_matches_rollout"] = mean_or_none(cat["match"].double())
    s["entropy_all_mean"] = mean_or_none(cat["entropy"])
    return s, cat


def disagree_rows(problems: list, comps: list, graded: list[dict], per_row: dict) -> list[dict]:
    """One ``disagree_rows.jsonl`` row per problem: its completion, grade and per-position
    classes, teacher ranks and base entropies."""
    rows = []
    for i, (p, c) in enumerate(zip(problems, comps, strict=True)):
        r = per_row.get(i)
        rows.append(
            {
                "benchmark": p.benchmark,
                "id": p.id,
                "answer": p.answer,
                "completion": c.text,
                "correct": graded[i]["correct"],
                "n_tokens": len(c.token_ids),
                "token_ids": c.token_ids,
                "classes": r["classes"].tolist() if r else [],
                "teacher_rank": r["ranks"].tolist() if r else [],
                "entropy": [round(h, 5) for h in r["entropy"].tolist()] if r else [],
            }
        )
    return rows


def benchmark_groups(names: list[str], problems: list) -> dict[str, list[int]]:
    """Problem indices per benchmark, plus ``all`` when there are several benchmarks."""
    groups = {name: [i for i, p in enumerate(problems) if p.benchmark == name] for name in names}
    if len(names) > 1:
        groups["all"] = list(range(len(problems)))
    return groups


def run_disagree(cfg: DisagreeConfig, out: str | Path) -> dict:
    """§3.1 on ``cfg``'s pair: writes ``disagree.json``, ``disagree_rows.jsonl``,
    ``config.yaml`` and ``plots/disagree_*.png`` into ``out``; returns the record."""
    from ..eval.evaluation import score_completions
    from ..generation import pick_backend
    from ..runinfo import Timer, provenance

    out = Path(out)
    set_threads(cfg)
    backend = pick_backend(cfg.backend)
    names, problems = load_problems(cfg)
    with Timer() as wall:
        pair, comps = base_rollouts(cfg, backend, problems)
        graded = [
            r[0]
            for r in score_completions(problems, [[c] for c in comps], timeout_s=cfg.grader_timeout)
        ]
        per_row = score_positions(pair, comps, cfg)
    table, summaries, cats = [], {}, {}
    for name, indices in benchmark_groups(names, problems).items():
        summaries[name], cats[name] = pooled_summary(per_row, indices, graded, cfg)
        table.append(table2_row(name, summaries[name]))
    key = "all" if len(names) > 1 else names[0]
    summary = {
        "benchmark": key,
        **summaries[key],
        "per_benchmark": summaries if len(names) > 1 else None,
        "tokens": sum(len(c.token_ids) for c in comps),
        "wall_time_s": wall.seconds,
    }
    record = {
        "table": table,
        "summary": summary,
        "config": to_dict(cfg),
        "models": {"base": pair.base_info, "teacher": pair.teacher_info},
        "provenance": provenance(),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out / "disagree_rows.jsonl", disagree_rows(problems, comps, graded, per_row))
    write_record(out, "disagree", record, cfg)
    plot_disagree(cats[key], summaries[key], out / "plots")
    return record
