"""The GRPO baseline: config validation, the reward, the CLI flags, and a 2-step tiny run."""

from __future__ import annotations

import json
import threading

import pytest
import yaml

from reasonmaxxer.baselines.grpo import GRPORunConfig, Meter, build_grpo_config, make_reward
from reasonmaxxer.errors import UserError
from reasonmaxxer.eval import grading


def test_defaults_match_the_default_run():
    """The baseline's defaults come from dataclass defaults, the default run's from the packaged
    YAML: the pieces the module says are shared must agree after both are resolved."""
    from reasonmaxxer.config import build_run_config

    g, r = build_grpo_config(), build_run_config()
    assert g.model == r.model and g.prompt == r.prompt
    assert g.train == r.sample.train == "arith:level=2,n=146,split=train"
    assert (g.lora_r, g.lora_alpha, g.lora_dropout, g.lora_targets) == (
        r.train.lora_r,
        r.train.lora_alpha,
        r.train.lora_dropout,
        r.train.lora_targets,
    )
    assert (g.lora_r, g.lora_alpha, g.lora_targets) == (32, 64, "q_proj,k_proj,v_proj,o_proj")
    assert g.max_completion_length == r.sample.max_new_tokens == 128
    assert (g.warmup_steps, g.seed, g.autocast) == (
        r.train.warmup_steps,
        r.train.seed,
        r.train.autocast,
    )
    assert g.grader_timeout == r.sample.grader_timeout
    assert g.prompts_per_step == 2  # 16 completions a step, groups of 8


def test_trl_arguments_map_our_names_to_trl():
    from reasonmaxxer.baselines.grpo import trl_arguments

    cfg = GRPORunConfig(
        batch_size=4,
        grad_accum=2,
        num_generations=4,
        max_completion_length=32,
        temperature=0.9,
        top_p=0.8,
        lr=1e-4,
        warmup_steps=2,
        beta=0.0,
        loss_type="grpo",
        max_steps=7,
        autocast="off",
        gradient_checkpointing=True,
        seed=3,
    )
    args = trl_arguments(cfg, "/scratch", device="cpu", backend="hf")
    assert args == {
        "output_dir": "/scratch",
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "num_generations": 4,
        "max_completion_length": 32,
        "temperature": 0.9,
        "top_p": 0.8,
        "learning_rate": 1e-4,
        "warmup_steps": 2,
        "beta": 0.0,
        "loss_type": "grpo",
        "max_steps": 7,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": False,
        "use_cpu": True,
        "seed": 3,
        "data_seed": 3,
        "gradient_checkpointing": True,
        "use_vllm": False,
        "vllm_mode": "colocate",
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }
    on_gpu = trl_arguments(
        GRPORunConfig(autocast="bfloat16"), "/s", device="cuda:0", backend="vllm"
    )
    assert (on_gpu["bf16"], on_gpu["use_cpu"], on_gpu["use_vllm"]) == (True, False, True)
    assert (on_gpu["learning_rate"], on_gpu["beta"], on_gpu["loss_type"]) == (5e-5, 0.04, "dapo")


def test_trl_accepts_the_arguments(tmp_path):
    """TRL reads them as meant: 8 completions a step in groups of 4 is 2 prompts a step."""
    trl = pytest.importorskip("trl")
    from reasonmaxxer.baselines.grpo import trl_arguments

    cfg = GRPORunConfig(batch_size=4, grad_accum=2, num_generations=4, lr=1e-4, max_steps=7)
    args = trl.GRPOConfig(**trl_arguments(cfg, str(tmp_path), device="cpu", backend="hf"))
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 2)
    assert (args.num_generations, args.learning_rate, args.max_steps) == (4, 1e-4, 7)
    assert args.generation_batch_size == 8 and cfg.prompts_per_step == 2
    assert (args.beta, args.loss_type, args.use_cpu) == (0.04, "dapo", True)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"batch_size": 6}, "multiple of --num-generations"),
        ({"num_generations": 1, "batch_size": 1}, "--num-generations"),
        ({"max_minutes": 0.0}, "--max-minutes"),
        ({"loss_type": "ppo"}, "--loss-type"),
        ({"eval_every": -1}, "--eval-every"),
    ],
)
def test_config_rejects_bad_values(kw, msg):
    with pytest.raises(UserError, match=msg):
        GRPORunConfig(**kw)


def test_build_config_yaml_then_flags(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"lr": 1e-4, "model": {"threads": 2}, "num_generations": 4}))
    cfg = build_grpo_config(str(path), {"lr": 3e-4, "batch_size": 4})
    assert (cfg.lr, cfg.model.threads, cfg.num_generations, cfg.batch_size) == (3e-4, 2, 4, 4)
    with pytest.raises(UserError, match="unknown key"):
        build_grpo_config(None, {"not_a_field": 1})


def test_reward_uses_the_grader_and_stop_strings():
    reward = make_reward(["\nQuestion:"], timeout_s=5.0)
    completions = [
        "so \\boxed{7}",
        "the answer is 8",
        "\\boxed{7}\nQuestion: next? \\boxed{9}",
        "\\boxed{8}\nQuestion: \\boxed{7}",
    ]
    assert reward(completions, ["7", "7", "7", "7"], id=list("abcd")) == [1.0, 0.0, 1.0, 0.0]


def test_reward_counts_grader_timeouts(monkeypatch: pytest.MonkeyPatch):
    """A symbolic answer graded off the main thread (as TRL may) is scored; time-outs counted."""
    meter = Meter()
    reward = make_reward([], timeout_s=5.0, meter=meter)
    out: dict = {}
    t = threading.Thread(
        target=lambda: out.update(
            r=reward(["\\boxed{\\frac{\\sqrt{2}}{2}}", "\\boxed{3}"], ["\\frac{1}{\\sqrt{2}}", "4"])
        )
    )
    t.start()
    t.join(60)
    assert out["r"] == [1.0, 0.0]
    assert (meter.graded, meter.grader_timeouts) == (2, 0)
    monkeypatch.setattr(grading, "math_verify_bounded", lambda p, r, s: (False, True))
    assert reward(["\\boxed{\\sqrt{2}/2}", "\\boxed{4}"], ["\\frac{1}{\\sqrt{2}}", "4"]) == [
        0.0,
        1.0,
    ]
    assert (meter.graded, meter.grader_timeouts) == (4, 1)


def test_cli_flags_come_from_the_dataclass():
    from click.testing import CliRunner

    from reasonmaxxer.cli.grpo import grpo_cmd

    result = CliRunner().invoke(grpo_cmd, ["--help"])
    assert result.exit_code == 0
    for flag in ("--num-generations", "--max-minutes", "--eval-every", "--lora-r", "--model"):
        assert flag in result.output


@pytest.mark.slow
def test_grpo_two_steps_on_a_tiny_model(digit_model_dir, tmp_path):
    """2 GRPO steps with an eval every step on 4 problems; adapter, log and manifest."""
    pytest.importorskip("trl")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from reasonmaxxer.baselines.grpo import run_grpo

    problems = tmp_path / "sevens.jsonl"
    problems.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "problem": f"What is {i} + {7 - i}?", "answer": "7"}) + "\n"
            for i in range(8)
        )
    )
    cfg = build_grpo_config(
        None,
        {
            "model": {"model": str(digit_model_dir)},
            "train": str(problems),
            "eval_benchmarks": str(problems),
            "eval_limit": 4,
            "eval_every": 1,
            "max_steps": 2,
            "num_generations": 4,
            "batch_size": 4,
            "grad_accum": 2,
            "max_completion_length": 12,
            "eval_max_new_tokens": 12,
            "lr": 1e-3,
        },
    )
    out = tmp_path / "run"
    manifest = run_grpo(cfg, out)

    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/sevens/pass@1" in r]
    train = [r for r in rows if "train/reward" in r]
    assert [r["step"] for r in evals] == [0, 1, 2]
    assert [r["step"] for r in train] == [1, 2]
    assert all("wall_time_s" in r for r in rows)
    assert evals[0]["wall_time_s"] == 0.0 <= evals[1]["wall_time_s"] <= evals[2]["wall_time_s"]
    assert all(k in train[-1] for k in ("train/kl", "train/loss", "train/learning_rate"))
    assert train[0]["train/learning_rate"] == pytest.approx(1e-3 / 5)  # warm-up step 1 of 5

    saved = json.loads((out / "manifest.json").read_text())
    assert saved["steps"] == manifest["steps"] == 2
    assert saved["reward_grading"] == {"graded": 2 * 8, "timeouts": 0}
    assert all(r["train/grader_timeouts"] == 0 for r in train)
    assert saved["stopped_by"] == "max_steps"
    assert (
        saved["final_eval"]["step"] == 2 and saved["final_eval"]["benchmarks"]["sevens"]["n"] == 4
    )
    assert saved["tokens"]["sequences_generated"] == 2 * 8
    assert saved["tokens"]["generated"] > 0 and saved["tokens"]["forward_backward"] > 0
    t = saved["timing_s"]
    assert t["generation"] > 0 and t["train"] >= t["generation"] + t["reward"]
    assert saved["peak_rss_mib"] > 0 and saved["provenance"]["versions"]["trl"]
    assert len((out / "eval_samples.jsonl").read_text().splitlines()) == 4
    assert GRPORunConfig(**{}).lora_r == yaml.safe_load((out / "config.yaml").read_text())["lora_r"]

    base = AutoModelForCausalLM.from_pretrained(str(digit_model_dir))
    model = PeftModel.from_pretrained(base, str(out / "adapter"))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and model.peft_config["default"].r == 32
    if any(r["train/frac_reward_zero_std"] < 1 for r in train):  # some group had a signal
        assert max(float(p.abs().max()) for p in lora_b) > 0


@pytest.mark.slow
def test_grpo_with_reasonmaxxer_rollouts_and_time_budget(digit_model_dir, tmp_path):
    """The decode-loop rollout generator plugs into TRL; a spent budget stops cleanly."""
    pytest.importorskip("trl")
    from reasonmaxxer.baselines.grpo import run_grpo

    cfg = build_grpo_config(
        None,
        {
            "model": {"model": str(digit_model_dir)},
            "train": "arith:level=1,n=8,split=train",
            "eval_benchmarks": "arith:level=1,n=2,split=eval",
            "eval_every": 0,
            "max_steps": 5,
            "max_minutes": 1e-6,
            "num_generations": 4,
            "batch_size": 8,
            "max_completion_length": 10,
            "eval_max_new_tokens": 10,
            "rollout_generator": "reasonmaxxer",
        },
    )
    m = run_grpo(cfg, tmp_path / "run")
    assert m["rollout_generator"] == "reasonmaxxer"
    assert m["steps"] == 1 and m["stopped_by"] == "time_budget"
    assert m["tokens"]["sequences_generated"] == 8
    assert 0 < m["tokens"]["generated"] <= 8 * 10
    assert [e["step"] for e in m["evals"]] == [0, 1]
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
