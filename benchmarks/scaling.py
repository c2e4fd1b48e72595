"""Sampling throughput and wall time: one process vs ``--ray`` with 1 and 2 workers.

Same settings, same machine, a fresh run folder each time; the Ray cluster is a local one
started once in this process (its start-up is reported apart: a cluster is started once and
then serves every stage). For each Ray run it reports the overhead a shard pays beyond its
work: the model load in the worker, plus the dispatch time (worker start, scheduling,
result fetch = the driver's wait minus the slowest shard's own time). Every Ray run's
``rollouts.jsonl`` is compared byte for byte with the single process's.

    python benchmarks/scaling.py            # default model, ~5 min on 2 idle cores
    python benchmarks/scaling.py --n 16 --k 2 --max-new-tokens 16 --model DIR   # smoke

Writes ``benchmarks/results/scaling.json`` and ``scaling.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _cfg(args, ray: str | None, workers: int | None):
    from reasonmaxxer.config import build_run_config

    return build_run_config(
        overrides={
            "model": {
                "model": args.model,
                "gen_dtype": args.gen_dtype,
                "ray": ray,
                "ray_workers": workers,
            },
            "sample": {
                "train": f"arith:level=2,n={args.n},split=train",
                "k": args.k,
                "max_new_tokens": args.max_new_tokens,
                "chunk_problems": args.chunk_problems,
                "batch_size": args.batch_size,
                "temperature": 0.7,
                "top_p": 0.95,
                "seed": 42,
            },
        }
    )


def run_one(args, mode: str, workers: int | None, root: Path) -> dict:
    import torch

    from reasonmaxxer.method.sampling import ROLLOUTS, sample

    out = root / f"{mode}-{time.monotonic_ns()}"
    torch.set_num_threads(args.cores)
    start = time.perf_counter()
    s = sample(out, _cfg(args, "auto" if workers else None, workers))
    wall = time.perf_counter() - start
    row = {
        "mode": mode,
        "load_avg_1min_after": os.getloadavg()[0],
        "workers": workers or 0,
        "wall_s": wall,
        "tokens": s["tokens"],
        "rollouts": s["rollouts"],
        "tokens_per_s": s["tokens"] / wall,
        "gen_s": s["generation"]["seconds"],
        "bytes": (out / ROLLOUTS).read_bytes(),
    }
    if workers:
        shards = s["ray"]["shards"]
        slowest = max(sh["wall_s"] for sh in shards)
        row["ray"] = {
            "threads_per_worker": s["ray"]["threads"],
            "driver_wait_s": s["ray"]["seconds"],
            "dispatch_s": s["ray"]["seconds"] - slowest,
            "shards": [
                {k: sh[k] for k in ("shard", "chunks", "load_s", "gen_s", "wall_s", "tokens")}
                for sh in shards
            ],
            "overhead_per_shard_s": (
                sum(sh["load_s"] for sh in shards) / len(shards) + s["ray"]["seconds"] - slowest
            ),
        }
    return row


def table(result: dict) -> str:
    lines = [
        "| mode | workers | wall s | tokens | tokens/s | speed-up | model load per shard s "
        "| dispatch s | overhead per shard s | same rows |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        ray = r.get("ray")
        load = f"{sum(s['load_s'] for s in ray['shards']) / len(ray['shards']):.1f}" if ray else "-"
        lines.append(
            f"| {r['mode']} | {r['workers'] or '-'} | {r['wall_s']:.1f} | {r['tokens']} "
            f"| {r['tokens_per_s']:.0f} | {r['speedup']:.2f}x | {load} "
            f"| {ray['dispatch_s']:.1f} | {ray['overhead_per_shard_s']:.1f} | "
            f"{'yes' if r['same_rows'] else 'NO'} |"
            if ray
            else f"| {r['mode']} | - | {r['wall_s']:.1f} | {r['tokens']} "
            f"| {r['tokens_per_s']:.0f} | 1.00x | - | - | - | (reference) |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--gen-dtype", default="bfloat16")
    p.add_argument("--n", type=int, default=24, help="training problems")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--chunk-problems", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()

    import ray

    from reasonmaxxer.runinfo import provenance

    t0 = time.perf_counter()
    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - t0
    runs = []
    with tempfile.TemporaryDirectory(prefix="rmx-scaling-") as tmp:
        root = Path(tmp)
        # the single process first warms the model cache (GGUF conversion) for everyone
        for mode, workers in (("single process", None), ("ray", 1), ("ray", 2)):
            runs.append(run_one(args, mode, workers, root))
            print(f"{mode} {workers or ''}: {runs[-1]['wall_s']:.1f}s", file=sys.stderr)
    ray.shutdown()
    ref_wall, ref_bytes = runs[0]["wall_s"], runs[0]["bytes"]
    for r in runs:
        r["speedup"] = ref_wall / r["wall_s"]
        r["same_rows"] = r.pop("bytes") == ref_bytes
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "ray_init_s": ray_init_s,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "provenance": provenance(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    md = (
        f"# Sampling: one process vs Ray workers ({args.cores} cores)\n\n"
        f"Settings: model {args.model}, {args.n} arith L2 problems x k={args.k}, "
        f"max {args.max_new_tokens} new tokens, chunks of {args.chunk_problems}, "
        f"batch {args.batch_size}. Local Ray cluster start-up (once): {ray_init_s:.1f} s, "
        "not in the wall times. 1-minute load average after each run: "
        + ", ".join(f"{r['load_avg_1min_after']:.1f}" for r in runs)
        + " (the machine is shared).\n\n"
        + table(result)
        + "\n"
    )
    (out / "scaling.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
