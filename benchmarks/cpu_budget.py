"""The default job stage by stage on this machine: wall time, tokens/s, peak RSS, and the floor.

Each stage of ``reasonmaxxer run`` runs as its own command in its own process (so each peak
RSS is that stage's own), on the packaged default config:

    sample -> select -> train -> eval base -> eval adapter

The *floor* of a stage is what a plain forward pass over that many tokens costs on these
cores, measured here: the model in the stage's dtype, a batch of full sequences through the
network (no cache, no sampling, no Python loop). ``of floor`` is the floor's time over the
stage's own time: 100% would mean the stage spends nothing beyond the matmuls.

    python benchmarks/cpu_budget.py --work /tmp/budget --label before
    python benchmarks/cpu_budget.py --work /tmp/budget --label after --limit 100   # smaller
    python benchmarks/cpu_budget.py --work /tmp/budget --label after \
        --rollouts-from runs/default --limit 100     # reuse a run's rollouts: no sample stage
    python benchmarks/cpu_budget.py --from-run runs/default --label run   # tabulate a `run`

``--from-run`` runs nothing: it reads a finished ``reasonmaxxer run`` folder's
``stages.json`` (each stage's wall time and its own peak RSS, all in one process) and only
measures the floors.

Writes ``benchmarks/results/cpu_budget_<label>.json`` and ``.md``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run_stage(args: list[str], env: dict) -> dict:
    """Run ``python -m reasonmaxxer ARGS``; wall seconds and the child's own peak RSS."""
    cmd = [sys.executable, "-m", "reasonmaxxer", *args]
    print("+", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"error: stage failed with exit {code}: {shlex.join(cmd)}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime}


def forward_floor(model_spec: str, dtype: str, autocast: bool, seq: int, batch: int) -> float:
    """Tokens/s of a plain batched forward pass (``batch`` x ``seq`` tokens) on this machine."""
    import torch

    from reasonmaxxer.cli.util import set_threads
    from reasonmaxxer.devices import autocast as ac
    from reasonmaxxer.models import load_model

    set_threads(None)  # the free cores, as the stages choose them
    model, _, _ = load_model(model_spec, dtype=dtype, device="cpu")
    ids = torch.randint(0, model.config.vocab_size, (batch, seq))
    times = []
    with torch.inference_mode(), ac(model, enabled=autocast):
        for _ in range(4):
            start = time.perf_counter()
            model(input_ids=ids, logits_to_keep=1)
            times.append(time.perf_counter() - start)
    return batch * seq / min(times[1:])


def run_all(run_dir: Path, args) -> dict:
    """Every stage as its own command and process; with ``--rollouts-from`` the sample stage
    is that run's (its files copied, its wall time and peak taken from its stages.json)."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    extra = ["--limit", str(args.limit)] if args.limit else []
    stages = {}
    if args.rollouts_from:
        src = Path(args.rollouts_from)
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("rollouts.jsonl", "sample.json", "config.yaml"):
            shutil.copy(src / name, run_dir / name)
        prev = json.loads((src / "stages.json").read_text())["sample"]
        stages["sample"] = {"wall_s": prev["wall_time_s"], "peak_rss_mib": prev["peak_rss_mib"]}
    else:
        stages["sample"] = run_stage(["sample", "--model", args.model, "--out", str(run_dir)], env)
    stages["select"] = run_stage(["select", str(run_dir)], env)
    stages["train"] = run_stage(["train", str(run_dir)], env)
    for label, adapter in (
        ("eval_base", []),
        ("eval_adapter", ["--adapter", str(run_dir / "adapter")]),
    ):
        out = run_dir / "eval" / label
        cmd = ["eval", "--config", str(run_dir / "config.yaml"), "--out", str(out)]
        stages[label] = run_stage([*cmd, *adapter, *extra], env)
    return stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", help="scratch folder for the run (created)")
    ap.add_argument("--rollouts-from", help="a run folder whose rollouts to reuse (no sample)")
    ap.add_argument("--from-run", help="tabulate a finished `reasonmaxxer run` folder instead")
    ap.add_argument("--label", default="now", help="name of this measurement (before/after)")
    ap.add_argument("--limit", type=int, default=None, help="eval problems (default: the job's)")
    ap.add_argument("--model", default="default")
    args = ap.parse_args()

    from reasonmaxxer.config import build_run_config

    cfg = build_run_config(overrides={"model": {"model": args.model}})
    if args.from_run:
        run_dir = Path(args.from_run)
        stages = {
            k: {"wall_s": v["wall_time_s"], "peak_rss_mib": v["peak_rss_mib"]}
            for k, v in json.loads((run_dir / "stages.json").read_text()).items()
        }
        eval_dirs = {"eval_base": "eval/base", "eval_adapter": "eval/adapter"}
    else:
        if not args.work:
            raise SystemExit("error: give --work (or --from-run)")
        run_dir = Path(args.work) / args.label
        stages = run_all(run_dir, args)
        eval_dirs = {"eval_base": "eval/eval_base", "eval_adapter": "eval/eval_adapter"}

    def load(name):
        return json.loads((run_dir / name).read_text())

    sample, train = load("sample.json"), load("train.json")
    stages["sample"]["tokens"] = sample["generation"]["tokens"]
    text = (run_dir / "selection.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    stages["select"]["tokens"] = sum(len(r["prompt_ids"]) + len(r["completion_ids"]) for r in rows)
    stages["train"]["tokens"] = train["tokens_processed"]
    for label, rel in eval_dirs.items():
        stages[label]["tokens"] = load(f"{rel}/results.json")["tokens_generated"]

    gen_floor = forward_floor(args.model, cfg.model.gen_dtype, False, 128, 16)
    fwd_floor = forward_floor(
        args.model, cfg.model.dtype, cfg.train.autocast == "bfloat16", 128, 16
    )
    # train: policy forward + backward (~2 forwards) = ~3 forwards a token, plus the reference
    # forward where train ran it (train.json "reference": "forward", or a run before it said)
    passes = 3 if train.get("reference") == "stored" else 4
    floors = {
        "sample": gen_floor,
        "select": fwd_floor,
        "train": fwd_floor / passes,
        "eval_base": gen_floor,
        "eval_adapter": gen_floor,
    }
    for name, s in stages.items():
        s["tok_s"] = s["tokens"] / s["wall_s"]
        s["floor_tok_s"] = floors[name]
        s["of_floor"] = s["tok_s"] / floors[name]
    total = sum(s["wall_s"] for s in stages.values())
    record = {
        "label": args.label,
        "config": "packaged default" + (f", eval limit {args.limit}" if args.limit else ""),
        "cores": os.cpu_count(),
        "load_avg_1min_at_end": os.getloadavg()[0],
        "stages": stages,
        "total_wall_s": total,
        "peak_rss_mib": max(s["peak_rss_mib"] for s in stages.values()),
    }
    RESULTS.mkdir(exist_ok=True)
    lines = [
        f"# CPU budget ({args.label}): {record['config']}, {record['cores']} cores, "
        f"load {record['load_avg_1min_at_end']:.1f} at the end",
        "",
        "| stage | wall s | tokens | tok/s | floor tok/s | of floor | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in stages.items():
        lines.append(
            f"| {name} | {s['wall_s']:.0f} | {s['tokens']:,} | {s['tok_s']:.0f} | "
            f"{s['floor_tok_s']:.0f} | {100 * s['of_floor']:.0f}% | {s['peak_rss_mib']:.0f} |"
        )
    lines.append(f"| **total** | **{total:.0f}** | | | | | **{record['peak_rss_mib']:.0f}** |")
    text = "\n".join(lines) + "\n"
    (RESULTS / f"cpu_budget_{args.label}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"cpu_budget_{args.label}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
