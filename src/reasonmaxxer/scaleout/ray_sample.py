"""``sample`` over Ray workers: the same chunks, seeds and rows as the single process.

The sampling stage passes itself in (:class:`SamplingStage`), so this module does not import
the stage that calls it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Protocol

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_jsonl, iter_jsonl
from ..runinfo import Timer
from .parts import absorb_parts, clear_parts, part_path, read_part, shard_chunks
from .session import chunk_bar, preflight, ray_session, run_shards, worker_plan


class SamplingStage(Protocol):
    """What :func:`sample_ray` uses of :mod:`reasonmaxxer.method.sampling` (that module itself)."""

    ROLLOUTS: str

    def chunk_problems(self, problems: list, size: int) -> list[list]: ...
    def sampler_settings(self, cfg) -> dict: ...
    def settings_hash(self, settings: dict) -> str: ...
    def load_finished_chunks(self, path: Path, expected: dict, shash: str) -> dict: ...
    def make_sampler(self, cfg): ...
    def sample_chunk(self, gen, tok, chunk: list, c: int, cfg, shash: str, *, desc: str = ""): ...
    def summarize_rollouts(self, rows: list[dict], k: int) -> dict: ...


def sample_shard(
    stage: SamplingStage, cfg, run_dir: str, shard: int, chunks: dict, shash: str, threads: int
) -> dict:
    """One Ray task: sample every chunk of ``chunks`` (id -> problems) not yet on disk, one
    atomic part file each. A retry after a kill skips what its predecessor finished."""
    import torch

    start = time.perf_counter()
    torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    k = cfg.sample.k
    todo = {
        c: ch
        for c, ch in chunks.items()
        if not part_path(run_dir, "sample", c).is_file()
        or read_part(part_path(run_dir, "sample", c), len(ch) * k, shash) is None
    }
    report = {
        "shard": shard,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "chunks": sorted(chunks),
        "skipped": sorted(set(chunks) - set(todo)),
        "load_s": 0.0,
        "tokens": 0,
        "sequences": 0,
        "gen_s": 0.0,
    }
    if todo:
        gen, tok, info = stage.make_sampler(cfg)
        report["load_s"] = time.perf_counter() - start
        report["model"] = info.to_dict()
        for c in sorted(todo):
            desc = f"shard {shard} chunk {c}"
            rows = stage.sample_chunk(gen, tok, todo[c], c, cfg, shash, desc=desc)
            atomic_write_jsonl(part_path(run_dir, "sample", c), rows)
        report.update(
            tokens=gen.stats.tokens, sequences=gen.stats.sequences, gen_s=gen.stats.seconds
        )
    report["wall_s"] = time.perf_counter() - start
    return report


def _sample_pending(
    stage: SamplingStage, run_dir: Path, cfg, chunks: list, pending: list[int], shash: str
) -> tuple[list[dict], list[str], dict]:
    """Run the pending chunks as one Ray task per shard; returns (shard reports, failures,
    the worker plan)."""
    resumed = len(chunks) - len(pending)
    with ray_session(cfg.model.ray) as ray:
        n, opts, threads = worker_plan(ray, cfg.model.ray_workers, cfg.model.threads)
        shards = shard_chunks(pending, n)
        plan = {"workers": n, "resources": opts, "threads": threads}

        def task(i: int, shard: list[int]) -> dict:
            mine = {c: chunks[c] for c in shard}
            return sample_shard(stage, cfg, str(run_dir), i, mine, shash, threads)

        with Timer() as t_ray, chunk_bar(run_dir, "sample", len(chunks), resumed) as bar:
            reports, failures = run_shards(ray, task, shards, opts, "sample", bar)
        plan["seconds"] = t_ray.seconds
    return reports, failures, plan


def sample_ray(run_dir: Path, cfg, problems: list, stage: SamplingStage) -> dict:
    """``sample`` over Ray workers: same chunks, seeds and rows as the single process.
    ``stage``: the :mod:`reasonmaxxer.method.sampling` module (see :class:`SamplingStage`)."""
    from ..models import ModelInfo, resolve_model

    preflight(cfg.model.ray)
    s = cfg.sample
    chunks = stage.chunk_problems(problems, s.chunk_problems)
    expected = {c: len(ch) * s.k for c, ch in enumerate(chunks)}
    with Timer() as wall:
        kind, location, fp = resolve_model(cfg.model.model)
        model_info = ModelInfo(cfg.model.model, location, kind, fp, dtype=cfg.model.gen_dtype)
        settings = stage.sampler_settings(cfg)
        shash = stage.settings_hash(settings)
        path = run_dir / stage.ROLLOUTS
        done = stage.load_finished_chunks(path, expected, shash)
        done = absorb_parts(run_dir, "sample", done, expected, shash)
        atomic_write_jsonl(path, [r for c in sorted(done) for r in done[c]])
        clear_parts(run_dir, "sample")  # all in rollouts.jsonl now
        resumed = len(done)
        pending = [c for c in range(len(chunks)) if c not in done]
        reports, failures, plan = [], [], {}
        if pending:
            reports, failures, plan = _sample_pending(stage, run_dir, cfg, chunks, pending, shash)
        done = absorb_parts(run_dir, "sample", done, expected, shash)
        atomic_write_jsonl(path, [r for c in sorted(done) for r in done[c]])
    if failures:
        missing = [c for c in range(len(chunks)) if c not in done]
        raise UserError(
            f"{'; '.join(failures)}; {len(done)}/{len(chunks)} chunks are kept in {path} "
            f"(missing: {', '.join(map(str, missing))}); re-run the same command to resume"
        )
    clear_parts(run_dir, "sample")
    models = [r.pop("model") for r in reports if "model" in r]
    summary = stage.summarize_rollouts(list(iter_jsonl(path)), s.k)
    summary.update(
        {
            "settings": settings,
            "settings_hash": shash,
            "model": models[0] if models else model_info.to_dict(),
            "chunks": len(chunks),
            "chunks_resumed": resumed,
            "generation": {
                "sequences": sum(r["sequences"] for r in reports),
                "tokens": sum(r["tokens"] for r in reports),
                "seconds": sum(r["gen_s"] for r in reports),
            },
            "ray": {**plan, "shards": reports},
            "wall_time_s": wall.seconds,
        }
    )
    atomic_write_json(run_dir / "sample.json", summary)
    return summary
