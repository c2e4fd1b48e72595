"""``training.step_loss`` by hand: with a zero LoRA (B = 0, as PEFT initialises it) the
policy is the base, so every log-ratio is 0, the KL is 0, and the bounded decision loss is
-log σ(β·A·0) = ln 2 at every decision token, whatever the advantage."""

from __future__ import annotations

import math

import pytest
import torch

from reasonmaxxer.config import build_run_config
from reasonmaxxer.engine import build_batch
from reasonmaxxer.method.training import lora_model, step_loss
from reasonmaxxer.models import load_model

LN2 = math.log(2.0)


def _rows(tok) -> list[dict]:
    """Three rollouts, A = +1, -1 and +0.5, with 2, 1 and 3 decision tokens (6 in all)."""
    spec = [
        ("What is 1+1?", "2 is it", [0, 2], 1.0),
        ("Hi", "Hello there", [4], -1.0),
        ("7-3", "4 left", [0, 1, 3], 0.5),
    ]
    rows = []
    for prompt, completion, decision, adv in spec:
        ids = tok(completion)["input_ids"]
        assert max(decision) < len(ids)
        rows.append(
            {
                "prompt_ids": tok(prompt)["input_ids"],
                "completion_ids": ids,
                "decision": decision,
                "advantage": adv,
            }
        )
    return rows


@pytest.mark.parametrize("autocast", ["off", "bfloat16"])
@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_zero_lora_bounded_loss_is_ln2_with_zero_kl(tiny_model_dir, autocast, beta):
    model, tok, _ = load_model(str(tiny_model_dir))
    cfg = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir)},
            "train": {"loss": "bounded", "lam": 0.7, "beta": beta, "autocast": autocast},
        }
    )
    torch.manual_seed(0)
    peft = lora_model(model, cfg)
    b_norms = [p.abs().sum().item() for n, p in peft.named_parameters() if "lora_B" in n]
    assert b_norms and all(v == 0 for v in b_norms)  # PEFT's initialisation: B = 0
    rows = _rows(tok)
    batch = build_batch(rows)
    n_dec = sum(len(r["decision"]) for r in rows)
    n_completion = sum(len(r["completion_ids"]) for r in rows)
    loss, stats = step_loss(peft, batch, cfg)

    assert loss.item() == pytest.approx(LN2, abs=1e-6)  # ln 2 + λ·0
    assert stats["loss"] == pytest.approx(LN2, abs=1e-6)
    assert stats["loss_dec"] == pytest.approx(LN2, abs=1e-6)
    assert stats["loss_anchor"] == pytest.approx(0.0, abs=1e-6)
    assert stats["kl_decision"] == pytest.approx(0.0, abs=1e-6)
    assert stats["kl_all"] == pytest.approx(0.0, abs=1e-6)
    assert stats["dec_logratio_pos"] == pytest.approx(0.0, abs=1e-6)
    assert stats["dec_logratio_neg"] == pytest.approx(0.0, abs=1e-6)
    assert stats["n_decision"] == n_dec == 6
    assert stats["n_anchor"] == n_completion - n_dec
    assert stats["frac_decision"] == pytest.approx(n_dec / n_completion, abs=1e-12)


def test_nonzero_lora_moves_the_loss_off_ln2(tiny_model_dir):
    """The same batch with B ≠ 0: the log-ratios and the KL are no longer 0 (so the test
    above would notice an adapter that is not applied, or a reference that is the policy)."""
    model, tok, _ = load_model(str(tiny_model_dir))
    cfg = build_run_config(
        overrides={"model": {"model": str(tiny_model_dir)}, "train": {"autocast": "off"}}
    )
    torch.manual_seed(0)
    peft = lora_model(model, cfg)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    _, stats = step_loss(peft, build_batch(_rows(tok)), cfg)
    assert stats["kl_all"] > 1e-4
    assert abs(stats["dec_logratio_pos"]) > 1e-4
    assert abs(stats["loss_dec"] - LN2) > 1e-4
