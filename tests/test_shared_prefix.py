"""Teacher-forced passes that run the prompt tokens every row shares once
(``build_batch(share_prefix=True)``): the split by hand, and the same logits, loss and LoRA
gradients as the unshared batch, under activation checkpointing too."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model, build_tokenizer

from reasonmaxxer.config import build_run_config
from reasonmaxxer.engine import (
    build_batch,
    completion_hidden,
    completion_logits,
    shared_prefix,
    shares_prefixes,
)
from reasonmaxxer.method.training import enable_gradient_checkpointing, lora_model, step_loss

SYSTEM = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
TEXTS = [("What is 1+1?", "2 apples", 1.0), ("What is 12+30?", "42", -1.0), ("Hi", "Hello", 0.5)]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _rows(tok) -> list[dict]:
    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    return [
        {
            "prompt_ids": ids(SYSTEM + q + "<|im_end|>\n"),
            "completion_ids": ids(c),
            "advantage": a,
            "decision": list(range(len(ids(c)))),
        }
        for q, c, a in TEXTS
    ]


def test_shared_prefix_by_hand():
    p = [list(range(20)) + [99]]
    q = [list(range(12)) + [7, 7]]
    assert shared_prefix(p + q) == 12  # the common run 0..11
    assert shared_prefix(p + p) == 20  # the whole prompt but its last token
    assert shared_prefix(p) == 0  # one row: nothing to share
    short = [list(range(5)) + [8]]
    assert shared_prefix(p + short) == 0  # 5 < 8 tokens: not worth a second call


def test_the_split_batch_holds_the_same_rows(tok):
    rows = _rows(tok)
    plain, split = build_batch(rows), build_batch(rows, share_prefix=True)
    s = split["prefix_ids"].shape[1]
    assert s == len(tok(SYSTEM, add_special_tokens=False)["input_ids"]) > 8  # "What" vs "Hi"
    assert split["prefix_ids"][0].tolist() == rows[0]["prompt_ids"][:s]
    assert split["input_ids"].shape[1] == plain["input_ids"].shape[1] - s
    assert split["attention_mask"].shape == plain["attention_mask"].shape
    # the prefix's columns are every row's, and each row keeps its own number of real tokens
    assert bool(split["attention_mask"][:, :s].all())
    assert split["attention_mask"].sum(1).tolist() == plain["attention_mask"].sum(1).tolist()
    for k in ("targets", "completion", "decision", "advantages"):
        assert torch.equal(split[k], plain[k]), k
    assert split["keep"] == plain["keep"]
    # each row's positions run on from the prefix: the last one is its length - 1
    lengths = [len(r["prompt_ids"]) + len(r["completion_ids"]) for r in rows]
    assert split["position_ids"][:, -1].tolist() == [n - 1 for n in lengths]


def test_logits_and_hidden_states_match_the_unshared_pass(tok):
    model = build_model(tok)
    assert shares_prefixes(model)
    rows = _rows(tok)
    plain, split = build_batch(rows), build_batch(rows, share_prefix=True)
    with torch.no_grad():
        torch.testing.assert_close(
            completion_logits(model, split), completion_logits(model, plain), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            completion_hidden(model, split), completion_hidden(model, plain), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("stored", [False, True])
def test_a_checkpointed_lora_step_has_the_unshared_loss_and_gradients(tok, stored):
    """π_ref run (the adapter disabled) or π_ref's log-probs stored: either way the shared
    prefix's keys and values carry the adapter's gradient back through every row."""
    model = build_model(tok)
    cfg = build_run_config(overrides={"train": {"lora_r": 4, "lora_alpha": 8}})
    torch.manual_seed(0)
    peft = lora_model(model, cfg)
    enable_gradient_checkpointing(peft)
    peft.train()
    with torch.no_grad():  # a policy away from the base, so the loss has a gradient
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    rows = _rows(tok)
    if stored:
        with torch.no_grad(), peft.disable_adapter():
            ref = torch.log_softmax(completion_logits(peft, build_batch(rows)), -1)
        targets = build_batch(rows)["targets"]
        ref_logp = ref.gather(-1, targets[..., None])[..., 0]
        rows = [
            {**r, "ref_logp": ref_logp[i, -len(r["completion_ids"]) :].tolist()}
            for i, r in enumerate(rows)
        ]

    def loss_and_grads(share):
        peft.zero_grad()
        loss, _ = step_loss(peft, build_batch(rows, share_prefix=share), cfg)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in peft.named_parameters() if p.requires_grad}
        return loss.item(), grads

    loss_a, grads_a = loss_and_grads(False)
    loss_b, grads_b = loss_and_grads(True)
    assert loss_b == pytest.approx(loss_a, abs=1e-5)
    q_a = [g for n, g in grads_a.items() if "q_proj.lora_A" in n]
    assert any(float(g.abs().max()) > 1e-4 for g in q_a)  # there is a gradient to compare
    for n, g in grads_a.items():
        torch.testing.assert_close(grads_b[n], g, atol=1e-5, rtol=1e-4, msg=n)


def test_select_and_train_share_the_prefix_and_end_at_the_unshared_adapter(
    tmp_path, tiny_model_dir, monkeypatch
):
    """``select`` then ``train`` on rows with a common system prompt: train's micro-batches
    are built with the prefix split off (seen by a spy), and ``train.share_prefix: false``
    trains the same rows to the same adapter."""
    import json

    from safetensors.torch import load_file

    from reasonmaxxer.method import training
    from reasonmaxxer.method.selection import select
    from reasonmaxxer.models import load_model

    _, tok, _ = load_model(str(tiny_model_dir))
    rollouts = []
    for pid, q, right in (("a", "What is 1+1?", "2"), ("b", "What is 12+30?", "42")):
        for j, completion in enumerate((right, "no")):
            rollouts.append(
                {
                    "problem_id": pid,
                    "rollout": j,
                    "reward": float(j == 0),
                    "prompt_ids": tok(SYSTEM + q, add_special_tokens=False)["input_ids"],
                    "completion_ids": tok(completion, add_special_tokens=False)["input_ids"],
                }
            )
    seen = []
    real = training.build_batch

    def spy(rows, **kw):
        batch = real(rows, **kw)
        seen.append("prefix_ids" in batch)
        return batch

    monkeypatch.setattr(training, "build_batch", spy)
    adapters = {}
    for share in (True, False):
        run = tmp_path / str(share)
        run.mkdir()
        (run / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rollouts))
        cfg = build_run_config(
            overrides={
                "model": {"model": str(tiny_model_dir)},
                "select": {"gate": "all", "max_problems": "none", "drop_longest": 0.0},
                "train": {
                    "autocast": "off",
                    "max_steps": 3,
                    "batch_size": 4,
                    "lora_r": 4,
                    "lr": 0.01,
                    "warmup_steps": 0,
                    "share_prefix": share,
                },
            }
        )
        select(run, cfg)
        seen.clear()
        training.train(run, cfg)
        assert seen and all(s == share for s in seen)
        adapters[share] = load_file(run / "adapter" / "adapter_model.safetensors")
    a, b = adapters[True], adapters[False]
    assert max(float(t.abs().max()) for k, t in a.items() if "lora_B" in k) > 1e-3
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3)
