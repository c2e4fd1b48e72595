"""The one place a stored (prompt, completion) pair becomes tensors and logits.

:func:`build_batch` left-pads a micro-batch so that every completion ends at the right edge;
:func:`completion_logits` runs the model over it and keeps only the positions that score
completion tokens. Selection (entropies), training (the loss), distillation and the analysis
all teacher-force stored token ids through these two functions.
"""

from __future__ import annotations


def build_batch(rows: list[dict]):
    """Left-padded inputs and target-aligned masks for a micro-batch.

    Left padding lines every completion up against the right edge, so the last ``T + 1``
    logits (``T`` = longest completion) cover every scored position and the LM head never
    runs over prompt tokens. Returns tensors: ``input_ids``/``attention_mask``/``position_ids``
    [B, L]; ``targets`` [B, T] (the last T tokens); ``completion``/``decision`` [B, T] bool
    (prompt and padding positions carry no loss); ``advantages`` [B]; ``keep`` = T + 1.
    """
    import torch

    seqs = [r["prompt_ids"] + r["completion_ids"] for r in rows]
    width = max(len(s) for s in seqs)
    t_max = max(len(r["completion_ids"]) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    completion = torch.zeros((len(rows), t_max), dtype=torch.bool)
    decision = torch.zeros((len(rows), t_max), dtype=torch.bool)
    for i, (r, s) in enumerate(zip(rows, seqs, strict=True)):
        ids[i, width - len(s) :] = torch.tensor(s)
        attn[i, width - len(s) :] = 1
        start = t_max - len(r["completion_ids"])  # target index of completion token 0
        completion[i, start:] = True
        for j in r["decision"]:
            decision[i, start + j] = True
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),
        "targets": ids[:, width - t_max :],
        "completion": completion,
        "decision": decision,
        "advantages": torch.tensor([r["advantage"] for r in rows], dtype=torch.float32),
        "keep": t_max + 1,
    }


def completion_logits(model, batch: dict):
    """Forward a :func:`build_batch` batch; returns logits ``[B, T, V]`` where
    ``logits[:, t]`` scores ``batch["targets"][:, t]``. Only the last ``T + 1`` positions go
    through the LM head."""
    device = model.device
    return model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
        position_ids=batch["position_ids"].to(device),
        logits_to_keep=batch["keep"],
        use_cache=False,  # one teacher-forced pass: a KV cache would only cost memory
    ).logits[:, :-1]
