"""Continuous batching (refill freed rows) vs draining each batch, on the same prompts.

Both run in one process, alternating, on the embedded model at the default job's settings
(float32 where bf16 is not native, batch 64, 128 new tokens): the default eval's greedy
decoding of held-out problems, and its sampling (K rollouts per training problem at T=0.7,
top-p 0.95). Greedy outputs must be identical token for token.

    python benchmarks/decode_refill.py --problems 128   # writes results/decode_refill.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from reasonmaxxer.cli.util import set_threads
from reasonmaxxer.config import build_run_config
from reasonmaxxer.decoding import SamplingParams, decode, decode_stream
from reasonmaxxer.engine import left_pad
from reasonmaxxer.eval.data import load_benchmark
from reasonmaxxer.eval.prompting import build_prompt
from reasonmaxxer.models import load_model

RESULTS = Path(__file__).resolve().parent / "results"


def drained(model, prompts, pad_id, params, eos, generator, batch_size):
    """The previous HFGenerator loop: fixed batches, each run until its last row ends
    (``decode``; the committed results were measured before it became a thin wrapper over
    ``decode_stream`` with nothing to refill)."""
    out = []
    for b in range(0, len(prompts), batch_size):
        batch = prompts[b : b + batch_size]
        ids, mask = left_pad(batch, pad_id)
        out += decode(model, ids, mask, params, eos, generator)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=128, help="problems per workload")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    threads = set_threads(None)
    cfg = build_run_config()
    model, tok, _ = load_model("default", dtype=cfg.model.gen_dtype)
    eos = [model.generation_config.eos_token_id, tok.eos_token_id]
    eos = sorted({e for e in eos if isinstance(e, int)})

    def encode(spec, n_samples):
        problems = load_benchmark(spec)[: args.problems]
        ids = [
            tok(build_prompt(tok, p.problem, cfg.prompt), add_special_tokens=False)["input_ids"]
            for p in problems
        ]
        items = sorted((x for x in ids for _ in range(n_samples)), key=len, reverse=True)
        return items

    s, e = cfg.sample, cfg.eval
    workloads = {
        "greedy eval": (encode(e.benchmarks, 1), SamplingParams(e.max_new_tokens)),
        "sampling (K=8)": (
            encode(s.train, s.k)[: args.problems * 2],
            SamplingParams(s.max_new_tokens, s.temperature, s.top_p),
        ),
    }
    rows = []
    for name, (prompts, params) in workloads.items():
        best: dict[str, dict] = {}
        outs = {}
        for _ in range(args.reps):
            for how, fn in (("drain", drained), ("refill", None)):
                g = torch.Generator().manual_seed(0)
                start = time.perf_counter()
                with torch.inference_mode():
                    if fn:
                        out = fn(model, prompts, tok.pad_token_id, params, eos, g, 64)
                    else:
                        out = decode_stream(
                            model, prompts, tok.pad_token_id, params, eos, g, batch_size=64
                        )
                sec = time.perf_counter() - start
                tokens = sum(len(r) for r in out)
                outs[how] = out
                if how not in best or sec < best[how]["seconds"]:
                    best[how] = {"seconds": sec, "tokens": tokens, "tok_s": tokens / sec}
                print(name, how, f"{tokens / sec:.0f} tok/s", flush=True)
        same = None
        if params.greedy:
            same = sum(a == b for a, b in zip(outs["drain"], outs["refill"], strict=True))
        rows.append(
            {
                "workload": name,
                "sequences": len(prompts),
                "drain": best["drain"],
                "refill": best["refill"],
                "speedup": best["drain"]["seconds"] / best["refill"]["seconds"],
                "identical_greedy_sequences": same,
            }
        )
    record = {
        "threads": threads,
        "dtype": cfg.model.gen_dtype,
        "cores": os.cpu_count(),
        "load_avg_1min_at_end": os.getloadavg()[0],
        "reps": args.reps,
        "rows": rows,
    }
    lines = [
        f"# Refill vs drain ({record['cores']} cores, {threads} thread(s), "
        f"{record['dtype']}, batch 64; best of {args.reps}; load {record['load_avg_1min_at_end']:.1f})",
        "",
        "| workload | sequences | drain tok/s | refill tok/s | speedup | identical (greedy) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = (
            "-"
            if r["identical_greedy_sequences"] is None
            else f"{r['identical_greedy_sequences']}/{r['sequences']}"
        )
        lines.append(
            f"| {r['workload']} | {r['sequences']} | {r['drain']['tok_s']:.0f} | "
            f"{r['refill']['tok_s']:.0f} | {r['speedup']:.2f}x | {same} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decode_refill.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "decode_refill.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
