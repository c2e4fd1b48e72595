"""benchmarks/cpu_budget.py: the FLOPs its floors count, against hand-computed values."""

from __future__ import annotations

import pytest
from conftest import build_model, build_tokenizer, load_benchmark_script


@pytest.fixture(scope="module")
def budget():
    return load_benchmark_script("cpu_budget")


def test_linear_flops_count_every_projection_and_the_head_apart(budget):
    """conftest's tiny Llama: hidden 32, 2 layers, 4 query heads of 8, 2 key/value heads,
    MLP 64. A layer's linear weights: q 32x32 + k 32x16 + v 32x16 + o 32x32 + 3 x 32x64
    = 1024 + 512 + 512 + 1024 + 6144 = 9216; two layers 18432, 2 FLOPs each."""
    tok = build_tokenizer()
    model = build_model(tok)
    body, head = budget.linear_flops(model)
    assert body == 2 * 2 * 9216
    assert head == 2 * len(tok) * 32


def test_decode_flops_prefill_the_prompts_then_every_generated_token(budget):
    # 3 sequences, 10 prompt tokens in all, 7 generated: 10 x body + 3 x head + 7 x (body + head)
    assert budget.decode_flops(10, 3, 7, body=100, head=20) == 1000 + 60 + 840
