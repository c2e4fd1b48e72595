"""The glue between TRL and ReasonMaxxer's pieces: the reward (our grader). The LoRA shape is
ReasonMaxxer's own (``training.lora_config`` of ``GRPORunConfig.lora``)."""

from __future__ import annotations

from typing import Any

from .measure import Meter


def make_reward(stop: list[str], timeout_s: float, meter: Meter | None = None):
    """TRL reward function: 1.0 when our grader accepts the completion, else 0.0.

    Plain-format prompts cut the text at the stop strings first, as :class:`HFGenerator` does
    (TRL's HF generation has no stop strings). The name shows up in TRL's metrics as
    ``rewards/correct/mean``. A grader time-out gives 0.0 and is counted in ``meter``
    (``grader_timeouts``, next to ``graded``), which the train log and the manifest report.
    """
    from ...eval.grading import grade

    def correct(completions: list[str], answer: list[str], **_: Any) -> list[float]:
        out = []
        for text, ref in zip(completions, answer, strict=True):
            for s in stop:
                if s in text:
                    text = text[: text.index(s)]
            g = grade(text, ref, timeout_s=timeout_s)
            out.append(1.0 if g.correct else 0.0)
            if meter is not None:
                meter.graded += 1
                meter.grader_timeouts += int(g.timed_out)
        return out

    return correct
