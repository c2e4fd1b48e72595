"""Peak memory and time of the eval and train stages under each heap allocator.

Each cell is one ``python -m reasonmaxxer`` process (so the console script's own switch to
mimalloc does not apply: the cell's environment alone picks the allocator), measured with
``wait4``: peak RSS, user and system CPU seconds, wall seconds. Cells of one stage must give
the same numbers: the eval's completions and the train's adapter are hashed.

    python benchmarks/allocator.py --run runs/default --problems 256 --steps 3 \
        --stages eval,train,grpo

``grpo`` is the GRPO baseline (``reasonmaxxer grpo``) for ``--steps`` steps with its eval on
16 problems at the start and the end; its output hash is the adapter's.

Allocators: ``glibc`` (the C library's malloc, its dynamic mmap threshold), ``glibc-mmap1m``
(``MALLOC_MMAP_THRESHOLD_=1048576``: every allocation of 1 MiB or more gets its own mapping,
returned on free), ``mimalloc`` (``LD_PRELOAD`` of the cmeel-mimalloc wheel's library, what
the ``reasonmaxxer`` command uses on CPU Linux), ``jemalloc`` (the ``libjemalloc.so`` that
Ray's wheel ships, when Ray is installed).

Writes ``benchmarks/results/allocator.json`` and ``.md``; prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from records import add_record_args, redraw

from reasonmaxxer import allocator as alloc
from reasonmaxxer.io import iter_jsonl

RESULTS = Path(__file__).resolve().parent / "results"
RUN_FILES = ("config.yaml", "sample.json", "rollouts.jsonl", "selection.json", "selection.jsonl")


def jemalloc() -> str | None:
    try:
        import ray
    except ImportError:
        return None
    path = Path(ray.__file__).parent / "core" / "libjemalloc.so"
    return str(path) if path.is_file() else None


def allocator_env(name: str) -> dict[str, str] | None:
    """The environment of a cell, or None when that allocator is not installed here."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_")}
    env["TQDM_DISABLE"] = "1"
    if name == "glibc-mmap1m":
        env["MALLOC_MMAP_THRESHOLD_"] = str(2**20)
    elif name in ("mimalloc", "jemalloc"):
        lib = alloc.library() if name == "mimalloc" else jemalloc()
        if lib is None:
            return None
        env["LD_PRELOAD"] = lib
    return env


def measure(cmd: list[str], env: dict[str, str]) -> dict:
    with tempfile.TemporaryFile() as err:  # a pipe would fill up and block the child
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"error: failed: {' '.join(cmd)}\n{tail}")
    return {
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "wall_s": wall,
    }


def eval_cell(env: dict[str, str], args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="alloc-eval-"))
    try:
        bench = f"arith:level=2,n={args.problems},split=eval"
        cmd = [sys.executable, "-m", "reasonmaxxer", "eval", "--benchmarks", bench]
        cmd += ["--threads", str(args.threads), "--out", str(work / "eval")]
        cell = measure(cmd, env)
        completions = [r["completion"] for r in iter_jsonl(work / "eval" / "samples.jsonl")]
        results = json.loads((work / "eval" / "results.json").read_text())
        bench_result = next(iter(results["benchmarks"].values()))
        cell["score"] = bench_result["pass@1"]
        cell["hash"] = hashlib.sha256(json.dumps(completions).encode()).hexdigest()[:16]
        return cell
    finally:
        shutil.rmtree(work, ignore_errors=True)


def adapter_cell(work: Path, cmd: list[str], adapter: Path, env: dict[str, str]) -> dict:
    """Run a training command in ``work`` (removed after) and hash the adapter it wrote."""
    try:
        cell = measure(cmd, env)
        cell["score"] = None
        data = (adapter / "adapter_model.safetensors").read_bytes()
        cell["hash"] = hashlib.sha256(data).hexdigest()[:16]
        return cell
    finally:
        shutil.rmtree(work, ignore_errors=True)


def train_cell(env: dict[str, str], args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="alloc-train-"))
    for name in RUN_FILES:
        shutil.copy(Path(args.run) / name, work / name)
    cmd = [sys.executable, "-m", "reasonmaxxer", "train", str(work)]
    cmd += ["--max-steps", str(args.steps), "--threads", str(args.threads)]
    return adapter_cell(work, cmd, work / "adapter", env)


def grpo_cell(env: dict[str, str], args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="alloc-grpo-"))
    cmd = [sys.executable, "-m", "reasonmaxxer", "grpo", "--out", str(work / "grpo")]
    cmd += ["--max-steps", str(args.steps), "--threads", str(args.threads)]
    cmd += ["--eval-limit", "16", "--eval-every", "0"]
    return adapter_cell(work, cmd, work / "grpo" / "adapter", env)


CELLS = {"eval": eval_cell, "train": train_cell, "grpo": grpo_cell}


def cpu(cell: dict) -> float:
    """User + system seconds: the cost a cell's allocator adds, which other load on the
    machine does not inflate the way it does wall time."""
    return cell["user_s"] + cell["sys_s"]


def markdown(record: dict) -> str:
    lines = [
        "# Heap allocators: peak RSS and CPU time by stage",
        "",
        f"`{record['command']}`",
        "",
        f"Started {record['started']}; eval: the base model, greedy, {record['problems']} "
        f"`arith` level-2 eval problems; train: {record['steps']} optimizer steps on the "
        f"selection of `{record['run']}`; grpo: {record['steps']} steps; {record['threads']} thread(s). 1-minute load average "
        f"at the start {record['load_start']:.2f}, at the end {record['load_end']:.2f}.",
        "",
        "| stage | allocator | peak RSS (GiB) | user s | sys s | CPU s vs first | wall s | same output |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for stage in CELLS:
        cells = [c for c in record["cells"] if c["stage"] == stage]
        if not cells:
            continue
        first = cells[0]
        for c in cells:
            same = "yes" if c["hash"] == first["hash"] else "NO"
            lines.append(
                f"| {stage} | {c['allocator']} | {c['peak_rss_mib'] / 1024:.2f} | "
                f"{c['user_s']:.0f} | {c['sys_s']:.1f} | {cpu(c) / cpu(first):.2f} | "
                f"{c['wall_s']:.0f} | {same} |"
            )
    if record.get("notes"):
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--run", help="a finished run folder (its selection is trained); no train cells without it"
    )
    ap.add_argument("--problems", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stages", default="eval,train", help="comma list of eval, train, grpo")
    ap.add_argument("--allocators", default="glibc,glibc-mmap1m,mimalloc,jemalloc")
    add_record_args(ap, RESULTS / "allocator.json")
    args = ap.parse_args()
    out = Path(args.out)
    if redraw(args, markdown):
        return
    record = {
        "command": "python benchmarks/allocator.py " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": Path(args.run).name if args.run else None,
        "problems": args.problems,
        "steps": args.steps,
        "threads": args.threads,
        "load_start": os.getloadavg()[0],
        "cells": [],
    }
    stages = args.stages.split(",")
    if set(stages) - set(CELLS):
        raise SystemExit(f"error: --stages: unknown {sorted(set(stages) - set(CELLS))}")
    if "train" in stages and not args.run:
        raise SystemExit("error: the train stage needs --run")
    for stage in stages:
        for name in args.allocators.split(","):
            env = allocator_env(name)
            if env is None:
                print(f"skip {name}: not installed", file=sys.stderr)
                continue
            cell = {"stage": stage, "allocator": name, **CELLS[stage](env, args)}
            record["cells"].append(cell)
            print(cell, flush=True)
            record["load_end"] = os.getloadavg()[0]
            out.write_text(json.dumps(record, indent=1) + "\n")  # kept if a later cell fails
    out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
