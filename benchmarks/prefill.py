"""The decode prefill of one sampling chunk, three ways, in one process, alternating.

A default sampling chunk is 8 problems x K = 8 samples: 64 rows whose prompts are 8 distinct
ones, and every prompt begins with the same chat template and system prompt. Timed (CPU
seconds of this process, best and all of ``--reps``):

- ``every row``: each of the 64 rows prefills its own prompt (the code before 34ff556);
- ``distinct``: each distinct prompt once, its cache rows copied (34ff556);
- ``distinct + shared start``: and the tokens all distinct prompts begin with once per batch
  (d731fd2, ``decoding._prefill`` today).

and a greedy eval's batch, 64 distinct prompts (the run's first 64 problems), with and
without the shared start run once.

    python benchmarks/prefill.py --run runs/default --threads 1

``--run`` is a run folder with ``rollouts.jsonl`` of the default job (its first 64 rows are
the chunk). Writes
``benchmarks/results/prefill.json`` and ``.md``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import torch

    from reasonmaxxer.decoding import _prefill, _shared_prefill
    from reasonmaxxer.engine import shared_prefix
    from reasonmaxxer.models import load_model
    from reasonmaxxer.runinfo import host_info

    torch.set_num_threads(args.threads)
    model, tok, _ = load_model("default", dtype="float32", device="cpu")
    lines = (Path(args.run) / "rollouts.jsonl").read_text().splitlines()
    every = [json.loads(line)["prompt_ids"] for line in lines]
    prompts = every[:64]
    distinct = [list(p) for p in dict.fromkeys(map(tuple, prompts))]
    start = shared_prefix(distinct)
    eval_batch = [list(p) for p in dict.fromkeys(map(tuple, every))][:64]
    pad = tok.pad_token_id
    ways = {
        "every row": lambda: _shared_prefill([model], prompts, pad, 0, "cpu"),
        "distinct": lambda: _shared_prefill([model], distinct, pad, 0, "cpu"),
        "distinct + shared start": lambda: _prefill([model], prompts, pad),
        "eval batch: 64 distinct": lambda: _shared_prefill([model], eval_batch, pad, 0, "cpu"),
        "eval batch: 64 distinct + shared start": lambda: _prefill([model], eval_batch, pad),
    }
    cpu = {name: [] for name in ways}
    with torch.inference_mode():
        for rep in range(args.reps):
            for name in list(ways)[:: 1 if rep % 2 == 0 else -1]:
                t = time.process_time()
                ways[name]()
                cpu[name].append(time.process_time() - t)
    record = {
        "command": f"python benchmarks/prefill.py --run RUN --threads {args.threads}",
        "host": {k: v for k, v in host_info().items() if k != "argv"},
        "rows": len(prompts),
        "distinct": len(distinct),
        "prompt_tokens_mean": sum(map(len, distinct)) / len(distinct),
        "shared_start": start,
        "cpu_s": cpu,
    }
    best = {name: min(v) for name, v in cpu.items()}
    lines = [
        f"# Prefill of one sampling chunk ({len(prompts)} rows, {len(distinct)} distinct "
        f"prompts of ~{record['prompt_tokens_mean']:.0f} tokens, {start} shared at the start)",
        "",
        f"`{record['command']}`; {record['host']['cpu']} ({record['host']['cpu_isa']}), "
        f"{args.threads} thread(s), float32, {args.reps} alternating repetitions.",
        "",
        "| prefill | CPU s (best) | all | vs its first row |",
        "|---|---:|---|---:|",
    ]
    for name, v in cpu.items():
        ref = "eval batch: 64 distinct" if name.startswith("eval") else "every row"
        runs = " / ".join(f"{x:.1f}" for x in v)
        lines.append(f"| {name} | {best[name]:.1f} | {runs} | {best[name] / best[ref]:.2f}x |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prefill.json").write_text(json.dumps(record, indent=1) + "\n")
    (RESULTS / "prefill.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
