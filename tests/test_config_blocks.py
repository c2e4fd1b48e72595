"""The shared config blocks (decoding, optimiser, LoRA, model) and the one resolver.

A block declares each field once (help text, choices, checks); the command configs carry the
fields flat under the same names, so YAML keys and flags are unchanged (the pinned hashes in
``test_config_identity.py`` hold the values), and each config checks them through the block.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from reasonmaxxer.analysis import DisagreeConfig
from reasonmaxxer.analysis.distill import DistillConfig
from reasonmaxxer.baselines.grpo import GRPORunConfig, grpo_defaults
from reasonmaxxer.blocks import DecodeConfig, LoraSpec, OptimConfig
from reasonmaxxer.config import EvalConfig, SampleConfig, TrainConfig, resolve
from reasonmaxxer.errors import UserError
from reasonmaxxer.fields import project, shared


def _field(cls, name):
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def test_shared_field_takes_the_blocks_help_choices_and_default_unless_told():
    plain = shared(LoraSpec, "lora_r")
    assert plain.default == 32 and plain.metadata["help"] == "LoRA rank"
    other = shared(OptimConfig, "lr", 2e-4, "another help")
    assert other.default == 2e-4 and other.metadata["help"] == "another help"
    # the choices travel with the field: distill's --autocast is a choice like train's
    assert _field(DistillConfig, "autocast").metadata["choices"] == ("auto", "bfloat16", "off")
    assert (
        _field(SampleConfig, "top_p").metadata["help"]
        == _field(DecodeConfig, "top_p").metadata["help"]
    )


def test_project_builds_the_block_from_the_shared_fields_only():
    t = TrainConfig(lr=3e-4, lora_r=8, lora_alpha=16)
    assert project(t, LoraSpec) == LoraSpec(lora_r=8, lora_alpha=16)
    assert t.optim == OptimConfig(lr=3e-4)  # every train optimiser default is the block's
    d = SampleConfig(temperature=0.7, max_new_tokens=100)
    assert project(d, DecodeConfig) == DecodeConfig(temperature=0.7, max_new_tokens=100)
    assert OptimConfig(lr=3e-4, epochs=3.0).loop_kwargs() == {
        "epochs": 3.0,
        "max_steps": None,
        "grad_accum": 1,
        "lr": 3e-4,
        "warmup_steps": 5,
        "max_grad_norm": 1.0,
    }


def test_the_three_lora_shapes_agree_by_default():
    train, grpo = TrainConfig().lora, GRPORunConfig().lora
    student = DistillConfig(teacher_adapter="t").lora
    assert train == grpo == LoraSpec()
    assert (train.lora_r, train.alpha, train.targets) == (
        32,
        64,
        ["q_proj", "k_proj", "v_proj", "o_proj"],
    )
    # the student's alpha defaults to 2 x rank: 64 at rank 32, 16 at rank 8
    assert student.lora_alpha is None and student.alpha == 64
    assert DistillConfig(teacher_adapter="t", lora_r=8).lora.alpha == 16


def test_lora_config_is_built_from_the_spec(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from reasonmaxxer.method.training import lora_config

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    spec = LoraSpec(lora_r=4, lora_alpha=None, lora_dropout=0.1, lora_targets="q_proj, v_proj")
    peft_cfg = lora_config(model, spec)
    assert (peft_cfg.r, peft_cfg.lora_alpha, peft_cfg.lora_dropout) == (4, 8, 0.1)
    assert sorted(peft_cfg.target_modules) == ["q_proj", "v_proj"]
    with pytest.raises(UserError, match="no module named nope"):
        lora_config(model, LoraSpec(lora_targets="q_proj,nope"))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        # checks every config now gets from its block (grpo and distill had no alpha / lr check)
        (lambda: GRPORunConfig(lora_alpha=0), "--lora-alpha must be >= 1"),
        (lambda: DistillConfig(teacher_adapter="t", lora_dropout=1.0), "--lora-dropout"),
        (lambda: DistillConfig(teacher_adapter="t", lr=0.0), "--lr must be > 0"),
        (lambda: DistillConfig(teacher_adapter="t", top_p=0.0), "--top-p must be in (0, 1]"),
        (lambda: GRPORunConfig(warmup_steps=-1), "--warmup-steps must be >= 0"),
        (lambda: DisagreeConfig(teacher_adapter="t", backend="tpu"), "--backend must be one of"),
        (lambda: DisagreeConfig(teacher_adapter="t", device="gpu"), "--device must be auto"),
        (lambda: DisagreeConfig(teacher_adapter="t", max_new_tokens=0), "--max-new-tokens"),
        # a config's own, more specific message still comes first
        (lambda: EvalConfig(temperature=0.0), "greedy pass@1 is always run"),
        (lambda: TrainConfig(lr=0.0), "need --lr > 0, --lam >= 0, --beta > 0"),
    ],
)
def test_block_checks_apply_to_every_config_that_carries_the_field(build, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build()


def test_distill_keeps_greedy_rollouts():
    assert DistillConfig(teacher_adapter="t").temperature == 0.0  # DecodeConfig allows T = 0


def test_resolve_layers_defaults_run_folder_yaml_then_flags(tmp_path):
    run_dir, user = tmp_path / "run", tmp_path / "user.yaml"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"lr": 1e-3, "seed": 3, "beta": 0.1}))
    user.write_text(yaml.safe_dump({"seed": 4, "beta": 0.2, "model": {"threads": 2}}))
    cfg = resolve(
        GRPORunConfig,
        defaults=grpo_defaults(),
        run_dir=run_dir,
        config=str(user),
        overrides={"beta": "0.3"},
    )
    assert (cfg.lr, cfg.seed, cfg.beta, cfg.model.threads) == (1e-3, 4, 0.3, 2)
    assert cfg.temperature == grpo_defaults()["temperature"]  # untouched: the defaults
    # no config.yaml in the folder: the defaults stand
    assert resolve(GRPORunConfig, defaults=grpo_defaults(), run_dir=tmp_path).lr == 5e-5
    with pytest.raises(UserError, match="unknown key"):
        resolve(GRPORunConfig, defaults=grpo_defaults(), overrides={"lora_rank": 4})
