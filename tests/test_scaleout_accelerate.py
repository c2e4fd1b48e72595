"""``accelerate launch --multi_gpu --num_processes 2 -m reasonmaxxer train RUN`` on CPU (gloo).

(``accelerate launch --cpu --num_processes 2`` starts one process unless an MPI hostfile is
given; ``--multi_gpu`` launches through torchrun, which on a machine without GPUs gives two
CPU processes and a gloo process group.)

Each process runs half of every step's micro-batches and the LoRA gradients are summed over
both, so after N steps the adapter equals the single-process adapter with the same config
(the same global batch: ``batch_size`` x ``grad_accum`` rollouts) up to float summation
order: max |difference| <= 1e-5 per weight (lr 1e-2, 4 steps). Only the main process writes
the log and the adapter, and a checkpoint left by a killed run is resumed by the launched
processes. About 1 minute (two launches of two processes on the tiny model).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import cli_env, run_cli

from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method.selection import SELECTION
from reasonmaxxer.models import load_model

pytest.importorskip("accelerate")
pytestmark = [pytest.mark.distributed, pytest.mark.slow]

TOL = 1e-5
TRAIN = {
    "max_steps": 4,
    "epochs": 4,
    "batch_size": 2,
    "grad_accum": 2,  # micro-batches per step over all processes: one per process
    "lora_r": 4,
    "lr": 0.01,
    "warmup_steps": 1,
    "checkpoint_every": 1,
}
TEXTS = [
    ("What is 1+1?", "2 is the answer", 1.0),
    ("Hi", "Hello there", -0.5),
    ("3*3=", "9, nine", 0.5),
    ("2+5", "it is 7", 1.0),
    ("10-4", "6 I think", -1.0),
    ("Name a prime", "7 is prime", 0.5),
]


def _run_dir(path: Path, model_dir: Path) -> Path:
    _, tok, _ = load_model(str(model_dir))
    rows = []
    for i, (p, c, a) in enumerate(TEXTS):
        ids = tok(c)["input_ids"]
        rows.append(
            {
                "problem_id": f"q{i}",
                "rollout": 0,
                "reward": 1.0,
                "advantage": a,
                "prompt_ids": tok(p)["input_ids"],
                "completion_ids": ids,
                "entropy": [1.0] * len(ids),
                "decision": [0, 2],
            }
        )
    path.mkdir(parents=True)
    (path / SELECTION).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "config.yaml").write_text(
        yaml.safe_dump({"model": {"model": str(model_dir)}, "train": TRAIN})
    )
    return path


def _launch(run_dir: Path, cache: Path, timeout: float = 300):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("the accelerate command is not installed next to this Python")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    args += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    env = cli_env(cache)
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU processes and gloo, also on a machine with GPUs
    return subprocess.run(
        [*args, "-m", "reasonmaxxer", "train", str(run_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_processes_equal_one_process(tmp_path, tiny_model_dir, cache_dir):
    single = _run_dir(tmp_path / "single", tiny_model_dir)
    ddp = _run_dir(tmp_path / "ddp", tiny_model_dir)
    r = run_cli("train", single, cache=cache_dir)
    assert r.returncode == 0, r.stderr
    r = _launch(ddp, cache_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("4 steps on 6 rollouts") == 1  # the main process reports, once

    a, b = _adapter(single), _adapter(ddp)
    diff = _max_diff(a, b)
    print(f"max |adapter difference| after 4 steps: {diff:.3g}")
    moved = max(float(v.abs().max()) for k, v in a.items() if "lora_B" in k)
    assert moved > 1e-3  # training moved the adapter (lora_B starts at zero) ...
    assert diff <= TOL, diff  # ... and both runs moved it the same way
    log_a = list(iter_jsonl(single / "train_log.jsonl"))
    log_b = list(iter_jsonl(ddp / "train_log.jsonl"))
    assert [r["step"] for r in log_b] == [1, 2, 3, 4]  # one writer: no duplicated steps
    assert [r["train/loss"] for r in log_b] == pytest.approx(
        [r["train/loss"] for r in log_a], rel=1e-4
    )
    assert json.loads((ddp / "train.json").read_text())["processes"] == 2
    assert not (ddp / "train_checkpoint").exists()


def test_launched_processes_resume_a_killed_run(tmp_path, tiny_model_dir, cache_dir, monkeypatch):
    from reasonmaxxer import optim
    from reasonmaxxer.config import build_run_config
    from reasonmaxxer.method import training

    straight = _run_dir(tmp_path / "straight", tiny_model_dir)
    killed = _run_dir(tmp_path / "killed", tiny_model_dir)
    cfg = build_run_config(
        overrides={"model": {"model": str(tiny_model_dir)}, "train": dict(TRAIN)}
    )
    training.train(straight, cfg)

    real_append = optim.append_jsonl

    def dies_at_step_3(path, rows):
        if rows[0]["step"] == 3:
            raise KeyboardInterrupt
        real_append(path, rows)

    monkeypatch.setattr(optim, "append_jsonl", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        training.train(killed, cfg)
    assert (killed / training.CHECKPOINT / "meta.json").is_file()

    r = _launch(killed, cache_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((killed / "train.json").read_text())["resumed_from_step"] == 2
    assert [r["step"] for r in iter_jsonl(killed / "train_log.jsonl")] == [1, 2, 3, 4]
    assert _max_diff(_adapter(straight), _adapter(killed)) <= TOL


def test_grad_accum_must_split_over_the_processes(tmp_path, tiny_model_dir, cache_dir):
    run = _run_dir(tmp_path / "odd", tiny_model_dir)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["grad_accum"] = 3
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = _launch(run, cache_dir)
    assert r.returncode != 0
    assert "error: --grad-accum is the micro-batches per optimizer step" in r.stderr
    # one error line per process; the only traceback is the launcher's own report of it
    assert not re.search(r'File "[^"]*reasonmaxxer/', r.stderr), r.stderr[-3000:]
