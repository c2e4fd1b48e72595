"""Generation: the custom KV-cache decode loop against transformers' own ``generate``, row
dropping, seeded sampling, nucleus / temperature sampling, and ``HFGenerator``'s bookkeeping.

All model tests use the seeded tiny Llama from ``conftest.py`` (float32, CPU).
"""

from __future__ import annotations

import pytest
import torch

from reasonmaxxer.decoding import SamplingParams, decode, nucleus, sample_next
from reasonmaxxer.generation import HFGenerator
from reasonmaxxer.models import load_model

PROMPTS = [
    "What is 2+3?",
    "Hi",
    "A longer prompt about arithmetic: 12 + 30 = ?",
    "Seven times six\nis",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, tok, _ = load_model(str(tiny_model_dir))
    return model, tok


def _left_padded(tok, prompts):
    enc = tok(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    assert tok.padding_side == "left"
    return enc["input_ids"], enc["attention_mask"]


def _cut(ids: list[int], eos: set[int]) -> list[int]:
    """Ids up to and including the first end-of-sequence id."""
    for t, x in enumerate(ids):
        if x in eos:
            return ids[: t + 1]
    return ids


def _greedy(n: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=n)


# --------------------------------------------------------------------------- decode


def test_decode_greedy_equals_hf_generate(tiny):
    model, tok = tiny
    ids, mask = _left_padded(tok, PROMPTS)
    lengths = mask.sum(1).tolist()
    assert len(set(lengths)) == len(PROMPTS)  # really different lengths, really padded
    n = 24
    eos = {tok.eos_token_id}
    with torch.inference_mode():
        ref = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=n,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )[:, ids.shape[1] :]
        out = decode(model, ids, mask, _greedy(n), [tok.eos_token_id], None)
    assert len(out) == len(PROMPTS)
    for r, row in enumerate(out):
        expected = _cut(ref[r].tolist(), eos)
        assert row == expected, f"row {r}"
        assert len(row) == n or row[-1] == tok.eos_token_id
    # The rows are not all the same sequence (the test would be weak otherwise).
    assert len({tuple(r) for r in out}) == len(PROMPTS)


def test_finished_rows_are_dropped_without_changing_the_others(tiny):
    model, tok = tiny
    ids, mask = _left_padded(tok, PROMPTS)
    n = 16
    with torch.inference_mode():
        free = decode(model, ids, mask, _greedy(n), [tok.eos_token_id], None)
    assert all(tok.eos_token_id not in r for r in free)  # this tiny model rarely ends
    # Treat two tokens that row 0 and row 2 emit early as end-of-sequence ids.
    stops = {free[0][1], free[2][4]}
    expected = [_cut(r, stops) for r in free]
    lengths = [len(r) for r in expected]
    assert min(lengths) < n and max(lengths) == n, lengths  # some rows end early, some not
    assert len({x for x in lengths if x < n}) >= 1
    with torch.inference_mode():
        got = decode(model, ids, mask, _greedy(n), sorted(stops), None)
        alone = [
            decode(
                model,
                torch.tensor([tok(p, add_special_tokens=False)["input_ids"]]),
                torch.ones(
                    (1, len(tok(p, add_special_tokens=False)["input_ids"])), dtype=torch.long
                ),
                _greedy(n),
                sorted(stops),
                None,
            )[0]
            for p in PROMPTS
        ]
    assert got == expected
    assert got == alone  # same as decoding each prompt on its own, without padding


def test_sampling_is_reproducible_per_seed(tiny):
    model, tok = tiny
    ids, mask = _left_padded(tok, PROMPTS)
    params = SamplingParams(max_new_tokens=12, temperature=1.0)

    def run(seed):
        with torch.inference_mode():
            return decode(
                model, ids, mask, params, [tok.eos_token_id], torch.Generator().manual_seed(seed)
            )

    a, b, c = run(5), run(5), run(6)
    assert a == b
    assert a != c
    with torch.inference_mode():
        greedy = decode(model, ids, mask, _greedy(12), [tok.eos_token_id], None)
    assert a != greedy  # temperature 1 over ~99 tokens is not the argmax path


def test_max_new_tokens_one(tiny):
    model, tok = tiny
    ids, mask = _left_padded(tok, PROMPTS)
    with torch.inference_mode():
        out = decode(model, ids, mask, _greedy(1), [tok.eos_token_id], None)
        first = model(input_ids=ids, attention_mask=mask).logits[:, -1].argmax(-1).tolist()
    assert out == [[t] for t in first]


# --------------------------------------------------------------------------- sample_next


def test_top_p_keeps_only_the_nucleus():
    # p = [0.6, 0.25, 0.1, 0.05]. Mass before each token (sorted): 0, 0.6, 0.85, 0.95.
    # top_p = 0.5 drops every token whose preceding mass is >= 0.5: only token 0 is left.
    logits = torch.log(torch.tensor([[0.05, 0.6, 0.1, 0.25]])).repeat(4000, 1)
    gen = torch.Generator().manual_seed(0)
    picks = sample_next(logits, SamplingParams(1, temperature=1.0, top_p=0.5), gen)
    assert picks.shape == (4000,)
    assert set(picks.tolist()) == {1}
    # A tiny top_p still keeps the top token.
    picks = sample_next(logits, SamplingParams(1, temperature=1.0, top_p=0.01), gen)
    assert set(picks.tolist()) == {1}
    # top_p = 0.8 keeps {0.6, 0.25}, renormalised: 0.6/0.85 = 0.706, 0.25/0.85 = 0.294.
    picks = sample_next(logits, SamplingParams(1, temperature=1.0, top_p=0.8), gen)
    assert set(picks.tolist()) == {1, 3}
    assert (picks == 1).float().mean().item() == pytest.approx(0.706, abs=0.03)


def test_nucleus_hand_values():
    # p = [0.1, 0.5, 0.05, 0.3, 0.05]; sorted 0.5, 0.3, 0.1, 0.05, 0.05 with mass before each
    # 0, 0.5, 0.8, 0.9, 0.95. top_p = 0.75 keeps 0.5 and 0.3 (0.8 >= 0.75 drops the rest).
    probs = torch.tensor([[0.1, 0.5, 0.05, 0.3, 0.05]])
    kept, ids = nucleus(probs, 0.75, k=2)
    assert ids.tolist() == [[1, 3]]
    assert kept[0].tolist() == pytest.approx([0.5, 0.3])
    # k = 1 holds only 0.5 < 0.75 of the mass: it grows (1 -> 4) until the nucleus fits.
    kept, ids = nucleus(probs, 0.75, k=1)
    assert ids[0, :2].tolist() == [1, 3]
    assert kept[0].tolist() == pytest.approx([0.5, 0.3, 0.0, 0.0])


def _full_sort_nucleus(probs, top_p):
    sorted_p, order = probs.sort(dim=-1, descending=True)
    sorted_p = sorted_p.masked_fill(sorted_p.cumsum(-1) - sorted_p >= top_p, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_p)


@pytest.mark.parametrize("spread", [0.1, 3.0])  # flat rows need ~all of the vocabulary
def test_nucleus_matches_a_full_sort(spread):
    gen = torch.Generator().manual_seed(3)
    probs = torch.softmax(spread * torch.randn(6, 1000, generator=gen), dim=-1)
    kept, ids = nucleus(probs, 0.9, k=8)
    dense = torch.zeros_like(probs).scatter(-1, ids, kept)
    assert torch.equal(dense > 0, _full_sort_nucleus(probs, 0.9) > 0)
    assert torch.allclose(dense, _full_sort_nucleus(probs, 0.9))


def test_temperature_sampling_frequencies():
    base = torch.tensor([0.5, 0.3, 0.2])
    logits = torch.log(base).repeat(20000, 1)
    gen = torch.Generator().manual_seed(1)
    picks = sample_next(logits, SamplingParams(1, temperature=1.0), gen)
    freq = torch.bincount(picks, minlength=3).float() / len(picks)
    assert freq.tolist() == pytest.approx([0.5, 0.3, 0.2], abs=0.02)
    # T = 2 flattens: p ∝ sqrt(p) = [0.7071, 0.5477, 0.4472] / 1.7020 = [0.4155, 0.3218, 0.2628].
    picks = sample_next(logits, SamplingParams(1, temperature=2.0), gen)
    freq = torch.bincount(picks, minlength=3).float() / len(picks)
    assert freq.tolist() == pytest.approx([0.4155, 0.3218, 0.2628], abs=0.02)
    # T = 0 is greedy: always the argmax, no generator needed.
    assert set(sample_next(logits[:10], SamplingParams(1, temperature=0.0), None).tolist()) == {0}


# --------------------------------------------------------------------------- HFGenerator


def test_hf_generator_order_and_greedy_content(tiny):
    model, tok = tiny
    gen = HFGenerator(model, tok, batch_size=3)  # batches split the length-sorted items
    assert gen.eos_ids == [tok.eos_token_id]
    n = 10
    res = gen.generate(PROMPTS, _greedy(n), seed=0)
    assert len(res) == len(PROMPTS)
    for p, row in zip(PROMPTS, res, strict=True):
        assert len(row) == 1
        c = row[0]
        prompt_ids = tok(p, add_special_tokens=False)["input_ids"]
        assert c.prompt_ids == prompt_ids  # completion i belongs to prompt i
        with torch.inference_mode():
            solo = decode(
                model,
                torch.tensor([prompt_ids]),
                torch.ones((1, len(prompt_ids)), dtype=torch.long),
                _greedy(n),
                [tok.eos_token_id],
                None,
            )[0]
        assert c.token_ids == solo
        assert c.finish == "length" and len(c.token_ids) == n
        assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
    assert gen.stats.sequences == len(PROMPTS)
    assert gen.stats.tokens == n * len(PROMPTS)


def test_hf_generator_n_samples_stop_and_length(tiny):
    model, tok = tiny
    gen = HFGenerator(model, tok, batch_size=16)
    n, max_new = 12, 20
    # T = 5 is close to uniform over 99 tokens: P(<|im_end|> within 20 tokens) ≈ 18% each.
    params = SamplingParams(max_new_tokens=max_new, temperature=5.0, n=n)
    res = gen.generate(PROMPTS[:3], params, seed=11)
    assert [len(r) for r in res] == [n] * 3
    finishes = []
    for p, row in zip(PROMPTS[:3], res, strict=True):
        assert all(c.prompt_ids == tok(p, add_special_tokens=False)["input_ids"] for c in row)
        assert len({tuple(c.token_ids) for c in row}) == n  # n different samples
        for c in row:
            finishes.append(c.finish)
            if c.finish == "stop":
                assert c.token_ids[-1] == tok.eos_token_id
                assert tok.eos_token_id not in c.token_ids[:-1]
                assert len(c.token_ids) <= max_new
            else:
                assert c.finish == "length"
                assert len(c.token_ids) == max_new
                assert tok.eos_token_id not in c.token_ids
            assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
    assert "stop" in finishes and "length" in finishes
    # Same seed, same everything: same samples.
    again = gen.generate(PROMPTS[:3], params, seed=11)
    assert [[c.token_ids for c in r] for r in again] == [[c.token_ids for c in r] for r in res]


def test_hf_generator_stop_string(tiny):
    model, tok = tiny
    plain = HFGenerator(model, tok).generate(PROMPTS[:1], _greedy(12))[0][0]
    stop = plain.text[4:6]
    cut = plain.text.index(stop)
    assert 0 < cut < len(plain.text)
    stopped = HFGenerator(model, tok, stop=[stop]).generate(PROMPTS[:1], _greedy(12))[0][0]
    assert stopped.text == plain.text[:cut]
    assert stopped.finish == "stop"
    assert stopped.token_ids == plain.token_ids  # the ids are kept whole for teacher forcing


# --------------------------------------------------------------------------- merged adapters


def test_merged_adapter_gives_the_unmerged_logits(tiny_model_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base, tok, _ = load_model(str(tiny_model_dir))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"])
    lora.init_lora_weights = False  # random B: the adapter really changes the outputs
    torch.manual_seed(0)
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")

    ids = torch.tensor([tok("What is 2 + 3?")["input_ids"]])
    unmerged, _, _ = load_model(str(tiny_model_dir), adapter=str(tmp_path / "adapter"))
    merged, _, info = load_model(str(tiny_model_dir), adapter=str(tmp_path / "adapter"), merge=True)
    plain, _, _ = load_model(str(tiny_model_dir))
    assert isinstance(unmerged, PeftModel) and not isinstance(merged, PeftModel)
    assert info.adapter == str(tmp_path / "adapter")
    with torch.inference_mode():
        a, b, c = (m(input_ids=ids).logits for m in (unmerged, merged, plain))
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)  # the adapter is not a no-op
    # merged in float32, then cast to the generation dtype
    half, _, _ = load_model(
        str(tiny_model_dir), adapter=str(tmp_path / "adapter"), merge=True, dtype="bfloat16"
    )
    assert next(half.parameters()).dtype == torch.bfloat16


def test_merged_bfloat16_keeps_float32_buffers_and_tied_head(tiny_model_dir, tmp_path):
    # A merged adapter cast to bfloat16 must match the same weights loaded in bfloat16: the
    # rotary inv_freq stays float32 (model.to(dtype) rounded it), and a tied head stays tied.
    from peft import LoraConfig, get_peft_model

    base, _, _ = load_model(str(tiny_model_dir))
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(
        tmp_path / "adapter"
    )  # B = 0: merging changes no weight
    merged, _, _ = load_model(
        str(tiny_model_dir), adapter=str(tmp_path / "adapter"), merge=True, dtype="bfloat16"
    )
    direct, _, _ = load_model(str(tiny_model_dir), dtype="bfloat16")
    assert {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    assert dict((n, b.dtype) for n, b in merged.named_buffers()) == dict(
        (n, b.dtype) for n, b in direct.named_buffers()
    )
    assert any(b.dtype == torch.float32 for _, b in merged.named_buffers())  # inv_freq
    tied = direct.lm_head.weight.data_ptr() == direct.model.embed_tokens.weight.data_ptr()
    assert (merged.lm_head.weight.data_ptr() == merged.model.embed_tokens.weight.data_ptr()) == tied
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.inference_mode():
        assert torch.equal(merged(input_ids=ids).logits, direct(input_ids=ids).logits)


def test_frozen_head_gets_contiguous_input(tiny_model_dir):
    # logits_to_keep hands the head a strided view; with a frozen head weight torch.matmul
    # then runs bmm on a per-row copy of the weight (3.4 GiB for SmolLM2 at 64 rows). The
    # loaded model's head sees a contiguous tensor, and the logits are unchanged.
    model, _, _ = load_model(str(tiny_model_dir))
    model.requires_grad_(False)  # as in a PEFT model's base or a merged adapter
    seen = []
    model.lm_head.register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    ids = torch.randint(5, 50, (3, 7))
    with torch.inference_mode():
        last = model(input_ids=ids, logits_to_keep=1).logits[:, -1]
        full = model(input_ids=ids).logits[:, -1]
    assert seen == [True, True]
    assert torch.allclose(last, full, atol=1e-6)


# --------------------------------------------------------------------------- decode_stream


def _count_forwards(model):
    calls = {"prefill": 0, "step": 0}

    def hook(module, args, kwargs):
        calls["step" if kwargs["input_ids"].shape[1] == 1 else "prefill"] += 1

    return calls, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_decode_stream_refills_and_matches_each_prompt_alone(tiny):
    """Rows end at different steps (an "end" token chosen from the free-running output), the
    freed slots are refilled with the next prompts, and every prompt's tokens equal what it
    decodes alone, unpadded."""
    from reasonmaxxer.decoding import decode_stream

    model, tok = tiny
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    prompts.sort(key=len, reverse=True)
    n = 12
    with torch.inference_mode():
        free = decode_stream(model, prompts, tok.pad_token_id, _greedy(n), [-1], None, batch_size=1)
        # an "end" token that appears at different steps in different rows
        firsts = {}
        for row in free:
            for t, x in enumerate(row):
                firsts.setdefault(x, set()).add(t if x in row else n)
        end = max(firsts, key=lambda x: (len(firsts[x]), -min(firsts[x])))
        alone = [
            decode_stream(model, [p], tok.pad_token_id, _greedy(n), [end], None, batch_size=1)[0]
            for p in prompts
        ]
        calls, handle = _count_forwards(model)
        try:
            shared = decode_stream(
                model, prompts, tok.pad_token_id, _greedy(n), [end], None, batch_size=2
            )
        finally:
            handle.remove()
    assert shared == alone
    lengths = [len(r) for r in alone]
    assert len(set(lengths)) > 1 and min(lengths) < n  # rows really end early, at different steps
    # Draining batches of 2 would take sum(max of each pair) steps; refilling takes fewer, and
    # every prompt after the first two was prefilled into a freed slot.
    drained = sum(max(lengths[i : i + 2]) for i in range(0, len(lengths), 2))
    assert calls["step"] < drained
    assert calls["prefill"] > 1


def test_decode_stream_sampling_is_reproducible(tiny):
    from reasonmaxxer.decoding import decode_stream

    model, tok = tiny
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS] * 2
    params = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        with torch.inference_mode():
            return decode_stream(model, prompts, tok.pad_token_id, params, [5], g, batch_size=3)

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    assert all(1 <= len(r) <= 10 and (len(r) == 10 or r[-1] == 5) for r in a)


def test_a_repeated_prompt_is_prefilled_once_with_the_same_cache_and_logits(tiny):
    """The K samples of a problem share one prefill: a batch [a, b, a, a] runs a and b once
    (the forward sees 2 rows) and gives every row the cache, logits, mask and next position
    that prefilling the four rows as they are gives."""
    from reasonmaxxer.decoding import _prefill

    model, tok = tiny
    a, b = (tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS[:2])
    assert len(a) != len(b)
    rows_seen = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kw: rows_seen.append(kw["input_ids"].shape[0]), with_kwargs=True
    )
    with torch.inference_mode():
        try:
            caches, logits, mask, pos = _prefill([model], [a, b, a, a], tok.pad_token_id)
        finally:
            handle.remove()
        # each prompt alone, padded to the same width by hand: the reference for every row
        ref = {}
        for p in (a, b):
            rc, rl, rm, rp = _prefill([model], [p, a if p is b else b], tok.pad_token_id)
            ref[tuple(p)] = (rc[0], rl[0][0], rm[0], rp[0])
    assert rows_seen == [2]
    for i, p in enumerate([a, b, a, a]):
        rc, rl, rm, rp = ref[tuple(p)]
        torch.testing.assert_close(logits[0][i], rl)
        assert torch.equal(mask[i], rm) and int(pos[i]) == int(rp) == len(p)
        for layer, ref_layer in zip(caches[0].layers, rc.layers, strict=True):
            torch.testing.assert_close(layer.keys[i], ref_layer.keys[0])
            torch.testing.assert_close(layer.values[i], ref_layer.values[0])


def test_prompts_with_a_common_start_prefill_it_once_and_decode_as_each_alone(tiny):
    """Prompts that begin with the same system prompt: the prefill runs those tokens once
    (a 1-row call, then the rest of each row), the next-token logits match each prompt
    prefilled alone, and greedy decoding with refills gives each prompt's tokens alone."""
    from reasonmaxxer.decoding import _prefill, decode_stream

    model, tok = tiny
    system = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
    prompts = [tok(system + p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    prompts.sort(key=len, reverse=True)
    calls = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kw: calls.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    with torch.inference_mode():
        try:
            _, logits, _, pos = _prefill([model], prompts, tok.pad_token_id)
        finally:
            handle.remove()
        n_system = len(tok(system, add_special_tokens=False)["input_ids"])
        assert calls[0] == (1, n_system)  # the shared start, once
        assert calls[1][0] == len(prompts) and calls[1][1] < max(map(len, prompts))
        assert pos.tolist() == [len(p) for p in prompts]
        for i, p in enumerate(prompts):
            alone = _prefill([model], [p], tok.pad_token_id)[1][0][0]
            torch.testing.assert_close(logits[0][i], alone, atol=1e-5, rtol=0)
        n = 12
        free = decode_stream(model, prompts, tok.pad_token_id, _greedy(n), [-1], None, batch_size=1)
        firsts = {}  # an "end" token that ends rows at different steps, so slots are refilled
        for row in free:
            for t, x in enumerate(row):
                firsts.setdefault(x, set()).add(t)
        end = max(firsts, key=lambda x: (len(firsts[x]), -min(firsts[x])))
        each = [
            decode_stream(model, [p], tok.pad_token_id, _greedy(n), [end], None, batch_size=1)[0]
            for p in prompts
        ]
        calls.clear()
        handle = model.register_forward_pre_hook(
            lambda m, args, kw: calls.append(tuple(kw["input_ids"].shape)), with_kwargs=True
        )
        try:
            together = decode_stream(
                model, prompts, tok.pad_token_id, _greedy(n), [end], None, batch_size=2
            )
        finally:
            handle.remove()
    assert together == each
    assert len({len(r) for r in each}) > 1  # rows ended at different steps
    # prompts were spliced into the running batch (a prefill after the first), their caches
    # left-padded beside rows whose caches hold [shared start | padding | rest]
    assert sum(1 for c in calls if c[1] > 1) > 2
