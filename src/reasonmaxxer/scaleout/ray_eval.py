"""``eval`` over Ray workers: each benchmark cut into one contiguous slice per worker.

The evaluation stage passes in the function that generates and grades a slice
(:func:`reasonmaxxer.eval.evaluation.benchmark_rows`), so this module does not import the stage
that calls it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..generation import make_generator
from ..io import atomic_write_json, identity_hash, read_json
from ..runinfo import Timer
from .parts import chunk_seed, clear_parts, part_dir, without_ray
from .session import preflight, ray_session, run_shards, worker_plan


def eval_slices(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` slices of ``n`` problems, one per worker, sizes differing by at
    most one, none empty: ``eval_slices(5, 2) == [(0, 2), (2, 5)]``."""
    w = max(1, min(workers, n))
    bounds = [round(i * n / w) for i in range(w + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(w)]


def slice_seed(seed: int, w: int) -> int:
    """The sampling seed of eval slice ``w``; slice 0 keeps the eval seed, so one worker
    reproduces the single process exactly."""
    return seed if w == 0 else chunk_seed(seed, w)


def _eval_part(out_dir: Path, b: int, w: int) -> Path:
    return part_dir(out_dir, "eval") / f"bench{b:03d}-slice{w:04d}.json"


def _read_eval_part(path: Path, key: str, ids: list[str]) -> dict | None:
    if not path.is_file():
        return None
    part = read_json(path)
    return part if part.get("key") == key and part.get("ids") == ids else None


@dataclass(frozen=True)
class EvalJob:
    """What every eval shard shares: the configs, the adapter, the output folder, the part
    files' key, torch threads per worker and ``rows_fn``, the function that generates and
    grades one slice (:func:`reasonmaxxer.eval.evaluation.benchmark_rows`)."""

    model_cfg: Any
    prompt_cfg: Any
    eval_cfg: Any
    adapter: str | None
    out_dir: str
    key: str
    threads: int
    rows_fn: Callable


def eval_shard(job: EvalJob, shard: int, units: list) -> dict:
    """One Ray task: every (benchmark b, slice w, problems) unit of ``units`` not yet on disk,
    one atomic part file each, through the existing generator (HF, or vLLM when chosen)."""
    import torch

    start = time.perf_counter()
    torch.set_num_threads(job.threads)
    out_dir, key, eval_cfg = Path(job.out_dir), job.key, job.eval_cfg
    todo = [
        u
        for u in units
        if _read_eval_part(_eval_part(out_dir, u[0], u[2]), key, [p.id for p in u[3]]) is None
    ]
    report = {"shard": shard, "host": socket.gethostname(), "pid": os.getpid()}
    report.update(units=len(units), skipped=len(units) - len(todo), load_s=0.0)
    report.update(tokens=0, sequences=0, gen_s=0.0)
    if todo:
        gen, info = make_generator(
            job.model_cfg, job.prompt_cfg, adapter=job.adapter, batch_size=eval_cfg.batch_size
        )
        report.update(load_s=time.perf_counter() - start, model=info.to_dict(), backend=gen.name)
        for b, name, w, problems in todo:
            prompts, greedy, sampled = job.rows_fn(
                gen,
                problems,
                job.prompt_cfg,
                eval_cfg,
                seed=slice_seed(eval_cfg.seed, w),
                desc=f"shard {shard} {name} slice {w}",
            )
            part = {"key": key, "ids": [p.id for p in problems], "prompts": prompts}
            part.update(greedy=greedy, sampled=sampled)
            atomic_write_json(_eval_part(out_dir, b, w), part)
        report.update(
            tokens=gen.stats.tokens, sequences=gen.stats.sequences, gen_s=gen.stats.seconds
        )
    report["wall_s"] = time.perf_counter() - start
    return report


def eval_key(model_cfg, prompt_cfg, eval_cfg, adapter: str | None) -> str:
    """The part files' key: every setting that changes a slice's rows (not the Ray ones)."""
    from ..config import to_dict

    key_src = {
        "model": without_ray(to_dict(model_cfg)),
        "prompt": to_dict(prompt_cfg),
        "eval": to_dict(eval_cfg),
        "adapter": adapter,
    }
    return identity_hash(key_src)


def eval_units(benches: dict, layout: dict, n: int) -> list[list[tuple]]:
    """Shard ``i`` gets slice ``i`` of every benchmark, as ``(b, name, w, problems)`` units;
    shards with no unit are dropped."""
    shards = [
        [
            (b, name, w, benches[name][lo:hi])
            for b, name in enumerate(benches)
            for w, (lo, hi) in enumerate(layout[name])
            if w == i
        ]
        for i in range(n)
    ]
    return [s for s in shards if s]


def _gather(out_dir: Path, benches: dict, layout: dict, key: str, k: int) -> dict:
    """Every benchmark's ``(prompts, greedy, sampled)`` joined from its slices' part files."""
    rows = {}
    for b, name in enumerate(benches):
        prompts, greedy, sampled = [], [], []
        for w, (lo, hi) in enumerate(layout[name]):
            ids = [p.id for p in benches[name][lo:hi]]
            part = _read_eval_part(_eval_part(out_dir, b, w), key, ids)
            if part is None:
                raise UserError(f"eval slice {w} of {name} is missing after its shard finished")
            prompts += part["prompts"]
            greedy += part["greedy"]
            if part["sampled"] is not None:
                sampled += part["sampled"]
        rows[name] = (prompts, greedy, sampled if k > 1 else None)
    return rows


def eval_ray(
    model_cfg, prompt_cfg, eval_cfg, out_dir: Path, benches: dict, *, rows_fn, adapter=None
):
    """``eval`` over Ray workers: each benchmark cut into one contiguous slice per worker.

    Returns ``(rows, info, backend, stats)`` with ``rows[name] = (prompts, greedy,
    sampled)`` in problem order, as ``rows_fn`` (:func:`.evaluation.benchmark_rows`) gives
    them for the whole benchmark. Greedy rows are the single process's; sampled rows have the
    same distribution (slice ``w > 0`` draws from its own seed, :func:`slice_seed`).
    """
    from ..models import ModelInfo, resolve_model

    preflight(model_cfg.ray)
    key = eval_key(model_cfg, prompt_cfg, eval_cfg, adapter)
    resolve_model(model_cfg.model)  # convert a GGUF once here, not in every worker
    with ray_session(model_cfg.ray) as ray:
        n, opts, threads = worker_plan(ray, model_cfg.ray_workers, model_cfg.threads)
        layout = {name: eval_slices(len(benches[name]), n) for name in benches}
        shards = eval_units(benches, layout, n)
        job = EvalJob(model_cfg, prompt_cfg, eval_cfg, adapter, str(out_dir), key, threads, rows_fn)

        def task(i: int, units: list) -> dict:
            return eval_shard(job, i, units)

        with Timer() as t_ray:
            reports, failures = run_shards(ray, task, shards, opts, "eval")
    if failures:
        raise UserError(
            f"{'; '.join(failures)}; finished slices are kept in {part_dir(out_dir, 'eval')}; "
            "re-run the same command to resume"
        )
    rows = _gather(out_dir, benches, layout, key, eval_cfg.k)
    clear_parts(out_dir, "eval")
    models = [r.pop("model") for r in reports if "model" in r]
    if models:
        info = ModelInfo(**models[0])
    else:
        kind, location, fp = resolve_model(model_cfg.model)
        info = ModelInfo(model_cfg.model, location, kind, fp, dtype=model_cfg.gen_dtype)
    backends = {r.pop("backend") for r in reports if "backend" in r}
    stats = {
        "sequences": sum(r["sequences"] for r in reports),
        "tokens": sum(r["tokens"] for r in reports),
        "seconds": sum(r["gen_s"] for r in reports),
        "ray": {"workers": n, "threads": threads, "seconds": t_ray.seconds, "shards": reports},
    }
    return rows, info, ",".join(sorted(backends)) or "hf", stats
