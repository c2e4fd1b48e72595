"""Static KV cache and torch.compile vs the project's decoder, greedy, on one CPU thread.

One process, the embedded default model in float32 on the CPU, greedy decoding of the default
job's training-problem prompts (batch 64, 128 new tokens). Variants: (a) the project's
``decode_stream`` (eager, dynamic cache, rows leave as they end); (b) HF ``generate`` eager,
dynamic cache; (c) HF ``generate`` with ``cache_implementation="static"``, eager; (d) the same
with the decode step compiled by inductor; (e) transformers' continuous batching
(``generate_batch``), where it runs. Each variant gets one warm-up run (its one-off cost:
compile, cache set-up) and then two timed runs, alternating across variants. Tokens are
counted up to and including each row's end-of-sequence token, the same for every variant;
"same as (a)" compares those token ids.

    nice -n 5 python benchmarks/decode_compile.py   # writes results/decode_compile.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import time
from pathlib import Path

import torch

from reasonmaxxer.config import build_run_config
from reasonmaxxer.decoding import SamplingParams, decode_stream
from reasonmaxxer.engine import left_pad
from reasonmaxxer.eval.data import load_benchmark
from reasonmaxxer.eval.prompting import build_prompt
from reasonmaxxer.models import load_model

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = {
    "a": "project decode_stream (eager, dynamic cache)",
    "b": "HF generate, dynamic cache",
    "c": "HF generate, static cache",
    "d": "HF generate, static cache + torch.compile",
    "e": "HF generate_batch (continuous batching)",
}


def cut(row: list[int], eos: list[int]) -> list[int]:
    """New token ids up to and including the first end-of-sequence token."""
    for i, t in enumerate(row):
        if t in eos:
            return row[: i + 1]
    return row


def hf_generate(model, prompts, pad_id, eos, new, batch, **kw) -> list[list[int]]:
    """``model.generate`` greedy over left-padded batches; rows cut at their first EOS."""
    out = []
    for b in range(0, len(prompts), batch):
        ids, mask = left_pad(prompts[b : b + batch], pad_id)
        gen = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=new,
            pad_token_id=pad_id,
            eos_token_id=eos,
            **kw,
        )
        out += [cut(r.tolist(), eos) for r in gen[:, ids.shape[1] :]]
    return out


def variants(model, pad_id, eos, new, batch):
    """Variant key -> function(prompts) -> token ids per prompt."""
    from transformers import GenerationConfig
    from transformers.generation import CompileConfig

    compiled = CompileConfig(fullgraph=False, dynamic=False, mode="default")
    compiled._compile_all_devices = True  # generate compiles on cuda only unless told

    def cb(prompts):
        from transformers import ContinuousBatchingConfig

        cfg = GenerationConfig(
            do_sample=False, max_new_tokens=new, eos_token_id=eos, pad_token_id=pad_id
        )
        res = model.generate_batch(
            prompts,
            generation_config=cfg,
            continuous_batching_config=ContinuousBatchingConfig(
                num_blocks=64, max_batch_tokens=batch * 8
            ),
            warmup=False,
        )
        rows = sorted(res.values(), key=lambda r: int(r.request_id.rsplit("_", 1)[-1]))
        return [cut(list(r.generated_tokens), eos) for r in rows]

    static = {"cache_implementation": "static"}
    return {
        "a": lambda p: decode_stream(
            model, p, pad_id, SamplingParams(new), eos, None, batch_size=batch
        ),
        "b": lambda p: hf_generate(model, p, pad_id, eos, new, batch, disable_compile=True),
        "c": lambda p: hf_generate(
            model, p, pad_id, eos, new, batch, **static, disable_compile=True
        ),
        "d": lambda p: hf_generate(
            model, p, pad_id, eos, new, batch, **static, compile_config=compiled
        ),
        "e": cb,
    }


class Timeout(Exception):
    pass


def timed(fn, prompts, limit_s: int):
    """(seconds, output) of ``fn(prompts)``; raises :class:`Timeout` past ``limit_s``."""

    def alarm(*_):
        raise Timeout(f"stopped after {limit_s} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(limit_s)
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = fn(prompts)
        return time.perf_counter() - start, out
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def error_line(exc: BaseException) -> str:
    lines = [x for x in str(exc).strip().splitlines() if x.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=64, help="training-problem prompts decoded")
    ap.add_argument("--batch", type=int, default=64, help="rows per batch")
    ap.add_argument("--new", type=int, default=128, help="max new tokens")
    ap.add_argument("--reps", type=int, default=2, help="timed runs per variant after warm-up")
    ap.add_argument("--only", default="abcde", help="variant letters to run")
    ap.add_argument("--limit-s", type=int, default=900, help="give up on one run after this")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = build_run_config()
    model, tok, _ = load_model("default", dtype="float32", device="cpu")
    eos = sorted({e for e in (model.generation_config.eos_token_id, tok.eos_token_id) if e})
    problems = load_benchmark(cfg.sample.train)[: args.prompts]
    prompts = [
        tok(build_prompt(tok, p.problem, cfg.prompt), add_special_tokens=False)["input_ids"]
        for p in problems
    ]
    fns = variants(model, tok.pad_token_id, eos, args.new, args.batch)
    keys = [k for k in "abcde" if k in args.only]
    rows = {k: {"variant": k, "name": NAMES[k], "runs_s": []} for k in keys}
    outs = {}
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    for k in keys:  # warm-up: one full run, so compile/set-up lands here
        if k == "d" and not compiler:
            rows[k]["error"] = "no C++ compiler on PATH: inductor cannot build"
            continue
        try:
            rows[k]["warmup_s"], outs[k] = timed(fns[k], prompts, args.limit_s)
        except Exception as exc:  # noqa: BLE001 - a variant that cannot run is a result
            rows[k]["error"] = error_line(exc)
        print(k, "warm-up", rows[k].get("warmup_s", rows[k].get("error")), flush=True)
    for _ in range(args.reps):
        for k in keys:
            if "error" in rows[k]:
                continue
            sec, out = timed(fns[k], prompts, args.limit_s)
            rows[k]["runs_s"].append(sec)
            print(k, f"{sec:.1f} s", flush=True)
            assert out == outs[k], f"variant {k} is not deterministic across runs"
    for k, r in rows.items():
        if "error" in r:
            continue
        r["tokens"] = sum(len(x) for x in outs[k])
        r["best_s"] = min(r["runs_s"])
        r["tok_s"] = r["tokens"] / r["best_s"]
        r["one_off_s"] = max(r["warmup_s"] - r["best_s"], 0.0)
        if "a" in outs:
            r["same_as_a"] = sum(x == y for x, y in zip(outs[k], outs["a"], strict=True))
        if "a" in rows and "best_s" in rows["a"]:
            r["speed_vs_a"] = rows["a"]["best_s"] / r["best_s"]
    record = {
        "prompts": len(prompts),
        "batch": args.batch,
        "max_new_tokens": args.new,
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "cores": os.cpu_count(),
        "cxx": compiler,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "load_avg_1min_at_end": os.getloadavg()[0],
        "reps": args.reps,
        "rows": list(rows.values()),
    }
    lines = [
        f"# Greedy decode: static cache / torch.compile ({len(prompts)} prompts, batch "
        f"{args.batch}, {args.new} new tokens, {record['threads']} thread, float32; best of "
        f"{args.reps} after a warm-up; load {record['load_avg_1min_at_end']:.1f})",
        "",
        "| variant | tok/s | best s | runs s | warm-up s | one-off s | vs (a) | same ids as (a) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.values():
        if "error" in r:
            lines.append(f"| ({r['variant']}) {r['name']} | {r['error']} ||||||||")
            continue
        same = f"{r['same_as_a']}/{len(prompts)}" if "same_as_a" in r else "-"
        lines.append(
            f"| ({r['variant']}) {r['name']} | {r['tok_s']:.0f} | {r['best_s']:.1f} | "
            f"{' / '.join(f'{s:.1f}' for s in r['runs_s'])} | {r['warmup_s']:.1f} | "
            f"{r['one_off_s']:.1f} | {r.get('speed_vs_a', 0):.2f}x | {same} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "decode_compile.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "decode_compile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
