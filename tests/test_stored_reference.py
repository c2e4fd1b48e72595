"""π_ref's token log-probs stored by ``select`` and used by ``train`` instead of a reference
forward (``training.stored_reference``): the stored values are the base's teacher-forced
log-probs, checked by hand; a step that uses them gives the loss and gradients of a step that
runs π_ref; ``train`` takes that path only when no position needs π_ref's full distribution
and the rows were scored under the forward it would run."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from conftest import completion_log_softmax

from reasonmaxxer.config import build_run_config
from reasonmaxxer.engine import build_batch
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method.selection import (
    SELECTION,
    base_token_terms,
    entropy_key,
    forward_key,
    reference_key,
    select,
)
from reasonmaxxer.method.training import lora_model, step_loss, stored_reference, train
from reasonmaxxer.models import load_model

TEXTS = [  # (problem, prompt, completion, reward): two problems, each solved once of twice
    ("a", "What is 1+1?", "2 apples", 1.0),
    ("a", "What is 1+1?", "3", 0.0),
    ("b", "Hi", "Hello, how are you", 1.0),
    ("b", "Hi", "Bye now", 0.0),
]


def _rollouts(tok) -> list[dict]:
    counts: dict[str, int] = {}
    rows = []
    for pid, prompt, completion, reward in TEXTS:
        j = counts[pid] = counts.get(pid, -1) + 1
        rows.append(
            {
                "problem_id": pid,
                "rollout": j,
                "reward": reward,
                "prompt_ids": tok(prompt)["input_ids"],
                "completion_ids": tok(completion)["input_ids"],
            }
        )
    return rows


def _cfg(model_dir, gate="all", **train):
    return build_run_config(
        overrides={
            "model": {"model": str(model_dir)},
            "select": {
                "gate": gate,
                "top_frac": 0.5,
                "max_problems": "none",
                "drop_longest": 0.0,
                "batch_size": 3,
                "autocast": "off",
            },
            "train": {
                "autocast": "off",
                "max_steps": 3,
                "batch_size": 2,
                "lora_r": 4,
                "lr": 0.01,
                "warmup_steps": 0,
                **train,
            },
        }
    )


def test_select_stores_the_base_log_prob_of_each_taken_token(tmp_path, tiny_model_dir):
    model, tok, _ = load_model(str(tiny_model_dir))
    rows = _rollouts(tok)
    cfg = _cfg(tiny_model_dir)
    terms = base_token_terms(tmp_path, rows, cfg)
    for r in rows:
        logp = completion_log_softmax(model, r)  # [n, V]
        taken = torch.tensor(r["completion_ids"])[:, None]
        expected = logp.gather(-1, taken).squeeze(-1).tolist()
        got = terms[(r["problem_id"], r["rollout"])]["logp"]
        assert got == pytest.approx(expected, abs=2e-4)
        assert all(v < 0 for v in got)
    # cached with the entropies, under the same key
    cached = list(iter_jsonl(tmp_path / "entropies.jsonl"))
    assert all(len(c["logp"]) == len(c["entropy"]) for c in cached)
    assert {c["key"] for c in cached} == {entropy_key(cfg)}


def _selection(tok, *, full: bool = True, key: str = "k") -> list[dict]:
    rows = []
    for r in _rollouts(tok):
        n = len(r["completion_ids"])
        decision = list(range(n)) if full else list(range(n - 1))
        rows.append({**r, "advantage": 1.0, "decision": decision, "ref_logp": [-1.0] * n})
        rows[-1]["ref_key"] = key
    return rows


def test_stored_reference_only_without_kl_positions_and_for_the_same_forward(
    tmp_path, tiny_model_dir
):
    _, tok, _ = load_model(str(tiny_model_dir))
    cfg = _cfg(tiny_model_dir)
    key = reference_key(cfg, cfg.train.autocast)
    assert stored_reference(_selection(tok, key=key), cfg)
    # a KL-anchored position needs π_ref's full distribution, whatever the anchor's weight
    assert not stored_reference(_selection(tok, full=False, key=key), cfg)
    assert not stored_reference(_selection(tok, full=False, key=key), _cfg(tiny_model_dir, lam=0))
    # rows scored under another forward: train's bf16 autocast, another model, none at all
    bf16 = _cfg(tiny_model_dir, autocast="bfloat16")
    assert reference_key(bf16, bf16.train.autocast) != key
    assert not stored_reference(_selection(tok, key=key), bf16)
    assert not stored_reference(_selection(tok, key="other"), cfg)
    bare = [{k: v for k, v in r.items() if k != "ref_logp"} for r in _selection(tok, key=key)]
    assert not stored_reference(bare, cfg)
    # Another folder whose weights fingerprint the same (a copy) is another model as far as
    # the stored log-probs go: π_ref is the model the config names.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    other = _cfg(copy)
    assert forward_key(other, "off") == forward_key(cfg, "off")
    assert reference_key(other, "off") != key
    assert not stored_reference(_selection(tok, key=reference_key(other, "off")), cfg)
    # π_ref a model folder of its own (a round anchored to the previous policy): the stored
    # log-probs serve when that folder scored the rows, not when another one did
    trained_on = _cfg(copy)  # the weights the adapter sits on: not π_ref
    assert stored_reference(_selection(tok, key=key), trained_on, ref_model=str(tiny_model_dir))
    assert not stored_reference(_selection(tok, key=key), cfg, ref_model=str(copy))
    # a KL over the prompt too
    assert not stored_reference(_selection(tok, key=key), _cfg(tiny_model_dir, kl_scope="all"))


def test_step_with_stored_log_probs_matches_a_step_that_runs_the_reference(
    tmp_path, tiny_model_dir
):
    model, tok, _ = load_model(str(tiny_model_dir))
    cfg = _cfg(tiny_model_dir)
    rows = _rollouts(tok)
    terms = base_token_terms(tmp_path, rows, cfg)  # batches of 3: other padding than below
    torch.manual_seed(0)
    peft = lora_model(model, cfg)
    with torch.no_grad():  # a policy away from the base: the log-ratios are not 0
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    adv = [1.0, -1.0, 0.5, -0.5]
    plain = []
    for r, a in zip(rows, adv, strict=True):
        plain.append({**r, "advantage": a, "decision": list(range(len(r["completion_ids"])))})
    stored = [{**r, "ref_logp": terms[(r["problem_id"], r["rollout"])]["logp"]} for r in plain]

    def loss_and_grads(batch_rows):
        peft.zero_grad()
        loss, stats = step_loss(peft, build_batch(batch_rows), cfg)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in peft.named_parameters() if p.requires_grad}
        return loss.item(), stats, grads

    loss_f, stats_f, grads_f = loss_and_grads(plain)
    loss_s, stats_s, grads_s = loss_and_grads(stored)
    assert abs(loss_f - math.log(2)) > 1e-3  # the policy moved, so the test can tell
    assert loss_s == pytest.approx(loss_f, abs=1e-5)
    for k in ("loss_dec", "dec_logratio_pos", "dec_logratio_neg", "n_decision"):
        assert stats_s[k] == pytest.approx(stats_f[k], abs=1e-4), k
    assert stats_f["kl_all"] > 1e-4 and stats_s["kl_all"] is None  # no KL was computed
    assert stats_s["kl_decision"] is None
    for n, g in grads_f.items():
        torch.testing.assert_close(grads_s[n], g, atol=1e-5, rtol=1e-4)


def test_train_takes_the_stored_path_when_it_may_and_ends_at_the_same_adapter(
    tmp_path, tiny_model_dir
):
    from safetensors.torch import load_file

    _, tok, _ = load_model(str(tiny_model_dir))
    runs = {}
    for gate in ("all", "entropy"):
        run = tmp_path / gate
        run.mkdir()
        rollouts = "".join(json.dumps(r) + "\n" for r in _rollouts(tok))
        (run / "rollouts.jsonl").write_text(rollouts)
        cfg = _cfg(tiny_model_dir, gate=gate)
        select(run, cfg)
        sel = list(iter_jsonl(run / SELECTION))
        assert all(len(r["ref_logp"]) == len(r["completion_ids"]) for r in sel)
        assert train(run, cfg)["reference"] == ("stored" if gate == "all" else "forward")
        runs[gate] = run
    log = list(iter_jsonl(runs["all"] / "train_log.jsonl"))
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(math.isfinite(r["train/loss"]) for r in log)
    # The same selection without the stored log-probs runs π_ref each step, to the same adapter.
    forward = tmp_path / "forward"
    forward.mkdir()
    sel = list(iter_jsonl(runs["all"] / SELECTION))
    bare = [{k: v for k, v in r.items() if k != "ref_logp"} for r in sel]
    (forward / SELECTION).write_text("".join(json.dumps(r) + "\n" for r in bare))
    assert train(forward, _cfg(tiny_model_dir))["reference"] == "forward"
    a = load_file(runs["all"] / "adapter" / "adapter_model.safetensors")
    b = load_file(forward / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    moved = max(float(t.abs().max()) for k, t in a.items() if "lora_B" in k)
    assert moved > 1e-3  # three steps at lr 0.01 moved B off 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3)
