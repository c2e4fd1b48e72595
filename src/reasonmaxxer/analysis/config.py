"""The analysis commands' configs: what every analysis shares (the model pair, the problems,
the decoding) and what ``disagree`` and ``intervene`` add."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..blocks import DecodeConfig
from ..config import EvalConfig, ModelConfig, PromptConfig, check_fields
from ..errors import UserError
from ..fields import check, help_field, project, shared

POLICIES = ("base", "teacher", "oracle", "random", "entropy")


def parse_floats(text: str | None, flag: str) -> list[float]:
    """``"0.5, 1,2e0"`` -> ``[0.5, 1.0, 2.0]``; empty -> ``[]``; junk is a :class:`UserError`."""
    out = []
    for piece in (text or "").replace(";", ",").split(","):
        piece = piece.strip()
        if not piece:
            continue
        try:
            out.append(float(piece))
        except ValueError:
            raise UserError(f"--{flag}: expected a comma list of numbers, got {piece!r}") from None
    return out


@dataclass
class AnalysisConfig:
    """What every analysis command shares: the model pair, the problems and the decoding."""

    model: str = shared(
        ModelConfig, "model", help="base model: 'default', a HF id, a folder or a .gguf"
    )
    teacher: str | None = help_field(
        None, "teacher model (default: the base, with --teacher-adapter)"
    )
    teacher_adapter: str | None = help_field(None, "PEFT adapter applied to the teacher")
    dtype: str = shared(ModelConfig, "dtype", help="weights dtype of both models")
    device: str = shared(ModelConfig, "device")
    trust_remote_code: bool = shared(ModelConfig, "trust_remote_code")
    threads: int | None = shared(
        ModelConfig, "threads", help="torch CPU threads (default: all cores)"
    )
    benchmarks: str = help_field(EvalConfig().benchmarks, "benchmark spec list (see `benchmarks`)")
    limit: int | None = help_field(100, "only the first N problems of each benchmark")
    max_new_tokens: int = shared(DecodeConfig, "max_new_tokens")
    batch_size: int = shared(
        DecodeConfig, "batch_size", 8, "sequences per forward pass / decoded together"
    )
    grader_timeout: float = help_field(5.0, "seconds per answer comparison")
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def __post_init__(self) -> None:
        check_fields(self)  # choices, finite numbers
        project(self, ModelConfig)  # the device, the threads (and the backend, where there is one)
        check(self.grader_timeout > 0, "--grader-timeout must be > 0")
        check(self.limit is None or self.limit >= 1, "--limit must be >= 1")
        project(self, DecodeConfig)
        check(
            self.teacher is not None or self.teacher_adapter is not None,
            "give the teacher: --teacher MODEL and/or --teacher-adapter DIR",
        )


@dataclass
class DisagreeConfig(AnalysisConfig):
    batch_size: int = help_field(4, "rollouts per teacher-forced forward pass")
    gen_batch_size: int = help_field(32, "sequences generated together (base greedy rollouts)")
    rerank_k: int = help_field(5, "'reranked' = teacher top-1 within this many base top tokens")
    gate_fracs: str = help_field(
        "0.01,0.02,0.05,0.1,0.2", "entropy-gate overlap at these top fractions of positions"
    )
    backend: str = shared(
        ModelConfig,
        "backend",
        help="backend of the base greedy rollouts (auto: vllm on a CUDA GPU, else hf)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.rerank_k >= 2, "--rerank-k must be >= 2")
        check(self.gen_batch_size >= 1, "--gen-batch-size must be >= 1")
        fr = parse_floats(self.gate_fracs, "gate-fracs")
        check(all(0 < x <= 1 for x in fr), "--gate-fracs must lie in (0, 1]")

    @property
    def gate_frac_list(self) -> list[float]:
        return parse_floats(self.gate_fracs, "gate-fracs")


@dataclass
class InterveneConfig(AnalysisConfig):
    tau: str = help_field("0.5,1.0,1.5,2.0", "entropy-gate thresholds in nats (comma list)")
    tau_fracs: str = help_field(
        "", "also gate at the τ that marks these fractions of the base's greedy tokens"
    )
    random_k: int = help_field(20, "random substitution draws from the base top-K minus its top-1")
    seeds: int = help_field(3, "random-substitution seeds")
    seed: int = help_field(0, "first random-substitution seed")
    policies: str = help_field(
        "base,teacher,oracle,random,entropy", "which policies to run (comma list)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_floats(self.tau, "tau")
        fr = parse_floats(self.tau_fracs, "tau-fracs")
        check(all(0 < x <= 1 for x in fr), "--tau-fracs must lie in (0, 1]")
        check(self.random_k >= 2, "--random-k must be >= 2")
        check(self.seeds >= 1, "--seeds must be >= 1")
        bad = [p for p in self.policy_list if p not in POLICIES]
        check(not bad, f"--policies: unknown {', '.join(bad)}; choose from {', '.join(POLICIES)}")

    @property
    def tau_list(self) -> list[float]:
        return parse_floats(self.tau, "tau")

    @property
    def tau_frac_list(self) -> list[float]:
        return parse_floats(self.tau_fracs, "tau-fracs")

    @property
    def policy_list(self) -> list[str]:
        return [p.strip() for p in self.policies.split(",") if p.strip()]
