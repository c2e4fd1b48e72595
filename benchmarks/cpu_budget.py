"""The default job stage by stage on this machine: wall time, tokens/s, peak RSS, and the floor.

Each stage of ``reasonmaxxer run`` runs as its own command in its own process (so each peak
RSS is that stage's own), on the packaged default config:

    sample -> select -> train -> eval base -> eval adapter

The *floor* of a stage is the time its matrix multiplications need at the rate a plain
forward pass reaches on this machine, measured here: the stage's FLOPs (from its token counts
and the model's linear layers) over the GFLOP/s of a 16 x 128 forward with the LM head on
every position, in the stage's dtype and at the thread count the stages ran with. ``of floor``
is the floor's time over the stage's own: 100% would mean the stage spends nothing beyond
the matmuls. What each stage computes, per token (``body`` = 2 x the parameters of every
linear layer but the LM head, ``head`` = 2 x vocab x hidden):

- sample, eval: each distinct prompt through the body once (the K samples of a problem share
  its prefill; head on its last position only), then every generated token through body and
  head;
- select: prompt + completion through the body, the head on completion positions;
- train: 3 passes (forward, the checkpointed recompute, the backward to the activations;
  the frozen weights take no gradient) of the body and of the head on completion positions,
  plus one forward of each where train ran the reference model.

Train counts every row's prompt in full, as a run before shared prefixes ran them
(``engine.build_batch(share_prefix=True)`` runs the tokens a micro-batch's rows share once:
~0.77x the tokens on the default selection), so from then on it can pass 100% (select shared
them at d731fd2 only).

Attention score FLOPs (under 5% at these lengths) and LoRA's own (under 3%) are left out, so
the floor is a slight underestimate.

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


def linear_flops(model) -> tuple[int, int]:
    """``(body, head)``: FLOPs a token of every linear layer but the LM head, and of the head."""
    import torch

    head = model.get_output_embeddings()
    body = sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m is not head
    )
    return 2 * body, 2 * head.weight.numel()


def forward_rate(model_spec: str, dtype: str, autocast: bool, threads: int) -> dict:
    """GFLOP/s of a plain 16 x 128 forward (LM head on every position) at ``threads``, and
    the model's per-token ``body``/``head`` FLOPs."""
    import torch

    from reasonmaxxer.devices import autocast as ac
    from reasonmaxxer.models import load_model

    torch.set_num_threads(threads)
    model, _, _ = load_model(model_spec, dtype=dtype, device="cpu")
    body, head = linear_flops(model)
    batch, seq = 16, 128
    ids = torch.randint(0, model.config.vocab_size, (batch, seq))
    times = []
    with torch.inference_mode(), ac(model, enabled=autocast):
        for _ in range(4):
            start = time.perf_counter()
            model(input_ids=ids)
            times.append(time.perf_counter() - start)
    flops = batch * seq * (body + head)
    return {"gflops": flops / min(times[1:]) / 1e9, "body": body, "head": head}


def stage_threads(run_dir: Path, eval_rel: str) -> int:
    """The torch threads the stages ran with: the run's manifest, else its base eval's."""
    for path in (run_dir / "manifest.json", run_dir / eval_rel / "results.json"):
        if path.is_file():
            host = json.loads(path.read_text()).get("provenance", {}).get("host", {})
            if host.get("torch_threads"):
                return int(host["torch_threads"])
    raise SystemExit(f"error: {run_dir}: no manifest or eval results naming the threads used")


def decode_flops(prompt_tokens: int, sequences: int, generated: int, body: int, head: int):
    """Prefill every prompt (head on its last position), then each generated token."""
    return prompt_tokens * body + sequences * head + generated * (body + head)


def prompt_token_counts(run_dir: Path, rel: str) -> tuple[int, int]:
    """``(tokens of its distinct prompts, sequences)`` of an eval folder's samples.jsonl."""
    from reasonmaxxer.models import load_tokenizer, resolve_model

    cfg = json.loads((run_dir / rel / "results.json").read_text())["config"]["model"]
    tok = load_tokenizer(resolve_model(cfg["model"])[1])
    lines = (run_dir / rel / "samples.jsonl").read_text().splitlines()
    prompts = [json.loads(line)["prompt"] for line in lines if line.strip()]
    tokens = sum(len(tok(p, add_special_tokens=False)["input_ids"]) for p in set(prompts))
    return tokens, len(prompts)


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
    from reasonmaxxer.runinfo import host_info

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

    threads = stage_threads(run_dir, eval_dirs["eval_base"])
    gen = forward_rate(args.model, cfg.model.gen_dtype, False, threads)
    fwd_precision = (cfg.model.dtype, cfg.train.autocast == "bfloat16")
    # one measurement where generation and training run the same precision (float32 here)
    fwd = (
        gen
        if fwd_precision == (cfg.model.gen_dtype, False)
        else forward_rate(args.model, *fwd_precision, threads)
    )
    body, head = gen["body"], gen["head"]
    rollouts = [json.loads(line) for line in (run_dir / "rollouts.jsonl").open() if line.strip()]
    # the K samples of a prompt need one prefill (decoding runs each distinct prompt once)
    prompt_tok = sum(len(p) for p in {tuple(r["prompt_ids"]) for r in rollouts})
    completion_tok = sum(len(r["completion_ids"]) for r in rows)
    all_tok = stages["select"]["tokens"]
    train_passes = 3 if train.get("reference") == "stored" else 4
    train_tok = stages["train"]["tokens"]
    flops = {
        "sample": decode_flops(prompt_tok, len(rollouts), stages["sample"]["tokens"], body, head),
        "select": all_tok * body + completion_tok * head,
        "train": train_passes * train_tok * (body + head * completion_tok / all_tok),
    }
    for label, rel in eval_dirs.items():
        prompts, seqs = prompt_token_counts(run_dir, rel)
        flops[label] = decode_flops(prompts, seqs, stages[label]["tokens"], body, head)
    for name, s in stages.items():
        rate = fwd["gflops"] if name in ("select", "train") else gen["gflops"]
        s["tok_s"] = s["tokens"] / s["wall_s"]
        s["gflop"] = flops[name] / 1e9
        s["floor_s"] = s["gflop"] / rate
        s["of_floor"] = s["floor_s"] / s["wall_s"]
    total = sum(s["wall_s"] for s in stages.values())
    record = {
        "label": args.label,
        "config": "packaged default" + (f", eval limit {args.limit}" if args.limit else ""),
        "cores": os.cpu_count(),
        "threads": threads,
        # the machine, without this command's argv (which names local run folders)
        "host": {k: v for k, v in host_info().items() if k != "argv"},
        "forward_gflops": {"generation": gen["gflops"], "train": fwd["gflops"]},
        "flops_per_token": {"body": body, "head": head},
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
        f"{record['host']['cpu']} ({record['host']['cpu_isa']}, bf16 native: "
        f"{record['host']['bf16_native']}), {threads} thread(s). A plain forward runs at "
        f"{gen['gflops']:.0f} GFLOP/s ({cfg.model.gen_dtype}) for generation, "
        f"{fwd['gflops']:.0f} GFLOP/s for select and train; a token costs "
        f"{body / 1e6:.0f} MFLOP in the body and {head / 1e6:.0f} MFLOP in the LM head.",
        "",
        "| stage | wall s | tokens | tok/s | GFLOP | floor s | of floor | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in stages.items():
        lines.append(
            f"| {name} | {s['wall_s']:.0f} | {s['tokens']:,} | {s['tok_s']:.0f} | "
            f"{s['gflop']:,.0f} | {s['floor_s']:.0f} | {100 * s['of_floor']:.0f}% | "
            f"{s['peak_rss_mib']:.0f} |"
        )
    floor = sum(s["floor_s"] for s in stages.values())
    record["total_floor_s"] = floor
    lines.append(
        f"| **total** | **{total:.0f}** | | | | **{floor:.0f}** | {100 * floor / total:.0f}% | "
        f"**{record['peak_rss_mib']:.0f}** |"
    )
    text = "\n".join(lines) + "\n"
    (RESULTS / f"cpu_budget_{args.label}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"cpu_budget_{args.label}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
