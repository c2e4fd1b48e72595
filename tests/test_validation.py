"""Numeric settings are finite and in range when a config is built; training stops on a
non-finite loss or gradient before anything is saved; no NaN or Infinity reaches a JSON file."""

from __future__ import annotations

import random

import pytest

from reasonmaxxer.analysis import DisagreeConfig
from reasonmaxxer.analysis.distill import DistillConfig
from reasonmaxxer.baselines.grpo import build_grpo_config
from reasonmaxxer.config import build_run_config, identity
from reasonmaxxer.errors import UserError
from reasonmaxxer.io import append_jsonl, atomic_write_json, atomic_write_jsonl
from reasonmaxxer.method.training import optimize

BAD_RUN = [
    ("train", "lr", "inf"),
    ("train", "lr", "nan"),
    ("train", "lam", "inf"),
    ("train", "neg_weight", "nan"),
    ("train", "weight_decay", "nan"),
    ("train", "weight_decay", "-0.1"),
    ("train", "lora_dropout", "1.5"),
    ("train", "max_steps", "-5"),
    ("train", "max_steps", "0"),
    ("train", "max_grad_norm", "nan"),
    ("train", "max_grad_norm", "0"),
    ("train", "epochs", "inf"),
    ("train", "warmup_steps", "-1"),
    ("train", "beta", "-inf"),
    ("eval", "temperature", "inf"),
    ("eval", "grader_timeout", "nan"),
    ("eval", "grader_timeout", "inf"),
    ("eval", "grader_timeout", "0"),
    ("sample", "grader_timeout", "inf"),
    ("sample", "top_p", "nan"),
    ("sample", "limit", "0"),
    ("select", "tau", "nan"),
    ("select", "tau", "-1"),
    ("select", "top_frac", "inf"),
    ("select", "batch_size", "0"),
    ("select", "drop_longest", "nan"),
    ("model", "threads", "-1"),
    ("model", "threads", "0"),
    ("model", "device", "gpu"),
    ("model", "device", "cuda:x"),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_RUN)
def test_run_config_rejects(section, key, value):
    with pytest.raises(UserError) as e:
        build_run_config(overrides={section: {key: value}})
    assert f"--{key.replace('_', '-')}" in str(e.value) or key in str(e.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [("lr", "nan"), ("grader_timeout", "inf"), ("lora_dropout", "1.5"), ("warmup_steps", "-2")],
)
def test_grpo_config_rejects(key, value):
    with pytest.raises(UserError):
        build_grpo_config(overrides={key: value})


@pytest.mark.parametrize(
    "kw",
    [
        {"grader_timeout": float("nan")},
        {"lr": float("inf")},
        {"max_grad_norm": float("nan")},
        {"lora_dropout": 1.0},
        {"device": "tpu"},
        {"temperature": float("inf")},
    ],
)
def test_analysis_configs_reject(kw):
    with pytest.raises(UserError):
        DistillConfig(teacher_adapter="x", **kw)
    shared = {k: v for k, v in kw.items() if k in ("grader_timeout", "device")}
    if shared:  # fields every analysis command has
        with pytest.raises(UserError):
            DisagreeConfig(teacher_adapter="x", **shared)


def test_valid_values_still_pass():
    cfg = build_run_config(
        overrides={"train": {"lr": "1e-3", "lora_dropout": "0.1"}, "model": {"device": "cuda:1"}}
    )
    assert cfg.train.lr == 1e-3 and cfg.model.device == "cuda:1"  # checked when a model loads


def test_identity_leaves_out_execution_settings():
    a = build_run_config(overrides={"model": {"device": "cpu", "threads": 1}})
    b = build_run_config(overrides={"model": {"device": "auto", "threads": 2, "backend": "hf"}})
    assert identity(a) == identity(b)
    c = build_run_config(overrides={"model": {"dtype": "bfloat16"}})
    assert identity(a) != identity(c)
    assert "device" not in identity(a)["model"] and "model" in identity(a)["model"]


def test_device_without_cuda_is_one_user_error():
    import torch

    from reasonmaxxer.devices import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda:0")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_json_writers_refuse_non_finite(tmp_path, bad):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "a.json", {"x": bad})
    with pytest.raises(ValueError):
        atomic_write_jsonl(tmp_path / "a.jsonl", [{"x": [1.0, bad]}])
    with pytest.raises(ValueError):
        append_jsonl(tmp_path / "b.jsonl", [{"x": bad}])
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "a.jsonl").exists()


def _optimize(tmp_path, micro_loss, param):
    import torch

    opt = torch.optim.AdamW([param], lr=0.1)
    return optimize(
        torch.nn.Linear(1, 1),
        opt,
        [{"prompt_ids": [1], "completion_ids": [2]}] * 4,
        micro_loss=micro_loss,
        epochs=1.0,
        max_steps=None,
        batch_size=1,
        grad_accum=1,
        lr=0.1,
        warmup_steps=0,
        max_grad_norm=1.0,
        rng=random.Random(0),
        log_path=tmp_path / "log.jsonl",
        checkpoint=tmp_path / "ckpt",
        checkpoint_every=0,
        checkpoint_scope=[],
        desc="t",
        postfix=lambda acc: {},
    )


def test_non_finite_loss_stops_training_before_a_save(tmp_path):
    import torch

    p = torch.nn.Parameter(torch.ones(1))
    calls = []

    def micro_loss(rows):
        calls.append(1)
        if len(calls) == 3:  # third step: the loss overflows
            return p.sum() * float("inf"), {"loss": float("inf")}
        return (p**2).sum(), {"loss": 1.0, "undefined": None}

    with pytest.raises(UserError, match="non-finite loss .* at step 3"):
        _optimize(tmp_path, micro_loss, p)
    rows = [line for line in (tmp_path / "log.jsonl").read_text().splitlines() if line]
    assert len(rows) == 2  # steps 1 and 2 logged, nothing from step 3
    assert "undefined" not in rows[0]  # an undefined statistic is left out, not NaN


def test_non_finite_grad_norm_stops_training(tmp_path):
    import torch

    p = torch.nn.Parameter(torch.zeros(1))

    def micro_loss(rows):  # finite loss (0) whose gradient is infinite: d sqrt(x)/dx at 0
        return torch.sqrt(p).sum(), {"loss": 0.0}

    with pytest.raises(UserError, match="non-finite gradient norm at step 1"):
        _optimize(tmp_path, micro_loss, p)
    assert float(p.detach()) == 0.0  # the optimizer never stepped
