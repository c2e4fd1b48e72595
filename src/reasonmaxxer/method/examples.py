"""What the report shows token by token, written by the stages that have the model loaded.

The report is a pure reader: it imports no torch and loads no model or tokenizer. So the
producers write, next to their own outputs, the few examples it renders:

* ``examples.jsonl`` (``select``): a correct and a wrong kept rollout of the same problem for a
  few problems (:func:`choose_rollout_pairs`); per token its text piece, its base entropy
  (nats, the value selection used), whether it is a decision point, and the base model's
  top-5 next tokens with their probabilities. Written with the base model ``select`` already
  loaded for the entropies (:class:`SharedBase`), so no second copy is loaded.
* ``eval/divergences.jsonl`` (``run``, before the report): for the eval problems the adapter
  newly solves or newly fails, the first character where the base and adapter greedy
  outputs differ, the base token holding it, the base entropy there and the base top-5.

Both files are small (a few rows) and are reused when their inputs have not changed, so a
re-run of ``select`` with another gate or τ (cached entropies) loads no model for them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from ..errors import UserError
from ..io import atomic_write_jsonl, identity_hash, iter_jsonl

EXAMPLES = "examples.jsonl"
DIVERGENCES = "eval/divergences.jsonl"
SAMPLES = "samples.jsonl"  # an eval folder's per-sample outputs
EXAMPLE_PAIRS = 4  # problems in examples.jsonl: `report --max-examples 8` shows them all
DIVERGENCE_EXAMPLES = 8  # newly solved and newly failed eval problems, each
FRAGMENT = "·"  # shown for a token that is only part of a multi-byte character
TOP_K = 5


class SharedBase:
    """A stage's base model and tokenizer, loaded on first use and then shared, so that
    ``select`` loads one copy for the entropies and the examples (or none when every entropy
    is cached and the examples are unchanged)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._loaded = None

    def load(self):
        """``(model, tokenizer, ModelInfo)`` as :func:`reasonmaxxer.models.load_model`."""
        if self._loaded is None:
            from ..models import load_model

            m = self.cfg.model
            self._loaded = load_model(
                m.model, dtype=m.dtype, trust_remote_code=m.trust_remote_code, device=m.device
            )
        return self._loaded


# --------------------------------------------------------------------------- choosing


def choose_rollout_pairs(rows: list[dict], n_problems: int) -> list[tuple[dict, dict]]:
    """(correct, wrong) rollouts of the same problem for up to ``n_problems`` problems.

    Problems with the pass rate closest to 0.5 first, then the shortest pair; within a problem
    the shortest correct rollout that has a decision point and the shortest wrong one.
    ``rows`` need ``problem_id``, ``reward``, ``completion_ids`` and ``decision``.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["problem_id"]].append(r)
    candidates = []
    for pid, rs in groups.items():
        good = [r for r in rs if r.get("reward", 0) > 0.5]
        bad = [r for r in rs if r.get("reward", 0) <= 0.5]
        if not good or not bad:
            continue
        g, b = min(good, key=_readable_first), min(bad, key=_readable_first)
        rate = len(good) / len(rs)
        length = len(g.get("completion_ids") or []) + len(b.get("completion_ids") or [])
        candidates.append(((abs(rate - 0.5), length, pid), (g, b)))
    candidates.sort(key=lambda c: c[0])
    return [pair for _, pair in candidates[:n_problems]]


def _readable_first(r: dict) -> tuple:
    return (not r.get("decision"), len(r.get("completion_ids") or []))


def greedy_by_key(rows: list[dict] | None) -> dict[tuple[str, str], dict]:
    """``(benchmark, id)`` → the greedy row of an eval ``samples.jsonl``."""
    return {(r["benchmark"], str(r["id"])): r for r in rows or [] if r.get("sample") == "greedy"}


def divergence(a: str, b: str) -> int:
    """Index of the first character where ``a`` and ``b`` differ (``min(len)`` if one is a
    prefix of the other)."""
    return len(os.path.commonprefix([a, b]))


def choose_eval_examples(
    base: dict[tuple[str, str], dict], adapter: dict[tuple[str, str], dict], n: int
) -> dict[str, list[tuple[str, str]]]:
    """The eval problems the adapter newly solves (``gained``) and newly fails (``lost``),
    shortest pair of outputs first (a divergence is easiest to read on short outputs), up to
    ``n`` of each; ``base``/``adapter`` are :func:`greedy_by_key` maps."""
    keys = [k for k in base if k in adapter]

    def by_len(k):
        return (len(base[k].get("completion", "")) + len(adapter[k].get("completion", "")), k)

    gained = [k for k in keys if adapter[k].get("correct") and not base[k].get("correct")]
    lost = [k for k in keys if base[k].get("correct") and not adapter[k].get("correct")]
    return {"gained": sorted(gained, key=by_len)[:n], "lost": sorted(lost, key=by_len)[:n]}


# --------------------------------------------------------------------------- token text


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds, decoded id by id; ``⟨id⟩`` with no tokenizer.

    A token that is only part of a multi-byte character decodes alone to U+FFFD; its text is
    then taken as what it adds to the decoding of the few tokens before it, so the character
    shows on the token that completes it and the fragments show as ``·``.
    """
    if tokenizer is None:
        return [f"⟨{i}⟩" for i in ids]
    out = []
    for j, i in enumerate(ids):
        text = tokenizer.decode([i])
        if "\ufffd" in text:
            a = max(0, j - 8)
            before = tokenizer.decode(ids[a:j]).rstrip("\ufffd")
            upto = tokenizer.decode(ids[a : j + 1])
            piece = upto[len(before) :] if upto.startswith(before) else text
            text = piece if piece and "\ufffd" not in piece else FRAGMENT
        out.append(text)
    return out


def _alternatives(tokenizer, ids: list[int], probs: list[float]) -> list[list]:
    """``[[text, prob], ...]`` for candidate next tokens, each decoded on its own."""
    return [
        [token_strings(tokenizer, [i])[0], round(p, 5)] for i, p in zip(ids, probs, strict=True)
    ]


# --------------------------------------------------------------------------- model passes


def completion_top_k(model, row: dict, precision: str = "off", k: int = TOP_K):
    """Base top-``k`` next tokens at every completion position of one stored rollout.

    Teacher-forces ``prompt_ids + completion_ids`` (one row: the ``[T, V]`` logits stay
    small). Returns ``(ids [T, k], probs [T, k])`` as lists; ``precision`` is the forward
    pass's autocast setting (``auto | bfloat16 | off``, the entropies' own, so the top-5
    agrees with the entropy shown next to it); the softmax is always float32.
    """
    import torch

    from ..devices import autocast, bf16_autocast_on
    from ..engine import build_batch, completion_logits

    with torch.inference_mode():
        x = build_batch([{**row, "decision": [], "advantage": 0.0}])
        with autocast(model, enabled=bf16_autocast_on(precision, model)):
            logits = completion_logits(model, x)[0]  # [T, V]
        vals, idx = logits.float().softmax(-1).topk(k, dim=-1)  # [T, k]
    return idx.tolist(), vals.tolist()


def position_stats(model, prompt_ids: list[int], completion_ids: list[int], k: int = TOP_K):
    """Base entropy (nats) and top-``k`` at the last of ``completion_ids`` given the prompt
    and the tokens before it. Returns ``(entropy, ids [k], probs [k])``."""
    import torch

    from ..engine import build_batch, completion_logits
    from .losses import entropy_from_logits

    row = {"prompt_ids": prompt_ids, "completion_ids": completion_ids}
    with torch.inference_mode():
        x = build_batch([{**row, "decision": [], "advantage": 0.0}])
        lg = completion_logits(model, x)[0, -1].float()  # [V]
        vals, idx = lg.softmax(-1).topk(k)
    return float(entropy_from_logits(lg)), idx.tolist(), vals.tolist()


# --------------------------------------------------------------------------- examples.jsonl


def write_examples(run_dir: str | Path, rows: list[dict], base: SharedBase) -> list[dict]:
    """Write ``run_dir/examples.jsonl`` from ``select``'s rows (``selection.jsonl``'s: ids,
    reward, advantage, entropy, decision); returns its rows.

    A row of an earlier ``examples.jsonl`` with the same rollout, token ids and entropies
    keeps its token texts and top-5, so only new rollouts need the model. When every entropy
    was cached and the model cannot be loaded (a folder moved away from its weights), the
    rows are written without token texts and top-5, and their ``note`` says why.
    """
    path = Path(run_dir) / EXAMPLES
    flat = [r for pair in choose_rollout_pairs(rows, EXAMPLE_PAIRS) for r in pair]
    old = {_example_key(r): r for r in _read(path) if all(k in r for k in VIEW_KEYS)}
    views, note = _token_views([r for r in flat if _example_key(r) not in old], base)
    counts = kept_counts(rows)
    out = []
    for i, r in enumerate(flat):
        row = _example_row(r, i // 2, counts[r["problem_id"]])
        prev = old.get(_example_key(r))
        view = {k: prev[k] for k in VIEW_KEYS} if prev else views.get(_example_key(r))
        row.update(view or {"note": note})
        out.append(row)
    atomic_write_jsonl(path, out)
    return out


VIEW_KEYS = ("prompt", "tokens", "top5")


def _token_views(rows: list[dict], base: SharedBase) -> tuple[dict[str, dict], str | None]:
    """example key → prompt text, token texts and base top-5 of each of ``rows`` (loading
    the base if ``select`` has not); ``({}, why)`` when the model cannot be loaded."""
    if not rows:
        return {}, None
    try:
        model, tok, _ = base.load()
    except UserError as e:
        return {}, f"no token text or top-5: the base model could not be loaded ({e})"
    views = {}
    for r in rows:
        ids, probs = completion_top_k(model, r, base.cfg.select.autocast)
        views[_example_key(r)] = {
            "prompt": tok.decode(r["prompt_ids"]),
            "tokens": token_strings(tok, r["completion_ids"]),
            "top5": [_alternatives(tok, i, p) for i, p in zip(ids, probs, strict=True)],
        }
    return views, None


def _read(path: Path) -> list[dict]:
    return list(iter_jsonl(path, tolerate_torn_tail=True)) if path.is_file() else []


def _example_key(r: dict) -> str:
    parts = [r.get(k) for k in ("problem_id", "rollout", "completion_ids", "entropy")]
    return identity_hash(parts, sort_keys=False)


def kept_counts(rows: list[dict]) -> dict[str, tuple[int, int]]:
    """problem_id → (correct kept rollouts, kept rollouts)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        c = counts[r["problem_id"]]
        c[0] += r.get("reward", 0) > 0.5
        c[1] += 1
    return {pid: (c[0], c[1]) for pid, c in counts.items()}


def _example_row(r: dict, pair: int, counts: tuple[int, int]) -> dict:
    return {
        "pair": pair,
        "problem_id": r["problem_id"],
        "rollout": r["rollout"],
        "reward": r.get("reward"),
        "advantage": r.get("advantage"),
        "kept_correct": counts[0],
        "kept_rollouts": counts[1],
        "completion_ids": r["completion_ids"],
        "entropy": r["entropy"],
        "decision": r.get("decision") or [],
    }


# --------------------------------------------------------------------------- divergences


def write_divergences(
    run_dir: str | Path, cfg, n: int = DIVERGENCE_EXAMPLES, *, adapter_dir: str | Path = "."
) -> list[dict]:
    """Write ``run_dir/ADAPTER_DIR/eval/divergences.jsonl`` for the eval problems the adapter
    evaluated in ``ADAPTER_DIR/eval/adapter`` (``round{N}`` for a later round's) newly solves
    or newly fails against ``run_dir/eval/base`` (up to ``n`` each); returns its rows. Loads
    the base model only when a row is missing from an earlier file (same prompt and outputs);
    with no paired greedy samples the file is not written."""
    run_dir = Path(run_dir)
    where = run_dir / adapter_dir
    samples = [run_dir / "eval" / "base" / SAMPLES, where / "eval" / "adapter" / SAMPLES]
    if not all(p.is_file() for p in samples):
        return []
    gb, ga = (greedy_by_key(_read(p)) for p in samples)
    chosen = [k for ks in choose_eval_examples(gb, ga, n).values() for k in ks]
    path = where / DIVERGENCES
    old = {r.get("key"): r for r in _read(path)}
    base = SharedBase(cfg)
    out = []
    for k in chosen:
        key = _divergence_key(gb[k], ga[k])
        row = old.get(key) or _divergence_row(gb[k], ga[k], base, key)
        if row is not None:
            out.append(row)
    atomic_write_jsonl(path, out)
    return out


def _divergence_key(b: dict, a: dict) -> str:
    parts = [b["benchmark"], str(b["id"]), b.get("prompt"), b["completion"], a["completion"]]
    return identity_hash(parts, sort_keys=False)


def _divergence_row(b: dict, a: dict, base: SharedBase, key: str) -> dict | None:
    """The base token holding the first differing character and the base entropy and top-5
    there, by re-tokenizing the base output (None where the tokenizer has no offsets)."""
    model, tok, _ = base.load()
    i = divergence(b["completion"], a["completion"])
    try:
        enc = tok(b["completion"], add_special_tokens=False, return_offsets_mapping=True)
    except Exception:  # slow tokenizers have no offsets
        return None
    j = next((t for t, (_, e) in enumerate(enc["offset_mapping"]) if e > i), None)
    if j is None:
        return None
    prompt_ids = tok(b.get("prompt") or "", add_special_tokens=False)["input_ids"]
    if not prompt_ids:  # nothing to condition the first token on
        return None
    h, ids, probs = position_stats(model, prompt_ids, enc["input_ids"][: j + 1])
    return {
        "key": key,
        "benchmark": b["benchmark"],
        "id": str(b["id"]),
        "char": i,
        "token": j,
        "text": tok.decode([enc["input_ids"][j]]),
        "entropy": round(h, 5),
        "top5": _alternatives(tok, ids, probs),
    }
