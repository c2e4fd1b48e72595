"""Part files: what a Ray shard writes, one atomic file per finished unit, under
``RUN/parts/<stage>/``; the driver absorbs every complete one and then clears them. Also
the round-robin shards and the per-chunk seed that sampling and the Ray shards share."""

from __future__ import annotations

import re
import shutil
from contextlib import suppress
from pathlib import Path

from ..errors import UserError
from ..io import iter_jsonl

PARTS = "parts"
RAY_FIELDS = ("ray", "ray_workers")  # execution settings (config.EXECUTION_FIELDS)
PART_RE = re.compile(r"chunk-(\d+)\.jsonl")


def chunk_seed(seed: int, chunk: int) -> int:
    """The sampling seed of chunk ``chunk`` of a run seeded ``seed`` (any process that samples
    that chunk uses it, so a shard reproduces the single process's rows)."""
    return (seed * 1_000_003 + chunk) % (2**31 - 1)


def without_ray(model_dict: dict) -> dict:
    """A ``ModelConfig`` dict without the Ray settings (they change how, not what): the
    model part of a part file's key."""
    return {k: v for k, v in model_dict.items() if k not in RAY_FIELDS}


# --------------------------------------------------------------------------- part files


def part_dir(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / PARTS / stage


def part_path(run_dir: Path, stage: str, chunk: int) -> Path:
    return part_dir(run_dir, stage) / f"chunk-{chunk:05d}.jsonl"


def read_part(path: Path, expected_rows: int, shash: str) -> list[dict] | None:
    """The rows of one part file, or None if it is not a complete chunk for these settings.

    Part files are written atomically, so a present file is whole; a file made with other
    settings is refused like ``rollouts.jsonl`` would be.
    """
    rows = list(iter_jsonl(path))
    if any(r.get("settings_hash") != shash for r in rows):
        raise UserError(
            f"{path} was sampled with different settings; use a new --out folder or delete "
            f"{path.parent}"
        )
    keys = {(r["problem_id"], r["rollout"]) for r in rows}
    return rows if len(keys) == len(rows) == expected_rows else None


def absorb_parts(
    run_dir: Path, stage: str, done: dict[int, list[dict]], expected: dict[int, int], shash: str
) -> dict[int, list[dict]]:
    """``done`` (chunk -> rows) plus every complete part file of a chunk not yet in it."""
    folder = part_dir(run_dir, stage)
    if not folder.is_dir():
        return done
    out = dict(done)
    for path in sorted(folder.iterdir()):
        m = PART_RE.fullmatch(path.name)
        if not m or int(m.group(1)) in out or int(m.group(1)) not in expected:
            continue
        c = int(m.group(1))
        rows = read_part(path, expected[c], shash)
        if rows is not None:
            out[c] = rows
    return out


def clear_parts(run_dir: Path, stage: str) -> None:
    """Remove a stage's part files once they are merged (and ``parts/`` when empty)."""
    shutil.rmtree(part_dir(run_dir, stage), ignore_errors=True)
    with suppress(OSError):
        (Path(run_dir) / PARTS).rmdir()


def shard_chunks(pending: list[int], workers: int) -> list[list[int]]:
    """Round-robin shards of the pending chunk ids: ``[[c0, cW, ...], [c1, ...], ...]``."""
    return [pending[i::workers] for i in range(min(workers, len(pending)))]
