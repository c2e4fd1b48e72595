"""The ``distill`` config and the names of what a distillation writes."""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.config import AnalysisConfig
from ..fields import check, help_field

CACHE = "teacher_cache"
TOPK_FILE = "topk.safetensors"
INDEX_FILE = "index.jsonl"
META_FILE = "meta.json"
ADAPTER = "adapter"
CHECKPOINT = "distill_checkpoint"
# settings that do not change what the student learns (a checkpoint survives changing them)
NOT_TRAINING = (
    "checkpoint_every",
    "eval",
    "backend",
    "threads",
    "benchmarks",
    "limit",
    "report_to",
)


@dataclass
class DistillConfig(AnalysisConfig):
    train: str = help_field(
        "arith:level=2,split=train", "problems the teacher's rollouts come from"
    )
    n_problems: int = help_field(100, "training problems (drawn at random with --problem-seed)")
    problem_seed: int = help_field(0, "seed for drawing the training problems")
    temperature: float = help_field(0.0, "teacher rollout temperature (0 = greedy)")
    top_p: float = help_field(1.0, "nucleus sampling for T > 0 rollouts")
    gen_batch_size: int = help_field(32, "sequences generated together")
    top_k: int = help_field(64, "teacher log-probs cached per position")
    cache_dtype: str = help_field("float32", "dtype of the cached log-probs (float32 | float16)")
    lora_r: int = help_field(32, "LoRA rank")
    lora_alpha: int | None = help_field(None, "LoRA alpha (default: 2 × rank)")
    lora_dropout: float = help_field(0.0, "LoRA dropout")
    lora_targets: str = help_field("q_proj,k_proj,v_proj,o_proj", "modules to adapt (comma list)")
    lr: float = help_field(2e-4, "AdamW learning rate")
    weight_decay: float = help_field(0.0, "AdamW weight decay")
    epochs: float = help_field(3.0, "passes over the teacher's rollouts")
    max_steps: int | None = help_field(None, "stop after this many optimizer steps")
    train_batch_size: int = help_field(4, "rollouts per training forward pass")
    grad_accum: int = help_field(2, "forward passes per optimizer step")
    warmup_steps: int = help_field(5, "linear learning-rate warm-up")
    max_grad_norm: float = help_field(1.0, "gradient clipping")
    autocast: str = help_field(
        "auto",
        "mixed precision of the training forward (auto | bfloat16 | off; auto: where native)",
    )
    seed: int = help_field(0, "rollout sampling / adapter init / shuffling seed")
    checkpoint_every: int = help_field(
        20, "save a resumable training checkpoint every N optimizer steps (0: never)"
    )
    eval: bool = help_field(True, "evaluate student, teacher and base on --benchmarks")
    backend: str = help_field(
        "auto", "generation backend of the teacher rollouts and the evaluation (auto | hf | vllm)"
    )
    report_to: str = help_field(
        "none", "live tracker mirroring each step's log row (none | trackio | wandb | tensorboard)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n_problems >= 1, "--n-problems must be >= 1")
        check(self.temperature >= 0, "--temperature must be >= 0")
        check(0 < self.top_p <= 1, "--top-p must be in (0, 1]")
        check(self.top_k >= 1, "--top-k must be >= 1")
        check(self.cache_dtype in ("float32", "float16"), "--cache-dtype: float32 or float16")
        check(self.lora_r >= 1, "--lora-r must be >= 1")
        check(bool(self.lora_targets.strip()), "--lora-targets must name at least one module")
        check(self.lr > 0 and self.epochs > 0, "need --lr > 0 and --epochs > 0")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(self.max_grad_norm > 0, "--max-grad-norm must be > 0")
        check(self.warmup_steps >= 0, "--warmup-steps must be >= 0")
        check(0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)")
        check(self.lora_alpha is None or self.lora_alpha >= 1, "--lora-alpha must be >= 1")
        check(self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1")
        check(self.checkpoint_every >= 0, "--checkpoint-every must be >= 0")
        check(
            self.train_batch_size >= 1 and self.grad_accum >= 1 and self.gen_batch_size >= 1,
            "batch sizes and --grad-accum must be >= 1",
        )
        check(self.autocast in ("auto", "bfloat16", "off"), "--autocast: auto, bfloat16 or off")
        from ..devices import resolve_precision

        self.autocast = resolve_precision(self.autocast, self.device, fallback="off")
        check(self.backend in ("auto", "hf", "vllm"), "--backend: auto, hf or vllm")
        check(
            self.report_to in ("none", "trackio", "wandb", "tensorboard"),
            "--report-to: none, trackio, wandb or tensorboard",
        )

    @property
    def alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_r
