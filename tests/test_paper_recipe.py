"""The authors' recipe (``--preset paper``): each knob against hand-computed values on tiny
examples, and the defaults unchanged."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from reasonmaxxer.config import build_run_config
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method.losses import group_advantages, reasonmaxxer_loss
from reasonmaxxer.method.selection import (
    ENTROPIES,
    SELECTION,
    curriculum_order,
    entropy_key,
    select,
)
from reasonmaxxer.method.training import build_batch, whole_sequence
from reasonmaxxer.optim import batch_order, bucketed_batches, curriculum_batches, lr_at, optimize

# --------------------------------------------------------------------------- advantages


def test_population_std_eps_and_clip_by_hand():
    # 1 right of 10: p = 0.1, population std = sqrt(0.1 * 0.9) = 0.3.
    rewards = torch.tensor([1.0] + [0.0] * 9)
    adv = group_advantages(rewards, torch.zeros(10, dtype=torch.long), eps=1e-8)
    assert adv[0].item() == 2.5  # 0.9 / 0.3 = 3, clipped to 2.5
    assert adv[1].item() == pytest.approx(-0.1 / (0.3 + 1e-8), abs=1e-7)  # -1/3


def _write_one_problem(run_dir, entropies, cfg):
    """One problem, 5 rollouts: rewards 1 1 0 0 0, completion lengths 2 3 4 5 6."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rewards = [1, 1, 0, 0, 0]
    rollouts, ents = [], []
    for j, (r, h) in enumerate(zip(rewards, entropies, strict=True)):
        rollouts.append(
            {
                "problem_id": "p",
                "rollout": j,
                "reward": float(r),
                "prompt_ids": [5, 6],
                "completion_ids": list(range(20, 20 + len(h))),
            }
        )
        ents.append({"problem_id": "p", "rollout": j, "entropy": h, "key": entropy_key(cfg)})
    (run_dir / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    (run_dir / ENTROPIES).write_text("".join(json.dumps(r) + "\n" for r in ents))


ENTROPIES_5 = [[1.4, 1.5], [0.2, 1.4, 2.0], [1.41, 0.1, 0.1, 0.1], [0.0] * 5, [3.0] * 6]


@pytest.mark.parametrize(
    "when, expected",
    [
        # full group 1 1 0 0 0: mean 0.4, std sqrt(0.24); +0.6/0.4899 and -0.4/0.4899
        ("before_trim", [0.6 / math.sqrt(0.24), 0.6 / math.sqrt(0.24), -0.4 / math.sqrt(0.24)]),
        # the longest (a 0) dropped first: 1 1 0 0, mean 0.5, std 0.5: +1 and -1
        ("after_trim", [1.0, 1.0, -1.0]),
    ],
)
def test_advantages_before_or_after_the_trim(tmp_path, when, expected):
    cfg = build_run_config(
        overrides={
            "model": {"model": str(tmp_path / "no-model-here")},
            "select": {
                "max_problems": "none",
                "drop_longest": 0.2,  # int(0.2 * 5) = 1 rollout: the 6-token one
                "gate": "entropy",
                "tau": 1.4,
                "advantages": when,
                "adv_eps": 1e-8,
            },
        }
    )
    _write_one_problem(tmp_path, ENTROPIES_5, cfg)
    stats = select(tmp_path, cfg)
    rows = list(iter_jsonl(tmp_path / SELECTION))
    assert [r["rollout"] for r in rows] == [0, 1, 2, 3]
    adv = [r["advantage"] for r in rows]
    assert adv[:3] == pytest.approx(expected, abs=1e-6) and adv[3] == adv[2]
    # H > tau strictly: 1.4 is not a decision point, 1.41 and 1.5 are.
    assert [r["decision"] for r in rows] == [[1], [2], [0], []]
    assert stats["decision_tokens"] == 3


def test_default_advantages_are_before_the_trim():
    sel = build_run_config().select
    assert (sel.advantages, sel.adv_eps) == ("before_trim", 1e-6)


# --------------------------------------------------------------------------- decision loss

# 2 rollouts x 3 positions. Contrastive per-token terms -A * logp at the decision points:
# row 0 (A = 1):    positions 0, 1 -> 1.0, 2.0
# row 1 (A = -0.5): position 2     -> -0.5 * 1.5 = -0.75
LOGP = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.0, -1.5]])
DECISION = torch.tensor([[True, True, False], [False, False, True]])


def _loss(adv, **kw):
    zeros = torch.zeros(2, 3)
    return reasonmaxxer_loss(
        LOGP, LOGP, zeros, torch.tensor(adv), DECISION, ~DECISION, lam=0.0, **kw
    )


def test_decision_loss_token_pooled_and_per_rollout_by_hand():
    loss, _ = _loss([1.0, -0.5])
    assert loss.item() == pytest.approx((1.0 + 2.0 - 0.75) / 3)  # 0.75, pooled over 3 tokens
    loss, _ = _loss([1.0, -0.5], dec_mean="rollout")
    assert loss.item() == pytest.approx(((1.0 + 2.0) / 2 + (-0.75) / 1) / 2)  # 0.375


def test_zero_advantage_rollouts_get_no_decision_loss():
    # Row 1 has A = 0: without skipping its decision token adds 0 but counts in the mean.
    loss, stats = _loss([1.0, 0.0])
    assert loss.item() == pytest.approx(3.0 / 3) and stats["n_decision"] == 3
    loss, stats = _loss([1.0, 0.0], skip_zero_adv=True)
    assert loss.item() == pytest.approx(3.0 / 2) and stats["n_decision"] == 2
    # Bounded: without skipping A = 0 adds the constant log 2 per token.
    loss, _ = _loss([1.0, 0.0], kind="bounded")
    assert loss.item() == pytest.approx(math.log(2))
    loss, _ = _loss([0.0, 0.0], kind="bounded", skip_zero_adv=True)
    assert loss.item() == 0.0
    with pytest.raises(ValueError, match="dec_mean"):
        _loss([1.0, 0.0], dec_mean="problem")


# --------------------------------------------------------------------------- KL scope

ROW_A = {"prompt_ids": [10, 11, 12], "completion_ids": [20, 21], "decision": [1], "advantage": 1.0}
ROW_B = {
    "prompt_ids": [30, 31],
    "completion_ids": [40, 41, 42, 43],
    "decision": [0, 3],
    "advantage": -0.5,
}


def test_whole_sequence_anchors_the_prompt_by_hand():
    # input_ids [[0 10 11 12 20 21], [30 31 40 41 42 43]]: L = 6, T = 4, targets ids[:, 1:].
    w = whole_sequence(build_batch([ROW_A, ROW_B]))
    assert w["targets"].tolist() == [[10, 11, 12, 20, 21], [31, 40, 41, 42, 43]]
    assert w["keep"] == 6
    f, t = False, True
    assert w["anchored"].tolist() == [[f, t, t, t, t], [t, t, t, t, t]]  # 0 -> 10 is padding
    assert w["completion"].tolist() == [[f, f, f, t, t], [f, t, t, t, t]]
    assert w["decision"].tolist() == [[f, f, f, f, t], [f, t, f, f, t]]
    anchor = w["anchored"] & ~w["decision"]
    # row A: 11 and 12 (prompt) and 20; row B: 31 (prompt), 41 and 42
    assert w["targets"][0][anchor[0]].tolist() == [11, 12, 20]
    assert w["targets"][1][anchor[1]].tolist() == [31, 41, 42]


def test_step_loss_kl_over_the_prompt(tiny_model_dir):
    from reasonmaxxer.engine import completion_logits
    from reasonmaxxer.method.losses import kl_ref_to_policy
    from reasonmaxxer.method.training import lora_model, step_loss
    from reasonmaxxer.models import load_model

    model, tok, _ = load_model(str(tiny_model_dir))
    rows = []
    for p, c in (("What is 1+1?", "2 is it"), ("Hi", "Hello there")):
        ids = tok(c)["input_ids"]
        rows.append(
            {
                "prompt_ids": tok(p)["input_ids"],
                "completion_ids": ids,
                "decision": [0],
                "advantage": 1.0,
            }
        )
    stats = {}
    for scope in ("completion", "all"):
        cfg = build_run_config(
            overrides={
                "model": {"model": str(tiny_model_dir)},
                "train": {"kl_scope": scope, "lora_r": 4, "autocast": "off"},
            }
        )
        torch.manual_seed(0)
        peft = lora_model(model, cfg)
        with torch.no_grad():  # a non-zero adapter, so the KL is not 0
            for name, p in peft.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        _, stats[scope] = step_loss(peft, build_batch(rows), cfg)
        if scope == "all":  # the anchor mean by hand from a plain full-sequence forward
            w = whole_sequence(build_batch(rows))
            with torch.no_grad():
                logits = completion_logits(peft, w)
                with peft.disable_adapter():
                    ref = completion_logits(peft, w)
            kl = kl_ref_to_policy(ref, logits)
            hand = kl[w["anchored"] & ~w["decision"]].mean().item()
        model = peft.unload()
    n_completion = sum(len(r["completion_ids"]) - 1 for r in rows)  # less 1 decision point each
    n_all = sum(len(r["prompt_ids"]) + len(r["completion_ids"]) - 2 for r in rows)
    assert stats["completion"]["n_anchor"] == n_completion
    assert stats["all"]["n_anchor"] == n_all
    assert stats["all"]["loss_anchor"] == pytest.approx(hand, rel=1e-4)
    assert stats["all"]["loss_dec"] == pytest.approx(stats["completion"]["loss_dec"], rel=1e-4)


# --------------------------------------------------------------------------- order, schedule


def _row(name, adv, n_dec, length):
    return {
        "name": name,
        "advantage": adv,
        "decision": list(range(n_dec)),
        "prompt_ids": [1] * len(name),
        "completion_ids": [0] * length,
    }


# scores |A| * decisions / length: r0 0.5*2/4 = 0.25, r1 2*1/4 = 0.5, r2 0, r3 1*1/4 = 0.25
ROWS = [_row("r0", 0.5, 2, 4), _row("r1", -2.0, 1, 4), _row("r2", 1.0, 0, 3), _row("r3", 1.0, 1, 4)]


def test_curriculum_order_by_hand():
    assert [r["name"] for r in curriculum_order(ROWS)] == ["r1", "r0", "r3", "r2"]  # tie: r0 first
    batches = curriculum_batches(ROWS, 3, random.Random(0))
    assert [[r["name"] for r in b] for b in batches] == [["r1", "r0", "r3"], ["r2"]]


def test_lr_schedules_by_hand():
    # 5 scheduled steps, warm-up 2: 1/2, 1, then (5 - s) / (5 - 2) for s = 2, 3, 4.
    assert [lr_at(s, 1.0, 2, "linear", 5) for s in range(6)] == pytest.approx(
        [0.5, 1.0, 1.0, 2 / 3, 1 / 3, 0.0]
    )
    assert [lr_at(s, 1.0, 2) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]


def _optimize(tmp_path, rows, **kw):
    seen = []
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)

    def micro_loss(batch):
        seen.append([r["name"] for r in batch])
        return (w * 0).sum(), {"loss": 0.0}

    _, _, log = optimize(
        None,
        opt,
        rows,
        micro_loss=micro_loss,
        max_grad_norm=1.0,
        rng=random.Random(0),
        log_path=tmp_path / "log.jsonl",
        checkpoint=tmp_path / "ckpt",
        checkpoint_every=0,
        checkpoint_scope=[],
        desc="t",
        postfix=lambda acc: {},
        **kw,
    )
    return seen, [r["lr"] for r in log]


def test_optimize_takes_the_order_and_the_schedule(tmp_path):
    # 4 rollouts x 3 epochs, 1 per step: 12 scheduled steps, stopped at 5. The decay runs over
    # the 12: (12 - s) / (12 - 2) after a warm-up of 2, not over the 5 that are run.
    seen, lrs = _optimize(
        tmp_path,
        ROWS,
        epochs=3,
        max_steps=5,
        batch_size=1,
        grad_accum=1,
        lr=1.0,
        warmup_steps=2,
        batches=batch_order("curriculum"),
        schedule="linear",
    )
    assert seen == [["r1"], ["r0"], ["r3"], ["r2"], ["r1"]]  # the same order every epoch
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.9, 0.8])


def test_optimize_default_order_is_the_bucketed_shuffle(tmp_path):
    kw = {"epochs": 2, "max_steps": None, "batch_size": 2, "grad_accum": 1, "lr": 1.0}
    seen, lrs = _optimize(tmp_path, ROWS, warmup_steps=1, **kw)
    # the loop has always popped each epoch's bucketed_batches list from its end
    rng = random.Random(0)
    epochs = [bucketed_batches(ROWS, 2, rng) for _ in range(2)]
    expected = [[r["name"] for r in b] for epoch in epochs for b in epoch[::-1]]
    assert seen == expected and lrs == [1.0] * 4


def test_paper_preset_is_the_authors_recipe():
    cfg = build_run_config(preset="paper")
    default = build_run_config()
    assert (cfg.sample, cfg.eval) == (default.sample, default.eval)
    sel, t = cfg.select, cfg.train
    assert (sel.tau, sel.top_frac, sel.gate, sel.max_problems, sel.drop_longest) == (
        1.4,
        None,
        "entropy",
        50,
        0.2,
    )
    assert (sel.advantages, sel.adv_eps) == ("after_trim", 1e-8)
    assert (t.loss, t.lam, t.neg_weight, t.dec_mean, t.skip_zero_adv) == (
        "contrastive",
        0.2,
        1.0,
        "rollout",
        True,
    )
    assert (t.kl_scope, t.order, t.schedule, t.batch_size, t.grad_accum) == (
        "all",
        "curriculum",
        "linear",
        1,
        8,
    )
    # the default preset keeps today's behaviour
    d = default.train
    assert (d.kl_scope, d.order, d.schedule, d.dec_mean, d.skip_zero_adv) == (
        "completion",
        "shuffle",
        "constant",
        "token",
        False,
    )
