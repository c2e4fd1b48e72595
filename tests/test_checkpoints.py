"""Checkpoint choice on a dev split: the arith dev split, the save cadence and the choice by
hand, the disjointness check, and a tiny training run that keeps the best checkpoint."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from reasonmaxxer.config import build_run_config
from reasonmaxxer.errors import UserError
from reasonmaxxer.eval.arith import canonical_keys, generate, space_size
from reasonmaxxer.method.checkpoints import check_dev_disjoint, choose_best, snapshot_every
from reasonmaxxer.models import load_model


def test_arith_dev_and_test_divide_eval_by_the_hash():
    sizes = {s: space_size(2, s) for s in ("train", "eval", "dev", "test", "all")}
    assert sizes == {"train": 146, "eval": 526, "dev": 53, "test": 473, "all": 672}
    dev = generate(53, level=2, split="dev")
    assert dev[0].id == "arith-l2-dev-s0-00000" and {p.benchmark for p in dev} == {"arith-l2-dev"}
    keys = {s: canonical_keys(generate(sizes[s], level=2, split=s)) for s in sizes}
    # no group (reorderings included) in two of train / dev / test; dev + test = eval
    assert not keys["dev"] & keys["train"] and not keys["dev"] & keys["test"]
    assert keys["dev"] | keys["test"] == keys["eval"]
    # eval and train are what they always were: the default specs pose the same problems
    assert generate(3, level=2, split="eval")[0].problem == generate(500, level=2)[0].problem


def test_save_cadence_and_choice_by_hand():
    # 0.15 epoch of 320 rollouts at 8 a step: 48 rollouts = 6 steps
    assert snapshot_every(0.15, 320, 8) == 6
    assert snapshot_every(0.01, 10, 8) == 1  # at least every step
    assert choose_best([(6, 0.4), (12, 0.55), (18, 0.5)]) == 12
    assert choose_best([(6, 0.5), (12, 0.5), (18, 0.4)]) == 12  # a tie goes to the later
    with pytest.raises(ValueError):
        choose_best([])


def _dev_cfg(dev: str, **extra):
    return build_run_config(overrides={"train": {"save_every_frac": 0.5, "dev": dev}, **extra})


def test_dev_overlapping_train_or_eval_is_refused():
    test_eval = {"eval": {"benchmarks": "arith:level=2,n=473,split=test"}}
    check_dev_disjoint(_dev_cfg("arith:level=2,n=53,split=dev", **test_eval))
    # the default eval (500 of split=eval) holds 18 of the groups of the first 20 dev problems
    with pytest.raises(UserError, match="shares 18 problems with eval benchmark arith-l2-eval"):
        check_dev_disjoint(_dev_cfg("arith:level=2,n=20,split=dev"))
    with pytest.raises(UserError, match="shares 5 problems with the training problems"):
        check_dev_disjoint(_dev_cfg("arith:level=2,n=5,split=train", **test_eval))
    with pytest.raises(UserError, match="go together"):
        build_run_config(overrides={"train": {"save_every_frac": 0.5}})
    with pytest.raises(UserError, match="save-every-frac must be > 0"):
        build_run_config(overrides={"train": {"save_every_frac": 0, "dev": "x"}})


def test_dev_overlap_on_the_command_line_is_one_error_line(tmp_path):
    proc = run_cli(
        "run",
        "--out",
        tmp_path / "r",
        "--set",
        "train.save_every_frac=0.15",
        "--set",
        "train.dev=arith:level=2,n=20,split=dev",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the dev split"), lines
    assert "shares 18 problems with eval benchmark arith-l2-eval" in lines[0]


def _selection(run_dir, tok):
    from test_selection_training import _hand_selection

    return _hand_selection(run_dir, tok, advantages=(1.0, -0.5, 0.5))


def _train_cfg(model_dir, dev):
    return build_run_config(
        overrides={
            "model": {"model": str(model_dir)},
            "train": {
                "epochs": 2,
                "batch_size": 1,
                "lora_r": 4,
                "lr": 0.01,
                "warmup_steps": 1,
                "save_every_frac": 2 / 3,  # 3 rollouts a epoch, 1 a step: every 2 steps
                "dev": str(dev),
            },
            "eval": {"max_new_tokens": 4, "batch_size": 4},
        }
    )


def _dev_file(tmp_path):
    dev = tmp_path / "dev.jsonl"
    rows = [{"id": f"d{i}", "problem": f"Say {i}.", "answer": str(i)} for i in range(3)]
    dev.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dev


def test_train_keeps_the_checkpoint_best_on_dev(tmp_path, tiny_model_dir, monkeypatch):
    from reasonmaxxer.eval import evaluation
    from reasonmaxxer.method import training

    _, tok, _ = load_model(str(tiny_model_dir))
    run = tmp_path / "run"
    _selection(run, tok)
    dev_scores = {"step-00002": 1 / 3, "step-00004": 2 / 3, "step-00006": 1 / 3}
    seen = []

    def fake_evaluate(model_cfg, prompt_cfg, eval_cfg, out_dir, *, adapter=None, label=None):
        seen.append((label, eval_cfg.k, eval_cfg.benchmarks))
        record = {"benchmarks": {"dev": {"n": 3, "pass@1": dev_scores[label]}}}
        out_dir.mkdir(parents=True)
        (out_dir / "results.json").write_text(json.dumps(record))
        return record

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    s = training.train(run, _train_cfg(tiny_model_dir, _dev_file(tmp_path)))
    assert s["steps"] == 6
    assert [x[0] for x in seen] == ["step-00002", "step-00004", "step-00006"]
    assert {x[1] for x in seen} == {1}  # greedy pass@1 only
    record = json.loads((run / "checkpoints.json").read_text())
    assert record["chosen_step"] == 4 == s["checkpoint_choice"]["chosen_step"]
    assert [(r["step"], r["epoch"], r["dev_pass@1"]) for r in record["checkpoints"]] == [
        (2, pytest.approx(2 / 3), pytest.approx(1 / 3)),
        (4, pytest.approx(4 / 3), pytest.approx(2 / 3)),
        (6, pytest.approx(2.0), pytest.approx(1 / 3)),
    ]
    chosen = run / "checkpoints" / "step-00004" / "adapter_model.safetensors"
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == chosen.read_bytes()
    last = run / "checkpoints" / "step-00006" / "adapter_model.safetensors"
    assert last.read_bytes() != chosen.read_bytes()
    assert not (run / "adapter" / "dev").exists()


def test_killed_while_scoring_resumes_the_scoring_only(tmp_path, tiny_model_dir, monkeypatch):
    from reasonmaxxer.eval import evaluation
    from reasonmaxxer.method import training

    _, tok, _ = load_model(str(tiny_model_dir))
    run = tmp_path / "run"
    _selection(run, tok)
    cfg = _train_cfg(tiny_model_dir, _dev_file(tmp_path))
    seen = []

    def fake_evaluate(model_cfg, prompt_cfg, eval_cfg, out_dir, *, adapter=None, label=None):
        if label == "step-00004" and not seen.count(label):
            seen.append(label)
            raise KeyboardInterrupt  # killed while scoring the second checkpoint
        seen.append(label)
        record = {"benchmarks": {"dev": {"n": 3, "pass@1": 0.5}}}
        out_dir.mkdir(parents=True)
        (out_dir / "results.json").write_text(json.dumps(record))
        return record

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    with pytest.raises(KeyboardInterrupt):
        training.train(run, cfg)
    saved = {
        d.name: (d / "adapter_model.safetensors").read_bytes()
        for d in (run / "checkpoints").glob("step-*")
    }
    assert sorted(saved) == ["step-00002", "step-00004", "step-00006"]

    def no_training(*a, **kw):
        raise AssertionError("training ran again")

    monkeypatch.setattr(training, "optimize", no_training)
    s = training.train(run, cfg)
    assert seen == ["step-00002", "step-00004", "step-00004", "step-00006"]
    assert s["checkpoint_choice"]["chosen_step"] == 6  # all tie: the last
    after = {
        d.name: (d / "adapter_model.safetensors").read_bytes()
        for d in (run / "checkpoints").glob("step-*")
    }
    assert after == saved


@pytest.mark.slow
def test_train_scores_real_checkpoints_on_dev(tmp_path, tiny_model_dir):
    from reasonmaxxer.method import training

    _, tok, _ = load_model(str(tiny_model_dir))
    run = tmp_path / "run"
    _selection(run, tok)
    s = training.train(run, _train_cfg(tiny_model_dir, _dev_file(tmp_path)))
    record = json.loads((run / "checkpoints.json").read_text())
    assert [r["step"] for r in record["checkpoints"]] == [2, 4, 6]
    assert all(r["n"] == 3 and 0 <= r["dev_pass@1"] <= 1 for r in record["checkpoints"])
    for step in (2, 4, 6):
        results = run / "checkpoints" / f"step-{step:05d}" / "dev" / "results.json"
        assert json.loads(results.read_text())["adapter"].endswith(f"step-{step:05d}")
    assert s["checkpoint_choice"] == record
