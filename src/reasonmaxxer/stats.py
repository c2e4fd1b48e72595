"""Pass rates, confidence intervals and paired tests for accuracy numbers (pure Python, no
scipy)."""

from __future__ import annotations

import math
import random
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence


def pass_rates(rows: Iterable[dict]) -> dict[str, float]:
    """Each problem's mean ``reward`` over its rollouts (``problem_id`` -> rate), in the
    order problems first appear."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        groups[r["problem_id"]].append(r["reward"])
    return {pid: sum(v) / len(v) for pid, v in groups.items()}


def pass_count_hist(rates: dict[str, float], k: int) -> list[int]:
    """Problems per number of correct rollouts out of ``k``: entry ``c`` counts the problems
    whose pass rate ``p`` makes ``round(p * k) = c`` (``c`` of ``k`` when each has ``k``)."""
    hist = [0] * (k + 1)
    for p in rates.values():
        hist[round(p * k)] += 1
    return hist


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; (0, 0) when n = 0."""
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def bootstrap_mean_ci(
    values: Sequence[float], *, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-problem values (resampling problems)."""
    if not values:
        return 0.0, 0.0
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    return means[int(alpha / 2 * n_boot)], means[min(n_boot - 1, int((1 - alpha / 2) * n_boot))]


def mcnemar_exact(base: Sequence[bool], new: Sequence[bool]) -> dict:
    """Exact two-sided McNemar test on paired correctness.

    Only discordant pairs count: ``gained`` (wrong → right) and ``lost`` (right → wrong).
    Under H0 each discordant pair is a fair coin, so p = P(Binomial(g+l, 1/2) as extreme).
    """
    if len(base) != len(new):
        raise ValueError("paired samples must have the same length")
    gained = sum(1 for b, a in zip(base, new, strict=True) if a and not b)
    lost = sum(1 for b, a in zip(base, new, strict=True) if b and not a)
    n = gained + lost
    if n == 0:
        p = 1.0
    else:
        tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n
        p = min(1.0, 2 * tail)
    return {"gained": gained, "lost": lost, "n": len(base), "p_value": p}


def paired_bootstrap(
    base: Sequence[float], new: Sequence[float], *, n_boot: int = 2000, seed: int = 0
) -> dict:
    """Paired bootstrap of the mean difference (new − base) over problems.

    The p-value is two-sided: twice the share of resampled differences on the far side of 0.
    """
    if len(base) != len(new):
        raise ValueError("paired samples must have the same length")
    n = len(base)
    diffs = [a - b for b, a in zip(base, new, strict=True)]
    if n == 0:
        return {"diff": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0, "n": 0}
    rng = random.Random(seed)
    boots = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    mean = sum(diffs) / n
    below = sum(1 for d in boots if d <= 0) / n_boot
    above = sum(1 for d in boots if d >= 0) / n_boot
    return {
        "diff": mean,
        "ci95": [boots[int(0.025 * n_boot)], boots[min(n_boot - 1, int(0.975 * n_boot))]],
        "p_value": min(1.0, 2 * min(below, above)),
        "n": n,
    }


def welch_t(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's two-sample t-test of mean(b) - mean(a) with unequal variances: for a few runs
    (seeds) per arm, where the run-to-run spread is the noise. Two-sided p from Student's t at
    the Welch-Satterthwaite degrees of freedom. Needs 2 or more values on each side and some
    spread."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's t needs at least 2 values on each side")
    va, vb = (statistics.variance(x) / len(x) for x in (a, b))
    if va + vb == 0:
        raise ValueError("Welch's t needs some spread")
    t = (statistics.fmean(b) - statistics.fmean(a)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"t": t, "df": df, "p_value": t_two_sided_p(t, df)}


def t_two_sided_p(t: float, df: float, steps: int = 2000) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` >= 1 degrees of freedom. With x = sqrt(df)
    tan(u) the density's integral over [0, |t|] becomes ``c sqrt(df)`` times that of
    cos(u)^(df - 1) over [0, atan(|t| / sqrt(df))]: bounded and smooth, so Simpson's rule is
    accurate for any t, however large."""
    t = abs(t)
    if t == 0:
        return 1.0
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    end = math.atan(t / math.sqrt(df))

    def f(u: float) -> float:
        return math.cos(u) ** (df - 1)

    h = end / steps
    odd = sum(f((2 * i - 1) * h) for i in range(1, steps // 2 + 1))
    even = sum(f(2 * i * h) for i in range(1, steps // 2))
    area = c * math.sqrt(df) * h / 3 * (f(0) + 4 * odd + 2 * even + f(end))
    return min(1.0, max(0.0, 1 - 2 * area))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order: sort ascending, multiply the
    i-th smallest (from 0) by ``m - i``, carry the running maximum, cap at 1. Reject at level a
    where the adjusted p is <= a; the family-wise error stays <= a under any dependence."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def bootstrap_p_bound(n_boot: int) -> float:
    """What a :func:`paired_bootstrap` p of 0 stands for: its smallest non-zero value is
    2 / n_boot (one resample on the far side of 0, doubled), so 0 means p below that."""
    return 2 / n_boot


def holm_bootstrap(p_values: Sequence[float], n_boot: int) -> tuple[list[float], list[bool]]:
    """:func:`holm` over :func:`paired_bootstrap` p-values, each 0 entering as its bound
    (:func:`bootstrap_p_bound`); with a flag per adjusted p that rests on such a bound (it
    would be smaller with the bound at 0, through the 0 itself or Holm's running maximum), so
    it is an upper bound and should be shown as one."""
    bound = bootstrap_p_bound(n_boot)
    upper = holm([bound if p == 0 else p for p in p_values])
    lower = holm(list(p_values))
    return upper, [u != lo for u, lo in zip(upper, lower, strict=True)]


def format_p(p: float | None, n_boot: int | None = None) -> str:
    """A p-value for people. A bootstrap with no resample on the far side of 0 has p below
    :func:`bootstrap_p_bound` (2 / n_boot), which is what is shown instead of 0."""
    if p is None:
        return "–"
    if n_boot and p == 0:
        return f"<{bootstrap_p_bound(n_boot):.0e}"
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}".rstrip("0").rstrip(".") if p < 1 else "1"
