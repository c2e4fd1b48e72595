"""Pure statistics of the analyses: position classes, ranks, AUROC, the entropy gate, and
the rows and summaries of the ``disagree`` and ``intervene`` tables. Tensors in, numbers and
dicts out; no model, no file."""

from __future__ import annotations

import math
from typing import Any

UNCHANGED, RERANKED, SHIFTED = 0, 1, 2
CLASSES = ("unchanged", "reranked", "shifted")


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


def mean_or_none(x) -> float | None:
    return float(x.double().mean()) if x.numel() else None


def median_or_none(x) -> float | None:
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
            "entropy_mean": mean_or_none(entropy[sel]),
            "entropy_median": median_or_none(entropy[sel]),
        }
    rer = classes == RERANKED
    dis = classes != UNCHANGED
    out["mean_rank_reranked"] = mean_or_none(ranks[rer])
    out["mean_rank_disagree"] = mean_or_none(ranks[dis])
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


def table2_row(name: str, s: dict) -> dict:
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


def intervene_summary(rows: list[dict], by_kind: dict[str, dict]) -> dict:
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


def intervene_row(res: dict, name: str, idx: list[int], base_correct, teacher_texts) -> dict:
    """The table row of one policy run on the problems ``idx`` of benchmark ``name``:
    pass@1 with its Wilson 95% interval, tokens, the fractions of steps touched / gated, the
    paired McNemar test against the base and how often the text equals the teacher's."""
    from ..stats import mcnemar_exact, wilson_interval

    rows = [res["rows"][i] for i in idx]
    c = sum(r["correct"] for r in rows)
    steps = sum(len(r["token_ids"]) for r in rows)
    per_step = steps and res["policy"] != "teacher"
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
        "frac_touched": sum(len(r["touched"]) for r in rows) / steps if per_step else None,
        "frac_gated": sum(len(r["gated"]) for r in rows) / steps if per_step else None,
    }
    if base_correct is not None and res["policy"] != "base":
        row["vs_base"] = mcnemar_exact([base_correct[i] for i in idx], [r["correct"] for r in rows])
    if teacher_texts is not None:
        row["same_text_as_teacher"] = sum(
            r["text"] == teacher_texts[i] for i, r in zip(idx, rows, strict=True)
        ) / len(rows)
    return row


def intervene_table(runs: list[dict], groups: dict[str, list[int]], by_kind: dict) -> list[dict]:
    """Every run × benchmark group as an :func:`intervene_row`."""
    base = by_kind.get("base")
    base_correct = [r["correct"] for r in base["rows"]] if base else None
    teacher = by_kind.get("teacher")
    teacher_texts = [r["text"] for r in teacher["rows"]] if teacher else None
    return [
        intervene_row(res, name, idx, base_correct, teacher_texts)
        for res in runs
        for name, idx in groups.items()
    ]
