"""The teacher cache: the teacher's rollouts on the training problems and its top-k
log-probabilities at every completion position (safetensors + JSONL, no pickle), reused by a
re-run with the same settings."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

from ...config import to_dict
from ...devices import resolve_device
from ...errors import UserError
from ...io import atomic_write_json, atomic_write_jsonl, iter_jsonl, read_json
from ..pair import build_prompts, forced_logits, gen_model_config, rows_for_forcing
from .config import INDEX_FILE, META_FILE, TOPK_FILE, DistillConfig


def choose_problems(cfg: DistillConfig):
    """``n_problems`` problems of ``cfg.train`` drawn without replacement with
    ``problem_seed`` (all of them, in order, when there are no more)."""
    from ...eval.data import load_benchmarks

    problems = [p for ps in load_benchmarks(cfg.train).values() for p in ps]
    if not problems:
        raise UserError(f"no problems in {cfg.train!r}")
    if len(problems) <= cfg.n_problems:
        return problems
    idx = sorted(random.Random(cfg.problem_seed).sample(range(len(problems)), cfg.n_problems))
    return [problems[i] for i in idx]


def cache_key(cfg: DistillConfig, problems) -> dict:
    """Every setting that changes the cache's contents (a cache with another key is rebuilt)."""
    from ...generation import pick_backend
    from ...models import resolve_model

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


def save_tensors(path: Path, tensors: dict) -> None:
    """Write ``tensors`` as safetensors atomically (temp file + rename)."""
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_teacher(cfg: DistillConfig):
    """The teacher network, its ModelInfo and the base's tokenizer (the prompt format); a
    teacher with another vocabulary than the base is a UserError."""
    from ...models import load_model, load_tokenizer, resolve_model

    teacher, t_tok, info = load_model(
        cfg.teacher or cfg.model,
        adapter=cfg.teacher_adapter,
        dtype=cfg.dtype,
        trust_remote_code=cfg.trust_remote_code,
        device=resolve_device(cfg.device),
    )
    tok = t_tok
    if cfg.teacher and cfg.teacher != cfg.model:
        tok = load_tokenizer(resolve_model(cfg.model)[1], trust_remote_code=cfg.trust_remote_code)
        if tok.get_vocab() != t_tok.get_vocab():
            raise UserError(
                f"the teacher {cfg.teacher!r} has another tokenizer than the base "
                f"{cfg.model!r}: distillation on token ids needs a shared vocabulary"
            )
    return teacher, tok, info


def teacher_rollouts(cfg: DistillConfig, problems, backend: str):
    """The teacher's completion of every problem (on ``backend``), with the loaded teacher
    network, its ModelInfo. With vLLM the rollouts come first and the engine is closed before
    torch loads the teacher."""
    from ...eval.prompting import stop_strings
    from ...generation import HFGenerator, SamplingParams, make_generator

    params = SamplingParams(cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    if backend == "vllm":
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
    teacher, tok, info = _load_teacher(cfg)
    prompts = build_prompts(tok, problems, cfg.prompt)  # the base's prompt format
    if backend == "hf":
        gen = HFGenerator(
            teacher, tok, batch_size=cfg.gen_batch_size, stop=stop_strings(tok, cfg.prompt)
        )
        comps = [
            c[0] for c in gen.generate(prompts, params, seed=cfg.seed, desc="teacher rollouts")
        ]
    return comps, teacher, info


def teacher_topk(teacher, comps: list, k: int, store, batch_size: int) -> tuple[dict, dict]:
    """Teacher-force every non-empty completion; per completion index, the top-``k`` ids
    (``[n, k]`` int32) and log-probs (``[n, k]`` in ``store`` dtype) at its ``n`` positions."""
    import torch
    from tqdm.auto import tqdm

    todo = [i for i, c in enumerate(comps) if c.token_ids]
    todo.sort(key=lambda i: (len(comps[i].prompt_ids) + len(comps[i].token_ids), i))
    ids_out: dict[int, Any] = {}
    lp_out: dict[int, Any] = {}
    bar = tqdm(total=len(todo), desc="teacher top-k", unit="seq", dynamic_ncols=True)
    with torch.inference_mode():
        for b in range(0, len(todo), batch_size):
            chunk = todo[b : b + batch_size]
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
    return ids_out, lp_out


def cache_index(problems, comps: list, graded: list[dict], cached: set[int]) -> list[dict]:
    """One ``index.jsonl`` row per rollout; ``offset``/``length`` locate its positions in the
    concatenated tensors (length 0 for a rollout not in ``cached``)."""
    index, offset = [], 0
    for i, (p, c, g) in enumerate(zip(problems, comps, graded, strict=True)):
        n = len(c.token_ids) if i in cached else 0
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
                "length": n,
            }
        )
        offset += n
    return index


def build_cache(cfg: DistillConfig, problems, cache: Path) -> dict:
    """Teacher rollouts on ``problems`` + their top-k log-probs, written to ``cache``.

    Returns the teacher-rollout statistics. ``meta.json`` is written last: a cache without it
    is unfinished and rebuilt.
    """
    import torch

    from ...eval.evaluation import score_completions
    from ...generation import pick_backend
    from ...runinfo import Timer

    backend = pick_backend(cfg.backend, adapter=cfg.teacher_adapter)
    key = cache_key(cfg, problems)
    (cache / META_FILE).unlink(missing_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    with Timer() as wall:
        comps, teacher, info = teacher_rollouts(cfg, problems, backend)
        graded = [
            r[0]
            for r in score_completions(problems, [[c] for c in comps], timeout_s=cfg.grader_timeout)
        ]
        k = min(cfg.top_k, teacher.get_output_embeddings().weight.shape[0])
        store = torch.float16 if cfg.cache_dtype == "float16" else torch.float32
        ids_out, lp_out = teacher_topk(teacher, comps, k, store, cfg.batch_size)
        del teacher
    index = cache_index(problems, comps, graded, set(ids_out))
    order = [i for i in range(len(comps)) if i in ids_out]
    tensors = {
        "ids": torch.cat([ids_out[i] for i in order])
        if order
        else torch.zeros(0, k, dtype=torch.int32),
        "logprobs": torch.cat([lp_out[i] for i in order])
        if order
        else torch.zeros(0, k, dtype=store),
    }
    save_tensors(cache / TOPK_FILE, tensors)
    atomic_write_jsonl(cache / INDEX_FILE, index)
    positions = sum(r["length"] for r in index)
    stats = {
        "rollouts": len(comps),
        "positions": positions,
        "k": k,
        "teacher_train_pass@1": sum(g["correct"] for g in graded) / len(graded),
        "mean_tokens": positions / max(len(comps), 1),
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
        if m.get("key") == cache_key(cfg, problems):
            return m["stats"], True
    return build_cache(cfg, problems, cache), False
