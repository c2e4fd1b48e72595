"""Config blocks several commands share: decoding, the optimiser and the LoRA shape.

Each field is declared once here, with its help text, its choices and its checks. A command's
config carries the fields it uses flat, under the same names (``train.lr``, ``--lora-r``), by
declaring them with :func:`~reasonmaxxer.fields.shared` (another default where the command
starts elsewhere) and checks them by building the block from itself
(:func:`~reasonmaxxer.fields.project`). The model block is :class:`~reasonmaxxer.config.ModelConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fields import check, check_fields, project
from .fields import help_field as _f


@dataclass
class DecodeConfig:
    """How completions are decoded (sample, eval, the GRPO rollouts, the analyses)."""

    temperature: float = _f(1.0, "sampling temperature")
    top_p: float = _f(1.0, "nucleus sampling")
    max_new_tokens: int = _f(256, "generation length limit")
    batch_size: int = _f(64, "sequences generated together")

    def __post_init__(self) -> None:
        check_fields(self)
        check(self.temperature >= 0, "--temperature must be >= 0")
        check(0 < self.top_p <= 1, "--top-p must be in (0, 1]")
        check(self.max_new_tokens >= 1, "--max-new-tokens must be >= 1")
        check(self.batch_size >= 1, "--batch-size must be >= 1")


@dataclass
class OptimConfig:
    """The optimisation loop: AdamW, its warm-up, accumulation, clipping and length."""

    lr: float = _f(1e-4, "AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    epochs: float = _f(2.0, "passes over the training rows")
    max_steps: int | None = _f(None, "stop after this many optimizer steps")
    grad_accum: int = _f(1, "forward passes per optimizer step")
    warmup_steps: int = _f(5, "linear learning-rate warm-up")
    max_grad_norm: float = _f(1.0, "gradient clipping")

    def __post_init__(self) -> None:
        check_fields(self)
        check(self.lr > 0, "--lr must be > 0")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(self.epochs > 0, "--epochs must be > 0")
        check(self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1")
        check(self.grad_accum >= 1, "--grad-accum must be >= 1")
        check(self.warmup_steps >= 0, "--warmup-steps must be >= 0")
        check(self.max_grad_norm > 0, "--max-grad-norm must be > 0")

    def adamw(self, model):
        """AdamW over ``model``'s trainable parameters, with this block's lr and weight decay."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def loop_kwargs(self) -> dict:
        """What :func:`~reasonmaxxer.optim.optimize` takes from this block (its length, warm-up,
        accumulation and clipping)."""
        names = ("epochs", "max_steps", "grad_accum", "lr", "warmup_steps", "max_grad_norm")
        return {n: getattr(self, n) for n in names}


@dataclass
class LoraSpec:
    """The LoRA adapter's shape (train, grpo and the distill student build it the same way)."""

    lora_r: int = _f(32, "LoRA rank")
    lora_alpha: int | None = _f(64, "LoRA alpha")
    lora_dropout: float = _f(0.0, "LoRA dropout")
    lora_targets: str = _f("q_proj,k_proj,v_proj,o_proj", "comma list of module names to adapt")

    def __post_init__(self) -> None:
        check_fields(self)
        check(self.lora_r >= 1, "--lora-r must be >= 1")
        check(self.lora_alpha is None or self.lora_alpha >= 1, "--lora-alpha must be >= 1")
        check(0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)")
        check(bool(self.lora_targets.strip()), "--lora-targets must name at least one module")

    @property
    def alpha(self) -> int:
        """``lora_alpha``; None (the distill student's default) means 2 x rank."""
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_r

    @property
    def targets(self) -> list[str]:
        return [m.strip() for m in self.lora_targets.split(",") if m.strip()]


class WithLora:
    """For a config that carries :class:`LoraSpec`'s fields: ``cfg.lora`` is its adapter
    shape, as :func:`~reasonmaxxer.method.training.lora_config` takes it (a mixin: no fields)."""

    @property
    def lora(self) -> LoraSpec:
        return project(self, LoraSpec)


class WithOptim:
    """For a config that carries all of :class:`OptimConfig`'s fields: ``cfg.optim``."""

    @property
    def optim(self) -> OptimConfig:
        return project(self, OptimConfig)
