"""``reasonmaxxer select``: edge-of-competence problems, base entropies, decision points.

1. Pass rate per problem over its K rollouts; keep ``min_pass < p < max_pass`` (default: the
   mixed-success problems), optionally only the N closest to 0.5, optionally dropping the
   longest fraction of rollouts (the paper drops 20%).
2. Group-normalised advantages, computed on the full group before any rollout is dropped.
3. Base entropy of every generated token by teacher-forcing the stored token ids (one forward
   pass per batch, never re-generation). Entropies are cached per rollout in
   ``entropies.jsonl`` (appended batch by batch), so a re-run with another gate or τ costs
   nothing and an interrupted one resumes. The forward pass may run under bf16 autocast
   (``--autocast``, default on: ~2.5x faster on CPU); the entropy itself is always computed in
   float32 from the logits. Cached entries are keyed by what made them (the model's weights
   fingerprint, its dtype and the precision), so another model never reuses them.
4. Decision points by τ (nats) or a top fraction, with the ``entropy | all | random | low``
   gates for the controls.

Writes ``selection.jsonl`` (one row per kept rollout: ids, advantage, entropies, decision
positions) and ``selection.json`` (the statistics and histograms the report plots).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..config import RunConfig
from ..errors import UserError
from ..io import append_jsonl, atomic_write_json, atomic_write_jsonl, identity_hash, iter_jsonl
from ..runinfo import Timer
from ..stats import pass_count_hist, pass_rates
from .examples import SharedBase, write_examples
from .memory import check_batch_fits
from .sampling import ROLLOUTS

ENTROPIES = "entropies.jsonl"
SELECTION = "selection.jsonl"


ROLLOUT_KEYS = ("problem_id", "rollout", "reward", "prompt_ids", "completion_ids")
SELECTION_KEYS = ("problem_id", "rollout", "prompt_ids", "completion_ids", "advantage", "decision")


def read_rows(path: Path, keys: tuple[str, ...]) -> list[dict]:
    """The rows of a run-folder JSONL, each checked for ``keys`` (a foreign or hand-edited
    file is one error line, not a KeyError deep inside a stage)."""
    rows = list(iter_jsonl(path))
    for i, r in enumerate(rows, start=1):
        missing = [k for k in keys if k not in r]
        if missing:
            raise UserError(
                f"{path}: row {i} has no {', '.join(missing)}: not a file this stage wrote"
            )
    return rows


def choose_problems(
    rates: dict[str, float], min_pass: float, max_pass: float, max_problems: int | None
) -> list[str]:
    """Problems with ``min_pass < rate < max_pass``; with ``max_problems``, those closest to 0.5
    (ties broken by original order, so the choice is deterministic)."""
    order = {pid: i for i, pid in enumerate(rates)}
    kept = [pid for pid, p in rates.items() if min_pass < p < max_pass]
    if max_problems is not None and len(kept) > max_problems:
        kept = sorted(kept, key=lambda pid: (abs(rates[pid] - 0.5), order[pid]))[:max_problems]
        kept.sort(key=order.__getitem__)
    return kept


def curriculum_order(rows: list[dict]) -> list[dict]:
    """The authors' curriculum: rollouts by ``|A| × (decision tokens ÷ completion length)``,
    highest first; ties keep their order in ``rows`` (a stable sort), and nothing is shuffled.

    Each row needs ``advantage``, ``decision`` (positions) and ``completion_ids``.
    """

    def score(r: dict) -> float:
        return abs(r["advantage"]) * len(r["decision"]) / max(len(r["completion_ids"]), 1)

    return sorted(rows, key=score, reverse=True)


def compute_entropies(
    run_dir: Path, rows: list[dict], cfg: RunConfig, base: SharedBase | None = None
) -> dict[tuple[str, int], list[float]]:
    """Base entropy (nats) of every completion token of ``rows``, cached in entropies.jsonl;
    the model comes from ``base`` (loaded there only if an entropy is missing)."""
    return {k: v["entropy"] for k, v in base_token_terms(run_dir, rows, cfg, base).items()}


def base_token_terms(
    run_dir: Path, rows: list[dict], cfg: RunConfig, base: SharedBase | None = None
) -> dict[tuple[str, int], dict]:
    """The cached ``entropies.jsonl`` row of every rollout in ``rows`` (computed where
    missing): ``entropy``, the base's entropy (nats) of each completion token, and ``logp``,
    its log-probability of the token taken (absent from caches written before it existed)."""
    from tqdm.auto import tqdm

    path = run_dir / ENTROPIES
    precision = cfg.select.autocast
    key = entropy_key(cfg)
    cache: dict[tuple[str, int], dict] = {}
    if path.is_file():
        on_disk = list(iter_jsonl(path, tolerate_torn_tail=True))
        for r in on_disk:
            if r.get("key") == key:
                cache[(r["problem_id"], r["rollout"])] = r
        # Without a torn tail, so appends continue from a clean file; other models' entries
        # stay for when they are asked for again.
        atomic_write_jsonl(path, on_disk)
    # The batches are fixed by the rows alone and a batch is computed (and cached) whole, so
    # a run resumed after a kill scores every row in the same batch, with the same padding,
    # as an uninterrupted run: the entropies are identical, not merely close.
    ordered = sorted(rows, key=lambda r: len(r["prompt_ids"]) + len(r["completion_ids"]))
    bs = cfg.select.batch_size
    batches = [ordered[b : b + bs] for b in range(0, len(ordered), bs)]
    todo = [b for b in batches if any((r["problem_id"], r["rollout"]) not in cache for r in b)]
    if not todo:
        return cache
    if getattr(cfg.model, "ray", None):  # the same batches on Ray workers (.scaleout)
        from ..scaleout.ray_entropy import entropies_ray

        for out in entropies_ray(run_dir, todo, cfg, key, rows_fn=entropy_rows):
            for r in out:
                cache[(r["problem_id"], r["rollout"])] = r
            append_jsonl(path, out)
        return cache
    model, _, _ = (base or SharedBase(cfg)).load()
    longest = max(len(r["completion_ids"]) + 1 for b in todo for r in b)
    check_batch_fits(
        "select",
        "select.batch_size",
        max(len(b) for b in todo),
        longest,
        model.config.vocab_size,
        device=str(model.device),
    )
    for batch in tqdm(todo, desc="entropy (teacher-forced)", unit="batch"):
        out = entropy_rows(model, batch, precision, key)
        for r in out:
            cache[(r["problem_id"], r["rollout"])] = r
        append_jsonl(path, out)
    return cache


def entropy_rows(model, batch: list[dict], precision: str, key: str) -> list[dict]:
    """Teacher-forced base entropy and log-prob of the taken token (nats, 5 decimals) of every
    completion token of ``batch``; one ``entropies.jsonl`` row per rollout. The values depend
    on the batch (padding), so every process that scores a given batch writes the same rows."""
    import torch

    from ..devices import autocast, bf16_autocast_on
    from ..engine import build_batch, logit_source
    from .losses import entropy_from_logits, selective_log_softmax

    with torch.inference_mode():
        # Left padding: the last T + 1 logits cover every completion token, so the LM head
        # never runs over prompt positions. The prompt tokens the rows share are not split
        # off (build_batch's share_prefix): that pass's values moved in the 5th decimal
        # between a single process and Ray workers scoring the same batch, and these rows
        # must be the same whichever process scores it.
        x = build_batch([{**r, "decision": [], "advantage": 0.0} for r in batch])
        on = bf16_autocast_on(precision, model)
        with autocast(model, enabled=on):
            hidden, head = logit_source(model, x)  # [B, T, H] and the LM head
        ents, logps = [], []
        for part, tg in zip(hidden.split(1), x["targets"].split(1), strict=True):
            with autocast(model, enabled=on):  # a row's logits at a time: no [B, T, V]
                logits = head(part).float()
            ents.append(entropy_from_logits(logits))
            logps.append(selective_log_softmax(logits, tg.to(logits.device)))
        h, lp = torch.cat(ents).tolist(), torch.cat(logps).tolist()  # [B, T]
    out = []
    for i, r in enumerate(batch):
        start = len(h[i]) - len(r["completion_ids"])
        ent = [round(v, 5) for v in h[i][start:]]
        logp = [round(v, 5) for v in lp[i][start:]]
        out.append(_cache_row(r["problem_id"], r["rollout"], ent, key) | {"logp": logp})
    return out


def entropy_key(cfg: RunConfig) -> str:
    """What a cached entropy depends on besides the token ids: the model's weights, the
    dtype they are loaded in and the forward pass's precision."""
    return forward_key(cfg, cfg.select.autocast)


def forward_key(cfg: RunConfig, precision: str) -> str:
    """The identity of ``cfg.model``'s teacher-forced forward pass at ``precision`` (an
    ``autocast`` setting): the weights (their fingerprint) and the dtype they are loaded in."""
    from ..models import model_fingerprint

    m = cfg.model
    parts = [model_fingerprint(m.model), m.dtype, precision]
    return identity_hash(parts, sort_keys=False)


def reference_key(cfg: RunConfig, precision: str) -> str:
    """:func:`forward_key` that also names the model (its folder or hub id): ``train`` uses
    the log-probs ``select`` stored only when its own π_ref forward has the same key. The name
    is in it too, so that π_ref is always the model the config names (until 2026-12-07 the
    fingerprint read only the start of the weights file, which a merged adapter, a round's
    policy, left unchanged)."""
    return identity_hash([cfg.model.model, forward_key(cfg, precision)], sort_keys=False)


def _cache_row(problem_id: str, rollout: int, entropy: list[float], key: str) -> dict:
    return {"problem_id": problem_id, "rollout": rollout, "entropy": entropy, "key": key}


def quantiles(values: list[float], qs=(0.5, 0.9, 0.95, 0.99)) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    return {f"p{round(q * 100)}": s[min(len(s) - 1, int(q * len(s)))] for q in qs}


def histogram(
    values: list[float], bins: int = 40, lo: float = 0.0, hi: float | None = None
) -> dict:
    hi = hi if hi is not None else (max(values) if values else 1.0)
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}


def _no_decision_points(gate: str, tau: float, max_entropy: float, tokens: int) -> str:
    """The refusal when the gate marks no token: training on it would learn nothing."""
    return (
        f"the {gate} gate (tau = {tau:.3f} nats) marks none of {tokens} tokens, so train would "
        f"learn nothing: use a lower --tau or a higher --top-frac (the largest entropy is "
        f"{max_entropy:.3f} nats)"
    )


def select(run_dir: str | Path, cfg: RunConfig) -> dict:
    """Run the selection stage on ``run_dir/rollouts.jsonl``; returns ``selection.json``."""
    run_dir = Path(run_dir)
    sc = cfg.select
    if not (run_dir / ROLLOUTS).is_file():
        raise UserError(
            f"{run_dir / ROLLOUTS} not found: run `reasonmaxxer sample --out {run_dir}` first"
        )
    with Timer() as wall:
        rows = read_rows(run_dir / ROLLOUTS, ROLLOUT_KEYS)
        rates = pass_rates(rows)
        kept_ids = choose_problems(rates, sc.min_pass, sc.max_pass, sc.max_problems)
        if not kept_ids:
            raise UserError(
                f"no problem has a pass rate in ({sc.min_pass}, {sc.max_pass}) over {len(rates)} problems: "
                "the task is too easy or too hard for this model (try other problems or a larger --k)"
            )
        kept, n_before = _trimmed_rollouts(rows, rates, set(kept_ids), sc)
        base = SharedBase(cfg)  # one copy for the entropies and examples.jsonl
        terms = base_token_terms(run_dir, kept, cfg, base)
        ent = {k: v["entropy"] for k, v in terms.items()}
        h, comp = entropy_matrix(kept, ent)
        mask, tau = _decision_points(h, comp, sc)
        out_rows = selection_rows(kept, terms, mask, reference_key(cfg, sc.autocast))
        atomic_write_jsonl(run_dir / SELECTION, out_rows)
        write_examples(run_dir, out_rows, base)  # what the report shows token by token

    all_h = h[comp].tolist()
    marked = int(mask.sum())
    k = max(len([r for r in rows if r["problem_id"] == rows[0]["problem_id"]]), 1)
    stats = {
        "problems_total": len(rates),
        "problems_kept": len(kept_ids),
        "rollouts_kept": len(kept),
        "rollouts_dropped_long": n_before - len(kept),
        "positive_rollouts": sum(r["advantage"] > 0 for r in kept),
        "negative_rollouts": sum(r["advantage"] < 0 for r in kept),
        "tokens": len(all_h),
        "decision_tokens": marked,
        "frac_marked": marked / max(len(all_h), 1),
        "tau": tau if math.isfinite(tau) else None,
        "gate": sc.gate,
        "entropy_quantiles": quantiles(all_h),
        "entropy_mean": sum(all_h) / max(len(all_h), 1),
        "entropy_hist": histogram(all_h),
        "pass_count_hist": pass_count_hist(rates, k),
        "k": k,
        "window": [sc.min_pass, sc.max_pass],
        "wall_time_s": wall.seconds,
    }
    atomic_write_json(run_dir / "selection.json", stats)
    return stats


def _trimmed_rollouts(rows: list[dict], rates: dict, kept_set: set, sc) -> tuple[list, int]:
    """The rollouts of the kept problems, each with its ``advantage`` (group-normalised before
    or after trimming, per ``sc.advantages``), less the ``sc.drop_longest`` fraction of longest
    completions and any empty one. Returns ``(rollouts, count before trimming)``; nothing left
    is a UserError."""
    index = {pid: i for i, pid in enumerate(rates)}
    kept = [r for r in rows if r["problem_id"] in kept_set]
    if sc.advantages == "before_trim":
        _assign_advantages(kept, index, sc.adv_eps)
    n_before = len(kept)
    if sc.drop_longest > 0:
        n_drop = int(sc.drop_longest * len(kept))
        by_len = sorted(range(len(kept)), key=lambda i: (-len(kept[i]["completion_ids"]), i))
        dropped = set(by_len[:n_drop])
        kept = [r for i, r in enumerate(kept) if i not in dropped]
    if sc.advantages == "after_trim" and kept:
        _assign_advantages(kept, index, sc.adv_eps)
    kept = [r for r in kept if r["completion_ids"]]
    if not kept:
        raise UserError("every kept rollout has an empty completion: nothing to select")
    return kept, n_before


def _assign_advantages(group: list[dict], index: dict, eps: float) -> None:
    """Set each row's ``advantage``: its reward normalised within its problem's rows of
    ``group`` (:func:`.losses.group_advantages`; ``index`` numbers the problems)."""
    import torch

    from .losses import group_advantages

    adv = group_advantages(
        torch.tensor([r["reward"] for r in group], dtype=torch.float32),
        torch.tensor([index[r["problem_id"]] for r in group]),
        eps=eps,
    )
    for r, a in zip(group, adv.tolist(), strict=True):
        r["advantage"] = a


def entropy_matrix(kept: list[dict], ent: dict):
    """The per-token entropies (nats) of ``kept`` as ``(h [N, T_max] float32, completion
    [N, T_max] bool)``, right-padded with 0 / False; ``ent`` maps (problem_id, rollout) to a
    row's entropies."""
    import torch

    t_max = max(len(r["completion_ids"]) for r in kept)
    h = torch.zeros((len(kept), t_max))
    comp = torch.zeros((len(kept), t_max), dtype=torch.bool)
    for i, r in enumerate(kept):
        e = ent[(r["problem_id"], r["rollout"])]
        h[i, : len(e)] = torch.tensor(e)
        comp[i, : len(e)] = True
    return h, comp


def _decision_points(h, comp, sc):
    """``(mask [N, T] bool, tau)`` of the select gate on entropies ``h`` [N, T] over the
    completion tokens ``comp`` [N, T]; a gate that marks nothing is a UserError."""
    import torch

    from .losses import decision_mask

    gen = torch.Generator().manual_seed(sc.seed)
    mask, tau = decision_mask(
        h, comp, tau=sc.tau, top_frac=sc.top_frac, gate=sc.gate, generator=gen
    )
    if not mask.any():
        top = float(h[comp].max())
        raise UserError(_no_decision_points(sc.gate, tau, top, int(comp.sum())))
    return mask, tau


def selection_rows(kept: list[dict], terms: dict, mask, key: str) -> list[dict]:
    """The rows of ``selection.jsonl``: each rollout with its entropies (from ``terms``, as
    :func:`base_token_terms` gives them), the positions its ``mask`` [N, T] row marks as
    decision points, and, where ``terms`` has them, ``ref_logp``, the base's log-prob of each
    completion token, with ``ref_key``, the :func:`reference_key` it was computed under."""
    out_rows = []
    for i, r in enumerate(kept):
        n = len(r["completion_ids"])
        stored = terms[(r["problem_id"], r["rollout"])]
        logp = {"ref_logp": stored["logp"], "ref_key": key} if "logp" in stored else {}
        out_rows.append(
            {
                "problem_id": r["problem_id"],
                "rollout": r["rollout"],
                "reward": r["reward"],
                "advantage": r["advantage"],
                "prompt_ids": r["prompt_ids"],
                "completion_ids": r["completion_ids"],
                "entropy": stored["entropy"],
                "decision": mask[i, :n].nonzero().flatten().tolist(),
                **logp,
            }
        )
    return out_rows
