"""A train step with π_ref's log-probs stored by ``select`` against one that runs π_ref.

With ``gate: all`` (the default) no position is KL-anchored, so π_ref is needed only for the
log-prob of each taken token, which ``select`` computes anyway next to the entropies. ``train``
then skips the reference forward (``training.stored_reference``). This times both paths on the
same selection, one ``python -m reasonmaxxer train`` process per cell, cells alternating, and
compares what they learn:

    python benchmarks/train_reference.py --run runs/default --steps 8 --pairs 2

``--run`` is a run folder with ``config.yaml`` and ``rollouts.jsonl``; the selection is made
again with this code (so its rows carry the stored log-probs), and the ``forward`` cells train
on the same rows with them removed. Each cell: wall, user + system CPU seconds, peak RSS
(``wait4``), the loss of every step. At step 1 the adapter is still zero, so the forward
path's log-ratio is exactly 0 and the stored path's is the stored log-probs' offset from the
ones train's own batches give (bf16 autocast depends on the padding).

``--compare prefix`` times, on the stored path, steps that run the prompt tokens a
micro-batch shares once (``train.share_prefix``, the default) against steps that run them
once a row (``--no-share-prefix``):

    python benchmarks/train_reference.py --compare prefix --run runs/default --steps 8

Writes ``benchmarks/results/train_reference.json`` (``train_prefix.json`` with ``--compare
prefix``) and ``.md``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from allocator import allocator_env, cpu, measure
from records import add_record_args, redraw

from reasonmaxxer.io import iter_jsonl

RESULTS = Path(__file__).resolve().parent / "results"
RUN_FILES = ("config.yaml", "sample.json", "rollouts.jsonl")
# per comparison: (the new cell, the old cell); every prefix cell takes the stored path
MODES = {"reference": ("stored", "forward"), "prefix": ("shared", "unshared")}
TITLES = {
    "reference": "Train: stored π_ref log-probs against a reference forward each step",
    "prefix": "Train: the shared prompt prefix run once against once a row (stored path)",
}


def prepare(run: Path, threads: int, env: dict[str, str]) -> tuple[Path, dict]:
    """A folder with ``run``'s rollouts and this code's selection of them; the select cell."""
    base = Path(tempfile.mkdtemp(prefix="trainref-"))
    for name in RUN_FILES:
        shutil.copy(run / name, base / name)
    cmd = [sys.executable, "-m", "reasonmaxxer", "select", str(base), "--threads", str(threads)]
    cell = measure(cmd, env)
    rows = list(iter_jsonl(base / "selection.jsonl"))
    if not all("ref_logp" in r for r in rows):
        raise SystemExit("error: the selection carries no ref_logp: is this code installed?")
    return base, cell


def train_cell(base: Path, mode: str, args, env: dict[str, str]) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"trainref-{mode}-"))
    try:
        for name in ("config.yaml", "sample.json", "rollouts.jsonl", "selection.json"):
            shutil.copy(base / name, work / name)
        rows = list(iter_jsonl(base / "selection.jsonl"))
        if mode == "forward":
            rows = [{k: v for k, v in r.items() if k != "ref_logp"} for r in rows]
        (work / "selection.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        cmd = [sys.executable, "-m", "reasonmaxxer", "train", str(work)]
        cmd += ["--max-steps", str(args.steps), "--threads", str(args.threads)]
        if mode == "unshared":
            cmd.append("--no-share-prefix")
        cell = measure(cmd, env)
        summary = json.loads((work / "train.json").read_text())
        path = mode if args.compare == "reference" else "stored"
        if summary["reference"] != path:
            raise SystemExit(f"error: a {mode} cell ran the {summary['reference']} path")
        log = list(iter_jsonl(work / "train_log.jsonl"))
        cell["loss"] = [r["train/loss"] for r in log]
        cell["step1_logratio"] = [
            log[0].get("train/dec_logratio_pos"),
            log[0].get("train/dec_logratio_neg"),
        ]
        cell["adapter"] = _adapter(work / "adapter" / "adapter_model.safetensors")
        return cell
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _adapter(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def adapter_gap(a: dict, b: dict) -> tuple[float, float]:
    """(largest |a - b| over the adapter's entries, largest |a|)."""
    gap = max(float((a[k] - b[k]).abs().max()) for k in a)
    size = max(float(v.abs().max()) for v in a.values())
    return gap, size


def compare_pairs(cells: list[dict], adapters: dict, modes=MODES["reference"]) -> list[dict]:
    """Per pair: CPU and wall ratios new / old (``modes``), the largest per-step loss gap and
    the largest adapter entry gap (with the largest entry, for scale)."""
    new, old = modes
    out = []
    for p in sorted({c["pair"] for c in cells}):
        by = {c["mode"]: c for c in cells if c["pair"] == p}
        if len(by) < 2:
            continue
        s, f = by[new], by[old]
        gap, size = adapter_gap(adapters[p, new], adapters[p, old])
        out.append(
            {
                "pair": p,
                "cpu_ratio": cpu(s) / cpu(f),
                "wall_ratio": s["wall_s"] / f["wall_s"],
                "loss_gap": max(abs(x - y) for x, y in zip(s["loss"], f["loss"], strict=True)),
                "adapter_gap": gap,
                "adapter_max": size,
            }
        )
    return out


def markdown(record: dict) -> str:
    cells = record["cells"]
    compare = record.get("compare", "reference")
    new, old = MODES[compare]
    lines = [
        f"# {TITLES[compare]}",
        "",
        f"`{record['command']}`",
        "",
        f"Started {record['started']}, code {record['code']}; {record['steps']} optimizer steps "
        f"on the selection of `{record['run']}` (remade with this code: {record['select']['wall_s']:.0f} s, "
        f"peak {record['select']['peak_rss_mib'] / 1024:.2f} GiB); {record['threads']} thread(s); "
        f"1-minute load average {record['load_start']:.2f} at the start, {record['load_end']:.2f} "
        "at the end.",
        "",
        "| pair | path | wall s | CPU s | CPU s / step | peak RSS (GiB) | step-1 mean Δlogp (A>0, A<0) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        d = ", ".join("-" if v is None else f"{v:+.4f}" for v in c["step1_logratio"])
        lines.append(
            f"| {c['pair']} | {c['mode']} | {c['wall_s']:.0f} | {cpu(c):.0f} | "
            f"{cpu(c) / record['steps']:.1f} | {c['peak_rss_mib'] / 1024:.2f} | {d} |"
        )
    lines += [
        "",
        f"| pair | CPU s {new} / {old} | wall s {new} / {old} | largest loss gap | "
        "largest adapter gap (largest entry) |",
        "|---|---:|---:|---:|---|",
    ]
    for p in record.get("pairs", []):
        lines.append(
            f"| {p['pair']} | {p['cpu_ratio']:.2f} | {p['wall_ratio']:.2f} | "
            f"{p['loss_gap']:.2e} | {p['adapter_gap']:.2e} ({p['adapter_max']:.2e}) |"
        )
    if record.get("notes"):
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder with config.yaml and rollouts")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compare", choices=sorted(MODES), default="reference")
    add_record_args(ap, None)
    args = ap.parse_args()
    if args.out is None:
        name = "train_reference" if args.compare == "reference" else "train_prefix"
        args.out = str(RESULTS / f"{name}.json")
    out = Path(args.out)
    if redraw(args, markdown):
        return
    run = Path(args.run)
    if not all((run / n).is_file() for n in RUN_FILES):
        raise SystemExit(f"error: --run {run}: needs {', '.join(RUN_FILES)}")
    env = allocator_env("mimalloc") or allocator_env("glibc")  # what the command runs on
    code = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    record = {
        "command": "python benchmarks/train_reference.py " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": code or "unknown",
        "run": run.name,
        "steps": args.steps,
        "threads": args.threads,
        "compare": args.compare,
        "load_start": os.getloadavg()[0],
        "cells": [],
    }
    base, record["select"] = prepare(run, args.threads, env)
    adapters = {}
    try:
        for pair in range(1, args.pairs + 1):
            # alternate which path goes first, so a change in load hits both alike
            new, old = MODES[args.compare]
            modes = (new, old) if pair % 2 else (old, new)
            for mode in modes:
                cell = {"pair": pair, "mode": mode, **train_cell(base, mode, args, env)}
                adapters[pair, mode] = cell.pop("adapter")
                record["cells"].append(cell)
                print(cell, flush=True)
                record["load_end"] = os.getloadavg()[0]
                out.write_text(json.dumps(record, indent=1) + "\n")  # kept if a later cell fails
    finally:
        shutil.rmtree(base, ignore_errors=True)
    record["pairs"] = compare_pairs(record["cells"], adapters, MODES[args.compare])
    out.write_text(json.dumps(record, indent=1) + "\n")
    text = markdown(record)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
