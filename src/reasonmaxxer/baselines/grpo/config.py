"""The GRPO baseline's config (one dataclass, filled from defaults, YAML and flags) and the
names of the files a run writes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...blocks import DecodeConfig, LoraSpec, OptimConfig, WithLora
from ...config import (
    EvalConfig,
    ModelConfig,
    PromptConfig,
    SampleConfig,
    TrainConfig,
    as_given,
    build_run_config,
    check_fields,
    field_defaults,
    resolve,
    to_dict,
)
from ...fields import check as _check
from ...fields import help_field as _f
from ...fields import project, shared

ADAPTER = "adapter"
TRAIN_LOG = "train_log.jsonl"
EVAL_SAMPLES = "eval_samples.jsonl"
MANIFEST = "manifest.json"
CONFIG = "config.yaml"

_SAMPLE, _TRAIN, _EVAL = SampleConfig(), TrainConfig(), EvalConfig()
LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")


@dataclass
class GRPORunConfig(WithLora):
    """One GRPO baseline run. ``model`` and ``prompt`` default to the pipeline's own config
    (packaged ``default.yaml``); the rest mirrors ReasonMaxxer's defaults where one exists."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: str = _f(_SAMPLE.train, "training problems: benchmark name, JSONL path or arith spec")
    limit: int | None = _f(None, "use only the first N training problems")
    num_generations: int = _f(8, "completions per prompt (the GRPO group size)")
    batch_size: int = _f(
        16,
        "completions per forward/backward micro-batch (TRL per_device_train_batch_size); "
        "batch-size x grad-accum completions, a multiple of num-generations, make one step",
    )
    grad_accum: int = shared(
        OptimConfig,
        "grad_accum",
        help="micro-batches per optimizer step (one generation round per step)",
    )
    max_steps: int = shared(
        OptimConfig, "max_steps", 200, "optimizer steps (the time budget may stop earlier)"
    )
    max_minutes: float | None = _f(
        None, "training time budget in minutes (evals excluded); stop cleanly at the next step end"
    )
    lr: float = shared(
        OptimConfig,
        "lr",
        5e-5,
        "AdamW learning rate for the LoRA weights (constant after warm-up; LoRA needs ~10-50x "
        "the 1e-6 full-fine-tuning GRPO default)",
    )
    warmup_steps: int = shared(
        OptimConfig, "warmup_steps", help="linear learning-rate warm-up steps"
    )
    beta: float = _f(
        0.04, "KL coefficient to the base model (DeepSeekMath GRPO; TRL's default 0 skips the KL)"
    )
    loss_type: str = _f("dapo", "TRL loss aggregation (TRL default: dapo)", LOSS_TYPES)
    max_completion_length: int = _f(_SAMPLE.max_new_tokens, "rollout length limit in tokens")
    temperature: float = shared(
        DecodeConfig, "temperature", _SAMPLE.temperature, "rollout sampling temperature (> 0)"
    )
    top_p: float = shared(DecodeConfig, "top_p", _SAMPLE.top_p, "rollout nucleus sampling")
    rollout_generator: str = _f(
        "trl",
        "who samples the rollouts on the HF backend: TRL's model.generate (the stock baseline) or "
        "ReasonMaxxer's decode loop (the one its sample stage uses; same distribution, drops "
        "finished rows), for a like-for-like wall-clock comparison",
        ("trl", "reasonmaxxer"),
    )
    autocast: str = _f(
        _TRAIN.autocast,
        "mixed precision for training and eval (bf16 autocast, fp32 weights; auto: on a CUDA GPU)",
        ("auto", "bfloat16", "off"),
    )
    gradient_checkpointing: bool = _f(
        False, "trade compute for memory (TRL turns it on by default; off is faster)"
    )
    eval_benchmarks: str = _f(_EVAL.benchmarks, "benchmarks for the periodic greedy pass@1")
    eval_limit: int | None = _f(100, "evaluate on the first N problems of each benchmark")
    eval_every: int = _f(10, "evaluate every N optimizer steps (0: only at step 0 and the end)")
    eval_max_new_tokens: int = _f(_EVAL.max_new_tokens, "eval generation length limit")
    eval_batch_size: int = _f(_EVAL.batch_size, "eval sequences generated together")
    grader_timeout: float = _f(_SAMPLE.grader_timeout, "seconds per answer comparison")
    lora_r: int = shared(LoraSpec, "lora_r")
    lora_alpha: int = shared(LoraSpec, "lora_alpha")
    lora_dropout: float = shared(LoraSpec, "lora_dropout")
    lora_targets: str = shared(LoraSpec, "lora_targets")
    seed: int = _f(_TRAIN.seed, "seed (adapter init, prompt order, sampling)")

    def __post_init__(self) -> None:
        check_fields(self)
        from ...devices import resolve_precision

        self.autocast = resolve_precision(self.autocast, self.model.device, fallback="off")
        self.model.gen_dtype = resolve_precision(
            self.model.gen_dtype, self.model.device, fallback="float32"
        )
        _check(self.limit is None or self.limit >= 1, "--limit must be >= 1")
        _check(self.num_generations >= 2, "--num-generations must be >= 2 (GRPO compares a group)")
        _check(
            self.batch_size >= 1 and self.grad_accum >= 1,
            "--batch-size and --grad-accum must be >= 1",
        )
        _check(
            (self.batch_size * self.grad_accum) % self.num_generations == 0,
            f"--batch-size x --grad-accum ({self.batch_size} x {self.grad_accum}) must be a multiple "
            f"of --num-generations ({self.num_generations}): a step holds whole groups",
        )
        _check(self.max_minutes is None or self.max_minutes > 0, "--max-minutes must be > 0")
        project(self, OptimConfig)
        _check(self.beta >= 0, "--beta must be >= 0")
        _check(self.max_completion_length >= 1, "--max-completion-length must be >= 1")
        _check(self.temperature > 0, "--temperature must be > 0")
        project(self, DecodeConfig)
        _check(self.eval_limit is None or self.eval_limit >= 1, "--eval-limit must be >= 1")
        _check(self.eval_every >= 0, "--eval-every must be >= 0")
        _check(self.eval_max_new_tokens >= 1, "--eval-max-new-tokens must be >= 1")
        _check(self.eval_batch_size >= 1, "--eval-batch-size must be >= 1")
        _check(self.grader_timeout > 0, "--grader-timeout must be > 0")
        project(self, LoraSpec)

    @property
    def prompts_per_step(self) -> int:
        return self.batch_size * self.grad_accum // self.num_generations


# GRPO field <- the packaged pipeline's sample field it starts from
FROM_SAMPLE = {
    "train": "train",
    "num_generations": "k",
    "temperature": "temperature",
    "top_p": "top_p",
    "max_completion_length": "max_new_tokens",
}


def grpo_defaults() -> dict:
    """What ``grpo`` starts from: the model, prompt, training problems and the rollout
    sampling (temperature, top-p, length, group size K) of the packaged pipeline config, so
    GRPO and ReasonMaxxer sample the same way unless a flag says otherwise."""
    run = build_run_config()
    sample = {name: getattr(run.sample, key) for name, key in FROM_SAMPLE.items()}
    data = to_dict(GRPORunConfig(model=run.model, prompt=run.prompt, **sample))
    # the precisions stay as given (auto) until the user's device is known: resolved here,
    # `model: {device: cpu}` in a `grpo --config` YAML on a bf16 GPU machine kept bfloat16
    data["model"]["gen_dtype"] = as_given(run)["model"]["gen_dtype"]
    data["autocast"] = field_defaults(GRPORunConfig)["autocast"]
    return data


def build_grpo_config(user_yaml: str | None = None, overrides: dict | None = None) -> GRPORunConfig:
    """:func:`grpo_defaults` <- YAML <- flags (:func:`~reasonmaxxer.config.resolve`)."""
    return resolve(GRPORunConfig, defaults=grpo_defaults(), config=user_yaml, overrides=overrides)
