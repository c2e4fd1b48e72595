"""``reasonmaxxer distill``: KL-LoRA distillation of a teacher into a LoRA on the base (§4).

1. The teacher (``--teacher MODEL`` and/or ``--teacher-adapter DIR``, as in ``analyze``)
   generates its own rollouts on N training problems (default 100, drawn with a seed; greedy
   by default, ``--temperature`` > 0 samples).
2. Teacher-forcing those rollouts through the teacher, its top-k log-probabilities (k = 64 by
   default) at every completion position are cached in ``OUT/teacher_cache/``:
   ``topk.safetensors`` (``ids`` int32 ``[P, k]``, ``logprobs`` float32/float16 ``[P, k]``,
   P = all completion positions, concatenated), ``index.jsonl`` (one row per rollout: ids,
   text, verdict, ``offset``/``length`` into the tensors) and ``meta.json`` (the settings that
   made it; a re-run with the same settings reuses the cache). No pickle anywhere.
3. A fresh LoRA on the base (rank-32 QKVO by default; ``--lora-r 8 --lora-targets o_proj``
   for the small variant) is trained to minimise ``KL(teacher ‖ student)`` on the top-k ids
   plus one tail bucket (:func:`reasonmaxxer.losses.topk_tail_kl`), averaged over completion
   tokens, with bf16 autocast as in ``reasonmaxxer train``.
4. Greedy pass@1 of the student (base + new adapter), the teacher and the base on the eval
   benchmarks, each through :func:`reasonmaxxer.evaluation.evaluate` (``OUT/eval_*``).

Writes ``distill.json`` (``table`` + ``summary``), ``distill_log.jsonl``, ``adapter/``,
``config.yaml`` and ``plots/distill_*.png``. The defaults for the learning rate and the number
of epochs are not the paper's (it gives none); measure them for a new pair.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .analysis.config import AnalysisConfig
from .analysis.outputs import pyplot, save_figure, write_record
from .analysis.pair import (
    build_prompts,
    forced_logits,
    gen_model_config,
    rows_for_forcing,
    set_threads,
)
from .config import to_dict
from .devices import resolve_device
from .errors import UserError
from .fields import check, help_field
from .io import atomic_write_json, atomic_write_jsonl, iter_jsonl, read_json

CACHE = "teacher_cache"
TOPK_FILE = "topk.safetensors"
INDEX_FILE = "index.jsonl"
META_FILE = "meta.json"
ADAPTER = "adapter"
CHECKPOINT = "distill_checkpoint"
# settings that do not change what the student learns (a checkpoint survives changing them)
NOT_TRAINING = (
    "checkpoint_every",
    "eval",
    "backend",
    "threads",
    "benchmarks",
    "limit",
    "report_to",
)


@dataclass
class DistillConfig(AnalysisConfig):
    train: str = help_field(
        "arith:level=2,split=train", "problems the teacher's rollouts come from"
    )
    n_problems: int = help_field(100, "training problems (drawn at random with --problem-seed)")
    problem_seed: int = help_field(0, "seed for drawing the training problems")
    temperature: float = help_field(0.0, "teacher rollout temperature (0 = greedy)")
    top_p: float = help_field(1.0, "nucleus sampling for T > 0 rollouts")
    gen_batch_size: int = help_field(32, "sequences generated together")
    top_k: int = help_field(64, "teacher log-probs cached per position")
    cache_dtype: str = help_field("float32", "dtype of the cached log-probs (float32 | float16)")
    lora_r: int = help_field(32, "LoRA rank")
    lora_alpha: int | None = help_field(None, "LoRA alpha (default: 2 × rank)")
    lora_dropout: float = help_field(0.0, "LoRA dropout")
    lora_targets: str = help_field("q_proj,k_proj,v_proj,o_proj", "modules to adapt (comma list)")
    lr: float = help_field(2e-4, "AdamW learning rate")
    weight_decay: float = help_field(0.0, "AdamW weight decay")
    epochs: float = help_field(3.0, "passes over the teacher's rollouts")
    max_steps: int | None = help_field(None, "stop after this many optimizer steps")
    train_batch_size: int = help_field(4, "rollouts per training forward pass")
    grad_accum: int = help_field(2, "forward passes per optimizer step")
    warmup_steps: int = help_field(5, "linear learning-rate warm-up")
    max_grad_norm: float = help_field(1.0, "gradient clipping")
    autocast: str = help_field(
        "auto",
        "mixed precision of the training forward (auto | bfloat16 | off; auto: where native)",
    )
    seed: int = help_field(0, "rollout sampling / adapter init / shuffling seed")
    checkpoint_every: int = help_field(
        20, "save a resumable training checkpoint every N optimizer steps (0: never)"
    )
    eval: bool = help_field(True, "evaluate student, teacher and base on --benchmarks")
    backend: str = help_field(
        "auto", "generation backend of the teacher rollouts and the evaluation (auto | hf | vllm)"
    )
    report_to: str = help_field(
        "none", "live tracker mirroring each step's log row (none | trackio | wandb | tensorboard)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n_problems >= 1, "--n-problems must be >= 1")
        check(self.temperature >= 0, "--temperature must be >= 0")
        check(0 < self.top_p <= 1, "--top-p must be in (0, 1]")
        check(self.top_k >= 1, "--top-k must be >= 1")
        check(self.cache_dtype in ("float32", "float16"), "--cache-dtype: float32 or float16")
        check(self.lora_r >= 1, "--lora-r must be >= 1")
        check(bool(self.lora_targets.strip()), "--lora-targets must name at least one module")
        check(self.lr > 0 and self.epochs > 0, "need --lr > 0 and --epochs > 0")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(self.max_grad_norm > 0, "--max-grad-norm must be > 0")
        check(self.warmup_steps >= 0, "--warmup-steps must be >= 0")
        check(0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)")
        check(self.lora_alpha is None or self.lora_alpha >= 1, "--lora-alpha must be >= 1")
        check(self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1")
        check(self.checkpoint_every >= 0, "--checkpoint-every must be >= 0")
        check(
            self.train_batch_size >= 1 and self.grad_accum >= 1 and self.gen_batch_size >= 1,
            "batch sizes and --grad-accum must be >= 1",
        )
        check(self.autocast in ("auto", "bfloat16", "off"), "--autocast: auto, bfloat16 or off")
        from .devices import resolve_precision

        self.autocast = resolve_precision(self.autocast, self.device, fallback="off")
        check(self.backend in ("auto", "hf", "vllm"), "--backend: auto, hf or vllm")
        check(
            self.report_to in ("none", "trackio", "wandb", "tensorboard"),
            "--report-to: none, trackio, wandb or tensorboard",
        )

    @property
    def alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_r


# --------------------------------------------------------------------------- problems & cache


def choose_problems(cfg: DistillConfig):
    """``n_problems`` problems of ``cfg.train`` drawn without replacement with
    ``problem_seed`` (all of them, in order, when there are no more)."""
    from .data import load_benchmarks

    problems = [p for ps in load_benchmarks(cfg.train).values() for p in ps]
    if not problems:
        raise UserError(f"no problems in {cfg.train!r}")
    if len(problems) <= cfg.n_problems:
        return problems
    idx = sorted(random.Random(cfg.problem_seed).sample(range(len(problems)), cfg.n_problems))
    return [problems[i] for i in idx]


def _cache_key(cfg: DistillConfig, problems) -> dict:
    from .generation import pick_backend
    from .models import resolve_model

    backend = pick_backend(cfg.backend, adapter=cfg.teacher_adapter)
    teacher = cfg.teacher or cfg.model
    kind, location, fingerprint = resolve_model(teacher)
    adapter_fp = None
    if cfg.teacher_adapter:
        path = Path(cfg.teacher_adapter) / "adapter_model.safetensors"
        if path.is_file():
            st = path.stat()
            adapter_fp = f"{st.st_size}-{int(st.st_mtime)}"
    return {
        "teacher": teacher,
        "teacher_location": location,
        "teacher_fingerprint": fingerprint,
        "teacher_adapter": cfg.teacher_adapter,
        "teacher_adapter_stat": adapter_fp,
        "base": cfg.model,
        "dtype": cfg.dtype,
        "problems": [p.id for p in problems],
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "seed": cfg.seed,
        "max_new_tokens": cfg.max_new_tokens,
        "top_k": cfg.top_k,
        "cache_dtype": cfg.cache_dtype,
        "prompt": to_dict(cfg.prompt),
        # named only off HF, so caches built before there was a choice keep their key
        **({} if backend == "hf" else {"rollout_backend": backend}),
    }


def load_cache(cache: Path) -> tuple[list[dict], Any, Any]:
    """``(index rows, ids [P, k] int32, logprobs [P, k])`` of a finished cache."""
    from safetensors.torch import load_file

    tensors = load_file(str(cache / TOPK_FILE))
    return list(iter_jsonl(cache / INDEX_FILE)), tensors["ids"], tensors["logprobs"]


def _save_tensors(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_cache(cfg: DistillConfig, problems, cache: Path) -> dict:
    """Teacher rollouts on ``problems`` + their top-k log-probs, written to ``cache``.

    Returns the teacher-rollout statistics. ``meta.json`` is written last: a cache without it
    is unfinished and rebuilt.
    """
    import torch
    from tqdm.auto import tqdm

    from .evaluation import score_completions
    from .generation import HFGenerator, SamplingParams, make_generator, pick_backend
    from .models import load_model, load_tokenizer, resolve_model
    from .prompting import stop_strings
    from .runinfo import Timer

    backend = pick_backend(cfg.backend, adapter=cfg.teacher_adapter)
    key = _cache_key(cfg, problems)
    (cache / META_FILE).unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    with Timer() as wall:
        params = SamplingParams(cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
        if backend == "vllm":  # rollouts first, then the engine goes before torch loads
            gen, _ = make_generator(
                gen_model_config(cfg, cfg.teacher or cfg.model, backend),
                cfg.prompt,
                adapter=cfg.teacher_adapter,
                seed=cfg.seed,
                backend=backend,
            )
            prompts = build_prompts(gen.tokenizer, problems, cfg.prompt)
            comps = [
                c[0] for c in gen.generate(prompts, params, seed=cfg.seed, desc="teacher rollouts")
            ]
            gen.close()
        teacher, t_tok, info = load_model(
            cfg.teacher or cfg.model,
            adapter=cfg.teacher_adapter,
            dtype=cfg.dtype,
            trust_remote_code=cfg.trust_remote_code,
            device=resolve_device(cfg.device),
        )
        tok = t_tok
        if cfg.teacher and cfg.teacher != cfg.model:
            tok = load_tokenizer(
                resolve_model(cfg.model)[1], trust_remote_code=cfg.trust_remote_code
            )
            if tok.get_vocab() != t_tok.get_vocab():
                raise UserError(
                    f"the teacher {cfg.teacher!r} has another tokenizer than the base "
                    f"{cfg.model!r}: distillation on token ids needs a shared vocabulary"
                )
        prompts = build_prompts(tok, problems, cfg.prompt)  # the base's prompt format
        if backend == "hf":
            gen = HFGenerator(
                teacher, tok, batch_size=cfg.gen_batch_size, stop=stop_strings(tok, cfg.prompt)
            )
            comps = [
                c[0] for c in gen.generate(prompts, params, seed=cfg.seed, desc="teacher rollouts")
            ]
        graded = [
            r[0]
            for r in score_completions(problems, [[c] for c in comps], timeout_s=cfg.grader_timeout)
        ]
        vocab = teacher.get_output_embeddings().weight.shape[0]
        k = min(cfg.top_k, vocab)
        store = torch.float16 if cfg.cache_dtype == "float16" else torch.float32
        todo = [i for i, c in enumerate(comps) if c.token_ids]
        todo.sort(key=lambda i: (len(comps[i].prompt_ids) + len(comps[i].token_ids), i))
        ids_out: dict[int, Any] = {}
        lp_out: dict[int, Any] = {}
        bar = tqdm(total=len(todo), desc="teacher top-k", unit="seq", dynamic_ncols=True)
        with torch.inference_mode():
            for b in range(0, len(todo), cfg.batch_size):
                chunk = todo[b : b + cfg.batch_size]
                rows = rows_for_forcing(
                    [comps[i].prompt_ids for i in chunk], [comps[i].token_ids for i in chunk]
                )
                logits = forced_logits(teacher, rows, teacher.device)  # [B, T, V]
                t_max = logits.shape[1]
                for r, i in enumerate(chunk):
                    row = logits[r, t_max - len(comps[i].token_ids) :].float()  # [n, V]
                    top = torch.log_softmax(row, dim=-1).topk(k, dim=-1)
                    ids_out[i] = top.indices.to(torch.int32).cpu()
                    lp_out[i] = top.values.to(store).cpu()
                bar.update(len(chunk))
        bar.close()
        del teacher

    index, offset = [], 0
    for i, (p, c, g) in enumerate(zip(problems, comps, graded, strict=True)):
        n = len(c.token_ids)
        index.append(
            {
                "problem_id": p.id,
                "benchmark": p.benchmark,
                "answer": p.answer,
                "prompt_ids": c.prompt_ids,
                "completion_ids": c.token_ids,
                "completion": c.text,
                "correct": g["correct"],
                "finish": c.finish,
                "offset": offset,
                "length": n if i in ids_out else 0,
            }
        )
        offset += n if i in ids_out else 0
    order = [i for i in range(len(comps)) if i in ids_out]
    tensors = {
        "ids": torch.cat([ids_out[i] for i in order])
        if order
        else torch.zeros(0, k, dtype=torch.int32),
        "logprobs": torch.cat([lp_out[i] for i in order])
        if order
        else torch.zeros(0, k, dtype=store),
    }
    _save_tensors(cache / TOPK_FILE, tensors)
    atomic_write_jsonl(cache / INDEX_FILE, index)
    stats = {
        "rollouts": len(comps),
        "positions": offset,
        "k": k,
        "teacher_train_pass@1": sum(g["correct"] for g in graded) / len(graded),
        "mean_tokens": offset / max(len(comps), 1),
        "truncated": sum(c.finish == "length" for c in comps),
        "teacher": info.to_dict(),
        "wall_time_s": wall.seconds,
    }
    atomic_write_json(cache / META_FILE, {"key": key, "stats": stats})
    return stats


def ensure_cache(cfg: DistillConfig, problems, cache: Path) -> tuple[dict, bool]:
    """``(teacher-rollout stats, reused)``: the cache in ``cache`` if its settings match,
    else a new one."""
    meta = cache / META_FILE
    if meta.is_file() and (cache / TOPK_FILE).is_file() and (cache / INDEX_FILE).is_file():
        m = read_json(meta)
        if m.get("key") == _cache_key(cfg, problems):
            return m["stats"], True
    return build_cache(cfg, problems, cache), False


# --------------------------------------------------------------------------- training


def teacher_targets(batch_rows: list[dict], ids, logprobs, t_max: int, k: int):
    """Teacher top-k tensors aligned with :func:`reasonmaxxer.training.build_batch`'s targets.

    Row i's completion token j sits at target index ``t_max - n_i + j``. Padding positions get
    the distinct ids ``0..k-1`` at uniform log-probs (finite, and masked out of the loss).

    Returns:
        ``(logprobs [B, T, k] float32, ids [B, T, k] long)``.
    """
    import torch

    b = len(batch_rows)
    out_ids = torch.arange(k, dtype=torch.long).expand(b, t_max, k).clone()
    out_lp = torch.full((b, t_max, k), -math.log(k), dtype=torch.float32)
    for r, row in enumerate(batch_rows):
        n, o = row["length"], row["offset"]
        out_ids[r, t_max - n :] = ids[o : o + n].long()
        out_lp[r, t_max - n :] = logprobs[o : o + n].float()
    return out_lp, out_ids


def distill_step(model, batch: dict, t_lp, t_ids, *, autocast: bool):
    """One micro-batch: ``(loss, stats)`` with loss = mean KL(teacher ‖ student) over the
    completion tokens (top-k + tail bucket)."""
    import torch

    from .engine import completion_logits
    from .losses import masked_mean, topk_tail_kl

    device = model.device
    ctx = torch.autocast(
        "cpu" if device.type == "cpu" else device.type, dtype=torch.bfloat16, enabled=autocast
    )
    with ctx:
        logits = completion_logits(model, batch)
    logits = logits.float()  # [B, T, V]
    if int(t_ids.max()) >= logits.shape[-1]:
        raise UserError(
            f"the teacher's token ids reach {int(t_ids.max())} but the student has only "
            f"{logits.shape[-1]} logits: the models do not share a vocabulary"
        )
    completion = batch["completion"].to(device)
    kl = topk_tail_kl(t_lp.to(device), t_ids.to(device), logits)  # [B, T]
    loss = masked_mean(kl, completion)
    with torch.no_grad():
        agree = (logits.argmax(-1) == t_ids[..., 0].to(device))[completion]
        stats = {
            "kl": float(loss),
            "top1_agree": float(agree.float().mean()) if agree.numel() else 0.0,
            "tokens": int(completion.sum()),
        }
    return loss, stats


def train_student(cfg: DistillConfig, rows: list[dict], ids, logprobs, out: Path) -> dict:
    """Train a fresh LoRA on the base against the cached teacher; saves ``out/adapter``."""
    import torch

    from .config import RunConfig, TrainConfig
    from .engine import build_batch
    from .models import load_model
    from .runinfo import Timer
    from .training import lora_model, optimize, remove_checkpoint, save_adapter

    rows = [{**r, "decision": [], "advantage": 0.0} for r in rows if r["length"] > 0]
    if not rows:
        raise UserError("the teacher produced no completion tokens to distil")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model, _, info = load_model(
        cfg.model,
        dtype=cfg.dtype,
        trust_remote_code=cfg.trust_remote_code,
        device=resolve_device(cfg.device),
    )
    lora_cfg = RunConfig(
        train=TrainConfig(
            lora_r=cfg.lora_r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.lora_dropout,
            lora_targets=cfg.lora_targets,
        )
    )
    model = lora_model(model, lora_cfg)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    base_params = total - trainable
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    k = ids.shape[1]

    def micro_loss(micro: list[dict]):
        batch = build_batch(micro)
        t_lp, t_ids = teacher_targets(micro, ids, logprobs, batch["targets"].shape[1], k)
        return distill_step(model, batch, t_lp, t_ids, autocast=cfg.autocast == "bfloat16")

    # a checkpoint is valid for the same teacher cache and training settings
    settings = {n: v for n, v in to_dict(cfg).items() if n not in NOT_TRAINING}
    scope = [read_json(out / CACHE / META_FILE)["key"], settings]
    from .tracking import open_tracker

    tracker = open_tracker(cfg.report_to, out, name=f"distill {out.name}", config=to_dict(cfg))
    with Timer() as wall:
        steps, _, log = optimize(
            model,
            opt,
            rows,
            micro_loss=micro_loss,
            epochs=cfg.epochs,
            max_steps=cfg.max_steps,
            batch_size=cfg.train_batch_size,
            grad_accum=cfg.grad_accum,
            lr=cfg.lr,
            warmup_steps=cfg.warmup_steps,
            max_grad_norm=cfg.max_grad_norm,
            rng=rng,
            log_path=out / "distill_log.jsonl",
            checkpoint=out / CHECKPOINT,
            checkpoint_every=cfg.checkpoint_every,
            checkpoint_scope=scope,
            desc="distill",
            postfix=lambda acc: {"kl": f"{acc['kl']:.4f}", "agree": f"{acc['top1_agree']:.3f}"},
            summed=("tokens",),
            tracker=tracker,
        )
    tracker.finish()
    model.eval()
    save_adapter(model, out / ADAPTER)
    remove_checkpoint(out / CHECKPOINT)
    tail = log[-max(1, len(log) // 10) :]
    return {
        "steps": steps,
        "rollouts": len(rows),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_frac": trainable / total,
        "trainable_frac_of_base": trainable / base_params if base_params else None,
        "lora_r": cfg.lora_r,
        "lora_alpha": cfg.alpha,
        "lora_targets": cfg.lora_targets,
        "kl_first": log[0]["train/kl"],
        "kl_last": sum(r["train/kl"] for r in tail) / len(tail),
        "top1_agree_first": log[0]["train/top1_agree"],
        "top1_agree_last": sum(r["train/top1_agree"] for r in tail) / len(tail),
        "wall_time_s": wall.seconds,
        "model": info.to_dict(),
        "log": log,
    }


# --------------------------------------------------------------------------- evaluation


def _evaluate(cfg: DistillConfig, model: str, adapter: str | None, out: Path, label: str) -> dict:
    from .config import EvalConfig, ModelConfig
    from .evaluation import evaluate

    model_cfg = ModelConfig(
        model=model,
        gen_dtype=cfg.dtype,
        backend=cfg.backend,
        trust_remote_code=cfg.trust_remote_code,
        threads=cfg.threads,
    )
    eval_cfg = EvalConfig(
        benchmarks=cfg.benchmarks,
        limit=cfg.limit,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.gen_batch_size,
        grader_timeout=cfg.grader_timeout,
    )
    return evaluate(model_cfg, cfg.prompt, eval_cfg, out, adapter=adapter, label=label)


def _greedy_correct(eval_dir: Path) -> dict[tuple[str, str], bool]:
    return {
        (r["benchmark"], r["id"]): bool(r["correct"])
        for r in iter_jsonl(eval_dir / "samples.jsonl")
        if r["sample"] == "greedy"
    }


def run_distill(cfg: DistillConfig, out: str | Path) -> dict:
    """The whole §4 diagnostic on ``cfg``; writes ``distill.json`` etc. into ``out``."""
    import gc

    from .generation import pick_backend
    from .runinfo import Timer, provenance
    from .stats import mcnemar_exact

    pick_backend(cfg.backend, adapter=cfg.teacher_adapter)  # a bad --backend fails before work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_threads(cfg)
    with Timer() as wall:
        problems = choose_problems(cfg)
        cache_stats, reused = ensure_cache(cfg, problems, out / CACHE)
        rows, ids, logprobs = load_cache(out / CACHE)
        gc.collect()
        train = train_student(cfg, rows, ids, logprobs, out)
        gc.collect()
        evals: dict[str, dict] = {}
        if cfg.eval:
            evals["student"] = _evaluate(
                cfg, cfg.model, str(out / ADAPTER), out / "eval_student", "student"
            )
            evals["teacher"] = _evaluate(
                cfg, cfg.teacher or cfg.model, cfg.teacher_adapter, out / "eval_teacher", "teacher"
            )
            evals["base"] = _evaluate(cfg, cfg.model, None, out / "eval_base", "base")

    table = []
    for who, rec in evals.items():
        for name, r in rec["benchmarks"].items():
            table.append(
                {
                    "model": who,
                    "benchmark": name,
                    "n": r["n"],
                    "pass@1": r["pass@1"],
                    "pass@1_ci95": r["pass@1_ci95"],
                    "mean_tokens": r["mean_tokens"],
                    "truncated": r["truncated"],
                    "trainable_frac": train["trainable_frac"] if who == "student" else None,
                }
            )
    log = train.pop("log")
    summary: dict[str, Any] = {
        **{k: v for k, v in train.items() if k != "model"},
        "teacher_rollouts": {k: v for k, v in cache_stats.items() if k != "teacher"},
        "cache_reused": reused,
        "wall_time_s": wall.seconds,
    }
    if evals:
        correct = {who: _greedy_correct(out / f"eval_{who}") for who in evals}
        per_bench = {}
        for name in evals["student"]["benchmarks"]:
            acc = {who: evals[who]["benchmarks"][name]["pass@1"] for who in evals}
            gap = acc["teacher"] - acc["base"]
            keys = sorted(k for k in correct["student"] if k[0] == name)
            per_bench[name] = {
                **{f"{who}_pass@1": a for who, a in acc.items()},
                "student_minus_teacher": acc["student"] - acc["teacher"],
                "gap_closed": (acc["student"] - acc["base"]) / gap if gap else None,
                "student_vs_teacher": mcnemar_exact(
                    [correct["teacher"][k] for k in keys], [correct["student"][k] for k in keys]
                ),
                "student_vs_base": mcnemar_exact(
                    [correct["base"][k] for k in keys], [correct["student"][k] for k in keys]
                ),
            }
        summary["eval"] = per_bench
    record = {
        "table": table,
        "summary": summary,
        "config": to_dict(cfg),
        "models": {
            "base": train["model"],
            "teacher": cache_stats.get("teacher"),
            "adapter": str(out / ADAPTER),
        },
        "provenance": provenance(),
    }
    write_record(out, "distill", record, cfg)
    plot_distill(log, table, train["trainable_frac"], out / "plots")
    return record


def plot_distill(log: list[dict], table: list[dict], trainable_frac: float, plots: Path) -> None:
    """The KL / top-1 agreement curve, and the pass@1 bars of base, teacher and student."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    steps = [r["step"] for r in log]
    ax.plot(steps, [r["train/kl"] for r in log], color="#1f77b4", label="KL(teacher‖student)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("KL (nats / token)", color="#1f77b4")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["train/top1_agree"] for r in log], color="#ff7f0e", ls="--")
    ax2.set_ylabel("student top-1 = teacher top-1", color="#ff7f0e")
    ax2.set_ylim(0, 1.02)
    ax.set_title("KL-LoRA distillation")
    save_figure(fig, plots / "distill_loss.png")

    if not table:
        return
    benches = list(dict.fromkeys(r["benchmark"] for r in table))
    who = ["base", "teacher", "student"]
    colors = {"base": "#9e9e9e", "teacher": "#2ca02c", "student": "#1f77b4"}
    fig, ax = plt.subplots(figsize=(max(5, 2.2 * len(benches) + 2), 4))
    width = 0.8 / len(who)
    for j, w in enumerate(who):
        acc = {r["benchmark"]: r["pass@1"] for r in table if r["model"] == w}
        xs = [b + (j - 1) * width for b in range(len(benches))]
        ax.bar(xs, [100 * acc.get(b, 0.0) for b in benches], width, label=w, color=colors[w])
    ax.set_xticks(list(range(len(benches))))
    ax.set_xticklabels(benches, fontsize=8)
    ax.set_ylabel("greedy pass@1 (%)")
    ax.set_title(f"student = base + LoRA ({100 * trainable_frac:.2f}% of parameters trainable)")
    ax.legend(fontsize=8)
    save_figure(fig, plots / "distill_pass1.png")
