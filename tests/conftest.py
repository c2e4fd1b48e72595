"""Shared fixtures: tiny Llama models saved to disk, built fully offline.

``tiny_model_dir`` is a seeded random 2-layer LlamaForCausalLM (hidden 32) with a
character-level tokenizer and a ChatML chat template, written with ``save_pretrained`` so that
``reasonmaxxer.models.load_model(str(dir))`` and ``--model DIR`` go through the real loading
code. ``digit_model_dir`` is the same architecture with its output biased towards the digit
``7``, the other digits and the end-of-sequence token, so that a pass rate strictly between 0
and 1 is likely on problems whose answer is 7 (what the pipeline test needs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
REPO_ROOT = Path(__file__).resolve().parents[1]


def build_tokenizer():
    """A character-level fast tokenizer: one token per printable ASCII character or newline."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + CHARS)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    core.add_special_tokens(SPECIAL_TOKENS)
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<|im_end|>", bos_token=None
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(tok, *, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=1024,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        initializer_range=0.2,  # wider than the default 0.02, so greedy choices have margins
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def _check_ids(model, tok) -> None:
    assert model.config.vocab_size == len(tok) == len(SPECIAL_TOKENS) + len(CHARS)
    assert model.config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert model.config.pad_token_id == tok.pad_token_id == tok.convert_tokens_to_ids("<pad>")


def completion_log_softmax(model, row: dict):
    """``[n, V]`` float64 log-softmax of the distributions that scored ``row``'s n completion
    tokens, from one unpadded forward of prompt + completion: completion token j is scored by
    the logits at position P + j - 1 (the hand values the batched stages are checked against)."""
    import torch

    with torch.inference_mode():
        seq = torch.tensor([row["prompt_ids"] + row["completion_ids"]])
        logp = model(input_ids=seq).logits[0].double().log_softmax(-1)
    p = len(row["prompt_ids"])
    return logp[p - 1 : p - 1 + len(row["completion_ids"])]


def save(model, tok, path: Path) -> Path:
    _check_ids(model, tok)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    tok = build_tokenizer()
    return save(build_model(tok, seed=0), tok, tmp_path_factory.mktemp("tiny-llama"))


def build_digit_model(tok):
    """Output ≈ softmax(bias + input-dependent noise): mostly digits (above all ``7``) and
    spaces, sometimes <|im_end|>, so ``the last number == 7`` has a middling chance.

    Hidden dimension 0 of every token embedding is a constant that no layer writes to (row 0 of
    every ``o_proj`` / ``down_proj`` is zero), so after the final RMSNorm it is nearly the same
    at every position; column 0 of the LM head then acts as an output bias. The other hidden
    dimensions keep the seeded random weights, which make the distribution depend on the input.
    """
    import torch

    model = build_model(tok, seed=1)
    bias = torch.full((len(tok),), -4.0)
    for d in "0123456789":
        bias[tok.convert_tokens_to_ids(d)] = 1.0
    bias[tok.convert_tokens_to_ids("7")] = 3.0
    bias[tok.convert_tokens_to_ids(" ")] = 2.5
    bias[tok.eos_token_id] = 1.5
    probe = tok(CHAT_TEMPLATE, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 2.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.lm_head.weight[:, 0] = 0.0
        normed = model.model(input_ids=probe).last_hidden_state[0, :, 0]  # ≈ 0.8-1.0
        model.lm_head.weight[:, 0] = bias / normed.mean()
    return model


@pytest.fixture(scope="session")
def digit_model_dir(tmp_path_factory) -> Path:
    tok = build_tokenizer()
    return save(build_digit_model(tok), tok, tmp_path_factory.mktemp("digit-llama"))


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Every test's ``REASONMAXXER_CACHE`` (fingerprints, converted and merged models) is a
    folder of this session, never the user's ``~/.cache/reasonmaxxer``; :func:`cache_dir`
    gives a test a fresh one of its own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REASONMAXXER_CACHE", str(tmp_path_factory.mktemp("rm-session-cache")))
        yield


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """``REASONMAXXER_CACHE`` pointed at a fresh temporary folder."""
    path = tmp_path / "rm-cache"
    path.mkdir()
    monkeypatch.setenv("REASONMAXXER_CACHE", str(path))
    return path


def cli_env(cache: Path | None = None) -> dict[str, str]:
    """Environment for a ``python -m reasonmaxxer`` subprocess: offline, few threads."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        TQDM_DISABLE="1",
        PYTHONUNBUFFERED="1",
    )
    if cache is not None:
        env["REASONMAXXER_CACHE"] = str(cache)
    return env


def run_cli(
    *args: str, cache: Path | None = None, timeout: float = 300, cwd=None, env: dict | None = None
):
    """``python -m reasonmaxxer ARGS`` in a subprocess (``env`` adds variables); returns the
    CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "reasonmaxxer", *map(str, args)],
        capture_output=True,
        text=True,
        env={**cli_env(cache), **(env or {})},
        timeout=timeout,
        cwd=cwd,
    )


def pytest_configure(config):
    # The tiny models are far faster on one thread, above all on a busy machine.
    import torch

    torch.set_num_threads(1)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_script(name: str):
    """A ``benchmarks/NAME.py`` script as a module, imported as ``python benchmarks/NAME.py``
    runs it: with its own folder first on ``sys.path`` (for its sibling imports)."""
    import importlib.util

    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    return mod


def sample_config(model_dir, **sample_kw):
    """A run config that samples a few ``arith`` level-1 problems with ``model_dir``: K 2,
    chunks of 2 problems, 4 new tokens, seed 3; ``sample_kw`` overrides."""
    from reasonmaxxer.config import build_run_config

    s = {
        "train": "arith:level=1,n=4,split=train",
        "k": 2,
        "chunk_problems": 2,
        "max_new_tokens": 4,
        "batch_size": 4,
        "seed": 3,
        **sample_kw,
    }
    return build_run_config(
        overrides={"model": {"model": str(model_dir), "gen_dtype": "float32"}, "sample": s}
    )
