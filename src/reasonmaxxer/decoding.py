"""The project's one decode loop: KV-cache decoding with continuous batching and a per-step hook.

:func:`decode_stream` decodes token-id prompts, keeping up to a batch of rows in one KV cache and
refilling the slots of finished rows. Each step a :class:`StepHook` picks every live row's
token (by default :func:`sample_next`: greedy, or temperature + top-p) and may decode further
networks in lockstep beside the model: ``HFGenerator``, GRPO's rollouts and the analysis'
token-substitution policies (a teacher beside the base) all decode through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine import cache_argument


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    n: int = 1  # completions per prompt

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def sample_next(logits, params: SamplingParams, generator):
    """Next token per row from ``logits`` [B, V]: argmax, or temperature + nucleus sampling."""
    import torch

    if params.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p >= 1.0:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    kept, ids = nucleus(probs, params.top_p)
    return ids.gather(-1, torch.multinomial(kept, 1, generator=generator)).squeeze(-1)


def nucleus(probs, top_p: float, k: int = 64):
    """The top-p nucleus of each row of ``probs`` [B, V], without sorting the vocabulary.

    Returns ``(kept, ids)`` [B, k']: the probabilities of the k' most likely tokens, zeroed
    once the mass before a token already reaches ``top_p`` (the top token always stays), and
    their vocabulary ids. ``k'`` starts at ``k`` and grows until the top-k' mass of every row
    reaches ``top_p``, so every token beyond it would be dropped anyway: the result is exactly
    full-sort top-p, at the price of a ``topk`` (a full sort of a 49k vocabulary costs more
    than the model's own decode step on CPU).
    """
    vocab = probs.shape[-1]
    k = min(k, vocab)
    while True:
        top, ids = probs.topk(k, dim=-1)  # sorted, descending
        mass = top.cumsum(dim=-1)
        if k == vocab or bool((mass[:, -1] >= top_p).all()):
            break
        k = min(vocab, 4 * k)
    return top.masked_fill(mass - top >= top_p, 0.0), ids


def decode(
    model, input_ids, attention_mask, params: SamplingParams, eos_ids: list[int], generator
) -> list[list[int]]:
    """Decode one left-padded batch with a KV cache, rows leaving the batch (and the cache) as
    soon as they end: :func:`decode_stream` over exactly these rows, nothing refilled.

    Returns the new token ids per row, up to and including the end-of-sequence token.
    """
    prompts = [
        ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)
    ]
    pad_id = int(input_ids[attention_mask == 0][0]) if bool((attention_mask == 0).any()) else 0
    return decode_stream(
        model, prompts, pad_id, params, eos_ids, generator, batch_size=len(prompts)
    )


class StepHook:
    """What :func:`decode_stream` asks at every step: which token each live row takes, and
    whether a row ends before its end-of-sequence token. The default samples (greedy or
    temperature + top-p, :func:`sample_next`) from the model's logits and never ends a row.

    ``companions`` are further networks, called like the model, decoded in lockstep beside
    it (a teacher beside a base): each has its own KV cache, is fed the same prompts and the
    same chosen tokens, and drops and gains the same rows.
    """

    companions: tuple = ()

    def __init__(self, params: SamplingParams | None = None, generator=None):
        self.params, self.generator = params, generator

    def pick(self, logits: list, rows: list[int], steps):
        """The next token [B] (long) of each live row.

        Args:
            logits: next-token logits ``[B, V]`` of the model, then of each companion.
            rows: the live rows' prompt indices, in batch order.
            steps: ``[B]`` long, the tokens each row has generated so far (this step's index).
        """
        return sample_next(logits[0], self.params, self.generator)

    def ends(self, ids: list[int]) -> bool:
        """Whether a row whose tokens so far are ``ids`` ends now (its last token is kept)."""
        return False


def _prefill(networks: list, prompts: list[list[int]], pad_id: int):
    """Left-pad ``prompts`` and run them through every network, each with a fresh KV cache.
    Returns ``(caches, next-token logits [n, V] per network, attention mask [n, W], next
    positions [n])``.

    A prompt that appears several times (the K samples of one problem) is run once and its
    cache rows copied: prefilling a sampling chunk's 64 prompts took 15.0 CPU s against 1.9 for
    its 8 distinct ones on one AVX2 core (``benchmarks/results/prefill.md``), a third of the
    chunk's decoding time. The tokens
    every distinct prompt begins with (chat template, system prompt) are run once too, and
    their keys and values copied to every row (:func:`_shared_prefill`).
    """
    import torch

    from .engine import shared_prefix, shares_prefixes

    distinct = [list(p) for p in dict.fromkeys(map(tuple, prompts))]
    device = networks[0].device
    prefix = 0
    if all(shares_prefixes(net) for net in networks):
        prefix = shared_prefix(distinct)
    caches, logits, mask, position = _shared_prefill(networks, distinct, pad_id, prefix, device)
    if len(distinct) < len(prompts):
        row = {tuple(p): i for i, p in enumerate(distinct)}
        rows = torch.tensor([row[tuple(p)] for p in prompts], dtype=torch.long, device=device)
        for cache in caches:
            cache.batch_select_indices(rows)
        logits = [x[rows] for x in logits]
        mask, position = mask[rows], position[rows]
    return caches, logits, mask, position[:, -1] + 1


def _shared_prefill(networks: list, prompts: list[list[int]], pad_id: int, prefix: int, device):
    """:func:`_prefill` of distinct ``prompts`` whose first ``prefix`` tokens are the same:
    those run once (batch 1) and their keys and values are copied to every row, then each
    row's rest, left-padded, runs on that cache. The rows' caches then read
    ``[prefix | padding | rest]``, the mask hiding the padding; positions are each row's own,
    as without the split."""
    import torch
    from transformers import DynamicCache

    from .engine import left_pad

    ids, mask = left_pad([p[prefix:] for p in prompts], pad_id)
    ids, mask = ids.to(device), mask.to(device)
    mask = torch.cat([mask.new_ones((len(prompts), prefix)), mask], dim=1)
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    caches = [DynamicCache() for _ in networks]
    logits = []
    for net, cache in zip(networks, caches, strict=True):
        arg = cache_argument(net)
        if prefix:
            head = torch.tensor([prompts[0][:prefix]], dtype=torch.long, device=device)
            net(input_ids=head, **{arg: cache}, use_cache=True, logits_to_keep=1)
            for layer in cache.layers:
                layer.keys = layer.keys.expand(len(prompts), -1, -1, -1).contiguous()
                layer.values = layer.values.expand(len(prompts), -1, -1, -1).contiguous()
        out = net(
            input_ids=ids,
            attention_mask=mask,
            position_ids=position[:, prefix:],
            **{arg: cache},
            use_cache=True,
            logits_to_keep=1,
        )
        logits.append(out.logits[:, -1])
    return caches, logits, mask, position


def _plain_layers(cache) -> bool:
    """Whether every layer of ``cache`` is a plain full-attention key/value layer, the only
    kind :func:`decode_stream` may splice rows into (sliding-window or recurrent layers are
    decoded without refill)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))


def _join_rows(cache, new_cache, width: int, new_width: int) -> None:
    """Append ``new_cache``'s rows to ``cache``, left-padding their keys and values with zeros
    from ``new_width`` to ``width`` positions (the attention mask hides those positions, so
    their values never count)."""
    import torch

    for layer, new in zip(cache.layers, new_cache.layers, strict=True):
        pad = width - new_width
        keys, values = new.keys, new.values  # [n, heads, new_width, head_dim]
        if pad:
            zeros = keys.new_zeros((*keys.shape[:2], pad, keys.shape[-1]))
            keys, values = torch.cat([zeros, keys], dim=2), torch.cat([zeros, values], dim=2)
        layer.keys = torch.cat([layer.keys, keys])
        layer.values = torch.cat([layer.values, values])


def _trim_left(caches: list, mask):
    """Drop the leading cache positions that no live row attends to; returns the new mask."""
    used = mask.any(dim=0).nonzero()
    start = int(used[0]) if len(used) else 0
    if start:
        for cache in caches:
            for layer in cache.layers:
                layer.keys = layer.keys[:, :, start:]
                layer.values = layer.values[:, :, start:]
        mask = mask[:, start:]
    return mask


class _Batch:
    """The rows decoded together: their prompt indices ``rows``, one KV cache and one
    next-token ``logits`` [B, V] per network, the attention ``mask`` [B, W], ``next_pos``
    [B] and ``steps`` [B] (tokens generated so far)."""

    def __init__(self, networks: list, prompts: list[list[int]], rows: list[int], pad_id: int):
        import torch

        self.networks, self.rows = networks, rows
        self.caches, self.logits, self.mask, self.next_pos = _prefill(
            networks, [prompts[i] for i in rows], pad_id
        )
        self.steps = torch.zeros(len(rows), dtype=torch.long, device=networks[0].device)
        self.splices = all(_plain_layers(c) for c in self.caches)

    def drop(self, done: list[bool], tokens, *, trim: bool):
        """Remove the rows marked ``done`` (from the caches too); returns the others' tokens."""
        import torch

        keep = [k for k, d in enumerate(done) if not d]
        sel = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        for cache in self.caches:
            cache.batch_select_indices(sel)
        self.rows = [self.rows[k] for k in keep]
        self.mask, self.next_pos, self.steps = self.mask[sel], self.next_pos[sel], self.steps[sel]
        if trim:
            self.mask = _trim_left(self.caches, self.mask)
        return tokens[sel]

    def advance(self, tokens) -> None:
        """Feed every live row its chosen token [B]: one step of every network."""
        import torch

        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
        self.logits = [
            net(
                input_ids=tokens[:, None],
                attention_mask=self.mask,
                position_ids=self.next_pos[:, None],
                **{cache_argument(net): cache},
                use_cache=True,
            ).logits[:, -1]
            for net, cache in zip(self.networks, self.caches, strict=True)
        ]
        self.next_pos = self.next_pos + 1

    def splice(self, prompts: list[list[int]], new: list[int], pad_id: int) -> None:
        """Prefill the prompts ``new`` on their own and splice their rows in at the end, their
        caches left-padded with masked zeros to the batch's width."""
        import torch

        caches, logits, new_mask, new_pos = _prefill(
            self.networks, [prompts[i] for i in new], pad_id
        )
        width, new_width = self.mask.shape[1], new_mask.shape[1]
        for cache, new_cache in zip(self.caches, caches, strict=True):
            _join_rows(cache, new_cache, width, new_width)
        new_mask = torch.cat([new_mask.new_zeros((len(new), width - new_width)), new_mask], 1)
        self.mask = torch.cat([self.mask, new_mask])
        self.logits = [torch.cat([a, b]) for a, b in zip(self.logits, logits, strict=True)]
        self.next_pos = torch.cat([self.next_pos, new_pos])
        self.steps = torch.cat([self.steps, self.steps.new_zeros(len(new))])
        self.rows = self.rows + new


def decode_stream(
    model,
    prompts: list[list[int]],
    pad_id: int,
    params: SamplingParams,
    eos_ids: list[int],
    generator,
    *,
    batch_size: int,
    on_finish=None,
    hook: StepHook | None = None,
    refill: bool = True,
) -> list[list[int]]:
    """Decode every prompt with continuous batching: up to ``batch_size`` rows share one KV
    cache, a row leaves it as soon as it ends, and its slot is refilled at once with the next
    prompt (prefilled on its own, its cache left-padded with masked zeros and spliced in).
    Decode steps on CPU cost ``a + b·rows`` with a large ``a``, so keeping the batch full
    instead of letting it drain to its longest completion saves steps. Slots are refilled a
    quarter of the batch at a time (a prefill call and a cache copy cost about a step).
    With ``refill=False`` batches of ``batch_size`` consecutive prompts drain one after another.

    ``prompts`` are token ids, best sorted longest first (a refill prompt must fit the cache's
    width; when it does not, the batch drains and restarts). Each row's tokens are drawn
    from ``generator`` in step order, so a call is reproducible for a given seed, batch size
    and prompt order. ``hook`` (a :class:`StepHook`) replaces that draw, may end rows early and
    may decode companion networks beside the model. ``on_finish(i)`` is called when prompt
    ``i`` ends; a row ends at an end-of-sequence token, after ``params.max_new_tokens`` or when
    the hook says so.

    Returns the new token ids per prompt, up to and including the end-of-sequence token.
    """
    import torch

    hook = hook or StepHook(params, generator)
    networks = [model, *hook.companions]
    eos = torch.tensor(eos_ids, dtype=torch.long, device=model.device)
    out: list[list[int]] = [[] for _ in prompts]
    pending = list(range(len(prompts)))[::-1]  # pop() takes them in order
    live: _Batch | None = None
    while pending or (live and live.rows):
        if not (live and live.rows):  # (re)start: a fresh batch at its own width
            rows = [pending.pop() for _ in range(min(batch_size, len(pending)))]
            live = _Batch(networks, prompts, rows, pad_id)
        tokens = hook.pick(live.logits, live.rows, live.steps)
        for r, t in zip(live.rows, tokens.tolist(), strict=True):
            out[r].append(t)
        live.steps += 1
        done = (torch.isin(tokens, eos) | (live.steps >= params.max_new_tokens)).tolist()
        done = [d or hook.ends(out[r]) for d, r in zip(done, live.rows, strict=True)]
        splices = refill and live.splices
        if any(done):
            for r, d in zip(live.rows, done, strict=True):
                if d and on_finish:
                    on_finish(r)
            tokens = live.drop(done, tokens, trim=splices)
        if live.rows:
            live.advance(tokens)
        if splices and live.rows:
            new = _refills(prompts, pending, len(live.rows), live.mask.shape[1], batch_size)
            if new:
                live.splice(prompts, new, pad_id)
    return out


def _refills(
    prompts: list[list[int]], pending: list[int], live: int, width: int, batch_size: int
) -> list[int]:
    """Prompts to splice into a batch of ``live`` rows whose cache is ``width`` wide, popped
    from ``pending`` (next last). In groups: each refill costs a prefill call and a cache copy,
    about a decode step, so a lone free slot waits for company until the queue runs short.
    A prompt wider than the cache waits for the next fresh batch."""
    free = batch_size - live
    if not live or not pending or free < max(1, batch_size // 4) and len(pending) >= batch_size:
        return []
    new = []
    while pending and len(new) < free and len(prompts[pending[-1]]) <= width:
        new.append(pending.pop())
    return new
