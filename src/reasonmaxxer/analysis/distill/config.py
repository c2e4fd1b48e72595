"""The ``distill`` config and the names of what a distillation writes."""

from __future__ import annotations

from dataclasses import dataclass

from ...blocks import DecodeConfig, LoraSpec, OptimConfig, WithLora, WithOptim
from ...config import ModelConfig, TrainConfig
from ...fields import check, help_field, project, shared
from ..config import AnalysisConfig

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
class DistillConfig(AnalysisConfig, WithLora, WithOptim):
    train: str = help_field(
        "arith:level=2,split=train", "problems the teacher's rollouts come from"
    )
    n_problems: int = help_field(100, "training problems (drawn at random with --problem-seed)")
    problem_seed: int = help_field(0, "seed for drawing the training problems")
    temperature: float = shared(
        DecodeConfig, "temperature", 0.0, "teacher rollout temperature (0 = greedy)"
    )
    top_p: float = shared(DecodeConfig, "top_p", help="nucleus sampling for T > 0 rollouts")
    gen_batch_size: int = help_field(32, "sequences generated together")
    top_k: int = help_field(64, "teacher log-probs cached per position")
    cache_dtype: str = help_field("float32", "dtype of the cached log-probs (float32 | float16)")
    lora_r: int = shared(LoraSpec, "lora_r")
    lora_alpha: int | None = shared(LoraSpec, "lora_alpha", None, "LoRA alpha (default: 2 × rank)")
    lora_dropout: float = shared(LoraSpec, "lora_dropout")
    lora_targets: str = shared(LoraSpec, "lora_targets")
    lr: float = shared(OptimConfig, "lr", 2e-4)
    weight_decay: float = shared(OptimConfig, "weight_decay")
    epochs: float = shared(OptimConfig, "epochs", 3.0, "passes over the teacher's rollouts")
    max_steps: int | None = shared(OptimConfig, "max_steps")
    train_batch_size: int = help_field(4, "rollouts per training forward pass")
    grad_accum: int = shared(OptimConfig, "grad_accum", 2)
    warmup_steps: int = shared(OptimConfig, "warmup_steps")
    max_grad_norm: float = shared(OptimConfig, "max_grad_norm")
    autocast: str = shared(
        TrainConfig,
        "autocast",
        help="mixed precision of the training forward (auto: bf16 on a CUDA GPU)",
    )
    seed: int = help_field(0, "rollout sampling / adapter init / shuffling seed")
    checkpoint_every: int = help_field(
        20, "save a resumable training checkpoint every N optimizer steps (0: never)"
    )
    eval: bool = help_field(True, "evaluate student, teacher and base on --benchmarks")
    backend: str = shared(
        ModelConfig,
        "backend",
        help="generation backend of the teacher rollouts and the evaluation (auto: vllm on a CUDA "
        "GPU, else hf)",
    )
    report_to: str = shared(TrainConfig, "report_to")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n_problems >= 1, "--n-problems must be >= 1")
        project(self, DecodeConfig)
        check(self.top_k >= 1, "--top-k must be >= 1")
        check(self.cache_dtype in ("float32", "float16"), "--cache-dtype: float32 or float16")
        project(self, LoraSpec)
        project(self, OptimConfig)
        check(self.checkpoint_every >= 0, "--checkpoint-every must be >= 0")
        check(
            self.train_batch_size >= 1 and self.grad_accum >= 1 and self.gen_batch_size >= 1,
            "batch sizes and --grad-accum must be >= 1",
        )
        from ...devices import resolve_precision

        self.autocast = resolve_precision(self.autocast, self.device, fallback="off")
