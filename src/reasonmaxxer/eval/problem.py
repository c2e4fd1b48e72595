"""The unit every stage works on: one question with its reference answer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One question with its reference answer; ``benchmark`` is the name it was loaded under."""

    id: str
    problem: str
    answer: str
    benchmark: str
    solution: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)
