"""The one place a stored (prompt, completion) pair becomes tensors and logits.

:func:`left_pad` right-aligns token-id lists in a batch (generation's prefill uses it too);
:func:`build_batch` left-pads a micro-batch so that every completion ends at the right edge;
:func:`completion_logits` runs the model over it and keeps only the positions that score
completion tokens. Selection (entropies), training (the loss), distillation and the analysis
all teacher-force stored token ids through these two functions.

:func:`logit_source` is the memory-lean form of :func:`completion_logits`: the backbone's last
hidden states ``[B, T, H]`` and the LM head, so a caller turns a few rows at a time into
logits and ``[B, T, V]`` floats (283 MB for the default train batch) never exist at once.
"""

from __future__ import annotations


def left_pad(seqs: list[list[int]], pad_id: int):
    """Token-id lists right-aligned in one ``[n, width]`` batch, ``width`` the longest.

    Returns ``(ids, mask)``, both long on the CPU: ``ids`` holds ``pad_id`` left of each
    sequence, ``mask`` is 1 on the sequence's positions and 0 on the padding.
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids, mask


def build_batch(rows: list[dict], *, share_prefix: bool = False):
    """Left-padded inputs and target-aligned masks for a micro-batch.

    Left padding lines every completion up against the right edge, so the last ``T + 1``
    logits (``T`` = longest completion) cover every scored position and the LM head never
    runs over prompt tokens. Returns tensors: ``input_ids``/``attention_mask``/``position_ids``
    [B, L]; ``targets`` [B, T] (the last T tokens); ``completion``/``decision`` [B, T] bool
    (prompt and padding positions carry no loss); ``advantages`` [B]; ``keep`` = T + 1; and,
    when every row carries ``ref_logp`` (π_ref's log-prob of each completion token, stored by
    ``select``), ``ref_logp`` [B, T] float32 aligned with ``targets`` (0 off the completion).

    With ``share_prefix``, the prompt tokens every row begins with (the chat template and
    system prompt; a whole prompt when the rows are one problem's samples) are split off as
    ``prefix_ids`` [1, S], run once and shared (:func:`prefix_cache`): ``input_ids`` and
    ``position_ids`` [B, L - S] then hold the rest of each row, left-padded, and
    ``attention_mask`` [B, L] covers the prefix too. Every row keeps at least its last prompt
    token, so ``targets`` and ``keep`` are those of the unshared batch.
    """
    import torch

    prefix = shared_prefix([r["prompt_ids"] for r in rows]) if share_prefix else 0
    seqs = [(r["prompt_ids"] + r["completion_ids"])[prefix:] for r in rows]
    ids, attn = left_pad(seqs, 0)
    width = ids.shape[1]
    t_max = max(len(r["completion_ids"]) for r in rows)
    completion = torch.zeros((len(rows), t_max), dtype=torch.bool)
    decision = torch.zeros((len(rows), t_max), dtype=torch.bool)
    for i, r in enumerate(rows):
        start = t_max - len(r["completion_ids"])  # target index of completion token 0
        completion[i, start:] = True
        for j in r["decision"]:
            decision[i, start + j] = True
    batch = {
        "input_ids": ids,
        "attention_mask": attn,
        "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),
        "targets": ids[:, width - t_max :],
        "completion": completion,
        "decision": decision,
        "advantages": torch.tensor([r["advantage"] for r in rows], dtype=torch.float32),
        "keep": t_max + 1,
    }
    if prefix:
        batch["prefix_ids"] = torch.tensor([rows[0]["prompt_ids"][:prefix]], dtype=torch.long)
        batch["position_ids"] = batch["position_ids"] + prefix
        batch["attention_mask"] = torch.cat(
            [attn.new_ones((len(rows), prefix)), batch["attention_mask"]], dim=1
        )
    if all("ref_logp" in r for r in rows):
        ref_logp = torch.zeros((len(rows), t_max), dtype=torch.float32)
        for i, r in enumerate(rows):
            n = len(r["completion_ids"])
            ref_logp[i, t_max - n :] = torch.tensor(r["ref_logp"], dtype=torch.float32)
        batch["ref_logp"] = ref_logp
    return batch


def base_model(model):
    """``model`` itself, or under a PEFT wrapper the transformers model it wraps."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def cache_argument(net) -> str:
    """The name of the forward's KV-cache argument: ``cache`` in newer transformers (which
    warn that ``past_key_values`` goes away in 5.40), ``past_key_values`` before."""
    import inspect

    params = inspect.signature(base_model(net).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def shared_prefix(prompts: list[list[int]], min_tokens: int = 8) -> int:
    """How many leading tokens every prompt of ``prompts`` shares, leaving each at least one
    token of its own; 0 for a single prompt or when fewer than ``min_tokens`` are shared."""
    import os

    if len(prompts) < 2:
        return 0
    n = min(len(os.path.commonprefix(prompts)), min(len(p) for p in prompts) - 1)
    return n if n >= min_tokens else 0


def _decoder(model):
    """The backbone of ``model`` (under a PEFT wrapper, the base model's)."""
    return base_model(model).get_decoder()


def shares_prefixes(model) -> bool:
    """Whether :func:`prefix_cache` can serve ``model``: every layer full attention (no
    sliding window, no recurrent state) and a transformers whose checkpointed layers can
    keep a read-only cache (``_can_checkpoint_with_cache``)."""
    cfg = base_model(model).config.get_text_config(decoder=True)
    if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or []):
        return False
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    layers = getattr(_decoder(model), "layers", None)
    return bool(layers) and all(hasattr(layer, "_can_checkpoint_with_cache") for layer in layers)


def _prefix_layer(keys, values):
    """One layer's keys and values of a shared prefix ``[1, heads, S, dim]`` as a cache layer
    whose ``update`` returns them, widened to the batch, before the new positions' own and
    stores nothing: the recompute of a checkpointed layer sees the same keys as its first
    pass."""
    from transformers.cache_utils import DynamicLayer

    class PrefixLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            import torch

            rows = key_states.shape[0]
            k = torch.cat([self.keys.expand(rows, -1, -1, -1), key_states], dim=-2)
            v = torch.cat([self.values.expand(rows, -1, -1, -1), value_states], dim=-2)
            return k, v

    layer = PrefixLayer()
    layer.keys, layer.values, layer.is_initialized = keys, values, True
    layer.device = keys.device
    return layer


def prefix_cache(model, prefix_ids):
    """Run ``prefix_ids`` [1, S] through ``model``'s decoder (with gradients where enabled:
    the adapter's gradient flows back through the shared keys and values) and return a cache
    that serves them to every row of the next call (:func:`_prefix_layer`)."""
    from transformers import DynamicCache

    decoder = _decoder(model)
    cache = DynamicCache()
    layers = decoder.layers
    saved = [getattr(layer, "gradient_checkpointing", False) for layer in layers]
    try:  # 1 x S tokens: nothing to save by checkpointing, and the cache must fill
        for layer in layers:
            layer.gradient_checkpointing = False
        decoder(input_ids=prefix_ids, use_cache=True, **{cache_argument(decoder): cache})
    finally:
        for layer, was in zip(layers, saved, strict=True):
            layer.gradient_checkpointing = was
    cache.layers = [_prefix_layer(layer.keys, layer.values) for layer in cache.layers]
    return cache


def _decoder_inputs(model, batch: dict, callee) -> dict:
    """The token inputs of ``callee`` (``model`` or its decoder) on ``model``'s device, with
    the prefix cache where ``batch`` shares a prefix."""
    device = model.device
    kw = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "position_ids")}
    if "prefix_ids" in batch:
        kw[cache_argument(callee)] = prefix_cache(model, batch["prefix_ids"].to(device))
    return kw


class _keep_cache:
    """Let checkpointed decoder layers keep the read-only prefix cache (transformers drops
    a cache under checkpointing unless the layer says it only reads it)."""

    def __init__(self, model, active: bool):
        self.layers = list(_decoder(model).layers) if active else []

    def __enter__(self):
        for layer in self.layers:
            layer._can_checkpoint_with_cache = True

    def __exit__(self, *exc):
        for layer in self.layers:
            del layer._can_checkpoint_with_cache  # back to the class's False


def completion_logits(model, batch: dict):
    """Forward a :func:`build_batch` batch; returns logits ``[B, T, V]`` where
    ``logits[:, t]`` scores ``batch["targets"][:, t]``. Only the last ``T + 1`` positions go
    through the LM head."""
    shared = "prefix_ids" in batch
    with _keep_cache(model, shared):
        return model(
            **_decoder_inputs(model, batch, model),
            logits_to_keep=batch["keep"],
            use_cache=False,  # one teacher-forced pass: a KV cache would only cost memory
        ).logits[:, :-1]


def completion_hidden(model, batch: dict):
    """The backbone's last hidden states ``[B, T, H]`` at the positions whose logits score
    ``batch["targets"]``: ``head(completion_hidden(m, b))`` is ``completion_logits(m, b)``
    for a model whose logits are its plain LM head (see :func:`plain_head`)."""
    decoder = _decoder(model)
    kw = _decoder_inputs(model, batch, decoder)
    with _keep_cache(model, "prefix_ids" in batch):
        out = decoder(**kw, use_cache=False)
    return out.last_hidden_state[:, -batch["keep"] : -1]


_PLAIN_HEAD = "_reasonmaxxer_plain_head"


def plain_head(model, batch: dict):
    """The model's LM head when its logits are exactly ``head(last hidden state)``, else None.

    Checked once per model, on ``batch``'s first row: a model that post-processes its logits
    (Gemma's soft-capping, Cohere's logit scale, ...), has no separate decoder, or carries a
    LoRA on the head itself (so the reference pass would need it switched off inside the
    head) gets None, and callers fall back to whole-batch logits."""
    verdict = getattr(model, _PLAIN_HEAD, None)
    if verdict is None:
        verdict = _head_reproduces_logits(model, {**batch, **_first_row(batch)})
        setattr(model, _PLAIN_HEAD, verdict)
    return model.get_output_embeddings() if verdict else None


def _first_row(batch: dict) -> dict:
    keys = ("input_ids", "attention_mask", "position_ids")
    return {k: batch[k][:1] for k in keys} | {k: batch[k] for k in ("prefix_ids",) if k in batch}


def _head_reproduces_logits(model, row: dict) -> bool:
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or any("lora_" in name for name, _ in head.named_parameters()):
        return False
    was_training = model.training
    model.eval()  # dropout would make the two passes differ
    try:
        with torch.no_grad():
            hidden = completion_hidden(model, row)
            want = completion_logits(model, row).float()
            got = head(hidden).float()
    except (AttributeError, NotImplementedError, TypeError):
        return False
    finally:
        model.train(was_training)
    return got.shape == want.shape and torch.allclose(got, want, rtol=1e-3, atol=1e-3)


def logit_source(model, batch: dict):
    """``(x, head)`` with ``head(x[i:j]) == completion_logits(model, batch)[i:j]``.

    ``x`` is the backbone's hidden states ``[B, T, H]`` and ``head`` the LM head when
    :func:`plain_head` allows it (bit-identical logits on CPU: the head's matmul gives each row
    the same value whatever rows share the call); otherwise ``x`` is the whole-batch logits
    and ``head`` the identity."""
    head = plain_head(model, batch)
    if head is None:
        return completion_logits(model, batch), _identity
    return completion_hidden(model, batch), head


def _identity(x):
    return x
