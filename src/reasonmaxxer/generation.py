"""Batched generation behind one small interface.

``HFGenerator`` (the project's KV-cache decode loop, :mod:`reasonmaxxer.decoding`) runs everywhere and is what CPU runs and tests use;
``VLLMGenerator`` is used when vLLM is installed and a GPU is present. Both take prompt
strings and return, per prompt, ``n`` :class:`Completion` objects with the token ids, so the
training stage can teacher-force exactly the tokens that were sampled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from tqdm.auto import tqdm

from .decoding import SamplingParams, decode_stream
from .errors import UserError


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
        self.eos_ids = eos_ids_of(tokenizer, model.generation_config.eos_token_id)

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
            new_ids = decode_stream(
                self.model,
                [encoded[i] for i, _ in items],
                tok.pad_token_id,
                params,
                self.eos_ids,
                generator,
                batch_size=self.batch_size,
                on_finish=lambda _: bar.update(1),
            )
        for (i, j), ids in zip(items, new_ids, strict=True):
            results[i][j] = to_completion(ids, encoded[i], tok, self.eos_ids, self.stop)
            stats.tokens += len(results[i][j].token_ids)
        stats.sequences += len(items)
        bar.close()
        stats.seconds = time.perf_counter() - start
        self.stats.add(stats)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Nothing to release: the model belongs to the caller."""


def to_completion(
    new_ids: list[int], prompt_ids: list[int], tokenizer, eos_ids: list[int], stop: list[str]
) -> Completion:
    """One generated sequence as a :class:`Completion`, the same way for every backend.

    The ids are cut after the first end-of-sequence token (kept: it was sampled); the text is
    decoded from them and cut at the first stop string, which ends it (``finish="stop"``) but
    leaves the ids whole, so training teacher-forces exactly what was generated.
    """
    finish = "length"
    cut = len(new_ids)
    for t, token in enumerate(new_ids):
        if token in eos_ids:
            cut, finish = t + 1, "stop"
            break
    ids = list(new_ids[:cut])
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for s in stop:
        if s in text:
            text, finish = text[: text.index(s)], "stop"
    return Completion(text=text, token_ids=ids, prompt_ids=list(prompt_ids), finish=finish)


def eos_ids_of(tokenizer, *generation_eos) -> list[int]:
    """End-of-sequence ids: those of each generation config (an int, a list or None; several
    for a model pair), then the tokenizer's, each once, in that order."""
    eos: list[int] = []
    for ids in generation_eos:
        for i in [ids] if isinstance(ids, int) else list(ids or []):
            if i not in eos:
                eos.append(i)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    return eos


def _tqdm_disabled() -> bool:
    import os

    return os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


class VLLMGenerator:
    """vLLM generation (``LLM.generate``) on a GPU or on vLLM's CPU build.

    Prompts go in as the same token ids the HF path uses, and every completion goes through
    :func:`to_completion`, so both backends return the same kind of :class:`Completion`
    (ids up to and including the end-of-sequence token; the text cut at a stop string).
    An adapter is served through a LoRA request; ``max_lora_rank`` is the smallest rank vLLM
    offers that holds the adapter's.

    Seeds: the engine is seeded, and every sampled request carries its own seed, derived from
    the call's ``seed`` and the prompt's position (vLLM adds the sample index), so a chunk's
    rollouts depend on its seed only, not on what the engine ran before: resumable sampling
    relies on it. On CPU, vLLM rewinds a request's generator when it drops a token sampled
    from a partial prefill, which CPU generators cannot do ("CPU Generator does not use
    offset"), so there chunked prefill is off and every prompt is prefilled whole.
    """

    name = "vllm"

    def __init__(
        self,
        location: str,
        *,
        adapter: str | None = None,
        dtype: str = "bfloat16",
        trust_remote_code: bool = False,
        stop: list[str] | None = None,
        seed: int = 0,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        max_num_seqs: int | None = None,
        kv_cache_gib: float | None = None,
    ):
        try:
            from transformers import AutoConfig, GenerationConfig
            from vllm import LLM
            from vllm.platforms import current_platform
        except Exception as e:  # a broken install fails here, not halfway through a run
            raise UserError(f"cannot import vllm: {_first_line(e)}") from None

        from .models import load_tokenizer

        lora_rank = vllm_lora_rank(adapter) if adapter else None
        kwargs: dict = {}
        if current_platform.is_cpu():
            kwargs["enable_chunked_prefill"] = False
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if max_num_seqs:
            kwargs["max_num_seqs"] = max_num_seqs
        if kv_cache_gib is None and current_platform.is_cpu():
            # vLLM-CPU otherwise reserves a fraction of the machine's memory up front, and
            # refuses to start when other processes hold part of it
            kv_cache_gib = 1.0
        if kv_cache_gib:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        if lora_rank:
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank, max_loras=1)
        try:
            self.llm = LLM(
                model=location,
                tokenizer=location,
                dtype=dtype,
                seed=seed,
                trust_remote_code=trust_remote_code,
                enforce_eager=enforce_eager,
                **kwargs,
            )
        except Exception as e:
            raise UserError(f"vLLM cannot load {location}: {_first_line(e)}") from None
        self.tokenizer = load_tokenizer(location, trust_remote_code=trust_remote_code)
        try:
            gen_eos = GenerationConfig.from_pretrained(location).eos_token_id
        except OSError:  # no generation_config.json: transformers falls back to the config's
            gen_eos = AutoConfig.from_pretrained(
                location, trust_remote_code=trust_remote_code
            ).eos_token_id
        self.eos_ids = eos_ids_of(self.tokenizer, gen_eos)
        self.adapter = adapter
        self.stop = stop or []
        self.stats = GenStats()

    def close(self) -> None:
        """Shut the engine down (its processes and memory) before torch loads a model."""
        import gc

        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            shutdown()
        del self.llm
        gc.collect()

    def generate(
        self, prompts: list[str], params: SamplingParams, *, seed: int = 0, desc: str = "generate"
    ) -> list[list[Completion]]:
        from vllm import SamplingParams as VSP
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        tok = self.tokenizer
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        sps = [
            VSP(
                n=params.n,
                temperature=max(params.temperature, 0.0),
                top_p=params.top_p if not params.greedy else 1.0,
                max_tokens=params.max_new_tokens,
                stop_token_ids=self.eos_ids,
                seed=None if params.greedy else request_seed(seed, i),
                detokenize=False,  # decoded by to_completion, like the HF path
            )
            for i in range(len(prompts))
        ]
        lora = LoRARequest("adapter", 1, self.adapter) if self.adapter else None
        start = time.perf_counter()
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in encoded],
            sps,
            lora_request=lora,
            # vLLM's own bar divides by its elapsed time, which is 0 under TQDM_DISABLE=1
            use_tqdm=not _tqdm_disabled(),
        )
        results = []
        stats = GenStats()
        for ids, out in zip(encoded, outs, strict=True):
            row = [
                to_completion(list(o.token_ids), ids, tok, self.eos_ids, self.stop)
                for o in sorted(out.outputs, key=lambda o: o.index)
            ]
            stats.tokens += sum(len(c.token_ids) for c in row)
            stats.sequences += len(row)
            results.append(row)
        stats.seconds = time.perf_counter() - start
        self.stats.add(stats)
        return results


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def request_seed(seed: int, index: int) -> int:
    """The seed of prompt ``index`` in a call seeded ``seed``: distinct prompts get unrelated
    streams (vLLM gives sample j of a request ``seed + j``)."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 2**16)


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed max_lora_rank values


def adapter_rank(adapter: str) -> int:
    """The largest LoRA rank in a PEFT adapter folder (``r`` and any ``rank_pattern`` entry)."""
    import json
    from pathlib import Path

    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise UserError(f"adapter not found: {adapter} (expected adapter_config.json in it)")
    try:
        cfg = json.loads(path.read_text())
        return max([int(cfg["r"]), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: no valid LoRA rank 'r' ({e})") from None


def vllm_lora_rank(adapter: str) -> int:
    """The ``max_lora_rank`` to start vLLM with for ``adapter``; a rank above vLLM's largest
    is a :class:`UserError` (merge the adapter instead: ``--merge-adapter``)."""
    r = adapter_rank(adapter)
    fits = [m for m in VLLM_LORA_RANKS if m >= r]
    if not fits:
        raise UserError(
            f"{adapter} has LoRA rank {r}, above vLLM's largest ({VLLM_LORA_RANKS[-1]}): "
            "use --merge-adapter or --backend hf"
        )
    return fits[0]


def pick_backend(requested: str, *, adapter: str | None = None) -> str:
    """``hf`` or ``vllm`` for a ``--backend`` value; checks what vLLM needs before any work.

    ``auto`` is vLLM on a CUDA GPU when it is installed, else HF. Measured on a 2-core AVX2
    CPU in float32, side by side (benchmarks/results/backends.md): vLLM-CPU ran the default
    sampling 1.08x and the 500-problem eval 1.28x faster than HF, start included, lost below
    ~300 sequences, and took 2.8x the memory (3.9 vs 1.4 GiB): a few minutes saved is not
    worth leaving the default job's memory budget, so a CPU needs ``--backend vllm`` to use
    it. ``adapter`` is one to serve as a LoRA (not merged).
    """
    if requested == "auto":
        backend = "vllm" if vllm_installed() and cuda_available() else "hf"
    else:
        backend = requested
    if backend == "vllm":
        if not vllm_installed():
            raise UserError(
                "--backend vllm needs the vllm package: pip install -e '.[vllm]' on a GPU "
                "machine (the README gives the CPU variant)"
            )
        if adapter:
            vllm_lora_rank(adapter)
    return backend


def make_generator(
    model_cfg,
    prompt_cfg,
    *,
    adapter: str | None = None,
    batch_size: int = 64,
    seed: int = 0,
    backend: str | None = None,
):
    """Load the model for generation behind the chosen backend; returns (generator, ModelInfo).

    ``backend`` is an already picked one (:func:`pick_backend`); default: pick from
    ``model_cfg.backend``. With ``model_cfg.merge_adapter`` the adapter is folded into the
    weights (vLLM serves a merged copy saved in the cache) instead of applied as a LoRA.
    """
    from .eval.prompting import stop_strings
    from .models import ModelInfo, load_model, load_tokenizer, merged_model_dir, resolve_model

    merge = bool(adapter and model_cfg.merge_adapter)
    backend = backend or pick_backend(model_cfg.backend, adapter=None if merge else adapter)
    if backend == "hf":
        model, tok, info = load_model(
            model_cfg.model,
            adapter=adapter,
            dtype=model_cfg.gen_dtype,
            trust_remote_code=model_cfg.trust_remote_code,
            merge=merge,
            device=model_cfg.device,
        )
        gen = HFGenerator(model, tok, batch_size=batch_size, stop=stop_strings(tok, prompt_cfg))
        return gen, info
    kind, location, fp = resolve_model(model_cfg.model)
    info = ModelInfo(
        model_cfg.model, location, kind, fp, dtype=model_cfg.gen_dtype, adapter=adapter
    )
    if merge:
        location = str(merged_model_dir(model_cfg, adapter))
    tok = load_tokenizer(location, trust_remote_code=model_cfg.trust_remote_code)
    gen = VLLMGenerator(
        location,
        adapter=None if merge else adapter,
        dtype=model_cfg.gen_dtype,
        trust_remote_code=model_cfg.trust_remote_code,
        stop=stop_strings(tok, prompt_cfg),
        seed=seed,
        max_model_len=model_cfg.max_model_len,
        enforce_eager=model_cfg.enforce_eager,
        kv_cache_gib=model_cfg.kv_cache_gib,
    )
    return gen, info
