"""The vLLM backend against the HF one, on a tiny model (runs wherever vllm imports: vLLM's CPU
build here, a GPU elsewhere; skipped otherwise).

In float32 the two backends compute the same network, and the tiny model's wide initialization
leaves greedy choices clear margins, so greedy completions must match token for token.
"""

from __future__ import annotations

import importlib.util

import pytest
from conftest import build_tokenizer, save

from reasonmaxxer.generation import HFGenerator, SamplingParams, VLLMGenerator

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed"),
]

PROMPTS = ["12+7=", "<|im_start|>user\n3-1<|im_end|>\n", "Question: 5+5\nAnswer:", "9"]


def build_vllm_model(tok):
    """Like conftest's tiny Llama, with a head size vLLM's attention kernels take (64)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=256,
        max_position_embeddings=256,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


@pytest.fixture(scope="module")
def vllm_pair(tmp_path_factory):
    tok = build_tokenizer()
    model = build_vllm_model(tok)
    path = save(model, tok, tmp_path_factory.mktemp("vllm-llama"))
    hf = HFGenerator(model.eval(), tok, batch_size=3, stop=["\nQuestion:"])
    vl = VLLMGenerator(
        str(path),
        dtype="float32",
        stop=["\nQuestion:"],
        seed=0,
        max_model_len=128,
        enforce_eager=True,
    )
    yield hf, vl
    vl.close()


def test_greedy_vllm_matches_hf_token_for_token(vllm_pair):
    hf, vl = vllm_pair
    params = SamplingParams(max_new_tokens=24)
    want = hf.generate(PROMPTS, params)
    got = vl.generate(PROMPTS, params)
    assert [[c.token_ids for c in row] for row in got] == [
        [c.token_ids for c in row] for row in want
    ]
    assert got == want  # text, prompt ids and finish reason too
    assert vl.stats.sequences == len(PROMPTS) and vl.stats.tokens > 0


def test_sampling_depends_on_the_call_seed_only(vllm_pair):
    _, vl = vllm_pair
    params = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.95, n=3)
    first = vl.generate(PROMPTS, params, seed=5)
    vl.generate(PROMPTS, params, seed=9)  # calls in between do not change a seed's stream
    again = vl.generate(PROMPTS, params, seed=5)
    other = vl.generate(PROMPTS, params, seed=6)
    ids = [[c.token_ids for c in row] for row in first]
    assert ids == [[c.token_ids for c in row] for row in again]
    assert ids != [[c.token_ids for c in row] for row in other]
    assert all(len(row) == 3 for row in first)
    assert len({tuple(c.token_ids) for row in first for c in row}) > len(PROMPTS)
