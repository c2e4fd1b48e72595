"""Memory savers that must not change what is computed: the row-chunked, checkpointed loss
terms and activation checkpointing in training."""

from __future__ import annotations

import math

import torch

from reasonmaxxer.config import build_run_config
from reasonmaxxer.engine import build_batch
from reasonmaxxer.method.losses import kl_ref_to_policy, policy_terms, selective_log_softmax
from reasonmaxxer.method.training import enable_gradient_checkpointing, lora_model, step_loss
from reasonmaxxer.models import load_model


def test_policy_terms_equal_the_whole_batch_values_and_grads():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g).requires_grad_()
    ref = torch.randn(3, 5, 11, generator=g)
    targets = torch.randint(0, 11, (3, 5), generator=g)
    weights = torch.randn(3, 5, generator=g)

    lp_full = selective_log_softmax(logits, targets)
    kl_full = kl_ref_to_policy(ref, logits)
    (grad_full,) = torch.autograd.grad((weights * (lp_full + kl_full)).sum(), logits)
    ref_lp_full = selective_log_softmax(ref, targets)
    for rows in (1, 2, 3):
        lp, ref_lp, kl = policy_terms(logits, ref, targets, rows_per_chunk=rows)
        (grad,) = torch.autograd.grad((weights * (lp + kl)).sum(), logits)
        assert torch.equal(lp, lp_full) and torch.equal(kl, kl_full)
        assert torch.equal(ref_lp, ref_lp_full) and not ref_lp.requires_grad
        torch.testing.assert_close(grad, grad_full, rtol=0, atol=1e-6)
    # the KL is a function of the policy only: no gradient reaches π_ref
    ref_leaf = ref.clone().requires_grad_()
    _, _, kl = policy_terms(logits, ref_leaf, targets)
    assert torch.autograd.grad(kl.sum(), ref_leaf, allow_unused=True)[0] is None


def test_policy_terms_from_hidden_states_and_a_head_equal_the_logits_path():
    """With ``head``, the inputs are hidden states and each chunk's logits are made inside the
    checkpoint: the same values and gradients as passing ``head(hidden)`` whole."""
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(6, 11, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(11, 6, generator=g))
    hidden = torch.randn(3, 5, 6, generator=g).requires_grad_()
    ref_hidden = torch.randn(3, 5, 6, generator=g)
    targets = torch.randint(0, 11, (3, 5), generator=g)

    want = policy_terms(head(hidden), head(ref_hidden), targets)
    (grad_want,) = torch.autograd.grad((want[0] + want[2]).sum(), hidden)
    got = policy_terms(hidden, ref_hidden, targets, head=head, ref_head=head)
    (grad_got,) = torch.autograd.grad((got[0] + got[2]).sum(), hidden)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_got, grad_want, rtol=0, atol=1e-6)
    assert head.weight.grad is None  # the reference head stays out of the graph too


def test_logit_source_gives_the_models_logits_and_refuses_post_processed_ones(tiny_model_dir):
    """``head(hidden)`` equals the model's own completion logits (to float32 rounding: one
    thread gives the same bits here, two may split the matmul differently by row count); a
    model whose logits are not its plain head (here: Gemma-2-style soft-capping) gets the
    whole-batch logits and the identity instead."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from reasonmaxxer.engine import completion_logits, logit_source, plain_head

    base, tok, _ = load_model(str(tiny_model_dir))
    rows = [
        {"prompt_ids": tok(p)["input_ids"], "completion_ids": tok(c)["input_ids"]}
        for p, c in (("1+1", "2 it is"), ("3-1", "two"))
    ]
    batch = build_batch([{**r, "decision": [], "advantage": 0.0} for r in rows])
    with torch.no_grad():
        want = completion_logits(base, batch)
        x, head = logit_source(base, batch)
        assert x.shape[-1] == base.config.hidden_size  # hidden states, not logits
        got = torch.cat([head(part) for part in x.split(1)])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)

    capped = Gemma2ForCausalLM(
        Gemma2Config(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            final_logit_softcapping=0.5,  # tanh(x / 0.5) * 0.5: far from the plain head
        )
    ).eval()
    assert plain_head(capped, batch) is None
    with torch.no_grad():
        x, head = logit_source(capped, batch)
        assert torch.equal(head(x), completion_logits(capped, batch))


def test_a_lora_on_the_lm_head_keeps_whole_batch_logits(tiny_model_dir):
    """With the head itself adapted, the reference pass would need the adapter off inside the
    head: ``plain_head`` refuses it and ``step_loss`` still gives the whole-batch values."""
    from reasonmaxxer.engine import plain_head

    cfg = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir)},
            "train": {"lora_r": 4, "lora_alpha": 8, "lora_targets": "q_proj,lm_head"},
        }
    )
    base, tok, _ = load_model(str(tiny_model_dir))
    model = lora_model(base, cfg)
    rows = [{"prompt_ids": tok("1+1")["input_ids"], "completion_ids": tok("2 it is")["input_ids"]}]
    batch = build_batch([{**r, "decision": [0], "advantage": 1.0} for r in rows])
    assert plain_head(model, batch) is None
    loss, _ = step_loss(model, batch, cfg)
    assert abs(float(loss) - math.log(2)) < 1e-6  # fresh LoRA (B = 0): policy = reference


def _lora_grads(model_dir, checkpointing: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    cfg = build_run_config(
        overrides={"model": {"model": str(model_dir)}, "train": {"lora_r": 4, "lora_alpha": 8}}
    )
    base, tok, _ = load_model(str(model_dir))
    model = lora_model(base, cfg)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # a non-zero LoRA, so the policy differs from π_ref
            torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(1))
    model.train()
    if checkpointing:
        enable_gradient_checkpointing(model)
    rows = [
        {
            "prompt_ids": tok(p)["input_ids"],
            "completion_ids": tok(c)["input_ids"],
            "decision": [0],
            "advantage": a,
        }
        for p, c, a in (("1+1", "2 it is", 1.0), ("3-1", "two", -1.0))
    ]
    loss, _ = step_loss(model, build_batch(rows), cfg)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dir):
    plain, ckpt = _lora_grads(tiny_model_dir, False), _lora_grads(tiny_model_dir, True)
    assert plain.keys() == ckpt.keys() and plain
    assert any(g.abs().sum() > 0 for g in plain.values())
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7)


def test_batch_that_cannot_fit_names_its_setting():
    import pytest

    from reasonmaxxer.errors import UserError
    from reasonmaxxer.method.memory import check_batch_fits, stage_bytes

    # 9.5 buffers a row x 8 rows x 128 tokens x 49,152 vocab x 4 bytes = 1.78 GiB
    assert stage_bytes("train", 8, 128, 49152) == int(9.5 * 8 * 128 * 49152 * 4)
    check_batch_fits("train", "train.batch_size", 8, 128, 49152, available=2 * 2**30)
    with pytest.raises(UserError, match=r"train.batch_size 64 needs ~14.2 GiB.*~8 rows fit"):
        check_batch_fits("train", "train.batch_size", 64, 128, 49152, available=2 * 2**30)


def test_train_refuses_a_batch_larger_than_memory(tmp_path, tiny_model_dir, monkeypatch):
    """Before the first step, not as an OOM kill: the stage stops with the setting's name."""
    import pytest

    from reasonmaxxer.errors import UserError
    from reasonmaxxer.io import atomic_write_jsonl
    from reasonmaxxer.method import memory
    from reasonmaxxer.method.training import train

    cfg = build_run_config(
        overrides={"model": {"model": str(tiny_model_dir)}, "train": {"lora_r": 4}}
    )
    row = {"problem_id": "p", "rollout": 0, "prompt_ids": [5, 6], "completion_ids": [7, 8, 9]}
    atomic_write_jsonl(
        tmp_path / "selection.jsonl",
        [{**row, "decision": [0], "advantage": 1.0, "entropy": [1.0, 1.0, 1.0]}],
    )
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 1000)
    with pytest.raises(UserError, match="train.batch_size 8 needs"):
        train(tmp_path, cfg)
    assert not (tmp_path / "adapter").exists()
