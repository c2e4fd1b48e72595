"""Memory savers that must not change what is computed: the row-chunked, checkpointed loss
terms and activation checkpointing in training."""

from __future__ import annotations

import torch

from reasonmaxxer.config import build_run_config
from reasonmaxxer.engine import build_batch
from reasonmaxxer.losses import kl_ref_to_policy, policy_terms, selective_log_softmax
from reasonmaxxer.models import load_model
from reasonmaxxer.training import enable_gradient_checkpointing, lora_model, step_loss


def test_policy_terms_equal_the_whole_batch_values_and_grads():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g).requires_grad_()
    ref = torch.randn(3, 5, 11, generator=g)
    targets = torch.randint(0, 11, (3, 5), generator=g)
    weights = torch.randn(3, 5, generator=g)

    lp_full = selective_log_softmax(logits, targets)
    kl_full = kl_ref_to_policy(ref, logits)
    (grad_full,) = torch.autograd.grad((weights * (lp_full + kl_full)).sum(), logits)
    for rows in (1, 2, 3):
        lp, kl = policy_terms(logits, ref, targets, rows_per_chunk=rows)
        (grad,) = torch.autograd.grad((weights * (lp + kl)).sum(), logits)
        assert torch.equal(lp, lp_full) and torch.equal(kl, kl_full)
        torch.testing.assert_close(grad, grad_full, rtol=0, atol=1e-6)
    # the KL is a function of the policy only: no gradient reaches π_ref
    ref_leaf = ref.clone().requires_grad_()
    _, kl = policy_terms(logits, ref_leaf, targets)
    assert torch.autograd.grad(kl.sum(), ref_leaf, allow_unused=True)[0] is None


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
    from reasonmaxxer.memory import check_batch_fits, stage_bytes

    # 9.5 buffers a row x 8 rows x 128 tokens x 49,152 vocab x 4 bytes = 1.78 GiB
    assert stage_bytes("train", 8, 128, 49152) == int(9.5 * 8 * 128 * 49152 * 4)
    check_batch_fits("train", "train.batch_size", 8, 128, 49152, available=2 * 2**30)
    with pytest.raises(UserError, match=r"train.batch_size 64 needs ~14.2 GiB.*~8 rows fit"):
        check_batch_fits("train", "train.batch_size", 64, 128, 49152, available=2 * 2**30)


def test_train_refuses_a_batch_larger_than_memory(tmp_path, tiny_model_dir, monkeypatch):
    """Before the first step, not as an OOM kill: the stage stops with the setting's name."""
    import pytest

    from reasonmaxxer import memory
    from reasonmaxxer.errors import UserError
    from reasonmaxxer.io import atomic_write_jsonl
    from reasonmaxxer.training import train

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
