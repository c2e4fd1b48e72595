"""Measure candidate embedded default models: load time, speed, accuracy, edge-of-competence.

    python benchmarks/model_candidates.py default /path/to/gemma-3-270m-q4_k_m.gguf \
        --out benchmarks/results/model_candidates.json

For each model: first load (GGUF → cached safetensors conversion) and cached load time;
sampling throughput (batch 64, T=1); greedy accuracy on arith levels 1-5 and on GSM8K; and
the fraction of problems with 0 < pass rate < 1 at K=8, T=1.0 (the problems the method can
learn from). Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from reasonmaxxer.config import PromptConfig
from reasonmaxxer.eval.data import load_benchmark
from reasonmaxxer.eval.grading import grade
from reasonmaxxer.eval.prompting import build_prompt
from reasonmaxxer.generation import HFGenerator, SamplingParams
from reasonmaxxer.io import atomic_write_json
from reasonmaxxer.models import cache_root, load_model
from reasonmaxxer.runinfo import provenance


def accuracy(gen: HFGenerator, problems, params: SamplingParams, seed: int = 0) -> list[list[bool]]:
    cfg = PromptConfig()
    prompts = [build_prompt(gen.tokenizer, p.problem, cfg) for p in problems]
    outs = gen.generate(prompts, params, seed=seed, desc=f"T={params.temperature} n={params.n}")
    return [
        [grade(c.text, p.answer).correct for c in row]
        for p, row in zip(problems, outs, strict=True)
    ]


def measure(spec: str, n_level: int, n_gsm8k: int, n_mixed: int) -> dict:
    row: dict = {"model": spec}
    models_cache = cache_root() / "models"
    before = set(models_cache.glob("*")) if models_cache.exists() else set()
    t = time.perf_counter()
    load_model(spec)
    row["first_load_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model, tok, info = load_model(spec, dtype="bfloat16")
    row["cached_load_s"] = time.perf_counter() - t
    row["params_M"] = info.n_params / 1e6
    row["resolved"] = info.resolved
    gen = HFGenerator(model, tok, batch_size=64)

    greedy = SamplingParams(128, temperature=0.0)
    for level in range(1, 6):
        res = accuracy(gen, load_benchmark(f"arith:level={level},n={n_level},split=eval"), greedy)
        row[f"arith_l{level}_greedy"] = sum(r[0] for r in res) / len(res)
    start_tokens, start_s = gen.stats.tokens, gen.stats.seconds
    res = accuracy(
        gen, load_benchmark("gsm8k", limit=n_gsm8k), SamplingParams(256, temperature=0.0)
    )
    row["gsm8k_greedy"] = sum(r[0] for r in res) / len(res)
    res = accuracy(
        gen, load_benchmark(f"arith:level=2,n={n_mixed},split=eval"), SamplingParams(128, 1.0, n=8)
    )
    rates = [sum(r) / len(r) for r in res]
    row["arith_l2_sampled_acc"] = sum(rates) / len(rates)
    row["arith_l2_mixed_frac"] = sum(0 < p < 1 for p in rates) / len(rates)
    row["tokens_per_s"] = (gen.stats.tokens - start_tokens) / (gen.stats.seconds - start_s)
    del model
    new = (set(models_cache.glob("*")) if models_cache.exists() else set()) - before
    for d in new:  # leave the cache as we found it
        shutil.rmtree(d, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n-level", type=int, default=64)
    ap.add_argument("--n-gsm8k", type=int, default=32)
    ap.add_argument("--n-mixed", type=int, default=32)
    ap.add_argument("--out", default="benchmarks/results/model_candidates.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = [measure(m, args.n_level, args.n_gsm8k, args.n_mixed) for m in args.models]
    atomic_write_json(
        Path(args.out), {"rows": rows, "args": vars(args), "provenance": provenance()}
    )
    cols = ["model", "params_M", "first_load_s", "cached_load_s", "tokens_per_s"]
    cols += [f"arith_l{i}_greedy" for i in range(1, 6)]
    cols += ["gsm8k_greedy", "arith_l2_sampled_acc", "arith_l2_mixed_frac"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
