"""A frozen LM head and a strided input: the cost ``models.contiguous_head_inputs`` removes.

transformers slices the last hidden states for ``logits_to_keep`` (a strided view). When the
head's weight does not require grad (a merged adapter, a PEFT model's frozen base, a reference
model), ``torch.matmul`` does not fold that view into one matrix product; it runs ``bmm`` on
the weight expanded to a copy per row. Each case runs in its own process (so its peak RSS is
its own): the embedded model in bfloat16 on one thread, frozen, a prefill of the default eval's
first ``--rows`` prompts with ``logits_to_keep=1``, timed ``--reps`` times after one warm-up;
the hook on (the loaded model, as every stage gets it) or removed.

    python benchmarks/frozen_head.py   # writes results/frozen_head.{json,md}
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from reasonmaxxer.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def case(hook: bool, rows: int, reps: int) -> dict:
    """One measurement, in this process: seconds per prefill and peak RSS."""
    import torch

    from reasonmaxxer.config import build_run_config
    from reasonmaxxer.engine import left_pad
    from reasonmaxxer.eval.data import load_benchmark
    from reasonmaxxer.eval.prompting import build_prompt
    from reasonmaxxer.models import load_model

    torch.set_num_threads(1)
    cfg = build_run_config()
    model, tok, _ = load_model(None, dtype="bfloat16")
    model.requires_grad_(False)
    head = model.get_output_embeddings()
    if not hook:
        head._forward_pre_hooks.clear()
    problems = load_benchmark(cfg.eval.benchmarks, limit=rows)
    prompts = [
        tok(build_prompt(tok, p.problem, cfg.prompt), add_special_tokens=False)["input_ids"]
        for p in problems
    ]
    ids, mask = left_pad(prompts, tok.pad_token_id)
    times = []
    with torch.inference_mode():
        for _ in range(reps + 1):
            start = time.perf_counter()
            logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits
            times.append(time.perf_counter() - start)
    return {
        "hook": hook,
        "rows": rows,
        "prompt_tokens": int(ids.shape[1]),
        "seconds": sorted(times[1:])[len(times[1:]) // 2],
        "seconds_all": times[1:],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "logits_sum": float(logits.float().sum()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--case", choices=["on", "off"], help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "frozen_head"))
    args = ap.parse_args()
    if args.case:
        print(json.dumps(case(args.case == "on", args.rows, args.reps)))
        return 0
    out = []
    for c in ("off", "on"):
        cmd = [sys.executable, __file__, "--case", c, "--rows", str(args.rows)]
        proc = subprocess.run([*cmd, "--reps", str(args.reps)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"error: case {c} failed:\n{proc.stderr[-2000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    lines = [
        f"Frozen head, {args.rows}-row prefill, logits_to_keep=1, bfloat16, 1 thread "
        f"(median of {args.reps} after a warm-up; one process per case).",
        "",
        "| head input | prefill s | peak RSS MiB |",
        "|---|---|---|",
    ]
    for r in out:
        label = "contiguous (hook on)" if r["hook"] else "strided view (hook off)"
        lines.append(f"| {label} | {r['seconds']:.3f} | {r['peak_rss_mib']:.0f} |")
    off, on = out
    lines += [
        "",
        f"Speed-up {off['seconds'] / on['seconds']:.0f}x, "
        f"{(off['peak_rss_mib'] - on['peak_rss_mib']) / 1024:.2f} GiB less peak RSS; "
        f"logits sums {off['logits_sum']:.4f} vs {on['logits_sum']:.4f}.",
    ]
    md = "\n".join(lines) + "\n"
    atomic_write_json(args.out + ".json", {"cases": out, "argv": sys.argv})
    atomic_write_text(args.out + ".md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
