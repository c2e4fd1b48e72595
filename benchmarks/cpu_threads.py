"""Decode speed by thread setting, on an idle machine and with one other core busy.

Each cell runs in its own process (OpenMP reads ``OMP_WAIT_POLICY`` when torch loads): the
embedded model in float32 decodes 10 steps with a KV cache at batch 16 and 64 after a 64-token
prefill. "one core busy" starts a pure-Python busy loop beside it, the load the CPU-budget
issue measures under. Other processes on the machine are not controlled: the load average is
recorded, and the settings are compared within one run.

    python benchmarks/cpu_threads.py        # writes benchmarks/results/cpu_threads.{json,md}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {
    "2 threads, spinning (torch's default)": ({}, 2),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
    "1 thread": ({}, 1),
}
CHILD = r"""
import json, sys, time, torch
from transformers import DynamicCache
from reasonmaxxer.models import load_model
torch.set_num_threads(int(sys.argv[1]))
model, _, _ = load_model("default", dtype="float32", device="cpu")
out = {}
for batch in (16, 64):
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.randint(0, 1000, (batch, 64)), past_key_values=cache, use_cache=True)
        step = torch.randint(0, 1000, (batch, 1))
        start = time.perf_counter()
        for _ in range(10):
            model(input_ids=step, past_key_values=cache, use_cache=True)
    out[batch] = 10 * batch / (time.perf_counter() - start)
print("RESULT", json.dumps(out))
"""


def cell(env: dict, threads: int) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads)],
        env={**os.environ, "TQDM_DISABLE": "1", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    rows = []
    for load in ("idle", "one core busy"):
        busy = None
        if load != "idle":
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        try:
            for name, (env, threads) in SETTINGS.items():
                tok_s = cell(env, threads)
                rows.append({"load": load, "setting": name, "tok_s": tok_s})
                print(load, "|", name, "|", tok_s, flush=True)
        finally:
            if busy:
                busy.kill()
    record = {"cores": os.cpu_count(), "load_avg_1min_at_end": os.getloadavg()[0], "rows": rows}
    lines = [
        f"# Decode tok/s by thread setting ({record['cores']} cores; float32 SmolLM2-135M, "
        "KV-cache decode steps)",
        "",
        "| load | setting | batch 16 | batch 64 |",
        "|---|---|---|---|",
    ]
    for r in rows:
        t = r["tok_s"]
        lines.append(f"| {r['load']} | {r['setting']} | {t['16']:.0f} | {t['64']:.0f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu_threads.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "cpu_threads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
