"""What a GRPO run measures: time per phase, tokens, grading counts, and the training clock
(evaluations excluded)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Meter:
    """What the trainer subclass measures. Seconds are wall clock, summed over calls."""

    generation_s: float = 0.0  # sampling the completions (TRL's _generate_single_turn)
    reward_s: float = 0.0  # grading them (TRL's _calculate_rewards)
    rollout_s: float = 0.0  # the whole rollout phase (_generate_and_score_completions):
    # generation + reward + reference/old log-prob forward passes + advantages
    generation_calls: int = 0
    sequences_generated: int = 0
    tokens_generated: int = 0
    prompt_tokens_generated_from: int = 0
    fb_tokens: int = 0  # prompt + completion tokens through the policy forward+backward
    fb_tokens_padded: int = 0  # the same with padding (what the kernels actually ran)
    graded: int = 0  # completions graded by the reward function
    grader_timeouts: int = 0  # of those, comparisons the grader could not finish (reward 0.0)
    measured: dict = field(default_factory=dict)  # hook name -> whether TRL still has it


class Clock:
    """Training wall time: since ``begin()``, minus the seconds spent in evaluations."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.eval_s = 0.0

    def begin(self) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def train_s(self) -> float:
        return 0.0 if self.start is None else time.perf_counter() - self.start - self.eval_s


def json_scalar(v: Any) -> Any:
    """JSON-safe scalar: NaN/inf -> None, tensors/numpy -> Python numbers."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
