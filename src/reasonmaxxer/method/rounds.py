"""Iterated rounds (semi-online): round r samples from the round r-1 policy, reselects, and
trains adapter r.

Round 1 is the ordinary run in the run folder itself; round r >= 2 lives in ``round{r}/``:
``policy/`` (the round r-1 policy with its adapter folded in, a plain safetensors model folder),
then the usual ``rollouts.jsonl``, ``selection.jsonl``, ``adapter/`` and ``eval/adapter/``.

Two settings choose what a round trains and anchors to:

- ``round_from``: ``adapter`` continues training adapter r-1 on the base (every adapter sits on
  the base); ``merged`` puts a fresh LoRA on the round r-1 policy (adapter r-1 merged in).
- ``round_anchor``: the KL anchor and π_ref of the loss are the ``base`` or the ``previous``
  round's policy.
"""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_dir, atomic_write_text
from .training import ADAPTER

ROUND_FROM = ("adapter", "merged")
ROUND_ANCHOR = ("base", "previous")
POLICY = "policy"


def round_dir(out: Path, r: int) -> Path:
    """Round 1 is the run folder itself; round r >= 2 is ``out/round{r}``."""
    return out if r == 1 else out / f"round{r}"


def round_models(out: Path, r: int, *, base: str, round_from: str, anchor: str) -> dict:
    """Which model folders round ``r >= 2`` uses (paths as strings):

    - ``prev_base`` + ``prev_adapter``: the round r-1 policy, before it is merged;
    - ``policy``: that policy merged (``round{r}/policy``): it samples, and scores entropies;
    - ``train_base``: the weights adapter r sits on (``base``, or ``policy`` when merged);
    - ``init_adapter``: the adapter training starts from (adapter r-1), or None for a fresh one;
    - ``ref``: π_ref when it is not ``train_base`` with the adapter off, else None.
    """
    if r < 2:
        raise ValueError(f"round_models is for rounds >= 2, got {r}")
    if round_from not in ROUND_FROM or anchor not in ROUND_ANCHOR:
        raise ValueError(f"round_from {round_from!r} / anchor {anchor!r}")
    prev = round_dir(out, r - 1)
    merged = round_from == "merged"
    policy = str(round_dir(out, r) / POLICY)
    train_base = policy if merged else base
    anchor_model = base if anchor == "base" else policy
    return {
        "prev_base": str(prev / POLICY) if merged and r > 2 else base,
        "prev_adapter": str(prev / ADAPTER),
        "policy": policy,
        "train_base": train_base,
        "init_adapter": None if merged else str(prev / ADAPTER),
        "ref": None if anchor_model == train_base else anchor_model,
    }


def materialise_policy(
    base: str, adapter: str, out: Path, *, trust_remote_code: bool = False
) -> dict:
    """``base`` + ``adapter`` folded together in float32, saved (safetensors, with the
    tokenizer) to ``out`` atomically; returns a small summary."""
    from ..models import load_model

    model, tok, info = load_model(
        base,
        adapter=adapter,
        merge=True,
        dtype="float32",
        trust_remote_code=trust_remote_code,
        device="cpu",
    )

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        atomic_write_text(tmp / "POLICY.txt", f"base: {base}\nadapter: {adapter}\n")

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_dir(out, fill)
    return {"base": base, "adapter": adapter, "n_params": info.n_params}
