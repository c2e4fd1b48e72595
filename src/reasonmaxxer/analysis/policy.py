"""Greedy decoding from the base under a token-substitution policy (paper §3.2-3.3): one
step-wise decoder that runs both models with their own KV caches, batched over problems with
per-row decisions."""

from __future__ import annotations

import random
from dataclasses import dataclass

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

    def choose(self, step: int, keys: list[int], base_logits, teacher_logits):
        """One decoding step for the rows ``keys``.

        Args:
            base_logits / teacher_logits: ``[B, V]`` float32 (None when not needed).

        Returns:
            ``(tokens [B] long, gated [B] bool, touched [B] bool, base_entropy [B] | None)``:
            ``gated`` where the policy consulted its substitute (teacher or random draw),
            ``touched`` where the emitted token differs from the base top-1.
        """
        import torch

        from ..losses import entropy_from_logits

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
            ranks = [self.plan.get(k, {}).get(step, 0) for k in keys]
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


def _stop_hit(tokenizer, ids: list[int], stops: list[str]) -> bool:
    if not stops:
        return False
    tail = tokenizer.decode(ids[-64:], skip_special_tokens=True)
    return any(s in tail for s in stops)


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
    their text contains a stop string). Row ``i`` of the result is prompt ``i``; the policy
    sees ``i`` as the row key.

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
    results: list[dict | None] = [None] * len(prompt_ids)
    bar = tqdm(total=len(order), desc=desc or policy.label, unit="seq", dynamic_ncols=True)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            keys = order[b : b + batch_size]
            rows = _decode_batch(
                pair,
                [prompt_ids[i] for i in keys],
                keys,
                policy,
                max_new_tokens=max_new_tokens,
                eos_ids=eos_ids,
                stop=stop or [],
            )
            for k, r in zip(keys, rows, strict=True):
                results[k] = r
            bar.update(len(keys))
    bar.close()
    return results  # type: ignore[return-value]


def _decode_batch(
    pair: ModelPair,
    prompts: list[list[int]],
    keys: list[int],
    policy: Policy,
    *,
    max_new_tokens: int,
    eos_ids: list[int],
    stop: list[str],
) -> list[dict]:
    import torch
    from transformers import DynamicCache

    device = pair.device
    vocab = pair.vocab_size()
    n = len(prompts)
    width = max(len(p) for p in prompts)
    pad = pair.tokenizer.pad_token_id or 0
    input_ids = torch.full((n, width), pad, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for r, p in enumerate(prompts):
        input_ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        attention[r, width - len(p) :] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    position = (attention.cumsum(-1) - 1).clamp(min=0)
    which = [
        w for w, need in (("base", policy.needs_base), ("teacher", policy.needs_teacher)) if need
    ]
    caches = {w: DynamicCache() for w in which}

    def forward(w: str, ids, attn, pos):
        with pair.use(w) as model:
            logits = model(
                input_ids=ids,
                attention_mask=attn,
                position_ids=pos,
                past_key_values=caches[w],
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :vocab]
        return logits.float()

    logits = {w: forward(w, input_ids, attention, position) for w in which}
    alive = list(range(n))  # batch row -> local index
    out = [{"token_ids": [], "gated": [], "touched": [], "entropy": []} for _ in range(n)]
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    next_pos = position[:, -1] + 1
    for step in range(max_new_tokens):
        tokens, gated, touched, entropy = policy.choose(
            step, [keys[r] for r in alive], logits.get("base"), logits.get("teacher")
        )
        done = torch.isin(tokens, eos).tolist()
        tok_list, g_list, t_list = tokens.tolist(), gated.tolist(), touched.tolist()
        h_list = entropy.tolist() if entropy is not None else None
        for j, r in enumerate(alive):
            o = out[r]
            o["token_ids"].append(tok_list[j])
            if g_list[j]:
                o["gated"].append(step)
            if t_list[j]:
                o["touched"].append(step)
            if h_list is not None:
                o["entropy"].append(h_list[j])
            if not done[j] and _stop_hit(pair.tokenizer, o["token_ids"], stop):
                done[j] = True
        keep = [j for j, d in enumerate(done) if not d]
        if step == max_new_tokens - 1 or not keep:
            break
        if len(keep) < len(alive):
            sel = torch.tensor(keep, dtype=torch.long, device=device)
            for cache in caches.values():
                cache.batch_select_indices(sel)
            alive = [alive[j] for j in keep]
            tokens, attention, next_pos = tokens[sel], attention[sel], next_pos[sel]
        attention = torch.cat([attention, attention.new_ones((len(alive), 1))], dim=1)
        logits = {w: forward(w, tokens[:, None], attention, next_pos[:, None]) for w in which}
        next_pos = next_pos + 1
    return out
