"""Greedy decoding from the base under a token-substitution policy (paper §3.2-3.3): the
project's decode loop (:func:`reasonmaxxer.decoding.decode_stream`) with a per-step hook,
:class:`PolicyStep`, that decodes the teacher beside the base (each with its own KV cache) and
picks each row's token, batched over problems with per-row decisions."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..decoding import SamplingParams, StepHook, decode_stream
from .config import POLICIES
from .pair import ModelPair


@dataclass
class Policy:
    """How the decoder picks each token.

    ``kind``: ``base`` (base top-1), ``teacher`` (teacher top-1, the teacher alone),
    ``oracle`` (teacher top-1 wherever it differs from the base's), ``entropy`` (teacher
    top-1 where the base entropy > ``tau``), ``random`` (at the steps of ``plan[row]``, the
    base token of rank ``plan[row][step]``, 2..K; base top-1 elsewhere).
    """

    kind: str
    tau: float | None = None
    plan: dict[int, dict[int, int]] | None = None  # row key -> {step: base rank to emit}
    label: str = ""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ValueError(f"unknown policy {self.kind!r}")
        if self.kind == "entropy" and self.tau is None:
            raise ValueError("the entropy policy needs tau")
        if self.kind == "random" and self.plan is None:
            raise ValueError("the random policy needs a plan")
        self.label = self.label or self.kind

    @property
    def needs_base(self) -> bool:
        return self.kind != "teacher"

    @property
    def needs_teacher(self) -> bool:
        return self.kind in ("teacher", "oracle", "entropy")

    def choose(self, steps: list[int], keys: list[int], base_logits, teacher_logits):
        """One decoding step for the rows ``keys``, row ``j`` at its step ``steps[j]``.

        Args:
            base_logits / teacher_logits: ``[B, V]`` float32 (None when not needed).

        Returns:
            ``(tokens [B] long, gated [B] bool, touched [B] bool, base_entropy [B] | None)``:
            ``gated`` where the policy consulted its substitute (teacher or random draw),
            ``touched`` where the emitted token differs from the base top-1.
        """
        import torch

        from ..method.losses import entropy_from_logits

        if self.kind == "teacher":
            tokens = teacher_logits.argmax(-1)
            none = torch.zeros_like(tokens, dtype=torch.bool)
            return tokens, none, none, None
        base_top1 = base_logits.argmax(-1)  # [B]
        entropy = entropy_from_logits(base_logits)  # [B]
        if self.kind == "base":
            none = torch.zeros_like(base_top1, dtype=torch.bool)
            return base_top1, none, none, entropy
        if self.kind == "random":
            ranks = [self.plan.get(k, {}).get(s, 0) for k, s in zip(keys, steps, strict=True)]
            gated = torch.tensor([r > 0 for r in ranks], device=base_top1.device)
            tokens = base_top1.clone()
            if gated.any():
                k_max = max(ranks)
                top = base_logits.topk(k_max, dim=-1).indices  # [B, k_max]
                for j, r in enumerate(ranks):
                    if r > 0:
                        tokens[j] = top[j, r - 1]
            return tokens, gated, gated & (tokens != base_top1), entropy
        teacher_top1 = teacher_logits.argmax(-1)
        # oracle: wherever the two top-1s differ; entropy: wherever the base is uncertain
        gated = teacher_top1 != base_top1 if self.kind == "oracle" else entropy > self.tau
        tokens = torch.where(gated, teacher_top1, base_top1)
        return tokens, gated, tokens != base_top1, entropy


def random_plan(
    keys: list[str], counts: list[int], lengths: list[int], *, seed: int, k: int
) -> dict[int, dict[int, int]]:
    """Pre-drawn random substitutions: for row i, ``counts[i]`` distinct steps drawn uniformly
    from ``range(lengths[i])`` (fewer if the row is shorter), each with a base rank drawn
    uniformly from 2..k. Seeded per (seed, key), so a row's plan does not depend on batching
    or on the other rows."""
    plan = {}
    for i, (key, c, n) in enumerate(zip(keys, counts, lengths, strict=True)):
        rng = random.Random(f"{seed}/{key}")
        steps = rng.sample(range(n), min(c, n))
        plan[i] = {s: rng.randint(2, k) for s in sorted(steps)}
    return plan


class PolicyStep(StepHook):
    """The :func:`~reasonmaxxer.decoding.decode_stream` hook that decodes under ``policy``.

    The loop's model is the first network the policy needs (the base, or the teacher for
    ``teacher``); the teacher, when the base needs it beside it, is the companion. Every step
    the hook hands the policy float32 logits cut to the pair's shared vocabulary, records per
    row what it did (``gated`` / ``touched`` steps, the base ``entropy``) and ends a row once
    its text holds a stop string. ``keys[r]`` is the policy's key of the loop's row ``r``.
    """

    def __init__(self, pair: ModelPair, policy: Policy, keys: list[int], stop: list[str]):
        needs = (("base", policy.needs_base), ("teacher", policy.needs_teacher))
        self.which = [w for w, need in needs if need]
        self.model, *companions = [pair.network(w) for w in self.which]
        self.companions = tuple(companions)
        self.policy, self.keys, self.stop = policy, keys, stop
        self.tokenizer, self.vocab = pair.tokenizer, pair.vocab_size()
        self.records = [{"gated": [], "touched": [], "entropy": []} for _ in keys]

    def pick(self, logits: list, rows: list[int], steps):
        named = {w: x[:, : self.vocab].float() for w, x in zip(self.which, logits, strict=True)}
        steps = steps.tolist()
        tokens, gated, touched, entropy = self.policy.choose(
            steps, [self.keys[r] for r in rows], named.get("base"), named.get("teacher")
        )
        g_list, t_list = gated.tolist(), touched.tolist()
        h_list = entropy.tolist() if entropy is not None else None
        for j, (r, step) in enumerate(zip(rows, steps, strict=True)):
            rec = self.records[r]
            if g_list[j]:
                rec["gated"].append(step)
            if t_list[j]:
                rec["touched"].append(step)
            if h_list is not None:
                rec["entropy"].append(h_list[j])
        return tokens

    def ends(self, ids: list[int]) -> bool:
        if not self.stop:
            return False
        tail = self.tokenizer.decode(ids[-64:], skip_special_tokens=True)
        return any(s in tail for s in self.stop)


def policy_decode(
    pair: ModelPair,
    prompt_ids: list[list[int]],
    policy: Policy,
    *,
    max_new_tokens: int,
    eos_ids: list[int] | None = None,
    batch_size: int = 8,
    stop: list[str] | None = None,
    desc: str | None = None,
) -> list[dict]:
    """Greedy decoding under ``policy``, batched over prompts, one KV cache per model.

    Rows are sorted by prompt length (longest first, like ``HFGenerator``), left-padded, and
    dropped from the batch and both caches as soon as they emit an end-of-sequence token (or
    their text contains a stop string); a batch drains before the next starts (no refill, so
    a row's numbers depend only on its batch, as they always have). Row ``i`` of the result
    is prompt ``i``; the policy sees ``i`` as the row key.

    Returns:
        Per prompt: ``token_ids`` (the generated ids, the end-of-sequence token included),
        ``gated`` / ``touched`` (the steps where the policy consulted its substitute / where
        the emitted token differs from the base top-1) and ``entropy`` (the base entropy at
        every step; empty for the ``teacher`` policy).
    """
    import torch
    from tqdm.auto import tqdm

    eos_ids = pair.eos_ids if eos_ids is None else eos_ids
    order = sorted(range(len(prompt_ids)), key=lambda i: (-len(prompt_ids[i]), i))
    hook = PolicyStep(pair, policy, order, stop or [])
    bar = tqdm(total=len(order), desc=desc or policy.label, unit="seq", dynamic_ncols=True)
    with torch.inference_mode():
        new_ids = decode_stream(
            hook.model,
            [prompt_ids[i] for i in order],
            pair.tokenizer.pad_token_id or 0,
            SamplingParams(max_new_tokens),
            eos_ids,
            None,
            batch_size=batch_size,
            on_finish=lambda _: bar.update(1),
            hook=hook,
            refill=False,
        )
    bar.close()
    results: list[dict | None] = [None] * len(prompt_ids)
    for k, ids, rec in zip(order, new_ids, hook.records, strict=True):
        results[k] = {"token_ids": ids, **rec}
    return results  # type: ignore[return-value]
