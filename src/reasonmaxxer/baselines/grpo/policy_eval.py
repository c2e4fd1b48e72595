"""Greedy pass@1 of the current GRPO policy on a fixed eval subset."""

from __future__ import annotations

import time
from typing import Any

from .config import GRPORunConfig


class PolicyEval:
    """Greedy pass@1 of the current policy on a fixed subset, with the eval stage's machinery."""

    def __init__(self, tokenizer, cfg: GRPORunConfig, stop: list[str], benches=None):
        from ...eval.data import load_benchmarks
        from ...eval.prompting import build_prompt

        self.cfg = cfg
        self.tokenizer = tokenizer
        self.stop = stop
        if benches is None:
            benches = load_benchmarks(cfg.eval_benchmarks, limit=cfg.eval_limit)
        self.benches = benches
        self.prompts = {
            name: [build_prompt(tokenizer, p.problem, cfg.prompt) for p in problems]
            for name, problems in self.benches.items()
        }
        self.tokens = 0
        self.seconds = 0.0

    def __call__(self, model, step: int) -> tuple[dict, dict, list[dict]]:
        """(flat metrics, per-benchmark summaries, sample rows); restores the train/eval mode."""
        import torch

        from ...devices import autocast, bf16_autocast_on
        from ...eval.evaluation import score_completions, summarize
        from ...generation import HFGenerator, SamplingParams

        start = time.perf_counter()
        was_training = model.training
        model.eval()
        gen = HFGenerator(
            model, self.tokenizer, batch_size=self.cfg.eval_batch_size, stop=self.stop
        )
        metrics: dict[str, Any] = {}
        results: dict[str, dict] = {}
        samples: list[dict] = []
        try:
            with (
                torch.no_grad(),
                autocast(model, enabled=bf16_autocast_on(self.cfg.autocast, model)),
            ):
                for name, problems in self.benches.items():
                    comps = gen.generate(
                        self.prompts[name],
                        SamplingParams(self.cfg.eval_max_new_tokens, temperature=0.0),
                        seed=self.cfg.seed,
                        desc=f"eval@{step} {name}",
                    )
                    rows = [
                        r[0]
                        for r in score_completions(
                            problems, comps, timeout_s=self.cfg.grader_timeout
                        )
                    ]
                    results[name] = summarize(rows, None, 1)
                    metrics[f"eval/{name}/pass@1"] = results[name]["pass@1"]
                    metrics[f"eval/{name}/mean_tokens"] = results[name]["mean_tokens"]
                    for p, prompt, r in zip(problems, self.prompts[name], rows, strict=True):
                        samples.append(
                            {
                                "benchmark": name,
                                "id": p.id,
                                "answer": p.answer,
                                "prompt": prompt,
                                **r,
                            }
                        )
        finally:
            model.train(was_training)
        self.tokens += gen.stats.tokens
        self.seconds += time.perf_counter() - start
        return metrics, results, samples
