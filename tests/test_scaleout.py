"""Scale-out pieces that need no cluster: shards, part files, the one-line errors of
``--ray``, execution settings outside the stage identity, and ``report_to`` trackers."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from reasonmaxxer.config import build_run_config, identity, to_dict
from reasonmaxxer.errors import UserError
from reasonmaxxer.io import atomic_write_jsonl, iter_jsonl
from reasonmaxxer.scaleout import (
    absorb_parts,
    check_address,
    part_path,
    shard_chunks,
    without_ray,
)


def test_shard_chunks_round_robin():
    assert shard_chunks([0, 1, 2, 3, 4], 2) == [[0, 2, 4], [1, 3]]
    assert shard_chunks([3, 7], 4) == [[3], [7]]  # never an empty shard
    assert shard_chunks([1, 5, 9], 1) == [[1, 5, 9]]


def test_eval_slices_contiguous_and_balanced():
    from reasonmaxxer.scaleout import eval_slices, slice_seed

    assert eval_slices(9, 2) == [(0, 4), (4, 9)]
    assert eval_slices(7, 3) == [(0, 2), (2, 5), (5, 7)]
    assert eval_slices(2, 4) == [(0, 1), (1, 2)]  # never an empty slice
    assert eval_slices(3, 1) == [(0, 3)]
    assert slice_seed(5, 0) == 5 and slice_seed(5, 1) == (5 * 1_000_003 + 1) % (2**31 - 1)


def _rows(c, n, shash="h"):
    return [
        {"chunk": c, "problem_id": f"p{c}", "rollout": j, "settings_hash": shash} for j in range(n)
    ]


def test_absorb_parts_takes_complete_parts_only(tmp_path):
    atomic_write_jsonl(part_path(tmp_path, "sample", 1), _rows(1, 2))
    atomic_write_jsonl(part_path(tmp_path, "sample", 2), _rows(2, 1))  # short: not complete
    atomic_write_jsonl(part_path(tmp_path, "sample", 9), _rows(9, 2))  # not a chunk of this run
    (part_path(tmp_path, "sample", 3).parent / ".chunk-00003.jsonl.x.tmp").write_text("{")
    done = {0: _rows(0, 2)}
    out = absorb_parts(tmp_path, "sample", done, {0: 2, 1: 2, 2: 2, 3: 2}, "h")
    assert sorted(out) == [0, 1] and out[1] == _rows(1, 2)
    assert done == {0: _rows(0, 2)}  # the caller's dict is not changed
    with pytest.raises(UserError, match="different settings"):
        absorb_parts(tmp_path, "sample", {}, {0: 2, 1: 2}, "other")


@pytest.mark.parametrize(
    "address, match",
    [("nonsense", "must be 'auto' or a cluster address"), ("127.0.0.1:1", "unreachable")],
)
def test_bad_addresses(address, match):
    with pytest.raises(UserError, match=match):
        check_address(address, timeout_s=2)


def _sample_args(model_dir, out, *extra):
    return [
        "sample",
        "--model",
        str(model_dir),
        "--train",
        "arith:level=1,n=2,split=train",
        "--k",
        "2",
        "--max-new-tokens",
        "2",
        *extra,
        "--out",
        str(out),
    ]


def test_unreachable_ray_address_is_one_error_line(tmp_path, tiny_model_dir, cache_dir):
    pytest.importorskip("ray")
    r = run_cli(*_sample_args(tiny_model_dir, tmp_path / "r", "--ray", "127.0.0.1:1"), timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("error: Ray cluster at 127.0.0.1:1 is unreachable"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "rollouts.jsonl").exists()


def test_ray_flag_without_ray_installed_is_one_error_line(tmp_path, tiny_model_dir, cache_dir):
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no ray here')\n")
    import os
    import subprocess
    import sys

    from conftest import cli_env

    env = cli_env(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), env.get("PYTHONPATH", "")])
    r = subprocess.run(
        [sys.executable, "-m", "reasonmaxxer", *_sample_args(tiny_model_dir, tmp_path / "r")]
        + ["--ray", "auto"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.startswith("error: --ray needs the ray package"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_ray_settings_stay_out_of_stage_identity(tiny_model_dir):
    from reasonmaxxer.method.training import checkpoint_scope

    rows = [{"problem_id": "a", "rollout": 0, "decision": [1], "advantage": 1.0}]
    plain = build_run_config(overrides={"model": {"model": str(tiny_model_dir)}})
    ray = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir), "ray": "auto", "ray_workers": 4},
            "train": {"report_to": "tensorboard"},
        }
    )
    assert checkpoint_scope(plain, rows) == checkpoint_scope(ray, rows)
    assert identity(ray)["model"] == identity(plain)["model"]  # stage keys: run.py
    assert without_ray(to_dict(ray)["model"]) == without_ray(to_dict(plain)["model"])  # parts
    assert "ray" in to_dict(ray)["model"]  # ... while the recorded config keeps them
    with pytest.raises(UserError, match="--ray-workers must be >= 1"):
        build_run_config(overrides={"model": {"ray_workers": 0}})


@pytest.mark.slow
def test_report_to_tensorboard_mirrors_the_log(tmp_path, tiny_model_dir):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reasonmaxxer.method.selection import SELECTION
    from reasonmaxxer.method.training import train
    from reasonmaxxer.models import load_model

    _, tok, _ = load_model(str(tiny_model_dir))
    rows = []
    for i, (p, c, a) in enumerate([("1+1", "2 it is", 1.0), ("Hi", "Hello", -0.5)]):
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
                "decision": [0, 1],
            }
        )
    (tmp_path / SELECTION).write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir)},
            "train": {
                "max_steps": 3,
                "epochs": 4,
                "batch_size": 2,
                "lora_r": 4,
                "report_to": "tensorboard",
            },
        }
    )
    train(tmp_path, cfg)
    log = list(iter_jsonl(tmp_path / "train_log.jsonl"))
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == [1, 2, 3]
    assert [e.value for e in events] == pytest.approx([r["train/loss"] for r in log], rel=1e-6)
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([r["lr"] for r in log])


def test_report_to_missing_package_is_a_user_error(tmp_path):
    import importlib.util

    from reasonmaxxer.tracking import open_tracker

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    with pytest.raises(UserError, match="report_to wandb needs the wandb package"):
        open_tracker("wandb", tmp_path, name="x", config={})
    with pytest.raises(UserError, match="report_to must be one of"):
        open_tracker("mlflow", tmp_path, name="x", config={})
    with pytest.raises(UserError, match="--report-to must be one of"):
        build_run_config(overrides={"train": {"report_to": "mlflow"}})
