"""Scale-out on existing engines: Ray workers for the embarrassingly parallel stages.

``sample`` is already cut into chunks, each generated with its own seed
(:func:`.sampling.chunk_seed`), so a shard is a set of chunks and any process that samples a
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
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import UserError
from .io import atomic_write_json, atomic_write_jsonl, iter_jsonl
from .runinfo import Timer

PARTS = "parts"
MAX_RETRIES = 3  # a shard's task is tried 1 + MAX_RETRIES times (worker or node death)
RAY_FIELDS = ("ray", "ray_workers")  # execution settings (config.EXECUTION_FIELDS)
_PART_RE = re.compile(r"chunk-(\d+)\.jsonl")


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
        m = _PART_RE.fullmatch(path.name)
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


# --------------------------------------------------------------------------- Ray session


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "--ray needs the ray package: pip install 'ray[default]' (or drop --ray)"
        ) from None
    return ray


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with one line, when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not answer."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\]]+?)\]?:(\d+)", address)
    if not m:
        raise UserError(f"--ray must be 'auto' or a cluster address HOST:PORT; got {address!r}")
    host, port = m.group(1), int(m.group(2))
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise UserError(f"Ray cluster at {address} is unreachable ({e.strerror or e})") from None


def preflight(address: str) -> None:
    """Before any work: ray importable and the address answering (one-line errors)."""
    _import_ray()
    if address != "auto":
        check_address(address)


@contextmanager
def ray_session(address: str):
    """Connect to (``auto``: or start) a Ray cluster; disconnect afterwards if we connected."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address != "auto":
        check_address(address)
    try:
        ray.init(
            address=None if address == "auto" else address,
            logging_level="WARNING",
            log_to_driver=False,  # workers' logs stay in the cluster's log folder
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot connect to the Ray cluster at {address}: {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_plan(ray, workers: int | None, threads: int | None) -> tuple[int, dict, int]:
    """How many workers, the Ray resources of each, and the torch threads each uses.

    Default: one worker per GPU of the cluster (1 GPU each), else one per CPU.
    """
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
    node_cpus = max(
        [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [1]
    )
    n = workers or gpus or cpus
    per = max(1, min(cpus // n, node_cpus))  # a task must fit on one node, or it never starts
    if gpus:
        return n, {"num_gpus": 1, "num_cpus": 1}, threads or per
    return n, {"num_cpus": per}, threads or per


# --------------------------------------------------------------------------- sample


def sample_shard(cfg, run_dir: str, shard: int, chunks: dict, shash: str, threads: int) -> dict:
    """One Ray task: sample every chunk of ``chunks`` (id -> problems) not yet on disk, one
    atomic part file each. A retry after a kill skips what its predecessor finished."""
    import torch

    from .sampling import make_sampler, sample_chunk

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
        gen, tok, info = make_sampler(cfg)
        report["load_s"] = time.perf_counter() - start
        report["model"] = info.to_dict()
        for c in sorted(todo):
            rows = sample_chunk(gen, tok, todo[c], c, cfg, shash, desc=f"shard {shard} chunk {c}")
            atomic_write_jsonl(part_path(run_dir, "sample", c), rows)
        report.update(
            tokens=gen.stats.tokens, sequences=gen.stats.sequences, gen_s=gen.stats.seconds
        )
    report["wall_s"] = time.perf_counter() - start
    return report


def run_shards(
    ray, fn, shards: list, opts: dict, name: str, progress=None
) -> tuple[list[dict], list[str]]:
    """Run ``fn(shard_index, shard)`` as one retried Ray task per shard.

    Returns (reports of finished shards, one message per shard that failed on every try).
    A shard's own error (a ``UserError`` in the worker) is not retried and is re-raised.
    ``progress()`` is called about once a second while shards run.
    """
    remote = ray.remote(max_retries=MAX_RETRIES)(fn)
    refs = {
        remote.options(name=f"{name}_shard_{i}", **opts).remote(i, shard): i
        for i, shard in enumerate(shards)
    }
    reports, failures = [], []
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
        if progress is not None:
            progress()
        if not ready:
            continue
        i = refs[ready[0]]
        try:
            reports.append(ray.get(ready[0]))
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, UserError):
                raise e.cause from None
            failures.append(f"shard {i}: {_first_line(e)}")
        except ray.exceptions.RayError as e:  # worker or node died on every try
            failures.append(f"shard {i} failed after {1 + MAX_RETRIES} tries ({_first_line(e)})")
    return sorted(reports, key=lambda r: r["shard"]), failures


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith("ray::"):
            return line.strip()[:200]
    return type(e).__name__


@contextmanager
def _chunk_bar(run_dir: Path, stage: str, total: int, done: int):
    """A driver-side progress bar over finished chunks (counted from the part files)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, desc=f"{stage} (ray)", unit="chunk", dynamic_ncols=True)

    def update() -> None:
        folder = part_dir(run_dir, stage)
        n = sum(1 for p in folder.iterdir() if _PART_RE.fullmatch(p.name)) if folder.is_dir() else 0
        bar.update(done + n - bar.n)

    try:
        yield update
    finally:
        update()
        bar.close()


def sample_ray(run_dir: Path, cfg, problems: list) -> dict:
    """``sample`` over Ray workers: same chunks, seeds and rows as the single process."""
    from .models import ModelInfo, resolve_model
    from .sampling import (
        ROLLOUTS,
        chunk_problems,
        load_finished_chunks,
        sampler_settings,
        settings_hash,
        summarize_rollouts,
    )

    preflight(cfg.model.ray)
    s = cfg.sample
    chunks = chunk_problems(problems, s.chunk_problems)
    expected = {c: len(ch) * s.k for c, ch in enumerate(chunks)}
    with Timer() as wall:
        kind, location, fp = resolve_model(cfg.model.model)
        model_info = ModelInfo(cfg.model.model, location, kind, fp, dtype=cfg.model.gen_dtype)
        settings = sampler_settings(cfg)
        shash = settings_hash(settings)
        path = run_dir / ROLLOUTS
        done = load_finished_chunks(path, expected, shash)
        done = absorb_parts(run_dir, "sample", done, expected, shash)
        atomic_write_jsonl(path, [r for c in sorted(done) for r in done[c]])
        clear_parts(run_dir, "sample")  # all in rollouts.jsonl now
        resumed = len(done)
        pending = [c for c in range(len(chunks)) if c not in done]
        reports, failures, plan = [], [], {}
        if pending:
            with ray_session(cfg.model.ray) as ray:
                n, opts, threads = worker_plan(ray, cfg.model.ray_workers, cfg.model.threads)
                shards = shard_chunks(pending, n)
                plan = {"workers": n, "resources": opts, "threads": threads}

                def task(i: int, shard: list[int]) -> dict:
                    return sample_shard(
                        cfg, str(run_dir), i, {c: chunks[c] for c in shard}, shash, threads
                    )

                with Timer() as t_ray, _chunk_bar(run_dir, "sample", len(chunks), resumed) as bar:
                    reports, failures = run_shards(ray, task, shards, opts, "sample", bar)
                plan["seconds"] = t_ray.seconds
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
    rows = list(iter_jsonl(path))
    summary = summarize_rollouts(rows, s.k)
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


# --------------------------------------------------------------------------- training (DDP)


class Dist:
    """Data parallelism for :func:`.training.optimize` under ``accelerate launch`` / ``torchrun``.

    ``grad_accum`` keeps its meaning: micro-batches per optimizer step, over *all* processes.
    Every process draws the same shuffled micro-batch order (same seed); process ``rank``
    runs micro-batches ``rank, rank + world, ...`` of each step, the gradients are summed
    over processes (an all-reduce of the LoRA gradients, which is what DDP does), and every
    process takes the same optimizer step. The adapter is therefore the single-process
    adapter with the same config, up to float summation order. Only the main process writes
    the log, checkpoints and the adapter. The single-process instance changes nothing.
    """

    def __init__(self, rank: int = 0, world: int = 1, device=None) -> None:
        self.rank, self.world, self.device = rank, world, device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, i: int) -> bool:
        """Whether micro-batch ``i`` of a step runs in this process."""
        return i % self.world == self.rank

    def reduce_grads(self, params) -> None:
        """Sum every parameter's gradient over processes (in place)."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as td

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        td.all_reduce(flat, op=td.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n

    def reduce_stats(
        self, acc: dict[str, float], seen: dict[str, int], names: list[str]
    ) -> tuple[dict[str, float], dict[str, int]]:
        """Sum each step statistic, and how many micro-batches defined it, over processes;
        ``names`` lists every statistic (the same in every process)."""
        if self.world == 1:
            return acc, seen
        import torch
        import torch.distributed as td

        values = [acc.get(k, 0.0) for k in names] + [float(seen.get(k, 0)) for k in names]
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        td.all_reduce(t, op=td.ReduceOp.SUM)
        total, counts = t[: len(names)].tolist(), t[len(names) :].tolist()
        acc = {k: v for k, v, c in zip(names, total, counts, strict=True) if c > 0}
        seen = {k: int(c) for k, c in zip(names, counts, strict=True) if c > 0}
        return acc, seen

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def close(self) -> None:
        """Wait for every process, then leave the process group."""
        if self.world > 1:
            import torch.distributed as td

            td.barrier()
            td.destroy_process_group()


SINGLE = Dist()


def launched_world() -> int:
    """Processes started by ``accelerate launch`` / ``torchrun`` (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_dist(grad_accum: int) -> Dist:
    """:data:`SINGLE`, or the process group of a launched run (``accelerate launch
    --multi_gpu`` and ``torchrun`` set ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR``): NCCL with
    one GPU per process, gloo on CPU. Checks that ``grad_accum`` splits over the processes."""
    world = launched_world()
    if world == 1:
        return SINGLE
    if grad_accum % world:
        raise UserError(
            f"--grad-accum is the micro-batches per optimizer step over all processes; "
            f"with {world} processes it must be a multiple of {world} (got {grad_accum})"
        )
    import torch
    import torch.distributed as td

    cuda = torch.cuda.is_available()
    device = None
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(td.get_rank(), td.get_world_size(), device)


def is_main_process() -> bool:
    """True unless this is a non-main process of a launched multi-process run."""
    return int(os.environ.get("RANK", "0")) == 0


# --------------------------------------------------------------------------- eval


def eval_slices(n: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` slices of ``n`` problems, one per worker, sizes differing by at
    most one, none empty: ``eval_slices(5, 2) == [(0, 2), (2, 5)]``."""
    w = max(1, min(workers, n))
    bounds = [round(i * n / w) for i in range(w + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(w)]


def slice_seed(seed: int, w: int) -> int:
    """The sampling seed of eval slice ``w``; slice 0 keeps the eval seed, so one worker
    reproduces the single process exactly."""
    from .sampling import chunk_seed

    return seed if w == 0 else chunk_seed(seed, w)


def _eval_part(out_dir: Path, b: int, w: int) -> Path:
    return part_dir(out_dir, "eval") / f"bench{b:03d}-slice{w:04d}.json"


def _read_eval_part(path: Path, key: str, ids: list[str]) -> dict | None:
    from .io import read_json

    if not path.is_file():
        return None
    part = read_json(path)
    return part if part.get("key") == key and part.get("ids") == ids else None


def eval_shard(
    model_cfg,
    prompt_cfg,
    eval_cfg,
    adapter,
    out_dir: str,
    shard: int,
    units: list,
    key: str,
    threads: int,
) -> dict:
    """One Ray task: every (benchmark b, slice w, problems) unit of ``units`` not yet on disk,
    one atomic part file each, through the existing generator (HF, or vLLM when chosen)."""
    import torch

    from .evaluation import benchmark_rows, make_generator

    start = time.perf_counter()
    torch.set_num_threads(threads)
    out_dir = Path(out_dir)
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
            model_cfg, prompt_cfg, adapter=adapter, batch_size=eval_cfg.batch_size
        )
        report.update(load_s=time.perf_counter() - start, model=info.to_dict(), backend=gen.name)
        for b, name, w, problems in todo:
            prompts, greedy, sampled = benchmark_rows(
                gen,
                problems,
                prompt_cfg,
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


def eval_ray(model_cfg, prompt_cfg, eval_cfg, out_dir: Path, benches: dict, *, adapter=None):
    """``eval`` over Ray workers: each benchmark cut into one contiguous slice per worker.

    Returns ``(rows, info, backend, stats)`` with ``rows[name] = (prompts, greedy,
    sampled)`` in problem order, as :func:`.evaluation.benchmark_rows` gives them for the
    whole benchmark. Greedy rows are the single process's; sampled rows have the same
    distribution (slice ``w > 0`` draws from its own seed, :func:`slice_seed`).
    """
    import hashlib
    import json

    from .config import to_dict
    from .models import ModelInfo, resolve_model

    preflight(model_cfg.ray)
    key_src = {
        "model": without_ray(to_dict(model_cfg)),
        "prompt": to_dict(prompt_cfg),
        "eval": to_dict(eval_cfg),
        "adapter": adapter,
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:16]
    resolve_model(model_cfg.model)  # convert a GGUF once here, not in every worker
    names = list(benches)
    with ray_session(model_cfg.ray) as ray:
        n, opts, threads = worker_plan(ray, model_cfg.ray_workers, model_cfg.threads)
        layout = {name: eval_slices(len(benches[name]), n) for name in names}
        shards = [
            [
                (b, name, w, benches[name][lo:hi])
                for b, name in enumerate(names)
                for w, (lo, hi) in enumerate(layout[name])
                if w == i
            ]
            for i in range(n)
        ]
        shards = [s for s in shards if s]

        def task(i: int, units: list) -> dict:
            return eval_shard(
                model_cfg, prompt_cfg, eval_cfg, adapter, str(out_dir), i, units, key, threads
            )

        with Timer() as t_ray:
            reports, failures = run_shards(ray, task, shards, opts, "eval")
    if failures:
        raise UserError(
            f"{'; '.join(failures)}; finished slices are kept in {part_dir(out_dir, 'eval')}; "
            "re-run the same command to resume"
        )
    rows = {}
    for b, name in enumerate(names):
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
        rows[name] = (prompts, greedy, sampled if eval_cfg.k > 1 else None)
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


# --------------------------------------------------------------------------- select (entropies)


def _entropy_part(run_dir: Path, b: int) -> Path:
    return part_dir(run_dir, "entropy") / f"batch-{b:05d}.json"


def _batch_ids(batch: list[dict]) -> list[list]:
    return [[r["problem_id"], r["rollout"]] for r in batch]


def _read_entropy_part(path: Path, key: str, ids: list[list]) -> list[dict] | None:
    from .io import read_json

    if not path.is_file():
        return None
    part = read_json(path)
    return part["rows"] if part.get("key") == key and part.get("ids") == ids else None


def entropy_shard(cfg, run_dir: str, shard: int, units: list, key: str, threads: int) -> dict:
    """One Ray task: the teacher-forced entropies of every (index, batch) unit not yet on
    disk, one atomic part file per batch."""
    import torch

    from .models import load_model
    from .selection import entropy_rows

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
            rows = entropy_rows(model, batch, cfg.select.autocast, key)
            part = {"key": key, "ids": _batch_ids(batch), "rows": rows}
            atomic_write_json(_entropy_part(run_dir, b), part)
    report["wall_s"] = time.perf_counter() - start
    return report


def entropies_ray(run_dir: Path, batches: list[list[dict]], cfg, key: str) -> list[list[dict]]:
    """The entropy pass of ``select`` over Ray workers: batch ``b`` goes to worker
    ``b % workers``; returns the ``entropies.jsonl`` rows per batch, in batch order: the
    rows the single process computes for the same batches. ``key``: the entropy cache key
    (:func:`.selection.entropy_key`), also the part files' key."""
    from .models import resolve_model

    preflight(cfg.model.ray)
    resolve_model(cfg.model.model)  # convert a GGUF once here, not in every worker
    units = list(enumerate(batches))
    with ray_session(cfg.model.ray) as ray:
        n, opts, threads = worker_plan(ray, cfg.model.ray_workers, cfg.model.threads)
        shards = [units[i::n] for i in range(min(n, len(units)))]

        def task(i: int, shard: list) -> dict:
            return entropy_shard(cfg, str(run_dir), i, shard, key, threads)

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
