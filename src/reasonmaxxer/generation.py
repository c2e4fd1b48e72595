"""Batched generation behind one small interface.

``HFGenerator`` (transformers ``generate``) runs everywhere and is what CPU runs and tests use;
``VLLMGenerator`` is used when vLLM is installed and a GPU is present. Both take prompt
strings and return, per prompt, ``n`` :class:`Completion` objects with the token ids, so the
training stage can teacher-force exactly the tokens that were sampled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from .errors import UserError


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    n: int = 1  # completions per prompt

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    prompt_ids: list[int]
    finish: str  # "stop" (end of sequence or stop string) | "length"


@dataclass
class GenStats:
    sequences: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, other: GenStats) -> None:
        self.sequences += other.sequences
        self.tokens += other.tokens
        self.seconds += other.seconds


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
    """Decode a left-padded batch with a KV cache, dropping rows from the batch (and the
    cache) as soon as they end, so one long completion does not keep 63 finished rows busy.

    Returns the new token ids per row, up to and including the end-of-sequence token.
    """
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    position = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out_ids: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    eos = torch.tensor(eos_ids, device=input_ids.device)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1]
    next_pos = position[:, -1] + 1
    for step in range(params.max_new_tokens):
        tokens = sample_next(logits, params, generator)
        for r, t in zip(rows.tolist(), tokens.tolist(), strict=True):
            out_ids[r].append(t)
        alive = ~torch.isin(tokens, eos)
        if step == params.max_new_tokens - 1 or not alive.any():
            break
        if not alive.all():
            keep = alive.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, tokens, attention_mask, next_pos = (
                rows[keep],
                tokens[keep],
                attention_mask[keep],
                next_pos[keep],
            )
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=1)
        logits = model(
            input_ids=tokens[:, None],
            attention_mask=attention_mask,
            position_ids=next_pos[:, None],
            past_key_values=cache,
            use_cache=True,
        ).logits[:, -1]
        next_pos = next_pos + 1
    return out_ids


class HFGenerator:
    """A transformers model with left padding, batched over (prompt, sample) pairs.

    Sequences are sorted by prompt length so a batch wastes little padding. Given the same
    prompts, params, batch size and seed, the output is the same: resumable stages rely on it.
    """

    name = "hf"

    def __init__(self, model, tokenizer, *, batch_size: int = 64, stop: list[str] | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.stop = stop or []
        self.stats = GenStats()
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
            eos.append(tokenizer.eos_token_id)
        self.eos_ids = eos

    def generate(
        self, prompts: list[str], params: SamplingParams, *, seed: int = 0, desc: str = "generate"
    ) -> list[list[Completion]]:
        import torch

        tok = self.tokenizer
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        items = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        items.sort(key=lambda it: (-len(encoded[it[0]]), it))
        results: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        generator = torch.Generator(device=self.model.device).manual_seed(seed)
        stats = GenStats()
        start = time.perf_counter()
        bar = tqdm(total=len(items), desc=desc, unit="seq", dynamic_ncols=True)
        with torch.inference_mode():
            for b in range(0, len(items), self.batch_size):
                batch = items[b : b + self.batch_size]
                ids = [encoded[i] for i, _ in batch]
                width = max(len(x) for x in ids)
                input_ids = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
                attention = torch.zeros((len(ids), width), dtype=torch.long)
                for r, x in enumerate(ids):
                    input_ids[r, width - len(x) :] = torch.tensor(x)
                    attention[r, width - len(x) :] = 1
                new_ids = decode(
                    self.model,
                    input_ids.to(self.model.device),
                    attention.to(self.model.device),
                    params,
                    self.eos_ids,
                    generator,
                )
                for r, (i, j) in enumerate(batch):
                    results[i][j] = self._completion(new_ids[r], encoded[i])
                    stats.tokens += len(results[i][j].token_ids)
                stats.sequences += len(batch)
                bar.update(len(batch))
                bar.set_postfix(tok_s=f"{stats.tokens / (time.perf_counter() - start):.0f}")
        bar.close()
        stats.seconds = time.perf_counter() - start
        self.stats.add(stats)
        return results  # type: ignore[return-value]

    def _completion(self, new_ids: list[int], prompt_ids: list[int]) -> Completion:
        finish = "length"
        cut = len(new_ids)
        for t, token in enumerate(new_ids):
            if token in self.eos_ids:
                cut, finish = t + 1, "stop"  # keep the end-of-sequence token: it was sampled
                break
        ids = new_ids[:cut]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        for s in self.stop:
            if s in text:
                text, finish = text[: text.index(s)], "stop"
        return Completion(text=text, token_ids=ids, prompt_ids=list(prompt_ids), finish=finish)


class VLLMGenerator:
    """vLLM generation (GPU only). Adapters are served through LoRA requests."""

    name = "vllm"

    def __init__(
        self,
        location: str,
        *,
        adapter: str | None = None,
        dtype: str = "bfloat16",
        trust_remote_code: bool = False,
        stop: list[str] | None = None,
        lora_rank: int = 64,
    ):
        from vllm import LLM

        self.llm = LLM(
            model=location,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            enable_lora=adapter is not None,
            max_lora_rank=lora_rank,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.adapter = adapter
        self.stop = stop or []
        self.stats = GenStats()

    def generate(
        self, prompts: list[str], params: SamplingParams, *, seed: int = 0, desc: str = "generate"
    ) -> list[list[Completion]]:
        from vllm import SamplingParams as VSP
        from vllm.lora.request import LoRARequest

        sp = VSP(
            n=params.n,
            temperature=max(params.temperature, 0.0),
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            seed=seed,
            stop=self.stop or None,
        )
        lora = LoRARequest("adapter", 1, self.adapter) if self.adapter else None
        start = time.perf_counter()
        outs = self.llm.generate(prompts, sp, lora_request=lora, use_tqdm=True)
        results = []
        stats = GenStats()
        for out in outs:
            row = []
            for o in out.outputs:
                finish = "length" if o.finish_reason == "length" else "stop"
                row.append(
                    Completion(o.text, list(o.token_ids), list(out.prompt_token_ids), finish)
                )
                stats.tokens += len(o.token_ids)
            stats.sequences += len(row)
            results.append(row)
        stats.seconds = time.perf_counter() - start
        self.stats.add(stats)
        return results


def vllm_available() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def pick_backend(requested: str) -> str:
    if requested == "vllm" and not vllm_available():
        raise UserError("--backend vllm needs the vllm package and a CUDA GPU")
    if requested == "auto":
        return "vllm" if vllm_available() else "hf"
    return requested
