"""The paper's §3 analysis on any base/teacher pair: where the teacher disagrees, and whether
those few disagreements carry its whole accuracy gain.

The *teacher* is an RL-trained model (``--teacher MODEL``), or the base plus a trained adapter
(``--teacher-adapter DIR``, e.g. from ``reasonmaxxer train``/``run``), or both (a teacher
model plus an adapter on it). When the teacher is the base plus an adapter, one copy of the
weights is loaded and the base is the same network inside PEFT's ``disable_adapter()``.

``analyze disagree`` (§3.1, Table 2, Fig. 1)
    Teacher-force the base model's greedy rollouts through both models and classify every
    generated position: *unchanged* (teacher top-1 == base top-1), *reranked* (teacher top-1
    within the base top-5) or *shifted* (outside it). Reports per-class fractions, the mean
    base rank of the teacher's token, the mean base entropy per class, and how well the
    top-x% base-entropy positions find the reranked ones (precision/recall of the gate).

``analyze intervene`` (§3.2–3.3, Fig. 2)
    Greedy decoding from the base under token-substitution policies, with a step-wise decoder
    that runs both models with their own KV caches, batched over problems with per-row
    decisions: ``base`` (no substitution), ``teacher`` (the teacher's own greedy decoding),
    ``oracle`` (the teacher's top-1 wherever the two top-1s differ), ``random`` (at as many
    steps as the oracle changed on that problem, a token drawn uniformly from the base top-20
    without the base top-1; several seeds) and ``entropy`` (the teacher's top-1 wherever the
    base entropy exceeds τ; τ in nats, or a quantile of the base's own entropies).

Everything here is deterministic given the settings. Outputs go to ``OUT/``: ``disagree.json``
/ ``intervene.json`` (a ``table`` of row dicts, a ``summary`` dict, the resolved config, the
model identities and provenance), per-problem JSONL, ``config.yaml`` and ``plots/*.png``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DEVICE_RE, EvalConfig, PromptConfig, check_fields, dump_yaml, to_dict
from .devices import resolve_device
from .errors import UserError
from .io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, atomic_write_text

__all__ = [
    "CLASSES",
    "RERANKED",
    "SHIFTED",
    "UNCHANGED",
    "AnalysisConfig",
    "DisagreeConfig",
    "InterveneConfig",
    "ModelPair",
    "Policy",
    "auroc",
    "base_rank",
    "classify_positions",
    "disagreement_summary",
    "entropy_gate_overlap",
    "load_pair",
    "policy_decode",
    "random_plan",
    "run_disagree",
    "run_intervene",
]

UNCHANGED, RERANKED, SHIFTED = 0, 1, 2
CLASSES = ("unchanged", "reranked", "shifted")
DTYPES = ("float32", "bfloat16", "float16")
POLICIES = ("base", "teacher", "oracle", "random", "entropy")


# --------------------------------------------------------------------------- configs


def parse_floats(text: str | None, flag: str) -> list[float]:
    """``"0.5, 1,2e0"`` -> ``[0.5, 1.0, 2.0]``; empty -> ``[]``; junk is a :class:`UserError`."""
    out = []
    for piece in (text or "").replace(";", ",").split(","):
        piece = piece.strip()
        if not piece:
            continue
        try:
            out.append(float(piece))
        except ValueError:
            raise UserError(f"--{flag}: expected a comma list of numbers, got {piece!r}") from None
    return out


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise UserError(msg)


def _field(default: Any, help: str) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class AnalysisConfig:
    """What every analysis command shares: the model pair, the problems and the decoding."""

    model: str = _field("default", "base model: 'default', a HF id, a folder or a .gguf")
    teacher: str | None = _field(None, "teacher model (default: the base, with --teacher-adapter)")
    teacher_adapter: str | None = _field(None, "PEFT adapter applied to the teacher")
    dtype: str = _field("float32", "weights dtype of both models")
    device: str = _field(
        "auto", "where the models run: auto (cuda when available, else cpu), cpu, cuda, cuda:N, mps"
    )
    trust_remote_code: bool = _field(False, "allow the model repos' own code to run")
    threads: int | None = _field(None, "torch CPU threads (default: all cores)")
    benchmarks: str = _field(EvalConfig().benchmarks, "benchmark spec list (see `benchmarks`)")
    limit: int | None = _field(100, "only the first N problems of each benchmark")
    max_new_tokens: int = _field(256, "generation length limit")
    batch_size: int = _field(8, "sequences per forward pass / decoded together")
    grader_timeout: float = _field(5.0, "seconds per answer comparison")
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def __post_init__(self) -> None:
        check_fields(self)  # finite numbers
        _check(self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}")
        _check(
            DEVICE_RE.fullmatch(self.device) is not None,
            f"--device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}",
        )
        _check(self.grader_timeout > 0, "--grader-timeout must be > 0")
        _check(self.limit is None or self.limit >= 1, "--limit must be >= 1")
        _check(self.max_new_tokens >= 1, "--max-new-tokens must be >= 1")
        _check(self.batch_size >= 1, "--batch-size must be >= 1")
        _check(self.threads is None or self.threads >= 1, "--threads must be >= 1")
        _check(
            self.teacher is not None or self.teacher_adapter is not None,
            "give the teacher: --teacher MODEL and/or --teacher-adapter DIR",
        )


@dataclass
class DisagreeConfig(AnalysisConfig):
    batch_size: int = _field(4, "rollouts per teacher-forced forward pass")
    gen_batch_size: int = _field(32, "sequences generated together (base greedy rollouts)")
    rerank_k: int = _field(5, "'reranked' = teacher top-1 within this many base top tokens")
    gate_fracs: str = _field(
        "0.01,0.02,0.05,0.1,0.2", "entropy-gate overlap at these top fractions of positions"
    )
    backend: str = _field(
        "auto", "backend of the base greedy rollouts (auto: vllm on a CUDA GPU, else hf)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.backend in ("auto", "hf", "vllm"), "--backend: auto, hf or vllm")
        _check(self.rerank_k >= 2, "--rerank-k must be >= 2")
        _check(self.gen_batch_size >= 1, "--gen-batch-size must be >= 1")
        fr = parse_floats(self.gate_fracs, "gate-fracs")
        _check(all(0 < x <= 1 for x in fr), "--gate-fracs must lie in (0, 1]")

    @property
    def gate_frac_list(self) -> list[float]:
        return parse_floats(self.gate_fracs, "gate-fracs")


@dataclass
class InterveneConfig(AnalysisConfig):
    tau: str = _field("0.5,1.0,1.5,2.0", "entropy-gate thresholds in nats (comma list)")
    tau_fracs: str = _field(
        "", "also gate at the τ that marks these fractions of the base's greedy tokens"
    )
    random_k: int = _field(20, "random substitution draws from the base top-K minus its top-1")
    seeds: int = _field(3, "random-substitution seeds")
    seed: int = _field(0, "first random-substitution seed")
    policies: str = _field(
        "base,teacher,oracle,random,entropy", "which policies to run (comma list)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_floats(self.tau, "tau")
        fr = parse_floats(self.tau_fracs, "tau-fracs")
        _check(all(0 < x <= 1 for x in fr), "--tau-fracs must lie in (0, 1]")
        _check(self.random_k >= 2, "--random-k must be >= 2")
        _check(self.seeds >= 1, "--seeds must be >= 1")
        bad = [p for p in self.policy_list if p not in POLICIES]
        _check(not bad, f"--policies: unknown {', '.join(bad)}; choose from {', '.join(POLICIES)}")

    @property
    def tau_list(self) -> list[float]:
        return parse_floats(self.tau, "tau")

    @property
    def tau_frac_list(self) -> list[float]:
        return parse_floats(self.tau_fracs, "tau-fracs")

    @property
    def policy_list(self) -> list[str]:
        return [p.strip() for p in self.policies.split(",") if p.strip()]


# --------------------------------------------------------------------------- pure core


def base_rank(base_logits, tokens, chunk_size: int = 64):
    """1-based rank of ``tokens[t]`` in ``base_logits[t]`` (descending).

    Ties are broken by token id, lower first, exactly as ``argmax`` breaks them, so the rank
    is 1 if and only if the token is the base's argmax.

    Args:
        base_logits: ``[T, V]`` logits, any float dtype.
        tokens: ``[T]`` long token ids.

    Returns:
        ``[T]`` long ranks in ``1..V``.
    """
    import torch

    if base_logits.dim() != 2 or tokens.shape != base_logits.shape[:1]:
        raise ValueError(
            f"expected base_logits [T, V] and tokens [T], got {tuple(base_logits.shape)} "
            f"and {tuple(tokens.shape)}"
        )
    ids = torch.arange(base_logits.shape[-1], device=base_logits.device)  # [V]
    out = []
    for logits, tok in zip(
        base_logits.split(chunk_size), tokens.split(chunk_size), strict=True
    ):  # [c, V], [c]
        logits = logits.float()
        chosen = logits.gather(-1, tok[:, None])  # [c, 1]
        greater = (logits > chosen).sum(-1)  # [c]
        tied_before = ((logits == chosen) & (ids[None, :] < tok[:, None])).sum(-1)  # [c]
        out.append(greater + tied_before + 1)
    if not out:
        return torch.zeros(0, dtype=torch.long, device=base_logits.device)
    return torch.cat(out).long()


def classify_positions(base_logits, teacher_logits, rerank_k: int = 5):
    """Classify every position of a teacher-forced sequence by how the teacher's choice
    relates to the base's (paper §3.1).

    With ``b = argmax base_logits[t]``, ``y = argmax teacher_logits[t]`` and ``r`` the 1-based
    rank of ``y`` under ``base_logits[t]`` (ties broken by lower id first, as argmax does):

    - ``0`` unchanged: ``y == b`` (``r == 1``);
    - ``1`` reranked:  ``2 <= r <= rerank_k`` (the teacher promotes a base top-5 alternative);
    - ``2`` shifted:   ``r > rerank_k``.

    Args:
        base_logits: ``[T, V]`` base-model logits at the T generated positions.
        teacher_logits: ``[T, V]`` teacher logits at the same positions (same prefixes).
        rerank_k: the base top-k that counts as 'reranked' (paper: 5).

    Returns:
        ``(classes [T] long in {0, 1, 2}, base_rank_of_teacher_top1 [T] long, 1-based)``.
    """
    import torch

    if base_logits.shape != teacher_logits.shape or base_logits.dim() != 2:
        raise ValueError(
            f"base_logits {tuple(base_logits.shape)} and teacher_logits "
            f"{tuple(teacher_logits.shape)} must both be [T, V]"
        )
    teacher_top1 = teacher_logits.argmax(dim=-1)  # [T]
    rank = base_rank(base_logits, teacher_top1)  # [T]
    classes = torch.where(
        rank == 1,
        torch.full_like(rank, UNCHANGED),
        torch.where(
            rank <= rerank_k, torch.full_like(rank, RERANKED), torch.full_like(rank, SHIFTED)
        ),
    )
    return classes, rank


def auroc(scores, labels) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels`` (Mann–Whitney, ties count ½).

    Args:
        scores: ``[N]`` float. labels: ``[N]`` bool.

    Returns:
        ``P(score_pos > score_neg) + ½ P(=)``; None when either class is empty.
    """
    import torch

    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    values, order = scores.double().sort()
    _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()  # 1-based last rank of every tie group
    avg_rank = ends - (counts.double() - 1) / 2  # mean of the ranks in the group
    ranks = torch.empty_like(values)
    ranks[order] = avg_rank[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def entropy_gate_overlap(entropy, target, fracs: list[float]) -> list[dict]:
    """How well 'the top-x% highest-entropy positions' finds the ``target`` positions.

    For each x: the ``m = round(x · N)`` positions with the highest entropy (ties: the earlier
    position first) are the gate; ``precision = |gate ∩ target| / m``, ``recall = |gate ∩
    target| / |target|``, ``lift = precision / (|target| / N)`` (1 = no better than chance).

    Args:
        entropy: ``[N]`` pooled base entropies (nats). target: ``[N]`` bool.
        fracs: fractions x in (0, 1].

    Returns:
        One dict per x: ``frac, n_gated, tau (lowest gated entropy), precision, recall, lift``.
    """
    import torch

    n = entropy.numel()
    target = target.bool()
    n_target = int(target.sum())
    base_rate = n_target / n if n else 0.0
    order = torch.sort(entropy.float(), descending=True, stable=True).indices
    rows = []
    for x in fracs:
        m = min(n, round(x * n))
        gate = order[:m]
        hit = int(target[gate].sum()) if m else 0
        precision = hit / m if m else None
        rows.append(
            {
                "frac": x,
                "n_gated": m,
                "tau": float(entropy[gate[-1]]) if m else None,
                "precision": precision,
                "recall": hit / n_target if n_target else None,
                "lift": precision / base_rate if precision is not None and base_rate else None,
            }
        )
    return rows


def _mean(x) -> float | None:
    return float(x.double().mean()) if x.numel() else None


def _median(x) -> float | None:
    return float(x.double().median()) if x.numel() else None


def disagreement_summary(
    classes,
    ranks,
    entropy,
    *,
    gate_fracs: tuple[float, ...] | list[float] = (0.01, 0.02, 0.05, 0.1, 0.2),
) -> dict:
    """Table-2 statistics of pooled positions.

    Args:
        classes: ``[N]`` long in {0, 1, 2} (see :func:`classify_positions`).
        ranks: ``[N]`` long, base rank of the teacher's top-1.
        entropy: ``[N]`` float, base entropy (nats) at each position.
        gate_fracs: top fractions for :func:`entropy_gate_overlap`.

    Returns:
        A dict: ``positions``, per class ``count``/``frac``/``entropy_mean``/
        ``entropy_median``, ``mean_rank_reranked`` (over reranked positions),
        ``mean_rank_disagree`` (over reranked + shifted), ``entropy_ratio`` (mean reranked
        entropy / mean unchanged entropy), ``auroc_reranked`` (entropy as a detector of
        reranked vs unchanged), ``rank_hist`` (ranks 1..20 and '>20'), ``gate`` (overlap
        of the top-x% entropy positions with the reranked ones) and ``gate_disagree`` (the
        same against reranked + shifted).
    """
    import torch

    n = int(classes.numel())
    entropy = entropy.float()
    out: dict[str, Any] = {"positions": n}
    for c, name in enumerate(CLASSES):
        sel = classes == c
        out[name] = {
            "count": int(sel.sum()),
            "frac": int(sel.sum()) / n if n else 0.0,
            "entropy_mean": _mean(entropy[sel]),
            "entropy_median": _median(entropy[sel]),
        }
    rer = classes == RERANKED
    dis = classes != UNCHANGED
    out["mean_rank_reranked"] = _mean(ranks[rer])
    out["mean_rank_disagree"] = _mean(ranks[dis])
    h_u, h_r = out["unchanged"]["entropy_mean"], out["reranked"]["entropy_mean"]
    out["entropy_ratio"] = h_r / h_u if h_r is not None and h_u else None
    keep = classes != SHIFTED
    out["auroc_reranked"] = auroc(entropy[keep], rer[keep]) if n else None
    out["auroc_disagree"] = auroc(entropy, dis) if n else None
    hist = torch.bincount(ranks.clamp(max=21).long(), minlength=22)[1:].tolist()
    out["rank_hist"] = {**{str(r): hist[r - 1] for r in range(1, 21)}, ">20": hist[20]}
    out["gate"] = entropy_gate_overlap(entropy, rer, list(gate_fracs))
    out["gate_disagree"] = entropy_gate_overlap(entropy, dis, list(gate_fracs))
    return out


# --------------------------------------------------------------------------- the model pair


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
        self.eos_ids = _eos_ids(tokenizer, base, teacher)

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

    def vocab_size(self) -> int:
        """Logit columns both models have (padded LM heads may differ in width)."""
        return min(_out_features(self.base), _out_features(self.teacher))


def _out_features(model) -> int:
    head = model.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)


def _eos_ids(tokenizer, *models) -> list[int]:
    eos: list[int] = []
    for m in models:
        ids = m.generation_config.eos_token_id
        for i in [ids] if isinstance(ids, int) else list(ids or []):
            if i not in eos:
                eos.append(i)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    return eos


def _gen_model_config(cfg: AnalysisConfig, model: str, backend: str):
    """The generation settings of an analysis (its dtype, no adapter merging) as a ModelConfig."""
    from .config import ModelConfig

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
    from .models import load_model

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


# --------------------------------------------------------------------------- disagreement


def _rows_for_forcing(prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> list[dict]:
    """Rows in the shape :func:`reasonmaxxer.training.build_batch` reads."""
    return [
        {"prompt_ids": p, "completion_ids": c, "decision": [], "advantage": 0.0}
        for p, c in zip(prompt_ids, completion_ids, strict=True)
    ]


def forced_logits(model, rows: list[dict], device=None):
    """Teacher-force a left-padded batch; returns ``[B, T, V]`` float logits where row i's
    completion token j is predicted by ``logits[i, T - n_i + j]`` (``T`` = longest
    completion, ``n_i`` = row i's completion length). Only the last ``T + 1`` positions go
    through the LM head."""
    from .engine import build_batch, completion_logits

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
        rows = _rows_for_forcing([prompt_ids[i] for i in chunk], [completion_ids[i] for i in chunk])
        with torch.inference_mode():
            with pair.use("base") as m:
                base = forced_logits(m, rows, pair.device)
            with pair.use("teacher") as m:
                teacher = forced_logits(m, rows, pair.device)
        t_max = base.shape[1]
        for r, i in enumerate(chunk):
            start = t_max - len(completion_ids[i])
            yield i, base[r, start:, :vocab].float(), teacher[r, start:, :vocab].float()


def _prompts(tokenizer, problems, prompt_cfg: PromptConfig) -> list[str]:
    from .prompting import build_prompt

    return [build_prompt(tokenizer, p.problem, prompt_cfg) for p in problems]


def _problems(cfg: AnalysisConfig):
    from .data import load_benchmarks

    benches = load_benchmarks(cfg.benchmarks, limit=cfg.limit)
    problems = [p for ps in benches.values() for p in ps]
    if not problems:
        raise UserError(f"no problems in {cfg.benchmarks!r}")
    return list(benches), problems


def _set_threads(cfg: AnalysisConfig) -> None:
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)


def run_disagree(cfg: DisagreeConfig, out: str | Path) -> dict:
    """§3.1 on ``cfg``'s pair: writes ``disagree.json``, ``disagree_rows.jsonl``,
    ``config.yaml`` and ``plots/disagree_*.png`` into ``out``; returns the record."""
    import torch
    from tqdm.auto import tqdm

    from .evaluation import score_completions
    from .generation import HFGenerator, SamplingParams, make_generator, pick_backend
    from .losses import entropy_from_logits
    from .prompting import stop_strings
    from .runinfo import Timer, provenance

    out = Path(out)
    _set_threads(cfg)
    backend = pick_backend(cfg.backend)
    names, problems = _problems(cfg)
    with Timer() as wall:
        greedy = SamplingParams(cfg.max_new_tokens)
        if backend == "vllm":  # rollouts first, then the engine goes before torch loads the pair
            gen, _ = make_generator(
                _gen_model_config(cfg, cfg.model, backend), cfg.prompt, backend=backend
            )
            prompts = _prompts(gen.tokenizer, problems, cfg.prompt)
            comps = [c[0] for c in gen.generate(prompts, greedy, desc="base greedy")]
            gen.close()
        pair = load_pair(cfg)
        tok = pair.tokenizer
        prompts = _prompts(tok, problems, cfg.prompt)
        if backend == "hf":
            with pair.use("base") as base:
                gen = HFGenerator(
                    base, tok, batch_size=cfg.gen_batch_size, stop=stop_strings(tok, cfg.prompt)
                )
                comps = [c[0] for c in gen.generate(prompts, greedy, desc="base greedy")]
        graded = [
            r[0]
            for r in score_completions(problems, [[c] for c in comps], timeout_s=cfg.grader_timeout)
        ]
        per_row: dict[int, dict] = {}
        bar = tqdm(total=len(comps), desc="teacher-force", unit="seq", dynamic_ncols=True)
        for i, b_logits, t_logits in pair_logits(
            pair, [c.prompt_ids for c in comps], [c.token_ids for c in comps], cfg.batch_size
        ):
            classes, ranks = classify_positions(b_logits, t_logits, cfg.rerank_k)
            ent = entropy_from_logits(b_logits)
            match = b_logits.argmax(-1).cpu() == torch.tensor(comps[i].token_ids)
            per_row[i] = {
                "classes": classes.cpu(),
                "ranks": ranks.cpu(),
                "entropy": ent.cpu(),
                "match": match,
            }
            bar.update(1)
        bar.close()

    def pooled(indices: list[int]) -> tuple[dict, dict]:
        have = [i for i in indices if i in per_row]
        cat = {
            k: torch.cat([per_row[i][k] for i in have])
            if have
            else torch.zeros(0, dtype=torch.float32 if k == "entropy" else torch.long)
            for k in ("classes", "ranks", "entropy", "match")
        }
        s = disagreement_summary(
            cat["classes"], cat["ranks"], cat["entropy"], gate_fracs=cfg.gate_frac_list
        )
        s["problems"] = len(indices)
        s["base_pass@1"] = sum(graded[i]["correct"] for i in indices) / len(indices)
        s["timeouts"] = sum(graded[i]["timed_out"] for i in indices)  # grader time-outs
        s["base_top1_matches_rollout"] = _mean(cat["match"].double())
        s["entropy_all_mean"] = _mean(cat["entropy"])
        return s, cat

    table, summaries = [], {}
    groups = {name: [i for i, p in enumerate(problems) if p.benchmark == name] for name in names}
    if len(names) > 1:
        groups["all"] = list(range(len(problems)))
    cats = {}
    for name, indices in groups.items():
        s, cats[name] = pooled(indices)
        summaries[name] = s
        table.append(_table2_row(name, s))
    key = "all" if len(names) > 1 else names[0]
    summary = {
        "benchmark": key,
        **summaries[key],
        "per_benchmark": summaries if len(names) > 1 else None,
        "tokens": sum(len(c.token_ids) for c in comps),
        "wall_time_s": wall.seconds,
    }
    record = {
        "table": table,
        "summary": summary,
        "config": to_dict(cfg),
        "models": {"base": pair.base_info, "teacher": pair.teacher_info},
        "provenance": provenance(),
    }
    rows = []
    for i, (p, c) in enumerate(zip(problems, comps, strict=True)):
        r = per_row.get(i)
        rows.append(
            {
                "benchmark": p.benchmark,
                "id": p.id,
                "answer": p.answer,
                "completion": c.text,
                "correct": graded[i]["correct"],
                "n_tokens": len(c.token_ids),
                "token_ids": c.token_ids,
                "classes": r["classes"].tolist() if r else [],
                "teacher_rank": r["ranks"].tolist() if r else [],
                "entropy": [round(h, 5) for h in r["entropy"].tolist()] if r else [],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out / "disagree_rows.jsonl", rows)
    write_record(out, "disagree", record, cfg)
    plot_disagree(cats[key], summaries[key], out / "plots")
    return record


def _table2_row(name: str, s: dict) -> dict:
    return {
        "benchmark": name,
        "problems": s["problems"],
        "positions": s["positions"],
        "unchanged_frac": s["unchanged"]["frac"],
        "reranked_frac": s["reranked"]["frac"],
        "shifted_frac": s["shifted"]["frac"],
        "mean_rank_reranked": s["mean_rank_reranked"],
        "entropy_unchanged": s["unchanged"]["entropy_mean"],
        "entropy_reranked": s["reranked"]["entropy_mean"],
        "entropy_shifted": s["shifted"]["entropy_mean"],
        "entropy_ratio": s["entropy_ratio"],
        "auroc_reranked": s["auroc_reranked"],
        "base_pass@1": s["base_pass@1"],
    }


# --------------------------------------------------------------------------- intervention


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

        from .losses import entropy_from_logits

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


def completion_maker(pair: ModelPair, stop: list[str]):
    """An ``HFGenerator`` used only to turn generated ids into a completion exactly as
    generation does (cut after the first end-of-sequence id, decode, cut at a stop string),
    with the pair's end-of-sequence ids."""
    from .generation import HFGenerator

    gen = HFGenerator(pair.base, pair.tokenizer, stop=stop)
    gen.eos_ids = list(pair.eos_ids)
    return gen


def run_intervene(cfg: InterveneConfig, out: str | Path) -> dict:
    """§3.2–3.3 on ``cfg``'s pair: writes ``intervene.json``, ``intervene_samples.jsonl``,
    ``config.yaml`` and ``plots/intervene_pass1.png`` into ``out``; returns the record."""
    import torch

    from .grading import grade
    from .losses import decision_mask
    from .prompting import stop_strings
    from .runinfo import Timer, provenance
    from .stats import mcnemar_exact, wilson_interval

    out = Path(out)
    _set_threads(cfg)
    names, problems = _problems(cfg)
    wanted = cfg.policy_list
    if "random" in wanted and "oracle" not in wanted:
        wanted = [*wanted, "oracle"]  # the random control needs the oracle's counts
    if cfg.tau_frac_list and "base" not in wanted:
        wanted = [*wanted, "base"]  # quantile τ comes from the base's own entropies
    runs: list[dict] = []
    with Timer() as wall:
        pair = load_pair(cfg)
        tok = pair.tokenizer
        stops = stop_strings(tok, cfg.prompt)
        finisher = completion_maker(pair, stops)
        prompt_ids = [
            tok(p, add_special_tokens=False)["input_ids"]
            for p in _prompts(tok, problems, cfg.prompt)
        ]

        def run(policy: Policy) -> dict:
            rows = policy_decode(
                pair,
                prompt_ids,
                policy,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size,
                stop=stops,
                desc=policy.label,
            )
            for r, p in zip(rows, problems, strict=True):
                c = finisher._completion(r["token_ids"], [])
                r["text"], r["finish"] = c.text, c.finish
                g = grade(r["text"], p.answer, timeout_s=cfg.grader_timeout)
                r["correct"], r["extracted"], r["timed_out"] = g.correct, g.extracted, g.timed_out
            res = {"policy": policy.kind, "label": policy.label, "tau": policy.tau}
            res.update(seed=policy.seed, rows=rows)
            runs.append(res)
            return res

        by_kind: dict[str, dict] = {}
        for kind in ("base", "teacher", "oracle"):
            if kind in wanted:
                by_kind[kind] = run(Policy(kind))
        if "random" in wanted:
            oracle_rows = by_kind["oracle"]["rows"]
            k = min(cfg.random_k, pair.vocab_size())
            for s in range(cfg.seed, cfg.seed + cfg.seeds):
                plan = random_plan(
                    [p.id for p in problems],
                    [len(r["touched"]) for r in oracle_rows],
                    [len(r["token_ids"]) for r in oracle_rows],
                    seed=s,
                    k=k,
                )
                run(Policy("random", plan=plan, label=f"random s={s}", seed=s))
        taus = [(t, None) for t in cfg.tau_list]
        if cfg.tau_frac_list:
            pooled = torch.tensor([h for r in by_kind["base"]["rows"] for h in r["entropy"]])
            for q in cfg.tau_frac_list:
                _, t = decision_mask(
                    pooled[None, :], torch.ones(1, pooled.numel(), dtype=torch.bool), top_frac=q
                )
                taus.append((t, q))
        if "entropy" in wanted:
            for t, q in taus:
                label = f"entropy τ={t:.3g}" + (f" (top {100 * q:g}%)" if q is not None else "")
                res = run(Policy("entropy", tau=t, label=label))
                res["tau_frac"] = q

    base_correct = [r["correct"] for r in by_kind["base"]["rows"]] if "base" in by_kind else None
    teacher_texts = (
        [r["text"] for r in by_kind["teacher"]["rows"]] if "teacher" in by_kind else None
    )
    groups = {name: [i for i, p in enumerate(problems) if p.benchmark == name] for name in names}
    if len(names) > 1:
        groups["all"] = list(range(len(problems)))
    table = []
    for res in runs:
        for name, idx in groups.items():
            rows = [res["rows"][i] for i in idx]
            c = sum(r["correct"] for r in rows)
            steps = sum(len(r["token_ids"]) for r in rows)
            row = {
                "benchmark": name,
                "policy": res["policy"],
                "label": res["label"],
                "tau": res["tau"],
                "tau_frac": res.get("tau_frac"),
                "seed": res["seed"],
                "n": len(rows),
                "pass@1": c / len(rows),
                "pass@1_ci95": list(wilson_interval(c, len(rows))),
                "timeouts": sum(r["timed_out"] for r in rows),  # grader time-outs (not correct)
                "tokens": steps,
                "mean_tokens": steps / len(rows),
                "touched": sum(len(r["touched"]) for r in rows),
                "frac_touched": (
                    sum(len(r["touched"]) for r in rows) / steps
                    if steps and res["policy"] != "teacher"
                    else None
                ),
                "frac_gated": (
                    sum(len(r["gated"]) for r in rows) / steps
                    if steps and res["policy"] != "teacher"
                    else None
                ),
            }
            if base_correct is not None and res["policy"] != "base":
                row["vs_base"] = mcnemar_exact(
                    [base_correct[i] for i in idx], [r["correct"] for r in rows]
                )
            if teacher_texts is not None:
                row["same_text_as_teacher"] = sum(
                    r["text"] == teacher_texts[i] for i, r in zip(idx, rows, strict=True)
                ) / len(rows)
            table.append(row)
    key = "all" if len(names) > 1 else names[0]
    summary = _intervene_summary([r for r in table if r["benchmark"] == key], by_kind)
    summary.update(benchmark=key, wall_time_s=wall.seconds, problems=len(problems))
    record = {
        "table": table,
        "summary": summary,
        "config": to_dict(cfg),
        "models": {"base": pair.base_info, "teacher": pair.teacher_info},
        "eos_ids": pair.eos_ids,
        "provenance": provenance(),
    }
    samples = []
    for res in runs:
        for p, r in zip(problems, res["rows"], strict=True):
            samples.append(
                {
                    "benchmark": p.benchmark,
                    "id": p.id,
                    "answer": p.answer,
                    "policy": res["policy"],
                    "label": res["label"],
                    "tau": res["tau"],
                    "seed": res["seed"],
                    "completion": r["text"],
                    "extracted": r["extracted"],
                    "correct": r["correct"],
                    "timed_out": r["timed_out"],
                    "finish": r["finish"],
                    "n_tokens": len(r["token_ids"]),
                    "touched_steps": r["touched"],
                    "gated": len(r["gated"]),
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out / "intervene_samples.jsonl", samples)
    write_record(out, "intervene", record, cfg)
    plot_intervene([r for r in table if r["benchmark"] == key], out / "plots")
    return record


def _intervene_summary(rows: list[dict], by_kind: dict[str, dict]) -> dict:
    """The Fig.-2 numbers: base, teacher, oracle, random (mean ± sd over seeds), entropy."""
    get = {r["policy"]: r for r in rows if r["policy"] in ("base", "teacher", "oracle")}
    s: dict[str, Any] = {
        f"{k}_pass@1": get[k]["pass@1"] if k in get else None for k in ("base", "teacher")
    }
    if "oracle" in get:
        s["oracle_pass@1"] = get["oracle"]["pass@1"]
        s["oracle_frac_touched"] = get["oracle"]["frac_touched"]
        if "teacher" in by_kind:
            same = sum(
                o["token_ids"] == t["token_ids"]
                for o, t in zip(by_kind["oracle"]["rows"], by_kind["teacher"]["rows"], strict=True)
            )
            s["oracle_equals_teacher"] = same / len(by_kind["oracle"]["rows"])
    rnd = [r for r in rows if r["policy"] == "random"]
    if rnd:
        acc = [r["pass@1"] for r in rnd]
        mean = sum(acc) / len(acc)
        s["random_pass@1_mean"] = mean
        s["random_pass@1_sd"] = (
            math.sqrt(sum((a - mean) ** 2 for a in acc) / (len(acc) - 1)) if len(acc) > 1 else 0.0
        )
        s["random_frac_touched"] = sum(r["frac_touched"] or 0 for r in rnd) / len(rnd)
    gap = (
        s["teacher_pass@1"] - s["base_pass@1"]
        if s.get("teacher_pass@1") is not None and s.get("base_pass@1") is not None
        else None
    )
    s["entropy"] = [
        {
            "tau": r["tau"],
            "tau_frac": r["tau_frac"],
            "pass@1": r["pass@1"],
            "frac_gated": r["frac_gated"],
            "frac_touched": r["frac_touched"],
            "gap_recovered": (r["pass@1"] - s["base_pass@1"]) / gap if gap else None,
        }
        for r in rows
        if r["policy"] == "entropy"
    ]
    return s


# --------------------------------------------------------------------------- outputs & plots


def write_record(out: Path, name: str, record: dict, cfg: Any) -> None:
    """``OUT/<name>.json`` and ``OUT/config.yaml`` (the resolved settings), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    atomic_write_json(out / f"{name}.json", record)


def save_figure(fig, path: Path) -> None:
    """Render ``fig`` to PNG and write it atomically (temp file + rename); closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


COLORS = {"unchanged": "#9e9e9e", "reranked": "#1f77b4", "shifted": "#d62728"}


def plot_disagree(cat: dict, summary: dict, plots: Path) -> list[Path]:
    """Fig. 1-style plots: base entropy per class (log-y and log-x), the base rank of the
    teacher's token, and the entropy gate's precision/recall."""
    import numpy as np

    plt = _pyplot()
    classes, entropy = cat["classes"].numpy(), cat["entropy"].numpy()
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    h_max = float(entropy.max()) if entropy.size else 1.0
    lin_bins = np.linspace(0, max(h_max, 1e-3), 41)
    log_bins = np.logspace(-4, np.log10(max(h_max, 1e-3)) + 0.01, 41)
    for c, name in enumerate(CLASSES):
        h = entropy[classes == c]
        if not h.size:
            continue
        lbl = f"{name} ({100 * summary[name]['frac']:.2f}%, mean H {h.mean():.2f})"
        kw = {"histtype": "step", "density": True, "color": COLORS[name], "linewidth": 1.6}
        axes[0].hist(h, bins=lin_bins, label=lbl, **kw)
        axes[1].hist(np.clip(h, 1e-4, None), bins=log_bins, label=lbl, **kw)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("base entropy (nats)")
    axes[0].set_ylabel("density (log)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("base entropy (nats, log; clipped at 1e-4)")
    axes[1].set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Base entropy by disagreement class ({summary['positions']} positions)")
    paths.append(plots / "disagree_entropy.png")
    save_figure(fig, paths[-1])

    fig, ax = plt.subplots(figsize=(7, 3.6))
    hist = summary["rank_hist"]
    labels = [k for k in hist if k != "1"]
    ax.bar(labels, [hist[k] for k in labels], color=COLORS["reranked"])
    ax.set_xlabel("base rank of the teacher's top-1 (disagreeing positions)")
    ax.set_ylabel("positions")
    mr = summary["mean_rank_reranked"]
    ax.set_title(f"mean rank at reranked positions: {mr:.2f}" if mr else "no disagreements")
    paths.append(plots / "disagree_rank.png")
    save_figure(fig, paths[-1])

    fig, ax = plt.subplots(figsize=(6, 3.6))
    gate = summary["gate"]
    xs = [100 * g["frac"] for g in gate]
    ax.plot(xs, [g["precision"] or 0 for g in gate], "o-", label="precision")
    ax.plot(xs, [g["recall"] or 0 for g in gate], "s-", label="recall")
    ax.axhline(summary["reranked"]["frac"], color="grey", ls=":", label="chance precision")
    ax.set_xscale("log")
    ax.set_xlabel("top x% base-entropy positions")
    ax.set_ylabel("vs reranked positions")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    paths.append(plots / "entropy_gate.png")
    save_figure(fig, paths[-1])
    return paths


def plot_intervene(rows: list[dict], plots: Path) -> Path:
    """Fig. 2-style bars: pass@1 per policy, annotated with the fraction of tokens touched."""
    plt = _pyplot()
    bars: list[tuple[str, float, float, float | None, str]] = []  # label, acc, err, frac, color
    for kind, color in (("base", "#9e9e9e"), ("teacher", "#2ca02c"), ("oracle", "#ff7f0e")):
        for r in rows:
            if r["policy"] == kind:
                bars.append((kind, r["pass@1"], 0.0, r["frac_touched"], color))
    rnd = [r for r in rows if r["policy"] == "random"]
    if rnd:
        acc = [r["pass@1"] for r in rnd]
        mean = sum(acc) / len(acc)
        sd = math.sqrt(sum((a - mean) ** 2 for a in acc) / max(len(acc) - 1, 1))
        frac = sum(r["frac_touched"] or 0 for r in rnd) / len(rnd)
        bars.append((f"random\n({len(rnd)} seeds)", mean, sd, frac, "#d62728"))
    for r in rows:
        if r["policy"] == "entropy":
            bars.append((f"H>{r['tau']:.2g}", r["pass@1"], 0.0, r["frac_touched"], "#1f77b4"))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(bars) + 2), 4))
    xs = range(len(bars))
    ax.bar(
        xs,
        [100 * b[1] for b in bars],
        yerr=[100 * b[2] for b in bars],
        color=[b[4] for b in bars],
        capsize=3,
    )
    for x, b in zip(xs, bars, strict=True):
        if b[3] is not None and b[0] != "base":
            ax.annotate(
                f"{100 * b[3]:.1f}%",
                (x, 100 * b[1]),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 3),
                textcoords="offset points",
            )
    for kind, style in (("base", ":"), ("teacher", "--")):
        for r in rows:
            if r["policy"] == kind:
                ax.axhline(100 * r["pass@1"], color="black", ls=style, lw=0.8, label=kind)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([b[0] for b in bars], fontsize=8)
    ax.set_ylabel("greedy pass@1 (%)")
    ax.set_ylim(0, max(5.0, 1.2 * max(100 * (b[1] + b[2]) for b in bars)) if bars else 100)
    ax.set_title("Token substitution during base decoding (labels: % of tokens changed)")
    ax.legend(fontsize=8)
    path = plots / "intervene_pass1.png"
    save_figure(fig, path)
    return path
