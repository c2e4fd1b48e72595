"""Tests for reasonmaxxer.method.losses against numbers worked out by hand.

Every expected value below is written out with the arithmetic that gives it;
none is produced by calling the function under test or a copy of it.
"""

import math

import pytest
import torch

from reasonmaxxer.method.losses import (
    decision_mask,
    entropy_from_logits,
    group_advantages,
    kl_ref_to_policy,
    masked_mean,
    reasonmaxxer_loss,
    selective_log_softmax,
    topk_tail_kl,
)

LN2 = 0.6931471805599453
LN3 = 1.0986122886681098


def _log(*probs: float) -> torch.Tensor:
    return torch.log(torch.tensor(probs, dtype=torch.float32))


# --------------------------------------------------------------------------- masked_mean


def test_masked_mean_and_empty_mask():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, True], [False, False, True]])
    assert masked_mean(x, mask).item() == pytest.approx((1 + 3 + 6) / 3)
    empty = torch.zeros_like(mask)
    assert masked_mean(x, empty).item() == 0.0  # divides by clamp(min=1), not 0
    # A -inf outside the mask does not leak in.
    x_inf = x.clone()
    x_inf[0, 1] = -math.inf
    assert masked_mean(x_inf, mask).item() == pytest.approx(10 / 3)


# --------------------------------------------------------------------------- entropy


def test_entropy_known_distribution():
    # p = [1/2, 1/4, 1/4]: H = 1/2·ln2 + 2·(1/4)·ln4 = 1.5·ln2 = 1.0397 nats
    logits = _log(0.5, 0.25, 0.25).view(1, 1, 3)
    h = entropy_from_logits(logits)
    assert h.shape == (1, 1)
    assert h.dtype == torch.float32
    assert h.item() == pytest.approx(1.0397207708, abs=1e-6)


def test_entropy_uniform_and_one_hot():
    # Uniform over V = 5: H = ln 5 = 1.6094 nats (adding a constant changes nothing).
    uniform = torch.full((2, 4, 5), 3.0)
    assert torch.allclose(entropy_from_logits(uniform), torch.full((2, 4), 1.6094379), atol=1e-6)
    # A margin of 100 nats: p_other ≈ e^-100, H ≈ 4·e^-100·100 ≈ 0.
    peaked = torch.tensor([[[100.0, 0.0, 0.0, 0.0, 0.0]]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
    # -inf logits are zero-probability tokens, not NaN: [0, -inf, -inf] is one-hot.
    masked = torch.tensor([[[0.0, -math.inf, -math.inf], [0.0, 0.0, -math.inf]]])
    h = entropy_from_logits(masked)
    assert torch.allclose(h, torch.tensor([[0.0, LN2]]), atol=1e-6)  # second: two-way uniform


def test_entropy_chunking_matches_and_bf16():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 37, 50, generator=g) * 3
    whole = entropy_from_logits(logits, chunk_size=1000)
    chunked = entropy_from_logits(logits, chunk_size=5)  # 37 = 7·5 + 2, uneven last chunk
    assert chunked.shape == (2, 37)
    assert torch.allclose(whole, chunked, atol=1e-6)
    # bfloat16 in, float32 out, equal to the float32 computation on the same (rounded) values.
    bf = logits.to(torch.bfloat16)
    h_bf = entropy_from_logits(bf, chunk_size=8)
    assert h_bf.dtype == torch.float32
    assert torch.allclose(h_bf, entropy_from_logits(bf.float()), atol=1e-5)
    assert torch.isfinite(h_bf).all()


def test_entropy_gradient_is_finite_with_neg_inf_logits():
    logits = torch.tensor([[[0.0, 1.0, -math.inf]]], requires_grad=True)
    entropy_from_logits(logits).sum().backward()
    assert torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- selective_log_softmax


def test_selective_log_softmax_hand_values():
    # position 0: logits [1, 2, 3], token 0: 1 - ln(e + e² + e³) = -2.407606
    # position 1: logits ln[1, 2, 3] = p [1/6, 2/6, 3/6], token 2: ln(1/2) = -0.693147
    logits = torch.stack([torch.tensor([1.0, 2.0, 3.0]), _log(1.0, 2.0, 3.0)]).unsqueeze(0)
    index = torch.tensor([[0, 2]])
    out = selective_log_softmax(logits, index)
    assert out.shape == (1, 2)
    assert out.dtype == torch.float32
    assert torch.allclose(out, torch.tensor([[-2.4076060, -LN2]]), atol=1e-6)
    # bfloat16: log-softmax in float32 of the rounded values (1, 2, 3 are exact in bf16).
    out_bf = selective_log_softmax(logits[:, :1].to(torch.bfloat16), index[:, :1])
    assert out_bf.dtype == torch.float32
    assert out_bf.item() == pytest.approx(-2.4076060, abs=1e-5)


def test_selective_log_softmax_shape_mismatch():
    with pytest.raises(ValueError):
        selective_log_softmax(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long))


# --------------------------------------------------------------------------- KL


def test_kl_ref_to_policy_hand_values():
    # position 0: p = [.5, .25, .25], q = [.25, .25, .5]
    #   KL = .5·ln(.5/.25) + .25·ln1 + .25·ln(.25/.5) = .5ln2 - .25ln2 = .25·ln2 = 0.173287
    # position 1: p = [.8, .1, .1], q = [1/3]*3
    #   KL = Σ p ln(3p) = ln3 + .8ln.8 + .2ln.1 = 1.098612 - .178515 - .460517 = 0.459580
    ref = torch.stack([_log(0.5, 0.25, 0.25), _log(0.8, 0.1, 0.1)]).unsqueeze(0)  # [1, 2, 3]
    pol = torch.stack([_log(0.25, 0.25, 0.5), torch.zeros(3)]).unsqueeze(0)
    kl = kl_ref_to_policy(ref, pol)
    assert kl.shape == (1, 2)
    assert torch.allclose(kl, torch.tensor([[0.25 * LN2, 0.4595804]]), atol=1e-6)
    # KL(p‖p) = 0, also after a constant shift of the logits.
    assert torch.allclose(kl_ref_to_policy(ref, ref + 7.0), torch.zeros(1, 2), atol=1e-6)


def test_kl_gradient_flows_to_policy_only():
    ref = torch.randn(1, 2, 4, requires_grad=True)
    pol = torch.randn(1, 2, 4, requires_grad=True)
    kl_ref_to_policy(ref, pol).sum().backward()
    assert ref.grad is None
    assert pol.grad is not None and torch.isfinite(pol.grad).all()


# --------------------------------------------------------------------------- top-k + tail KL


def test_topk_tail_kl_hand_example():
    # V = 4, k = 2. Teacher full p = [.05, .3, .05, .6]; top-2 ids [3, 1], masses .6, .3,
    # tail 1 - .9 = .1. Student q = [.1, .2, .3, .4] collapses to q3 = .4, q1 = .2,
    # tail = .1 + .3 = .4.
    #   KL = .6·ln(.6/.4) + .3·ln(.3/.2) + .1·ln(.1/.4) = .9·ln1.5 - .1·ln4 = 0.226289
    t_lp = _log(0.6, 0.3).view(1, 1, 2)
    t_ids = torch.tensor([[[3, 1]]])
    student = _log(0.1, 0.2, 0.3, 0.4).view(1, 1, 4)
    kl = topk_tail_kl(t_lp, t_ids, student)
    assert kl.shape == (1, 1)
    assert kl.item() == pytest.approx(0.2262892, abs=1e-6)


def test_topk_tail_kl_equals_full_kl_when_k_is_v():
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(2, 3, 6, generator=g)
    student = torch.randn(2, 3, 6, generator=g, requires_grad=True)
    t_lp, t_ids = torch.log_softmax(teacher, -1).topk(6, dim=-1)  # every id, sorted
    kl = topk_tail_kl(t_lp, t_ids, student)
    assert torch.allclose(kl, kl_ref_to_policy(teacher, student), atol=1e-5)
    kl.sum().backward()
    assert torch.isfinite(student.grad).all()  # the empty tail must not give NaN gradients


def test_topk_tail_kl_zero_when_student_matches_teacher_buckets():
    # Student puts the same masses on the top-k ids; its tail mass equals the teacher's
    # tail, however it is spread: KL = 0.
    t_lp = _log(0.5, 0.3).view(1, 1, 2)
    t_ids = torch.tensor([[[0, 2]]])
    student = _log(0.5, 0.15, 0.3, 0.05).view(1, 1, 4)  # tail .15 + .05 = .2
    assert topk_tail_kl(t_lp, t_ids, student).item() == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- advantages


def test_group_advantages_two_groups():
    # group 0: [1, 0, 0, 1], mean .5, population std .5 -> ±1
    # group 1: [1, 1, 1, 0], mean .75, std sqrt(.75·.25) = sqrt(3)/4 = .4330
    #   correct: .25/.4330 = +0.5774, wrong: -.75/.4330 = -1.7321
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    expected = torch.tensor([1.0, -1, -1, 1, 0.5773503, 0.5773503, 0.5773503, -1.7320508])
    adv = group_advantages(rewards, groups)
    assert adv.dtype == torch.float32
    assert torch.allclose(adv, expected, atol=1e-5)  # eps = 1e-6 shifts by ~2e-6
    # Groups need not be contiguous nor numbered from 0.
    perm = torch.tensor([4, 0, 5, 1, 6, 2, 7, 3])
    adv_perm = group_advantages(rewards[perm], torch.tensor([9, 3, 9, 3, 9, 3, 9, 3]))
    assert torch.allclose(adv_perm, expected[perm], atol=1e-5)


def test_group_advantages_clip_and_constant_group():
    # 1 of 20 correct: mean .05, std sqrt(.05·.95) = .2179
    #   correct: .95/.2179 = 4.359 -> clipped to 2.5; wrong: -.05/.2179 = -0.2294
    rewards = torch.zeros(20)
    rewards[0] = 1.0
    adv = group_advantages(rewards, torch.zeros(20, dtype=torch.long))
    assert adv[0].item() == pytest.approx(2.5)
    assert torch.allclose(adv[1:], torch.full((19,), -0.2294157), atol=1e-5)
    assert group_advantages(rewards, torch.zeros(20, dtype=torch.long), clip=1.0)[0] == 1.0
    # All-equal groups (all correct, all wrong) get A = 0.
    same = group_advantages(torch.tensor([1.0, 1, 1, 0, 0]), torch.tensor([0, 0, 0, 1, 1]))
    assert torch.equal(same, torch.zeros(5))


# --------------------------------------------------------------------------- decision points


def _entropy_batch():
    # Two rollouts of length 6; the first two positions of rollout 0 are prompt, the last
    # position of rollout 1 is padding. Prompt/padding get the largest entropies on purpose.
    entropy = torch.tensor(
        [
            [9.0, 9.0, 0.5, 2.0, 1.5, 0.1],
            [0.3, 1.8, 1.2, 0.2, 3.0, 9.0],
        ]
    )
    completion = torch.tensor(
        [
            [False, False, True, True, True, True],
            [True, True, True, True, True, False],
        ]
    )
    return entropy, completion


def test_decision_mask_tau():
    entropy, completion = _entropy_batch()
    mask, tau = decision_mask(entropy, completion, tau=1.4)
    # completion entropies > 1.4: 2.0, 1.5 (rollout 0) and 1.8, 3.0 (rollout 1)
    expected = torch.tensor(
        [
            [False, False, False, True, True, False],
            [False, True, False, False, True, False],
        ]
    )
    assert tau == 1.4
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)
    assert not (mask & ~completion).any()
    # Strictly greater: a token at exactly tau is not marked.
    mask_eq, _ = decision_mask(entropy, completion, tau=1.5)
    assert not mask_eq[0, 4]


def test_decision_mask_top_frac():
    entropy, completion = _entropy_batch()
    # 9 completion tokens, sorted: .1 .2 .3 .5 1.2 1.5 1.8 2.0 3.0
    # top_frac 1/3 -> round(3) = 3 marked: 1.8, 2.0, 3.0; tau = the 6th smallest = 1.5
    mask, tau = decision_mask(entropy, completion, top_frac=1 / 3)
    assert tau == pytest.approx(1.5)
    assert int(mask.sum()) == 3
    assert mask[0, 3] and mask[1, 1] and mask[1, 4]
    assert not (mask & ~completion).any()
    # top_frac 1 marks every completion token; 0 marks none.
    all_mask, tau_all = decision_mask(entropy, completion, top_frac=1.0)
    assert torch.equal(all_mask, completion) and tau_all == -math.inf
    assert int(decision_mask(entropy, completion, top_frac=0.0)[0].sum()) == 0


def test_decision_mask_control_gates():
    entropy, completion = _entropy_batch()
    n = 4  # the tau = 1.4 entropy gate marks 4 tokens (see test_decision_mask_tau)
    rand, tau = decision_mask(
        entropy, completion, tau=1.4, gate="random", generator=torch.Generator().manual_seed(0)
    )
    assert tau == 1.4
    assert int(rand.sum()) == n
    assert not (rand & ~completion).any()
    rand_again, _ = decision_mask(
        entropy, completion, tau=1.4, gate="random", generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(rand, rand_again)  # reproducible from the generator

    low, _ = decision_mask(entropy, completion, tau=1.4, gate="low")
    # the 4 lowest completion entropies: .1 (0,5), .2 (1,3), .3 (1,0), .5 (0,2)
    expected_low = torch.zeros_like(completion)
    for i, j in [(0, 5), (1, 3), (1, 0), (0, 2)]:
        expected_low[i, j] = True
    assert torch.equal(low, expected_low)

    everything, _ = decision_mask(entropy, completion, tau=1.4, gate="all")
    assert torch.equal(everything, completion)
    everything, tau_none = decision_mask(entropy, completion, gate="all")
    assert torch.equal(everything, completion) and tau_none == -math.inf

    # Same count with the top_frac threshold too.
    low_q, _ = decision_mask(entropy, completion, top_frac=1 / 3, gate="low")
    assert int(low_q.sum()) == 3


def test_decision_mask_bad_arguments():
    entropy, completion = _entropy_batch()
    with pytest.raises(ValueError):
        decision_mask(entropy, completion)
    with pytest.raises(ValueError):
        decision_mask(entropy, completion, tau=1.0, top_frac=0.1)
    with pytest.raises(ValueError):
        decision_mask(entropy, completion, tau=1.0, gate="middle")
    with pytest.raises(ValueError):
        decision_mask(entropy, completion, top_frac=1.5)


# --------------------------------------------------------------------------- the loss


def _loss_inputs():
    """B = 2 rollouts, T = 3; position 0 of rollout 1 is prompt."""
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.2, -3.0, -1.0]])
    ref_logp = torch.tensor([[-1.5, -2.0, -0.7], [-0.2, -2.5, -1.0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    advantages = torch.tensor([1.0, -0.5])
    decision = torch.tensor([[True, False, False], [False, True, False]])
    completion = torch.tensor([[True, True, True], [False, True, True]])
    anchor = completion & ~decision  # [[F, T, T], [F, F, T]]
    return logp, ref_logp, kl, advantages, decision, anchor


# Decision points: (0,0) with A = 1, logp -1.0, Δ = -1.0 - -1.5 = +0.5
#                  (1,1) with A = -.5, logp -3.0, Δ = -3.0 - -2.5 = -0.5
# Anchor KL: (0,1) .2, (0,2) .3, (1,2) .6 -> mean 1.1/3 = 0.366667
KL_ANCHOR = 1.1 / 3


def test_contrastive_loss_hand_values():
    loss, stats = reasonmaxxer_loss(*_loss_inputs(), lam=0.2)
    # L_dec = mean(-1·(-1.0), -(-.5)·(-3.0)) = (1.0 - 1.5)/2 = -0.25
    # L = -0.25 + 0.2·0.366667 = -0.176667
    assert loss.item() == pytest.approx(-0.25 + 0.2 * KL_ANCHOR, abs=1e-6)
    assert stats["loss"] == pytest.approx(-0.1766667, abs=1e-6)
    assert stats["loss_dec"] == pytest.approx(-0.25, abs=1e-6)
    assert stats["loss_anchor"] == pytest.approx(KL_ANCHOR, abs=1e-6)
    assert stats["frac_decision"] == pytest.approx(2 / 5)
    assert stats["n_decision"] == 2.0
    assert stats["n_anchor"] == 3.0
    assert stats["dec_logratio_pos"] == pytest.approx(0.5, abs=1e-6)
    assert stats["dec_logratio_neg"] == pytest.approx(-0.5, abs=1e-6)
    assert stats["kl_decision"] == pytest.approx((0.1 + 0.5) / 2, abs=1e-6)
    assert all(isinstance(v, float) for v in stats.values())


def test_contrastive_neg_weight_and_lam():
    # neg_weight 2: L_dec = (1.0 - 2·1.5)/2 = -1.0
    loss, _ = reasonmaxxer_loss(*_loss_inputs(), neg_weight=2.0, lam=0.2)
    assert loss.item() == pytest.approx(-1.0 + 0.2 * KL_ANCHOR, abs=1e-6)
    # neg_weight 0 (positive-only): L_dec = (1.0 + 0)/2 = 0.5 (still over both tokens)
    loss, _ = reasonmaxxer_loss(*_loss_inputs(), neg_weight=0.0, lam=0.0)
    assert loss.item() == pytest.approx(0.5, abs=1e-6)
    # lam scales the anchor only
    assert reasonmaxxer_loss(*_loss_inputs(), lam=0.0)[0].item() == pytest.approx(-0.25)
    loss, stats = reasonmaxxer_loss(*_loss_inputs(), lam=1.0)
    assert loss.item() == pytest.approx(-0.25 + KL_ANCHOR, abs=1e-6)
    assert stats["loss_anchor"] == pytest.approx(KL_ANCHOR, abs=1e-6)


def test_bounded_loss_hand_values():
    # x = β·A·Δ: (0,0) 1·1·(+.5) = .5; (1,1) 1·(-.5)·(-.5) = .25
    # -log σ(x) = ln(1 + e^-x): ln(1 + e^-.5) = 0.474077, ln(1 + e^-.25) = 0.575939
    loss, stats = reasonmaxxer_loss(*_loss_inputs(), kind="bounded", beta=1.0, lam=0.2)
    l_dec = (0.4740770 + 0.5759394) / 2  # 0.525008
    assert stats["loss_dec"] == pytest.approx(l_dec, abs=1e-6)
    assert loss.item() == pytest.approx(l_dec + 0.2 * KL_ANCHOR, abs=1e-6)
    # neg_weight 2 doubles the A < 0 term: (0.474077 + 2·0.575939)/2 = 0.812978
    _, stats = reasonmaxxer_loss(*_loss_inputs(), kind="bounded", neg_weight=2.0)
    assert stats["loss_dec"] == pytest.approx(0.8129779, abs=1e-6)
    # β = 2: x = 1.0 and .5: (ln(1 + e^-1) + ln(1 + e^-.5))/2 = (0.313262 + 0.474077)/2
    _, stats = reasonmaxxer_loss(*_loss_inputs(), kind="bounded", beta=2.0)
    assert stats["loss_dec"] == pytest.approx((0.3132617 + 0.4740770) / 2, abs=1e-6)


def test_loss_with_no_anchor_tokens_is_finite():
    # Every completion token is a decision point; the prompt position has logp = -inf.
    logp = torch.tensor([[-math.inf, -1.0, -2.0]], requires_grad=True)
    ref_logp = torch.tensor([[-math.inf, -1.0, -2.0]])
    kl = torch.tensor([[math.nan, 0.0, 0.0]])  # junk outside the masks must not leak
    completion = torch.tensor([[False, True, True]])
    decision = completion.clone()
    anchor = completion & ~decision
    for kind in ("contrastive", "bounded"):
        loss, stats = reasonmaxxer_loss(
            logp, ref_logp, kl, torch.tensor([1.0]), decision, anchor, kind=kind
        )
        assert torch.isfinite(loss)
        assert stats["loss_anchor"] == 0.0
        assert stats["n_anchor"] == 0.0
        assert stats["frac_decision"] == 1.0
        assert all(math.isfinite(v) for v in stats.values())
        logp.grad = None
        loss.backward()
        assert torch.isfinite(logp.grad).all()
    # contrastive: L = mean(1.0, 2.0) = 1.5
    loss, _ = reasonmaxxer_loss(logp, ref_logp, kl, torch.tensor([1.0]), decision, anchor)
    assert loss.item() == pytest.approx(1.5)


def test_contrastive_gradient_signs():
    logp, ref_logp, kl, adv, decision, anchor = _loss_inputs()
    logp = logp.clone().requires_grad_(True)
    kl = kl.clone().requires_grad_(True)
    loss, _ = reasonmaxxer_loss(logp, ref_logp, kl, adv, decision, anchor, lam=0.2)
    loss.backward()
    # dL/dlogp = -A/n_dec at decision points: (0,0) -1/2 (descent raises the log-prob),
    # (1,1) -(-.5)/2 = +.25 (descent lowers it); 0 everywhere else.
    expected = torch.tensor([[-0.5, 0.0, 0.0], [0.0, 0.25, 0.0]])
    assert torch.allclose(logp.grad, expected, atol=1e-7)
    assert logp.grad[0, 0] < 0
    # dL/dkl = lam/n_anchor = 0.2/3 on anchor positions, 0 elsewhere.
    assert torch.allclose(kl.grad, anchor.float() * (0.2 / 3), atol=1e-7)


def test_loss_rejects_bad_kind_and_shapes():
    inputs = _loss_inputs()
    with pytest.raises(ValueError):
        reasonmaxxer_loss(*inputs, kind="dpo")
    logp, ref_logp, kl, adv, decision, anchor = inputs
    with pytest.raises(ValueError):
        reasonmaxxer_loss(logp, ref_logp, kl, adv[:1], decision, anchor)
