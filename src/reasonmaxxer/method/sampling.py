"""``reasonmaxxer sample``: K rollouts per training problem from the frozen base model.

Problems are processed in fixed chunks. Each chunk is generated with its own seed
(derived from the run seed and the chunk index) and appended to ``rollouts.jsonl`` in one
fsync'd write, so a run killed at any moment (``kill -9`` included) and started again keeps
every finished chunk, drops a torn tail, samples only what is missing, and ends with exactly
the rollouts an uninterrupted run would have produced.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..config import RunConfig
from ..errors import UserError
from ..eval.data import load_benchmark
from ..eval.grading import grade
from ..eval.problem import Problem
from ..eval.prompting import build_prompt
from ..generation import SamplingParams, make_generator
from ..io import (
    append_jsonl,
    atomic_write_json,
    atomic_write_jsonl,
    identity_hash,
    iter_jsonl,
    read_json,
)
from ..runinfo import Timer
from ..scaleout.parts import absorb_parts, chunk_seed, clear_parts
from ..stats import pass_count_hist, pass_rates

ROLLOUTS = "rollouts.jsonl"


def sampler_settings(cfg: RunConfig) -> dict:
    """What must match for rollouts on disk to be reused by a resumed run: the settings,
    the model's weights fingerprint and the training problems' file contents."""
    from ..eval.data import benchmark_fingerprints
    from ..generation import pick_backend
    from ..models import model_fingerprint

    s = cfg.sample
    # the backend is named only off HF, so folders sampled before there was a choice keep
    # their hash; a vLLM run resumes with vLLM (its rollouts differ from HF's)
    backend = pick_backend(cfg.model.backend)
    return {
        **({} if backend == "hf" else {"backend": backend}),
        "model": cfg.model.model,
        "model_fingerprint": model_fingerprint(cfg.model.model),
        "gen_dtype": cfg.model.gen_dtype,
        "train": s.train,
        "train_data": benchmark_fingerprints(s.train),
        "limit": s.limit,
        "k": s.k,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_new_tokens": s.max_new_tokens,
        "chunk_problems": s.chunk_problems,
        "batch_size": s.batch_size,
        "seed": s.seed,
        "prompt": {
            "template": cfg.prompt.prompt_template,
            "system": cfg.prompt.system_prompt,
            "chat": cfg.prompt.chat_template,
        },
    }


def settings_hash(settings: dict) -> str:
    return identity_hash(settings)


def _rollouts_on_disk(path: Path, shash: str, settings: dict | None = None) -> list[dict]:
    """The complete rows of ``path``; rows made with other settings are a UserError (naming
    the settings that differ when ``settings``, the hashed ones, are given)."""
    if not path.is_file():
        return []
    rows = list(iter_jsonl(path, tolerate_torn_tail=True))
    if any(row.get("settings_hash") != shash for row in rows):
        raise UserError(
            f"{path} was sampled with different settings ({_what_differs(path.parent, settings)}); "
            "use a new --out folder or delete the file"
        )
    return rows


def _what_differs(run_dir: Path, settings: dict | None) -> str:
    """The sampler settings that differ from those ``run_dir/sample.json`` recorded, for the
    refusal's message (the generic list when either side is unknown)."""
    generic = "model, data, k, temperature, seed, ..."
    try:
        before = read_json(run_dir / "sample.json")["settings"]
    except (UserError, OSError, ValueError, KeyError, TypeError):  # none, or unreadable
        return generic
    if settings is None or not isinstance(before, dict):
        return generic
    settings = json.loads(json.dumps(settings))  # as sample.json holds them (lists, not tuples)
    names = sorted(k for k in before.keys() | settings.keys() if before.get(k) != settings.get(k))
    if not names:
        return generic
    hint = ""
    if names == ["model_fingerprint"]:
        hint = (
            ": the same model name with other weights, or a folder sampled before 2026-12-07, "
            "when only the first 16 MiB of the weights were fingerprinted"
        )
    return "differs in " + ", ".join(names) + hint


def check_resumable(run_dir: str | Path, cfg: RunConfig) -> None:
    """Refuse, before anything is written or loaded, a run folder whose rollouts were made
    with other settings (a UserError; nothing is changed)."""
    settings = sampler_settings(cfg)
    _rollouts_on_disk(Path(run_dir) / ROLLOUTS, settings_hash(settings), settings)


def load_finished_chunks(
    path: Path, expected: dict[int, int], shash: str, settings: dict | None = None
) -> dict[int, list[dict]]:
    """Rows of every complete chunk on disk; ``expected`` maps chunk -> number of rows."""
    by_chunk: dict[int, list[dict]] = defaultdict(list)
    for row in _rollouts_on_disk(path, shash, settings):
        by_chunk[row["chunk"]].append(row)
    done = {}
    for c, rows in by_chunk.items():
        keys = {(r["problem_id"], r["rollout"]) for r in rows}
        if c in expected and len(keys) == expected[c] == len(rows):
            done[c] = rows
    return done


def chunk_problems(problems: list[Problem], size: int) -> list[list[Problem]]:
    """Problems in consecutive chunks of ``size`` (the last may be shorter)."""
    return [problems[i : i + size] for i in range(0, len(problems), size)]


def make_sampler(cfg: RunConfig):
    """Load the frozen base for sampling behind the chosen backend; returns
    (generator, tokenizer, ModelInfo)."""
    s = cfg.sample
    gen, info = make_generator(cfg.model, cfg.prompt, batch_size=s.batch_size, seed=s.seed)
    return gen, gen.tokenizer, info


def sample_chunk(
    gen, tok, chunk: list[Problem], c: int, cfg: RunConfig, shash: str, *, desc: str = ""
) -> list[dict]:
    """Generate and grade chunk ``c``: ``len(chunk) * k`` rollout rows, problem-major.

    The chunk's seed depends only on the run seed and ``c``, so any process that samples
    chunk ``c`` with the same settings gets the same rows (what Ray sharding relies on).
    """
    s = cfg.sample
    params = SamplingParams(s.max_new_tokens, s.temperature, s.top_p, n=s.k)
    prompts = [build_prompt(tok, p.problem, cfg.prompt) for p in chunk]
    seed = chunk_seed(s.seed, c)
    outs = gen.generate(prompts, params, seed=seed, desc=desc or f"sample chunk {c + 1}")
    rows = []
    for p, prompt, comps in zip(chunk, prompts, outs, strict=True):
        for j, comp in enumerate(comps):
            g = grade(comp.text, p.answer, timeout_s=s.grader_timeout)
            rows.append(
                {
                    "chunk": c,
                    "problem_id": p.id,
                    "benchmark": p.benchmark,
                    "rollout": j,
                    "answer": p.answer,
                    "prompt": prompt,
                    "prompt_ids": comp.prompt_ids,
                    "completion": comp.text,
                    "completion_ids": comp.token_ids,
                    "finish": comp.finish,
                    "extracted": g.extracted,
                    "rule": g.rule,
                    "timed_out": g.timed_out,
                    "reward": 1.0 if g.correct else 0.0,
                    "seed": seed,
                    "settings_hash": shash,
                }
            )
    return rows


def sample(run_dir: str | Path, cfg: RunConfig, *, problems: list[Problem] | None = None) -> dict:
    """Sample (or finish sampling) ``rollouts.jsonl`` in ``run_dir``; returns summary stats.

    With ``cfg.model.ray`` set the chunks are sampled by Ray workers (:mod:`.scaleout`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    s = cfg.sample
    problems = problems if problems is not None else load_benchmark(s.train, limit=s.limit)
    if not problems:
        raise UserError(f"no training problems in {s.train!r}")
    if getattr(cfg.model, "ray", None):
        import sys

        from ..scaleout.ray_sample import sample_ray

        return sample_ray(run_dir, cfg, problems, stage=sys.modules[__name__])
    chunks = chunk_problems(problems, s.chunk_problems)
    expected = {c: len(ch) * s.k for c, ch in enumerate(chunks)}

    with Timer() as wall:
        settings = sampler_settings(cfg)
        shash = settings_hash(settings)
        path = run_dir / ROLLOUTS
        done = load_finished_chunks(path, expected, shash, settings)  # refuses other settings
        done = absorb_parts(run_dir, "sample", done, expected, shash)  # left by Ray workers
        gen, tok, info = make_sampler(cfg)
        # Rewrite without torn or partial chunks, so appends continue from a clean file.
        atomic_write_jsonl(path, [r for c in sorted(done) for r in done[c]])
        clear_parts(run_dir, "sample")
        pending = [c for c in range(len(chunks)) if c not in done]
        for n_done, c in enumerate(pending):
            desc = f"sample chunk {c + 1}/{len(chunks)} ({len(done) + n_done} done)"
            append_jsonl(path, sample_chunk(gen, tok, chunks[c], c, cfg, shash, desc=desc))

    rows = list(iter_jsonl(path))
    summary = summarize_rollouts(rows, s.k)
    summary.update(
        {
            "settings": settings,
            "settings_hash": shash,
            "model": info.to_dict(),
            "chunks": len(chunks),
            "chunks_resumed": len(done),
            "generation": {
                "sequences": gen.stats.sequences,
                "tokens": gen.stats.tokens,
                "seconds": gen.stats.seconds,
            },
            "wall_time_s": wall.seconds,
        }
    )
    atomic_write_json(run_dir / "sample.json", summary)
    return summary


def summarize_rollouts(rows: list[dict], k: int) -> dict:
    """Pass-rate histogram and counts over the rollouts of a run (``k`` per problem)."""
    by_problem = pass_rates(rows)
    rates = list(by_problem.values())
    return {
        "problems": len(by_problem),
        "rollouts": len(rows),
        "mean_reward": sum(r["reward"] for r in rows) / len(rows) if rows else 0.0,
        "mixed_problems": sum(0 < p < 1 for p in rates),
        "all_correct": sum(p == 1 for p in rates),
        "all_wrong": sum(p == 0 for p in rates),
        "pass_count_hist": pass_count_hist(by_problem, k),
        "tokens": sum(len(r["completion_ids"]) for r in rows),
        "timeouts": sum(r["timed_out"] for r in rows),
    }
