"""Token-level numerics and the ReasonMaxxer loss (METHOD.md §3–§4).

Every function here is pure: tensors and masks in, tensors (and a dict of float
statistics) out. No model, no file, no config object.

Conventions:

- ``π_ref`` is the frozen base model, ``π_θ`` the base plus the LoRA adapter.
- Entropies and KL divergences are in nats.
- Logits may be float32 or bfloat16/float16; every log-softmax is computed in
  float32 and every returned tensor is float32.
- A masked mean divides by ``mask.sum().clamp(min=1)``, so an empty mask gives 0,
  never NaN. Masked-out entries are *selected away* (``torch.where``), not
  multiplied by zero, so an ``-inf`` log-prob at a prompt or padding position
  cannot leak a NaN into the loss or its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "DEC_MEANS",
    "GATES",
    "LOSS_KINDS",
    "decision_mask",
    "entropy_from_logits",
    "group_advantages",
    "kl_ref_to_policy",
    "masked_mean",
    "reasonmaxxer_loss",
    "selective_log_softmax",
    "topk_tail_kl",
]

GATES = ("entropy", "all", "random", "low")
LOSS_KINDS = ("contrastive", "bounded")
DEC_MEANS = ("token", "rollout")


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is True.

    Args:
        x: any shape ``[...]``.
        mask: bool, same shape as ``x`` (or broadcastable to it).

    Returns:
        A 0-d tensor: ``Σ_{mask} x / max(#mask, 1)``; 0 when the mask is empty.
    """
    mask = mask.bool()
    total = torch.where(mask, x, torch.zeros_like(x)).sum()
    count = mask.expand_as(x).sum().clamp(min=1)
    return total / count


def _xlogy_ratio(p: Tensor, log_p: Tensor, log_q: Tensor) -> Tensor:
    """``p * (log_p - log_q)`` elementwise, with the convention ``0 * anything = 0``."""
    # Select before multiplying: 0 * -inf would be NaN in the forward or the backward.
    diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(p))
    return p * diff


def entropy_from_logits(logits: Tensor, chunk_size: int = 128) -> Tensor:
    """Shannon entropy of ``softmax(logits)`` along the last dim, in nats.

    ``H = -Σ_v p_v log p_v`` with ``log p = logits - logsumexp(logits)``,
    computed in float32 and ``chunk_size`` positions at a time along T, so the
    float32 temporaries stay ``O(chunk_size * V)`` however long the sequence.

    Args:
        logits: ``[..., T, V]`` (a bare ``[V]`` is also accepted), any float dtype.
        chunk_size: positions per chunk along T.

    Returns:
        ``[..., T]`` float32 entropies (``[]`` for a ``[V]`` input).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if logits.dim() == 1:
        return entropy_from_logits(logits.unsqueeze(0), chunk_size).squeeze(0)
    out = []
    for chunk in logits.split(chunk_size, dim=-2):  # [..., c, V]
        logp = torch.log_softmax(chunk.float(), dim=-1)  # [..., c, V] float32
        p = logp.exp()
        # -inf logits give p = 0 and logp = -inf; select them away before the
        # product so that neither the value nor its gradient is NaN.
        logp = torch.where(p > 0, logp, torch.zeros_like(logp))
        out.append(-(p * logp).sum(dim=-1))  # [..., c]
    return torch.cat(out, dim=-1)  # [..., T]


def selective_log_softmax(logits: Tensor, index: Tensor) -> Tensor:
    """``log softmax(logits)[index]`` without materialising the full log-softmax.

    One leading row at a time: the row is cast to float32, its ``logsumexp`` taken,
    and the chosen logit gathered, so the float32 temporaries are one row's worth.

    Args:
        logits: ``[B, T, V]`` (any leading dims ``[..., V]`` work), any float dtype.
        index: ``[B, T]`` long token ids (shape ``logits.shape[:-1]``).

    Returns:
        ``[B, T]`` float32 log-probabilities of the indexed tokens.
    """
    if index.shape != logits.shape[:-1]:
        raise ValueError(
            f"index shape {tuple(index.shape)} must equal logits.shape[:-1] "
            f"{tuple(logits.shape[:-1])}"
        )
    if logits.dim() == 1:
        row = logits.float()
        return row.gather(-1, index.unsqueeze(-1)).squeeze(-1) - row.logsumexp(-1)
    rows = []
    for row_logits, row_index in zip(logits, index, strict=True):  # [T, V], [T]
        row = row_logits.float()
        chosen = row.gather(-1, row_index.unsqueeze(-1)).squeeze(-1)  # [T]
        rows.append(chosen - row.logsumexp(dim=-1))
    return torch.stack(rows)  # [B, T]


def kl_ref_to_policy(ref_logits: Tensor, logits: Tensor) -> Tensor:
    """``KL(π_ref ‖ π_θ)`` per position over the full vocabulary, in nats.

    ``Σ_v p_ref(v) (log p_ref(v) - log p_θ(v))``. ``ref_logits`` is treated as a
    constant (detached): π_ref is frozen, gradients flow to ``logits`` only.

    Args:
        ref_logits: ``[B, T, V]`` logits of π_ref.
        logits: ``[B, T, V]`` logits of π_θ.

    Returns:
        ``[B, T]`` float32, >= 0 (up to rounding).
    """
    if ref_logits.shape != logits.shape:
        raise ValueError(
            f"ref_logits {tuple(ref_logits.shape)} and logits {tuple(logits.shape)} differ"
        )
    ref_logp = torch.log_softmax(ref_logits.detach().float(), dim=-1)  # [B, T, V]
    logp = torch.log_softmax(logits.float(), dim=-1)  # [B, T, V]
    return _xlogy_ratio(ref_logp.exp(), ref_logp, logp).sum(dim=-1)  # [B, T]


def policy_terms(
    logits: Tensor,
    ref_logits: Tensor,
    targets: Tensor,
    *,
    head: Callable[[Tensor], Tensor] | None = None,
    ref_head: Callable[[Tensor], Tensor] | None = None,
    rows_per_chunk: int = 1,
) -> tuple[Tensor, Tensor, Tensor]:
    """``log π_θ(target)``, ``log π_ref(target)`` and ``KL(π_ref ‖ π_θ)`` per position, a few
    rows at a time.

    The same values as :func:`selective_log_softmax` and :func:`kl_ref_to_policy` on the whole
    batch, but each chunk of ``rows_per_chunk`` rows runs under activation checkpointing: the
    backward pass recomputes that chunk's float32 log-softmaxes instead of keeping ``[B, T, V]``
    temporaries alive from the forward. A default train step (batch 8, 128 tokens, a 49k
    vocabulary) kept ~4 GiB alive without it.

    With ``head`` (and ``ref_head``), ``logits`` and ``ref_logits`` are instead hidden states
    ``[B, T, H]`` and a chunk's logits are ``head(chunk)``, made inside the checkpoint: then
    no ``[B, T, V]`` tensor exists at all (engine.logit_source gives such a pair).

    Args:
        logits: ``[B, T, V]`` logits of π_θ (with or without grad), or ``[B, T, H]`` with head.
        ref_logits: ``[B, T, V]`` logits of π_ref (a constant), or ``[B, T, H]`` with ref_head.
        targets: ``[B, T]`` long token ids.
        head, ref_head: maps a chunk of ``logits`` / ``ref_logits`` to logits (default: none).
        rows_per_chunk: rows per checkpointed chunk.

    Returns:
        ``(logp, ref_logp, kl)``, each ``[B, T]`` float32.
    """
    head = head or _same
    ref_head = ref_head or _same

    def terms(x: Tensor, ref_x: Tensor, tg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lg = head(x)
        with torch.no_grad():
            ref = ref_head(ref_x).float()
        return (
            selective_log_softmax(lg, tg),
            selective_log_softmax(ref, tg),
            kl_ref_to_policy(ref, lg),
        )

    logp, ref_logp, kl = _chunked(terms, logits, ref_logits.detach(), targets, rows=rows_per_chunk)
    return logp, ref_logp, kl


def policy_logps(
    logits: Tensor,
    targets: Tensor,
    *,
    head: Callable[[Tensor], Tensor] | None = None,
    rows_per_chunk: int = 1,
) -> Tensor:
    """``log π_θ(target)`` per position, ``[B, T]`` float32: :func:`policy_terms`'s first
    output alone, for a step whose π_ref log-probs are already known and that needs no KL
    (no reference logits are made). Same arguments as :func:`policy_terms`."""
    head = head or _same

    def terms(x: Tensor, tg: Tensor) -> tuple[Tensor]:
        return (selective_log_softmax(head(x), tg),)

    (logp,) = _chunked(terms, logits, targets, rows=rows_per_chunk)
    return logp


def _chunked(fn: Callable[..., tuple[Tensor, ...]], *tensors: Tensor, rows: int):
    """``fn`` over ``rows``-row chunks of ``tensors`` (split on dim 0), its outputs
    concatenated; a chunk whose first tensor needs grad runs under activation checkpointing,
    so the backward recomputes ``fn``'s temporaries instead of keeping them."""
    from torch.utils.checkpoint import checkpoint

    if rows < 1:
        raise ValueError(f"rows_per_chunk must be >= 1, got {rows}")
    parts = []
    for chunk in zip(*(t.split(rows) for t in tensors), strict=True):
        if chunk[0].requires_grad and torch.is_grad_enabled():
            parts.append(checkpoint(fn, *chunk, use_reentrant=False))
        else:
            parts.append(fn(*chunk))
    return tuple(torch.cat(t) for t in zip(*parts, strict=True))


def _same(x: Tensor) -> Tensor:
    return x


def topk_tail_kl(
    teacher_topk_logprobs: Tensor, teacher_topk_ids: Tensor, student_logits: Tensor
) -> Tensor:
    """``KL(teacher ‖ student)`` on the teacher's top-k ids plus one tail bucket.

    The teacher is known only through ``k`` log-probabilities of its *full*
    distribution (so ``Σ exp ≤ 1``). It becomes a ``k+1``-bucket distribution:
    the k top-k masses and a tail holding ``1 - Σ top-k`` (clamped at 0; if
    rounding pushes ``Σ top-k`` above 1 the top-k masses are renormalised to sum
    to 1 and the tail is 0). The student's full softmax is collapsed onto the same
    k ids plus its own tail (the mass on every other id, computed by a logsumexp
    over the non-top-k logits, so a tiny tail stays accurate). Then

        KL = Σ_{j<k} p_j (log p_j - log q_j) + p_tail (log p_tail - log q_tail),

    with ``0 · log 0 = 0``. When the ids cover the vocabulary (k = V) both tails
    are empty and this is the full-vocabulary KL. The teacher is detached.

    Args:
        teacher_topk_logprobs: ``[B, T, k]`` teacher log-probs of its top-k tokens.
        teacher_topk_ids: ``[B, T, k]`` long, the matching (distinct) token ids.
        student_logits: ``[B, T, V]`` student logits, any float dtype.

    Returns:
        ``[B, T]`` float32 KL in nats.
    """
    if teacher_topk_logprobs.shape != teacher_topk_ids.shape:
        raise ValueError(
            f"teacher_topk_logprobs {tuple(teacher_topk_logprobs.shape)} and "
            f"teacher_topk_ids {tuple(teacher_topk_ids.shape)} differ"
        )
    if teacher_topk_ids.shape[:-1] != student_logits.shape[:-1]:
        raise ValueError(
            f"teacher leading shape {tuple(teacher_topk_ids.shape[:-1])} and student "
            f"leading shape {tuple(student_logits.shape[:-1])} differ"
        )
    k, vocab = teacher_topk_ids.shape[-1], student_logits.shape[-1]
    if k > vocab:
        raise ValueError(f"k={k} exceeds the vocabulary size {vocab}")

    # Teacher: k masses + tail, renormalised only if rounding made them exceed 1.
    t_p = teacher_topk_logprobs.detach().float().exp()  # [B, T, k]
    t_mass = t_p.sum(dim=-1, keepdim=True)  # [B, T, 1]
    t_p = t_p / t_mass.clamp(min=1.0)
    t_tail = (1.0 - t_p.sum(dim=-1, keepdim=True)).clamp(min=0.0)  # [B, T, 1]
    if k == vocab:
        t_tail = torch.zeros_like(t_tail)  # only rounding noise lives there
    t_p = torch.cat([t_p, t_tail], dim=-1)  # [B, T, k+1]

    # Student: log-probs on the k ids, and the log of the mass on every other id.
    s_logits = student_logits.float()  # [B, T, V]
    s_lse = s_logits.logsumexp(dim=-1, keepdim=True)  # [B, T, 1]
    s_topk = s_logits.gather(-1, teacher_topk_ids) - s_lse  # [B, T, k]
    # A finite sentinel (not -inf) keeps the logsumexp gradient finite when the
    # tail is empty (k = V); that bucket then has teacher mass 0 and drops out.
    very_negative = torch.finfo(torch.float32).min
    rest = s_logits.scatter(-1, teacher_topk_ids, very_negative)  # [B, T, V]
    s_tail = rest.logsumexp(dim=-1, keepdim=True) - s_lse  # [B, T, 1]
    s_logp = torch.cat([s_topk, s_tail], dim=-1)  # [B, T, k+1]

    t_logp = torch.log(t_p)  # -inf where the mass is 0; masked in _xlogy_ratio
    return _xlogy_ratio(t_p, t_logp, s_logp).sum(dim=-1)  # [B, T]


def group_advantages(
    rewards: Tensor, group_ids: Tensor, eps: float = 1e-6, clip: float = 2.5
) -> Tensor:
    """Group-normalised advantages ``A_i = (r_i - mean_g) / (std_g + eps)``, clipped.

    ``std_g`` is the *population* standard deviation of the group's rewards
    (``unbiased=False``, divide by n, not n-1), as in METHOD.md §4: a group of K
    rollouts with c correct has ``std = sqrt(p(1-p))`` with ``p = c/K``. A group whose
    rewards are all equal (std exactly 0) gets ``A = 0`` for every member.

    Args:
        rewards: ``[N]`` rewards (0/1 floats from the grader).
        group_ids: ``[N]`` long, the problem each rollout belongs to; any values,
            groups need not be contiguous.
        eps: added to the std.
        clip: advantages are clipped to ``[-clip, clip]``.

    Returns:
        ``[N]`` float32 advantages.
    """
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and group_ids {tuple(group_ids.shape)} "
            "must be 1-D of the same length"
        )
    if rewards.numel() == 0:
        return torch.zeros(0, dtype=torch.float32, device=rewards.device)
    r = rewards.detach().double()  # float64 so that equal rewards stay exactly equal
    _, inv = torch.unique(group_ids, return_inverse=True)  # inv [N] in 0..G-1
    n_groups = int(inv.max()) + 1
    count = torch.zeros(n_groups, dtype=r.dtype, device=r.device).index_add_(
        0, inv, torch.ones_like(r)
    )  # [G]
    mean = torch.zeros_like(count).index_add_(0, inv, r) / count  # [G]
    centred = r - mean[inv]  # [N]
    var = torch.zeros_like(count).index_add_(0, inv, centred * centred) / count  # [G]
    std = var.sqrt()[inv]  # [N], population std
    hi = torch.full_like(count, -math.inf).scatter_reduce(0, inv, r, reduce="amax")
    lo = torch.full_like(count, math.inf).scatter_reduce(0, inv, r, reduce="amin")
    constant = (hi == lo)[inv]  # [N] True where the group has std 0
    adv = (centred / (std + eps)).clamp(-clip, clip)
    adv = torch.where(constant, torch.zeros_like(adv), adv)
    return adv.float()


def decision_mask(
    entropy: Tensor,
    completion_mask: Tensor,
    *,
    tau: float | None = None,
    top_frac: float | None = None,
    gate: str = "entropy",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, float]:
    """Mark the decision points of a batch of rollouts (METHOD.md §3).

    The entropy threshold is either ``tau`` (nats) or derived from ``top_frac``:
    with ``n`` completion tokens pooled over the whole batch and
    ``m = round(top_frac * n)``, ``tau`` is the ``(n - m)``-th smallest pooled
    entropy, so that exactly ``m`` tokens have ``H > tau`` when there are no ties
    (fewer with ties at the threshold). ``m = n`` gives ``tau = -inf``.

    Gates:
        - ``"entropy"``: completion tokens with ``H > tau``.
        - ``"all"``: every completion token (``tau``/``top_frac`` optional; with
          neither, ``tau_used = -inf``).
        - ``"random"``: as many completion tokens as the entropy gate marks, drawn
          uniformly without replacement with ``generator``.
        - ``"low"``: as many completion tokens as the entropy gate marks, the
          lowest-entropy ones (ties broken by position).

    Prompt and padding tokens (``completion_mask`` False) are never marked, and
    their entropies never enter the quantile.

    Args:
        entropy: ``[B, T]`` per-position entropy of π_ref, nats.
        completion_mask: ``[B, T]`` bool, True on generated tokens.
        tau: threshold in nats. Exactly one of ``tau`` / ``top_frac``.
        top_frac: target fraction of completion tokens to mark, in ``[0, 1]``.
        gate: one of ``GATES``.
        generator: RNG for ``gate="random"`` (on the device of ``entropy``).

    Returns:
        ``(mask [B, T] bool, tau_used)``; for ``random``/``low`` ``tau_used`` is the
        entropy threshold that fixed the count.
    """
    _check_gate(gate, entropy, completion_mask)
    completion = completion_mask.bool()
    if gate == "all" and tau is None and top_frac is None:
        return completion.clone(), -math.inf
    if (tau is None) == (top_frac is None):
        raise ValueError("give exactly one of tau and top_frac")

    pooled = entropy.detach().float()[completion]  # [n] completion entropies
    tau_used = float(tau) if top_frac is None else top_frac_threshold(pooled, top_frac)
    by_entropy = completion & (entropy.detach().float() > tau_used)  # [B, T]
    if gate == "entropy":
        return by_entropy, tau_used
    if gate == "all":
        return completion.clone(), tau_used
    count = int(by_entropy.sum())
    return _mark_count(completion, pooled, count, gate, generator), tau_used


def _check_gate(gate: str, entropy: Tensor, completion_mask: Tensor) -> None:
    """ValueError for an unknown gate or ``entropy`` [B, T] and ``completion_mask`` of
    different shapes."""
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; expected one of {GATES}")
    if entropy.shape != completion_mask.shape:
        raise ValueError(
            f"entropy {tuple(entropy.shape)} and completion_mask "
            f"{tuple(completion_mask.shape)} differ"
        )


def top_frac_threshold(pooled: Tensor, top_frac: float) -> float:
    """The threshold (nats) above which ``round(top_frac * n)`` of the ``n`` entropies
    ``pooled`` [n] lie when there are no ties: the ``(n - m)``-th smallest; ``-inf`` when
    ``m >= n`` and ``+inf`` when ``n = 0``. ``top_frac`` outside ``[0, 1]`` is a ValueError."""
    n = pooled.numel()
    if not 0.0 <= top_frac <= 1.0:
        raise ValueError(f"top_frac must be in [0, 1], got {top_frac}")
    m = round(top_frac * n)
    if n == 0:
        return math.inf
    if m >= n:
        return -math.inf
    return float(pooled.kthvalue(n - m).values)  # (n-m)-th smallest


def _mark_count(
    completion: Tensor, pooled: Tensor, count: int, gate: str, generator: torch.Generator | None
) -> Tensor:
    """``[B, T]`` bool marking ``count`` of the completion tokens ``completion`` [B, T]:
    drawn uniformly with ``generator`` (``gate="random"``) or the lowest of their entropies
    ``pooled`` [n] (``"low"``, ties broken by position)."""
    n = pooled.numel()
    positions = completion.flatten().nonzero().squeeze(-1)  # [n] flat indices
    if gate == "random":
        order = torch.randperm(n, generator=generator, device=completion.device)
    else:  # "low"
        order = torch.sort(pooled, stable=True).indices  # ascending entropy
    chosen = positions[order[:count]]
    mask = torch.zeros(completion.numel(), dtype=torch.bool, device=completion.device)
    mask[chosen] = True
    return mask.view_as(completion)


def reasonmaxxer_loss(
    logp: Tensor,
    ref_logp: Tensor,
    kl: Tensor,
    advantages: Tensor,
    decision: Tensor,
    anchor: Tensor,
    *,
    kind: str = "contrastive",
    lam: float = 0.2,
    neg_weight: float = 1.0,
    beta: float = 1.0,
    dec_mean: str = "token",
    skip_zero_adv: bool = False,
) -> tuple[Tensor, dict[str, float]]:
    """The ReasonMaxxer loss: a decision-point term plus a KL anchor elsewhere.

    With ``w_i = neg_weight`` if ``A_i < 0`` else 1 and ``Δ = logp - ref_logp``:

        contrastive:  L_dec = mean_{(i,t) ∈ decision} -w_i · A_i · logp_{i,t}
        bounded:      L_dec = mean_{(i,t) ∈ decision} -w_i · log σ(β · A_i · Δ_{i,t})
        L = L_dec + lam · mean_{(i,t) ∈ anchor} kl_{i,t}

    With ``dec_mean="token"`` both means pool tokens over the whole batch. With
    ``dec_mean="rollout"`` (the authors' ``adv_ce`` at batch 1) ``L_dec`` is the mean over
    the ``B`` rollouts of each rollout's own mean over its decision tokens (a rollout with
    none adds 0 and still counts in ``B``); the anchor stays token-pooled. A rollout with
    ``A = 0`` contributes 0 (contrastive) or the constant ``log 2`` (bounded), with no
    gradient either way; with ``skip_zero_adv`` its decision tokens leave the decision set
    (they count in no mean, and do not join the anchor). ``ref_logp`` is detached.

    Args:
        logp: ``[B, T]`` log π_θ of the taken token.
        ref_logp: ``[B, T]`` log π_ref of the taken token.
        kl: ``[B, T]`` KL(π_ref ‖ π_θ) per position (see ``kl_ref_to_policy``).
        advantages: ``[B]`` per-rollout advantages (see ``group_advantages``).
        decision: ``[B, T]`` bool decision points.
        anchor: ``[B, T]`` bool, ``completion & ~decision``.
        kind: ``"contrastive"`` or ``"bounded"``.
        lam: weight of the KL anchor.
        neg_weight: weight on rollouts with ``A < 0``.
        beta: scale inside the sigmoid (bounded only).
        dec_mean: ``"token"`` or ``"rollout"``, how ``L_dec`` averages.
        skip_zero_adv: drop the decision points of rollouts with ``A = 0``.

    Returns:
        ``(loss, stats)``: a 0-d float32 tensor and python floats under the keys
        ``loss``, ``loss_dec``, ``loss_anchor`` (the KL mean, before ``lam``),
        ``frac_decision`` (decision / (decision + anchor) tokens), ``n_decision``,
        ``n_anchor``, ``dec_logratio_pos`` / ``dec_logratio_neg`` (mean Δ at the
        decision points of rollouts with A > 0 / A < 0), ``kl_decision`` (mean KL
        at decision points). Empty means are 0.
    """
    _check_loss_args(kind, dec_mean, logp, ref_logp, kl, advantages, decision, anchor)
    decision, anchor = decision.bool(), anchor.bool()
    if skip_zero_adv:
        decision = decision & (advantages.detach() != 0).unsqueeze(-1)  # [B, T]

    # Zero the inputs outside their masks first: a -inf log-prob at a prompt or
    # padding position would otherwise put a NaN into the backward pass.
    zero = torch.zeros((), dtype=torch.float32, device=logp.device)
    logp = torch.where(decision, logp.float(), zero)  # [B, T]
    ref_logp = torch.where(decision, ref_logp.detach().float(), zero)  # [B, T]
    kl_anchor = torch.where(anchor, kl.float(), zero)  # [B, T]
    adv = advantages.detach().float().unsqueeze(-1)  # [B, 1]
    per_token = decision_term(logp, ref_logp, adv, kind=kind, neg_weight=neg_weight, beta=beta)
    loss_dec = _decision_mean(per_token, decision, dec_mean)
    loss_anchor = masked_mean(kl_anchor, anchor)
    loss = loss_dec + lam * loss_anchor
    return loss, _loss_stats(loss, loss_dec, loss_anchor, logp, ref_logp, kl, adv, decision, anchor)


def _check_loss_args(kind, dec_mean, logp, ref_logp, kl, advantages, decision, anchor) -> None:
    """ValueError for an unknown ``kind`` / ``dec_mean``, a ``[B, T]`` input whose shape is
    not ``logp``'s, or ``advantages`` not ``[B]``."""
    if kind not in LOSS_KINDS:
        raise ValueError(f"unknown loss kind {kind!r}; expected one of {LOSS_KINDS}")
    if dec_mean not in DEC_MEANS:
        raise ValueError(f"unknown dec_mean {dec_mean!r}; expected one of {DEC_MEANS}")
    shape = logp.shape
    for name, t in (("ref_logp", ref_logp), ("kl", kl), ("decision", decision), ("anchor", anchor)):
        if t.shape != shape:
            raise ValueError(f"{name} {tuple(t.shape)} must match logp {tuple(shape)}")
    if advantages.shape != shape[:1]:
        raise ValueError(f"advantages {tuple(advantages.shape)} must be [{shape[0]}]")


def decision_term(
    logp: Tensor, ref_logp: Tensor, adv: Tensor, *, kind: str, neg_weight: float, beta: float
) -> Tensor:
    """The per-token decision loss ``[B, T]`` of :func:`reasonmaxxer_loss` before its mean:
    ``-w · A · logp`` (contrastive) or ``-w · log σ(β · A · (logp - ref_logp))`` (bounded),
    with ``w = neg_weight`` where ``A < 0`` else 1. ``logp``, ``ref_logp``: ``[B, T]``
    float32; ``adv``: ``[B, 1]`` float32 advantages."""
    weight = torch.where(adv < 0, torch.full_like(adv, neg_weight), torch.ones_like(adv))
    if kind == "contrastive":
        return -weight * adv * logp  # [B, T]
    return -weight * F.logsigmoid(beta * adv * (logp - ref_logp))  # [B, T]


def _decision_mean(per_token: Tensor, decision: Tensor, dec_mean: str) -> Tensor:
    """``L_dec``, 0-d: the mean of ``per_token`` [B, T] over the ``decision`` [B, T] tokens
    pooled (``"token"``), or the mean over rollouts of each rollout's own mean (``"rollout"``;
    a rollout with no decision token adds 0)."""
    if dec_mean == "token":
        return masked_mean(per_token, decision)
    zero = torch.zeros((), dtype=torch.float32, device=per_token.device)
    per_token = torch.where(decision, per_token, zero)  # [B, T]
    per_rollout = per_token.sum(-1) / decision.sum(-1).clamp(min=1)  # [B]
    return per_rollout.mean()


def _loss_stats(loss, loss_dec, loss_anchor, logp, ref_logp, kl, adv, decision, anchor) -> dict:
    """The statistics :func:`reasonmaxxer_loss` returns, as python floats; ``logp`` and
    ``ref_logp`` [B, T] are already zeroed outside ``decision``, ``adv`` is ``[B, 1]``."""
    with torch.no_grad():
        n_dec, n_anc = int(decision.sum()), int(anchor.sum())
        logratio = logp - ref_logp  # [B, T]
        pos = decision & (adv > 0)  # [B, T]
        neg = decision & (adv < 0)
        return {
            "loss": float(loss),
            "loss_dec": float(loss_dec),
            "loss_anchor": float(loss_anchor),
            "frac_decision": n_dec / max(n_dec + n_anc, 1),
            "n_decision": float(n_dec),
            "n_anchor": float(n_anc),
            "dec_logratio_pos": float(masked_mean(logratio, pos)),
            "dec_logratio_neg": float(masked_mean(logratio, neg)),
            "kl_decision": float(masked_mean(kl.detach().float(), decision)),
        }
