"""Tests for the analysis suite (paper §3–§4): reasonmaxxer.analysis, analysis.distill and
cli.analysis.

The pure functions are checked on hand-built logits whose classes and ranks are written out
below; the decoder on a pair of tiny random Llamas (the conftest base and a second one with
another seed), against ``HFGenerator`` and against teacher-forcing its own outputs.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import build_model, build_tokenizer, save

from reasonmaxxer.analysis import (
    RERANKED,
    SHIFTED,
    UNCHANGED,
    DisagreeConfig,
    InterveneConfig,
    ModelPair,
    Policy,
    auroc,
    base_rank,
    classify_positions,
    disagreement_summary,
    entropy_gate_overlap,
    pair_logits,
    policy_decode,
    random_plan,
)
from reasonmaxxer.errors import UserError

NEG = -30.0


def _row(v: int, order: list[int]) -> list[float]:
    """Logits over ``v`` ids whose descending order is ``order`` (then the rest, all NEG)."""
    row = [NEG] * v
    for rank, tok in enumerate(order):
        row[tok] = 10.0 - rank
    return row


# --------------------------------------------------------------------------- pure functions


def test_classify_positions_hand_built():
    v = 10
    base = torch.tensor(
        [
            _row(v, [3, 1, 4, 0, 5, 9, 2, 6]),  # t0: teacher top-1 = 3 = base top-1
            _row(v, [0, 1, 2, 3, 4, 5, 6, 7]),  # t1: teacher top-1 = 2, base rank 3
            _row(v, [0, 1, 2, 3, 4, 5, 6, 7]),  # t2: teacher top-1 = 6, base rank 7
            _row(v, [8, 7, 0, 1, 2, 3, 4, 5]),  # t3: teacher top-1 = 7, base rank 2
            _row(v, [0, 1, 2, 3, 4, 5, 6, 7]),  # t4: teacher top-1 = 5, base rank 6
            _row(v, [0, 1, 2, 3, 4, 5, 6, 7]),  # t5: teacher top-1 = 4, base rank 5 (edge)
        ]
    )
    teacher = torch.tensor(
        [
            _row(v, [3, 0]),
            _row(v, [2, 0]),
            _row(v, [6, 0]),
            _row(v, [7, 8]),
            _row(v, [5, 0]),
            _row(v, [4, 0]),
        ]
    )
    classes, rank = classify_positions(base, teacher)
    assert rank.tolist() == [1, 3, 7, 2, 6, 5]
    assert classes.tolist() == [UNCHANGED, RERANKED, SHIFTED, RERANKED, SHIFTED, RERANKED]
    assert classes.dtype == torch.long and rank.dtype == torch.long
    # rerank_k moves the reranked/shifted border: with k = 6 position 4 is reranked
    classes6, _ = classify_positions(base, teacher, rerank_k=6)
    assert classes6.tolist()[4] == RERANKED


def test_classify_ties_follow_argmax_and_bf16():
    # ids 2 and 5 tie for the base maximum; argmax picks 2 (first), so teacher 2 is
    # unchanged and teacher 5 is the base's rank-2 token.
    base = torch.tensor([[0.0, 1.0, 3.0, 2.0, 0.5, 3.0], [0.0, 1.0, 3.0, 2.0, 0.5, 3.0]])
    teacher = torch.tensor([[0.0, 0.0, 9.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 9.0]])
    classes, rank = classify_positions(base.bfloat16(), teacher.bfloat16())
    assert rank.tolist() == [1, 2]
    assert classes.tolist() == [UNCHANGED, RERANKED]


def test_base_rank_agrees_with_a_stable_sort():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 37, generator=g).round(decimals=1)  # plenty of ties
    tokens = torch.randint(0, 37, (50,), generator=g)
    order = torch.sort(-logits, dim=-1, stable=True).indices  # ties: lower id first
    expected = (order == tokens[:, None]).float().argmax(-1) + 1
    assert base_rank(logits, tokens, chunk_size=7).tolist() == expected.tolist()
    assert base_rank(logits, logits.argmax(-1)).eq(1).all()


def test_classify_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        classify_positions(torch.zeros(3, 5), torch.zeros(3, 6))


def test_auroc_known_values():
    # classic example: positives 0.35, 0.8; negatives 0.1, 0.4 -> 3 of 4 pairs ordered
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    # a tie between a positive and a negative counts one half
    assert auroc(torch.tensor([1.0, 1.0]), torch.tensor([0, 1])) == 0.5
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])) is None


def test_entropy_gate_overlap_hand_computed():
    # 10 positions, reranked at 1, 4, 7; entropies make 4 and 7 the two highest, then 0.
    h = torch.tensor([2.0, 1.5, 0.1, 0.2, 3.0, 0.3, 0.4, 2.5, 0.5, 0.6])
    target = torch.zeros(10, dtype=torch.bool)
    target[[1, 4, 7]] = True
    rows = entropy_gate_overlap(h, target, [0.1, 0.2, 0.4])
    # top 10% = {4}: precision 1, recall 1/3; lift = 1 / 0.3
    assert rows[0]["n_gated"] == 1 and rows[0]["precision"] == 1.0
    assert rows[0]["recall"] == pytest.approx(1 / 3)
    assert rows[0]["lift"] == pytest.approx(1 / 0.3)
    assert rows[0]["tau"] == 3.0
    # top 20% = {4, 7}: precision 1, recall 2/3
    assert rows[1]["precision"] == 1.0 and rows[1]["recall"] == pytest.approx(2 / 3)
    # top 40% = {4, 7, 0, 1}: 3 hits -> precision 3/4, recall 1; lowest gated entropy 1.5
    assert rows[2]["precision"] == 0.75 and rows[2]["recall"] == 1.0 and rows[2]["tau"] == 1.5


def test_disagreement_summary_hand_computed():
    classes = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 0])
    ranks = torch.tensor([1, 1, 1, 1, 1, 1, 2, 3, 9, 1])
    entropy = torch.tensor([0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 1.5, 2.5, 3.0, 0.1])
    s = disagreement_summary(classes, ranks, entropy, gate_fracs=[0.2])
    assert s["positions"] == 10
    assert s["unchanged"]["frac"] == 0.7 and s["reranked"]["frac"] == 0.2
    assert s["shifted"]["frac"] == 0.1
    assert s["mean_rank_reranked"] == 2.5  # (2 + 3) / 2
    assert s["mean_rank_disagree"] == pytest.approx(14 / 3)  # (2 + 3 + 9) / 3
    h_u = (0.1 + 0.2 + 0.1 + 0.2 + 0.1 + 0.2 + 0.1) / 7
    assert s["unchanged"]["entropy_mean"] == pytest.approx(h_u)
    assert s["reranked"]["entropy_mean"] == pytest.approx(2.0)
    assert s["entropy_ratio"] == pytest.approx(2.0 / h_u)
    assert s["auroc_reranked"] == 1.0  # every reranked entropy beats every unchanged one
    assert s["rank_hist"]["1"] == 7 and s["rank_hist"]["2"] == 1 and s["rank_hist"]["9"] == 1
    # top 20% = positions 8 (H 3.0, shifted) and 7 (2.5, reranked): precision 1/2, recall 1/2
    assert s["gate"][0]["precision"] == 0.5 and s["gate"][0]["recall"] == 0.5
    assert s["gate_disagree"][0]["precision"] == 1.0


def test_random_plan_counts_and_ranks():
    plan = random_plan(["a", "b", "c"], [3, 0, 9], [10, 5, 4], seed=1, k=20)
    assert [len(plan[i]) for i in range(3)] == [3, 0, 4]  # capped at the row length
    assert all(0 <= s < 10 and 2 <= r <= 20 for s, r in plan[0].items())
    assert plan == random_plan(["a", "b", "c"], [3, 0, 9], [10, 5, 4], seed=1, k=20)
    assert plan[0] != random_plan(["a"], [3], [10], seed=2, k=20)[0]


def test_configs_validate():
    with pytest.raises(UserError, match="teacher"):
        DisagreeConfig()
    with pytest.raises(UserError, match="tau"):
        InterveneConfig(teacher="x", tau="0.5,abc")
    with pytest.raises(UserError, match="policies"):
        InterveneConfig(teacher="x", policies="base,magic")
    cfg = InterveneConfig(teacher_adapter="a", tau="0.5, 1", tau_fracs="0.05")
    assert cfg.tau_list == [0.5, 1.0] and cfg.tau_frac_list == [0.05]


# --------------------------------------------------------------------------- tiny model pair


@pytest.fixture(scope="module")
def pair():
    tok = build_tokenizer()
    base = build_model(tok, seed=0).eval()
    teacher = build_model(tok, seed=3).eval()
    # share most weights so that the two mostly agree and disagree at some steps
    with torch.no_grad():
        for (_, pb), (_, pt) in zip(
            base.named_parameters(), teacher.named_parameters(), strict=True
        ):
            pt.copy_(pb + 0.35 * (pt - pb))
    tok.padding_side = "left"
    return ModelPair(base, teacher, tok)


PROBLEMS = ["What is 3 + 4?", "Tom has 2 apples.", "12 - 5 =", "Hi", "Compute 7*8 please."]


def _prompt_ids(pair):
    return [pair.tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROBLEMS]


def _hf_greedy(model, tok, prompts, n, batch_size=1):
    from reasonmaxxer.generation import HFGenerator, SamplingParams

    gen = HFGenerator(model, tok, batch_size=batch_size)
    return [c[0].token_ids for c in gen.generate(prompts, SamplingParams(n), desc="hf")]


def _force(pair, prompt_ids, rows):
    """Teacher-force decoded rows through both models -> per row (classes, ranks)."""
    out = {}
    for i, b, t in pair_logits(pair, prompt_ids, [r["token_ids"] for r in rows], 4):
        out[i] = classify_positions(b, t, rerank_k=10**6)
    return out


def test_oracle_reproduces_teacher_greedy_exactly(pair):
    ids = _prompt_ids(pair)
    n = 24
    oracle = policy_decode(pair, ids, Policy("oracle"), max_new_tokens=n, batch_size=2)
    teacher = policy_decode(pair, ids, Policy("teacher"), max_new_tokens=n, batch_size=2)
    hf = _hf_greedy(pair.teacher, pair.tokenizer, PROBLEMS, n)
    assert [r["token_ids"] for r in oracle] == [r["token_ids"] for r in teacher] == hf
    # the oracle changed the base's choice somewhere, and only where the top-1s differ:
    # teacher-forcing its output through both models finds exactly the touched steps
    assert sum(len(r["touched"]) for r in oracle) > 0
    for i, (classes, _) in _force(pair, ids, oracle).items():
        assert oracle[i]["touched"] == (classes != UNCHANGED).nonzero().flatten().tolist()
        assert oracle[i]["gated"] == oracle[i]["touched"]


def test_base_policy_is_base_greedy_and_gates_bracket_it(pair):
    ids = _prompt_ids(pair)
    n = 20
    base = policy_decode(pair, ids, Policy("base"), max_new_tokens=n, batch_size=3)
    assert [r["token_ids"] for r in base] == _hf_greedy(pair.base, pair.tokenizer, PROBLEMS, n)
    assert all(len(r["entropy"]) == len(r["token_ids"]) for r in base)
    never = policy_decode(pair, ids, Policy("entropy", tau=math.inf), max_new_tokens=n)
    always = policy_decode(pair, ids, Policy("entropy", tau=-math.inf), max_new_tokens=n)
    oracle = policy_decode(pair, ids, Policy("oracle"), max_new_tokens=n)
    assert [r["token_ids"] for r in never] == [r["token_ids"] for r in base]
    assert all(not r["touched"] for r in never)
    # gating every position is the oracle: the same tokens, changed at the same steps
    assert [r["token_ids"] for r in always] == [r["token_ids"] for r in oracle]
    assert [r["touched"] for r in always] == [r["touched"] for r in oracle]
    assert all(len(r["gated"]) == len(r["token_ids"]) for r in always)


def test_entropy_gate_substitutes_only_above_tau(pair):
    ids = _prompt_ids(pair)
    pooled = sorted(
        h for r in policy_decode(pair, ids, Policy("base"), max_new_tokens=16) for h in r["entropy"]
    )
    tau = pooled[len(pooled) // 2]
    rows = policy_decode(pair, ids, Policy("entropy", tau=tau), max_new_tokens=16)
    for r in rows:
        above = [s for s, h in enumerate(r["entropy"]) if h > tau]
        assert r["gated"] == above
        assert set(r["touched"]) <= set(above)


def test_random_policy_touches_as_many_steps_as_the_oracle(pair):
    ids = _prompt_ids(pair)
    n = 24
    # no end-of-sequence id: every row runs the full n steps, so every planned step happens
    oracle = policy_decode(pair, ids, Policy("oracle"), max_new_tokens=n, eos_ids=[])
    counts = [len(r["touched"]) for r in oracle]
    plan = random_plan(PROBLEMS, counts, [n] * len(ids), seed=0, k=20)
    rnd = policy_decode(pair, ids, Policy("random", plan=plan), max_new_tokens=n, eos_ids=[])
    assert [len(r["touched"]) for r in rnd] == counts
    assert [r["touched"] for r in rnd] == [sorted(plan[i]) for i in range(len(ids))]
    # every substituted token is the base's planned rank (2..20), every other its top-1
    for i, b, _ in pair_logits(pair, ids, [r["token_ids"] for r in rnd], 4):
        ranks = base_rank(b, torch.tensor(rnd[i]["token_ids"])).tolist()
        for s, r in enumerate(ranks):
            assert r == plan[i].get(s, 1)
    # the draw does not depend on the batch size
    again = policy_decode(
        pair, ids, Policy("random", plan=plan), max_new_tokens=n, eos_ids=[], batch_size=1
    )
    assert [r["token_ids"] for r in again] == [r["token_ids"] for r in rnd]


def test_shared_adapter_pair_toggles_one_network(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from reasonmaxxer.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"]),
    ).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    pair = ModelPair(peft, peft, tok, toggle_adapter=True)
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in PROBLEMS]
    base = policy_decode(pair, ids, Policy("base"), max_new_tokens=12)
    assert [r["token_ids"] for r in base] == _hf_greedy(plain, tok, PROBLEMS, 12)
    oracle = policy_decode(pair, ids, Policy("oracle"), max_new_tokens=12)
    teacher = policy_decode(pair, ids, Policy("teacher"), max_new_tokens=12)
    assert [r["token_ids"] for r in oracle] == [r["token_ids"] for r in teacher]
    assert sum(len(r["touched"]) for r in oracle) > 0


# --------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    tok = build_tokenizer()
    return save(build_model(tok, seed=5), tok, tmp_path_factory.mktemp("tiny-teacher"))


@pytest.mark.slow
def test_disagree_and_intervene_write_their_outputs(tiny_model_dir, teacher_dir, tmp_path):
    from click.testing import CliRunner

    from reasonmaxxer.cli.analysis import analyze_group

    common = [
        "--model", str(tiny_model_dir), "--teacher", str(teacher_dir),
        "--benchmarks", "arith:level=1,n=3,split=eval", "--max-new-tokens", "10",
    ]  # fmt: skip
    r = CliRunner().invoke(analyze_group, ["disagree", *common, "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "d" / "disagree.json").read_text())
    s = rec["summary"]
    assert s["positions"] > 0 and s["base_top1_matches_rollout"] == 1.0
    assert sum(s[c]["frac"] for c in ("unchanged", "reranked", "shifted")) == pytest.approx(1)
    assert rec["table"][0]["positions"] == s["positions"] and "provenance" in rec
    assert isinstance(s["timeouts"], int)  # grader time-outs are counted, as eval does
    for f in ("config.yaml", "disagree_rows.jsonl", "plots/disagree_entropy.png"):
        assert (tmp_path / "d" / f).is_file(), f
    r = CliRunner().invoke(
        analyze_group,
        ["intervene", *common, "--out", str(tmp_path / "i"), "--tau", "1.0",
         "--tau-fracs", "0.1", "--seeds", "2"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "i" / "intervene.json").read_text())
    labels = [row["label"] for row in rec["table"]]
    assert labels[:3] == ["base", "teacher", "oracle"] and len(labels) == 7
    s = rec["summary"]
    assert s["oracle_equals_teacher"] == 1.0 and s["oracle_pass@1"] == s["teacher_pass@1"]
    assert len(s["entropy"]) == 2
    assert (tmp_path / "i" / "plots" / "intervene_pass1.png").is_file()
    samples = [
        json.loads(line)
        for line in (tmp_path / "i" / "intervene_samples.jsonl").read_text().splitlines()
    ]
    for row in rec["table"]:  # grader time-outs per policy, as eval's "timeouts"
        mine = [x for x in samples if x["label"] == row["label"]]
        assert row["timeouts"] == sum(x["timed_out"] for x in mine) and len(mine) == 3
        assert not any(x["timed_out"] and x["correct"] for x in mine)


@pytest.mark.slow
def test_distill_two_steps_writes_an_adapter(tiny_model_dir, teacher_dir, tmp_path):
    from safetensors.torch import load_file

    from reasonmaxxer.analysis.distill import DistillConfig, run_distill

    cfg = DistillConfig(
        model=str(tiny_model_dir),
        teacher=str(teacher_dir),
        train="arith:level=1,n=20,split=train",
        n_problems=4,
        max_new_tokens=8,
        top_k=8,
        max_steps=2,
        train_batch_size=2,
        grad_accum=1,
        lora_r=4,
        benchmarks="arith:level=1,n=2,split=eval",
        gen_batch_size=4,
    )
    rec = run_distill(cfg, tmp_path)
    s = rec["summary"]
    assert s["steps"] == 2 and 0 < s["trainable_frac"] < 1
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    cache = load_file(str(tmp_path / "teacher_cache" / "topk.safetensors"))
    assert cache["ids"].dtype == torch.int32 and cache["ids"].shape[1] == 8
    assert cache["logprobs"].shape == cache["ids"].shape
    assert s["teacher_rollouts"]["positions"] == cache["ids"].shape[0]
    # log-probs of a top-k are sorted and their mass is at most 1
    lp = cache["logprobs"].float()
    assert (lp[:, :-1] >= lp[:, 1:]).all() and (lp.exp().sum(-1) <= 1 + 1e-5).all()
    assert {r["model"] for r in rec["table"]} == {"base", "teacher", "student"}
    assert (tmp_path / "plots" / "distill_loss.png").is_file()
    assert len((tmp_path / "distill_log.jsonl").read_text().splitlines()) == 2
    # the same settings reuse the cache
    assert run_distill(cfg, tmp_path)["summary"]["cache_reused"] is True
