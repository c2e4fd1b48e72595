"""Peak memory and time of the train stage: code versions and glibc's mmap threshold.

Each cell runs ``reasonmaxxer train RUN --max-steps N`` as its own process on a copy of a
finished run's selection (so every cell trains the same rows the same way) and reports its
peak RSS (``wait4``), wall time and the adapter's sha256 (equal adapters = the same numbers).

    python benchmarks/train_memory.py --run runs/default --steps 3 \
        --tree before=/tmp/old-checkout --thresholds default,2097152,65536

``--tree LABEL=PATH`` adds a source tree (its ``src`` goes first on PYTHONPATH; ``now`` is this
checkout, the one tree when none is given; the last tree gets every threshold, the others
the default). ``--thresholds``: values for ``MALLOC_MMAP_THRESHOLD_`` (``default`` leaves glibc's
dynamic threshold on). A fixed threshold sends every allocation at least that big to its own
``mmap``, returned to the kernel on free: the heap no longer fragments (what makes RSS far
exceed the live tensors on CPU) but every such allocation page-faults fresh memory.

Writes ``benchmarks/results/train_memory.json`` and ``.md``; prints the table.
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

RESULTS = Path(__file__).resolve().parent / "results"
RUN_FILES = ("config.yaml", "sample.json", "rollouts.jsonl", "selection.json", "selection.jsonl")


def run_cell(run: Path, src: Path | None, threshold: str, args) -> dict:
    """One train command on a fresh copy of ``run``'s selection."""
    work = Path(tempfile.mkdtemp(prefix="train-memory-"))
    try:
        for name in RUN_FILES:
            shutil.copy(run / name, work / name)
        env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(args.threads)}
        if src is not None:
            env["PYTHONPATH"] = str(src / "src")
        if threshold != "default":
            env["MALLOC_MMAP_THRESHOLD_"] = threshold
        cmd = [sys.executable, "-m", "reasonmaxxer", "train", str(work)]
        cmd += ["--max-steps", str(args.steps), "--threads", str(args.threads)]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"error: train failed: {' '.join(cmd)}")
        train = json.loads((work / "train.json").read_text())
        adapter = (work / "adapter" / "adapter_model.safetensors").read_bytes()
        return {
            "peak_rss_mib": usage.ru_maxrss / 1024,
            "wall_s": wall,
            "train_s": train["wall_time_s"],
            "steps": train["steps"],
            "adapter_sha256": hashlib.sha256(adapter).hexdigest()[:16],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def markdown(record: dict) -> str:
    lines = [
        "# Train stage: peak RSS by code version and glibc mmap threshold",
        "",
        f"`{record['command']}`",
        "",
        f"Started {record['started']}; {record['steps']} optimizer steps on the selection of "
        f"`{record['run']}`, {record['threads']} thread(s); 1-minute load average at the "
        f"start {record['load_start']:.2f}, at the end {record['load_end']:.2f}.",
        "",
        "| tree | MALLOC_MMAP_THRESHOLD_ | peak RSS (GiB) | train s | s/step vs first row | adapter |",
        "|---|---|---:|---:|---:|---|",
    ]
    first = record["cells"][0]
    for c in record["cells"]:
        ratio = c["train_s"] / first["train_s"]
        lines.append(
            f"| {c['tree']} | {c['threshold']} | {c['peak_rss_mib'] / 1024:.2f} | "
            f"{c['train_s']:.0f} | {ratio:.2f} | `{c['adapter_sha256']}` |"
        )
    same = len({c["adapter_sha256"] for c in record["cells"]}) == 1
    lines += ["", f"Adapters identical across cells: {'yes' if same else 'NO'}."]
    if record.get("notes"):
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a finished run folder (its selection is used)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tree", action="append", default=[], help="LABEL=PATH of another checkout")
    ap.add_argument("--thresholds", default="default,2097152,65536")
    ap.add_argument("--out", default=str(RESULTS / "train_memory.json"))
    ap.add_argument("--notes", help="a markdown file: the reading, kept in the record")
    ap.add_argument("--redraw", action="store_true", help="only re-render --out (with --notes)")
    args = ap.parse_args()
    if args.redraw:
        record = json.loads(Path(args.out).read_text())
        if args.notes:
            record["notes"] = Path(args.notes).read_text().strip()
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text(markdown(record))
        return
    trees: list[tuple[str, Path | None]] = [
        (t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree
    ]
    trees = trees or [("now", None)]
    record = {
        "command": "python benchmarks/train_memory.py " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": Path(args.run).name,
        "steps": args.steps,
        "threads": args.threads,
        "load_start": os.getloadavg()[0],
        "cells": [],
    }
    for label, src in trees:  # the thresholds are tried on the last tree
        thresholds = args.thresholds.split(",") if label == trees[-1][0] else ["default"]
        for threshold in thresholds:
            cell = run_cell(Path(args.run), src, threshold, args)
            record["cells"].append({"tree": label, "threshold": threshold, **cell})
            print(record["cells"][-1], flush=True)
    record["load_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
