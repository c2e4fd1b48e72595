"""The entropy pass of ``select`` over Ray workers.

The selection stage passes in the function that scores a batch
(:func:`reasonmaxxer.method.selection.entropy_rows`), so this module does not import the stage that
calls it.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ..errors import UserError
from ..io import atomic_write_json, read_json
from .parts import clear_parts, part_dir
from .session import preflight, ray_session, run_shards, worker_plan


def _entropy_part(run_dir: Path, b: int) -> Path:
    return part_dir(run_dir, "entropy") / f"batch-{b:05d}.json"


def _batch_ids(batch: list[dict]) -> list[list]:
    return [[r["problem_id"], r["rollout"]] for r in batch]


def _read_entropy_part(path: Path, key: str, ids: list[list]) -> list[dict] | None:
    if not path.is_file():
        return None
    part = read_json(path)
    return part["rows"] if part.get("key") == key and part.get("ids") == ids else None


def entropy_shard(
    rows_fn, cfg, run_dir: str, shard: int, units: list, key: str, threads: int
) -> dict:
    """One Ray task: the teacher-forced entropies (``rows_fn(model, batch, precision, key)``)
    of every (index, batch) unit not yet on disk, one atomic part file per batch."""
    import torch

    from ..models import load_model

    start = time.perf_counter()
    torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    todo = [
        (b, batch)
        for b, batch in units
        if _read_entropy_part(_entropy_part(run_dir, b), key, _batch_ids(batch)) is None
    ]
    report = {"shard": shard, "host": socket.gethostname(), "pid": os.getpid()}
    report.update(batches=[b for b, _ in units], skipped=len(units) - len(todo), load_s=0.0)
    if todo:
        model, _, _ = load_model(
            cfg.model.model,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
            device=cfg.model.device,
        )
        report["load_s"] = time.perf_counter() - start
        for b, batch in todo:
            rows = rows_fn(model, batch, cfg.select.autocast, key)
            part = {"key": key, "ids": _batch_ids(batch), "rows": rows}
            atomic_write_json(_entropy_part(run_dir, b), part)
    report["wall_s"] = time.perf_counter() - start
    return report


def entropies_ray(
    run_dir: Path, batches: list[list[dict]], cfg, key: str, *, rows_fn
) -> list[list[dict]]:
    """The entropy pass of ``select`` over Ray workers: batch ``b`` goes to worker
    ``b % workers``; returns the ``entropies.jsonl`` rows per batch, in batch order: the
    rows the single process computes for the same batches. ``key``: the entropy cache key
    (:func:`.selection.entropy_key`), also the part files' key; ``rows_fn``: the function that
    scores one batch (:func:`.selection.entropy_rows`)."""
    from ..models import resolve_model

    preflight(cfg.model.ray)
    resolve_model(cfg.model.model)  # convert a GGUF once here, not in every worker
    units = list(enumerate(batches))
    with ray_session(cfg.model.ray) as ray:
        n, opts, threads = worker_plan(ray, cfg.model.ray_workers, cfg.model.threads)
        shards = [units[i::n] for i in range(min(n, len(units)))]

        def task(i: int, shard: list) -> dict:
            return entropy_shard(rows_fn, cfg, str(run_dir), i, shard, key, threads)

        _, failures = run_shards(ray, task, shards, opts, "entropy")
    out = []
    for b, batch in units:
        rows = _read_entropy_part(_entropy_part(run_dir, b), key, _batch_ids(batch))
        if rows is None:
            break
        out.append(rows)
    if failures:  # the parts stay: a re-run forms the same batches and skips those on disk
        raise UserError(
            f"{'; '.join(failures)}; finished batches are kept in {part_dir(run_dir, 'entropy')}; "
            "re-run the same command to resume"
        )
    clear_parts(run_dir, "entropy")
    return out
