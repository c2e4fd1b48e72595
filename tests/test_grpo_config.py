"""GRPO samples its rollouts the way the pipeline does (issue: one sampling temperature)."""

from reasonmaxxer.baselines.grpo import build_grpo_config
from reasonmaxxer.config import build_run_config


def test_grpo_samples_like_the_default_pipeline():
    run, grpo = build_run_config(), build_grpo_config()
    s = run.sample
    assert (grpo.temperature, grpo.top_p) == (s.temperature, s.top_p) == (0.7, 0.95)
    assert (grpo.max_completion_length, grpo.num_generations) == (s.max_new_tokens, s.k)
    assert grpo.train == s.train


def test_a_flag_still_wins():
    grpo = build_grpo_config(overrides={"temperature": 1.0, "top_p": 1.0})
    assert (grpo.temperature, grpo.top_p) == (1.0, 1.0)
