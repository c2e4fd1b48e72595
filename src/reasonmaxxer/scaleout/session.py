"""The Ray session: connect (or start) a cluster with one-line errors, plan the workers,
and run one retried task per shard."""

from __future__ import annotations

import re
import socket
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from .parts import PART_RE, part_dir

MAX_RETRIES = 3  # a shard's task is tried 1 + MAX_RETRIES times (worker or node death)


def import_ray():
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
    import_ray()
    if address != "auto":
        check_address(address)


@contextmanager
def ray_session(address: str):
    """Connect to (``auto``: or start) a Ray cluster; disconnect afterwards if we connected."""
    ray = import_ray()
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
            failures.append(f"shard {i}: {first_line(e)}")
        except ray.exceptions.RayError as e:  # worker or node died on every try
            failures.append(f"shard {i} failed after {1 + MAX_RETRIES} tries ({first_line(e)})")
    return sorted(reports, key=lambda r: r["shard"]), failures


def first_line(e: Exception) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith("ray::"):
            return line.strip()[:200]
    return type(e).__name__


@contextmanager
def chunk_bar(run_dir: Path, stage: str, total: int, done: int):
    """A driver-side progress bar over finished chunks (counted from the part files)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, desc=f"{stage} (ray)", unit="chunk", dynamic_ncols=True)

    def update() -> None:
        folder = part_dir(run_dir, stage)
        n = sum(1 for p in folder.iterdir() if PART_RE.fullmatch(p.name)) if folder.is_dir() else 0
        bar.update(done + n - bar.n)

    try:
        yield update
    finally:
        update()
        bar.close()
