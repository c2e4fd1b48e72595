"""Generation backends: the shared completion post-processing, the backend choice and its
bad-input errors, and sampling that survives a generator failing midway."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import build_tokenizer, run_cli

from reasonmaxxer import generation
from reasonmaxxer.config import build_run_config
from reasonmaxxer.errors import UserError
from reasonmaxxer.generation import (
    Completion,
    GenStats,
    adapter_rank,
    pick_backend,
    to_completion,
    vllm_lora_rank,
)
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method import sampling
from reasonmaxxer.method.sampling import ROLLOUTS, sample, sampler_settings

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


def test_to_completion_cuts_ids_at_eos_and_text_at_stop_string():
    tok = build_tokenizer()
    eos = tok.eos_token_id
    ids = tok("7\nQuestion: 1+1", add_special_tokens=False)["input_ids"]
    # no end-of-sequence token: the ids stay whole, the text ends at the stop string
    c = to_completion(ids, [5, 6], tok, [eos], ["\nQuestion:"])
    assert c == Completion(text="7", token_ids=ids, prompt_ids=[5, 6], finish="stop")
    # the ids end after the first end-of-sequence token, which is kept
    c = to_completion([*ids[:1], eos, *ids[1:]], [5], tok, [eos], [])
    assert (c.text, c.token_ids, c.finish) == ("7", [ids[0], eos], "stop")
    # neither: the length limit ended it
    c = to_completion(ids[:3], [5], tok, [eos], ["\nQuestion:"])
    assert (c.text, c.token_ids, c.finish) == ("7\nQ", ids[:3], "length")


def _adapter(tmp_path, r, rank_pattern=None):
    path = tmp_path / f"adapter-r{r}"
    path.mkdir()
    (path / "adapter_config.json").write_text(
        json.dumps({"r": r, "rank_pattern": rank_pattern or {}})
    )
    return str(path)


def test_vllm_lora_rank_is_the_smallest_allowed_rank_that_holds_the_adapter(tmp_path):
    assert vllm_lora_rank(_adapter(tmp_path, 2)) == 8
    assert vllm_lora_rank(_adapter(tmp_path, 32)) == 32
    assert vllm_lora_rank(_adapter(tmp_path, 33)) == 64
    assert adapter_rank(_adapter(tmp_path, 4, {"o_proj": 300})) == 300
    assert vllm_lora_rank(_adapter(tmp_path, 5, {"o_proj": 300})) == 320


def test_lora_rank_above_vllms_maximum_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(generation, "vllm_installed", lambda: True)
    with pytest.raises(UserError, match="rank 1024, above vLLM's largest"):
        pick_backend("vllm", adapter=_adapter(tmp_path, 1024))
    assert pick_backend("vllm", adapter=_adapter(tmp_path, 64)) == "vllm"
    assert pick_backend("hf", adapter=_adapter(tmp_path, 2048)) == "hf"  # HF takes any rank


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(generation, "vllm_installed", lambda: False)
    with pytest.raises(UserError, match="--backend vllm needs the vllm package"):
        pick_backend("vllm")
    assert pick_backend("auto") == "hf"
    monkeypatch.setattr(generation, "vllm_installed", lambda: True)
    monkeypatch.setattr(generation, "cuda_available", lambda: False)
    assert pick_backend("auto") == "hf"  # measured: HF is the faster on CPU
    monkeypatch.setattr(generation, "cuda_available", lambda: True)
    assert pick_backend("auto") == "vllm"
    assert pick_backend("hf") == "hf"


@pytest.mark.slow
@pytest.mark.skipif(VLLM_INSTALLED, reason="vllm is installed here")
def test_cli_backend_vllm_without_vllm_is_one_error_line_before_work(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    for args in (
        ["sample", "--model", tiny_model_dir, "--out", out, "--train", "arith:level=1,n=4"],
        ["eval", "--model", tiny_model_dir, "--out", tmp_path / "ev", "--limit", "2"],
    ):
        r = run_cli(*args, "--backend", "vllm", cache=tmp_path / "cache")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --backend vllm needs"), r.stderr
    assert not (out / ROLLOUTS).exists()
    assert not (tmp_path / "ev").exists()


def test_settings_hash_names_the_backend_only_off_hf(monkeypatch):
    cfg = build_run_config(None, {"sample": {"train": "arith:level=1,n=4"}})
    monkeypatch.setattr(generation, "vllm_installed", lambda: True)
    monkeypatch.setattr("reasonmaxxer.models.model_fingerprint", lambda spec: "fp")
    hf = sampler_settings(cfg)
    assert "backend" not in hf  # folders sampled before the choice existed keep their hash
    cfg.model.backend = "vllm"
    assert sampler_settings(cfg) == {**hf, "backend": "vllm"}


class FakeGenerator:
    """Completions determined by (seed, prompt, sample): '<seed mod 7>' token ids, '1' or '2'
    as text; raises on call number ``fail_at`` (1-based), like an engine dying midway."""

    name = "fake"

    def __init__(self, tokenizer, fail_at: int | None = None):
        self.tokenizer = tokenizer
        self.fail_at = fail_at
        self.calls = 0
        self.seeds: list[int] = []
        self.stats = GenStats()

    def generate(self, prompts, params, *, seed=0, desc=""):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("engine core died")
        self.seeds.append(seed)
        out = []
        for i, p in enumerate(prompts):
            row = []
            for j in range(params.n):
                text = str(1 + (seed + i + j) % 2)
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                row.append(Completion(text, ids, [len(p), i, j], "stop"))
            out.append(row)
        return out

    def close(self):
        pass


def test_generator_failure_midway_keeps_finished_chunks_and_resume_completes(tmp_path, monkeypatch):
    from reasonmaxxer.models import ModelInfo

    tok = build_tokenizer()
    cfg = build_run_config(
        None,
        {
            "model": {"backend": "hf"},
            "sample": {"train": "arith:level=1,n=10,split=train", "k": 2, "chunk_problems": 3},
        },
    )
    info = ModelInfo("fake", "fake", "local", "fp0")
    fakes = []

    def factory(fail_at):
        def make(*args, **kw):
            fakes.append(FakeGenerator(tok, fail_at))
            return fakes[-1], info

        return make

    monkeypatch.setattr(sampling, "make_generator", factory(fail_at=3))
    with pytest.raises(RuntimeError, match="engine core died"):
        sample(tmp_path / "run", cfg)
    rows = list(iter_jsonl(tmp_path / "run" / ROLLOUTS))
    assert sorted({r["chunk"] for r in rows}) == [0, 1]  # two finished chunks of 3 problems
    assert len(rows) == 2 * 3 * 2

    monkeypatch.setattr(sampling, "make_generator", factory(fail_at=None))
    s = sample(tmp_path / "run", cfg)
    assert s["chunks"] == 4 and s["chunks_resumed"] == 2
    assert fakes[-1].seeds == [sampling.chunk_seed(42, 2), sampling.chunk_seed(42, 3)]
    resumed = list(iter_jsonl(tmp_path / "run" / ROLLOUTS))

    s = sample(tmp_path / "straight", cfg)
    assert s["chunks_resumed"] == 0
    straight = list(iter_jsonl(tmp_path / "straight" / ROLLOUTS))
    assert len(resumed) == 10 * 2
    assert resumed == straight
