"""The base/teacher model pair of an analysis, and the inputs every analysis builds: its
problems, prompts and teacher-forced logits of both models."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from ..config import PromptConfig
from ..devices import resolve_device
from ..errors import UserError
from ..generation import eos_ids_of
from .config import AnalysisConfig


class ModelPair:
    """A base model and a teacher that share a tokenizer.

    ``use("base")`` / ``use("teacher")`` are context managers yielding the network to call.
    With ``toggle_adapter`` the two are one PEFT model, and ``use("base")`` disables the
    adapter for its duration (one copy of the weights in memory).
    """

    def __init__(
        self,
        base,
        teacher,
        tokenizer,
        *,
        toggle_adapter: bool = False,
        base_info: dict | None = None,
        teacher_info: dict | None = None,
    ):
        if toggle_adapter and base is not teacher:
            raise ValueError("toggle_adapter needs base and teacher to be the same PEFT model")
        self.base = base
        self.teacher = teacher
        self.tokenizer = tokenizer
        self.toggle_adapter = toggle_adapter
        self.base_info = base_info or {}
        self.teacher_info = teacher_info or {}
        self.eos_ids = eos_ids_of(
            tokenizer, *(m.generation_config.eos_token_id for m in (base, teacher))
        )

    @property
    def device(self):
        return self.base.device

    @contextmanager
    def use(self, which: str) -> Iterator[Any]:
        if which == "base":
            ctx = self.base.disable_adapter() if self.toggle_adapter else nullcontext()
            with ctx:
                yield self.base
        elif which == "teacher":
            yield self.teacher
        else:
            raise ValueError(f"which must be 'base' or 'teacher', got {which!r}")

    def network(self, which: str) -> PairMember:
        """``base`` or ``teacher`` as a network to call like a model (see :class:`PairMember`)."""
        return PairMember(self, which)

    def vocab_size(self) -> int:
        """Logit columns both models have (padded LM heads may differ in width)."""
        return min(out_features(self.base), out_features(self.teacher))


class PairMember:
    """One model of a :class:`ModelPair`, called like a transformers model: each call runs
    inside ``pair.use(which)`` (so the shared-adapter base runs with the adapter off)."""

    def __init__(self, pair: ModelPair, which: str):
        self.pair, self.which = pair, which

    @property
    def device(self):
        return self.pair.device

    def get_base_model(self):
        """The transformers model under this member, as PEFT's method of the same name gives
        it (callers read its ``forward``'s argument names)."""
        model = getattr(self.pair, self.which)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def __call__(self, **inputs):
        with self.pair.use(self.which) as model:
            return model(**inputs)


def out_features(model) -> int:
    head = model.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)


def gen_model_config(cfg: AnalysisConfig, model: str, backend: str):
    """The generation settings of an analysis (its dtype, no adapter merging) as a ModelConfig."""
    from ..config import ModelConfig

    return ModelConfig(
        model=model,
        gen_dtype=cfg.dtype,
        backend=backend,
        trust_remote_code=cfg.trust_remote_code,
        device=cfg.device,
    )


def load_pair(cfg: AnalysisConfig) -> ModelPair:
    """Load the base and the teacher of ``cfg`` (one shared network when the teacher is the
    base plus an adapter). Every failure is a :class:`UserError`."""
    from ..models import load_model

    kw = {
        "dtype": cfg.dtype,
        "trust_remote_code": cfg.trust_remote_code,
        "device": resolve_device(cfg.device),
    }
    if cfg.teacher is None or cfg.teacher == cfg.model:
        model, tok, info = load_model(cfg.model, adapter=cfg.teacher_adapter, **kw)
        base_info = dataclasses.replace(info, adapter=None, adapter_fingerprint=None)
        return ModelPair(
            model,
            model,
            tok,
            toggle_adapter=cfg.teacher_adapter is not None,
            base_info=base_info.to_dict(),
            teacher_info=info.to_dict(),
        )
    base, tok, b_info = load_model(cfg.model, **kw)
    teacher, t_tok, t_info = load_model(cfg.teacher, adapter=cfg.teacher_adapter, **kw)
    if tok.get_vocab() != t_tok.get_vocab():
        raise UserError(
            f"the teacher {cfg.teacher!r} has another tokenizer than the base {cfg.model!r}: "
            "a token-level comparison needs a shared vocabulary"
        )
    return ModelPair(base, teacher, tok, base_info=b_info.to_dict(), teacher_info=t_info.to_dict())


def rows_for_forcing(prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> list[dict]:
    """Rows in the shape :func:`reasonmaxxer.method.training.build_batch` reads."""
    return [
        {"prompt_ids": p, "completion_ids": c, "decision": [], "advantage": 0.0}
        for p, c in zip(prompt_ids, completion_ids, strict=True)
    ]


def forced_logits(model, rows: list[dict], device=None):
    """Teacher-force a left-padded batch; returns ``[B, T, V]`` float logits where row i's
    completion token j is predicted by ``logits[i, T - n_i + j]`` (``T`` = longest
    completion, ``n_i`` = row i's completion length). Only the last ``T + 1`` positions go
    through the LM head."""
    from ..engine import build_batch, completion_logits

    logits = completion_logits(model, build_batch(rows))
    return logits


def pair_logits(
    pair: ModelPair, prompt_ids: list[list[int]], completion_ids: list[list[int]], batch_size: int
) -> Iterator[tuple[int, Any, Any]]:
    """Yield ``(row index, base_logits [n, V], teacher_logits [n, V])`` for every row with a
    non-empty completion, ``n`` its length; logits are float32, ``V`` the shared width."""
    import torch

    vocab = pair.vocab_size()
    idx = [i for i, c in enumerate(completion_ids) if c]
    idx.sort(key=lambda i: (len(prompt_ids[i]) + len(completion_ids[i]), i))
    for b in range(0, len(idx), batch_size):
        chunk = idx[b : b + batch_size]
        rows = rows_for_forcing([prompt_ids[i] for i in chunk], [completion_ids[i] for i in chunk])
        with torch.inference_mode():
            with pair.use("base") as m:
                base = forced_logits(m, rows, pair.device)
            with pair.use("teacher") as m:
                teacher = forced_logits(m, rows, pair.device)
        t_max = base.shape[1]
        for r, i in enumerate(chunk):
            start = t_max - len(completion_ids[i])
            yield i, base[r, start:, :vocab].float(), teacher[r, start:, :vocab].float()


def build_prompts(tokenizer, problems, prompt_cfg: PromptConfig) -> list[str]:
    from ..eval.prompting import build_prompt

    return [build_prompt(tokenizer, p.problem, prompt_cfg) for p in problems]


def load_problems(cfg: AnalysisConfig):
    from ..eval.data import load_benchmarks

    benches = load_benchmarks(cfg.benchmarks, limit=cfg.limit)
    problems = [p for ps in benches.values() for p in ps]
    if not problems:
        raise UserError(f"no problems in {cfg.benchmarks!r}")
    return list(benches), problems


def set_threads(cfg: AnalysisConfig) -> None:
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
