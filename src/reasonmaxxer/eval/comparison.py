"""Paired base-vs-adapter tests from two evaluation folders (pure reading and statistics)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..io import iter_jsonl
from ..stats import mcnemar_exact, paired_bootstrap


def load_correct(eval_dir: Path) -> tuple[dict, dict]:
    """An eval folder's ``samples.jsonl`` as ``(greedy, sampled)``: ``(benchmark, id)`` →
    the greedy completion's correctness, and → the sampled completions' list of them."""
    greedy: dict[tuple[str, str], bool] = {}
    sampled: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in iter_jsonl(eval_dir / "samples.jsonl"):
        key = (r["benchmark"], r["id"])
        if r["sample"] == "greedy":
            greedy[key] = r["correct"]
        else:
            sampled[key].append(r["correct"])
    return greedy, sampled


def compare(base_dir: Path, adapter_dir: Path, *, seed: int = 0) -> dict:
    """Paired base-vs-adapter tests per benchmark from the two ``samples.jsonl`` files.

    Greedy pass@1: exact McNemar. avg@k (when sampled): paired bootstrap over problems.
    """
    bg, bs = load_correct(base_dir)
    ag, as_ = load_correct(adapter_dir)
    out = {}
    for bench in sorted({b for b, _ in bg}):
        keys = [k for k in bg if k[0] == bench and k in ag]
        base = [bg[k] for k in keys]
        new = [ag[k] for k in keys]
        entry = {
            "n": len(keys),
            "base_pass@1": sum(base) / len(keys),
            "adapter_pass@1": sum(new) / len(keys),
            "pass@1_mcnemar": mcnemar_exact(base, new),
        }
        skeys = [k for k in keys if bs.get(k) and as_.get(k)]
        if skeys:
            b = [sum(bs[k]) / len(bs[k]) for k in skeys]
            a = [sum(as_[k]) / len(as_[k]) for k in skeys]
            entry["base_avg@k"] = sum(b) / len(b)
            entry["adapter_avg@k"] = sum(a) / len(a)
            entry["avg@k_bootstrap"] = paired_bootstrap(b, a, seed=seed)
        out[bench] = entry
    return out
