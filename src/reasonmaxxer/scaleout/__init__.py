"""Scale-out on existing engines: Ray workers for the embarrassingly parallel stages.

``sample`` is already cut into chunks, each generated with its own seed
(:func:`.parts.chunk_seed`), so a shard is a set of chunks and any process that samples a
chunk gets the same rows. With ``--ray auto|HOST:PORT`` the driver splits the pending chunks
round-robin into one shard per worker and runs one Ray *task* per shard
(``max_retries`` = :data:`MAX_RETRIES`). A task loads the existing generator once and writes
one part file per finished chunk, atomically, under ``RUN/parts/sample/``; the driver then
merges every complete chunk, in chunk (= problem) order, into ``rollouts.jsonl``, which is
byte for byte the file a single process writes.

Why Ray tasks rather than Ray Data ``map_batches``: the output is the part files, not a
dataset, so a Dataset adds a streaming executor and its start-up without doing any work for
us; a task per shard keeps the failure unit equal to the shard, so an error can name it,
retries are bounded (Ray Data actor pools retry without end by default), and a retried task
skips the chunks its killed predecessor already wrote: nothing finished is redone or
duplicated.

Modules: :mod:`.parts` (part files, shards, chunk seeds), :mod:`.session` (the Ray session and
the retried task per shard), :mod:`.ray_sample` / :mod:`.ray_eval` / :mod:`.ray_entropy` (one
driver per stage; the stage passes in its own functions, so nothing here imports a stage) and
:mod:`.dist` (data-parallel training under ``accelerate launch`` / ``torchrun``).
"""

from .dist import SINGLE, Dist, init_dist, is_main_process, launched_world
from .parts import (
    PARTS,
    RAY_FIELDS,
    absorb_parts,
    chunk_seed,
    clear_parts,
    part_dir,
    part_path,
    read_part,
    shard_chunks,
    without_ray,
)
from .ray_entropy import entropies_ray, entropy_shard
from .ray_eval import EvalJob, eval_ray, eval_shard, eval_slices, slice_seed
from .ray_sample import SamplingStage, sample_ray, sample_shard
from .session import (
    MAX_RETRIES,
    check_address,
    preflight,
    ray_session,
    run_shards,
    worker_plan,
)

__all__ = [
    "MAX_RETRIES",
    "PARTS",
    "RAY_FIELDS",
    "SINGLE",
    "Dist",
    "EvalJob",
    "SamplingStage",
    "absorb_parts",
    "check_address",
    "chunk_seed",
    "clear_parts",
    "entropies_ray",
    "entropy_shard",
    "eval_ray",
    "eval_shard",
    "eval_slices",
    "init_dist",
    "is_main_process",
    "launched_world",
    "part_dir",
    "part_path",
    "preflight",
    "ray_session",
    "read_part",
    "run_shards",
    "sample_ray",
    "sample_shard",
    "shard_chunks",
    "slice_seed",
    "without_ray",
    "worker_plan",
]
