"""Confidence intervals and paired tests, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from reasonmaxxer.eval.evaluation import summarize
from reasonmaxxer.stats import (
    bootstrap_mean_ci,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    pass_at_k,
    pass_count_hist,
    pass_rates,
    wilson_interval,
)


def _pairs(gained: int, lost: int, both: int = 0, neither: int = 0):
    base = [False] * gained + [True] * lost + [True] * both + [False] * neither
    new = [True] * gained + [False] * lost + [True] * both + [False] * neither
    return base, new


# --------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(
    ("gained", "lost", "p"),
    [
        (6, 1, 2 * (1 + 7) / 128),  # 2·[C(7,0)+C(7,1)]/2^7 = 0.125
        (1, 6, 0.125),  # symmetric
        (5, 0, 2 * 1 / 32),  # 0.0625
        (10, 0, 2 / 1024),
        (4, 2, 2 * (1 + 6 + 15) / 64),  # 0.6875
        (3, 3, 1.0),  # 2·42/64 > 1, capped
        (1, 0, 1.0),  # 2·1/2
        (0, 0, 1.0),  # no discordant pair
    ],
)
def test_mcnemar_exact_hand_values(gained, lost, p):
    base, new = _pairs(gained, lost, both=3, neither=2)  # concordant pairs do not matter
    r = mcnemar_exact(base, new)
    assert r == {
        "gained": gained,
        "lost": lost,
        "n": gained + lost + 5,
        "p_value": pytest.approx(p),
    }


def test_mcnemar_needs_pairs():
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


# --------------------------------------------------------------------------- Wilson


def test_wilson_interval_hand_values():
    # 8/10, z = 1.959964, z² = 3.841459: denom = 1.3841459,
    # centre = (0.8 + 0.1920729) / denom = 0.7167406,
    # half = z·sqrt(0.016 + 0.0096036) / denom = 0.2265760 → [0.490165, 0.943317].
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490165, abs=1e-5)
    assert hi == pytest.approx(0.943317, abs=1e-5)
    # 0/10: [0, z²/(n+z²)] = [0, 3.841459/13.841459] = [0, 0.277532].
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.277532), abs=1e-5)
    # 10/10: [n/(n+z²), 1] = [0.722468, 1].
    assert wilson_interval(10, 10) == pytest.approx((0.722468, 1.0), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 0.0)


# --------------------------------------------------------------------------- pass@k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 1, 2, 0.5),  # 1 − C(3,2)/C(4,2) = 1 − 3/6
        (5, 2, 1, 0.4),  # pass@1 = c/n
        (5, 0, 1, 0.0),
        (4, 3, 2, 1.0),  # n − c < k: every pair holds a correct sample
        (10, 3, 3, 1 - 35 / 120),  # 1 − C(7,3)/C(10,3)
        (8, 8, 8, 1.0),
    ],
)
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_mean_ci():
    assert bootstrap_mean_ci([0.25] * 7) == (0.25, 0.25)
    assert bootstrap_mean_ci([]) == (0.0, 0.0)
    values = [0.0, 1.0] * 20  # mean 0.5, se = 0.5/sqrt(40) = 0.079 → CI ≈ 0.5 ± 0.155
    lo, hi = bootstrap_mean_ci(values, seed=3)
    assert 0.30 < lo < 0.40 and 0.60 < hi < 0.70
    assert bootstrap_mean_ci(values, seed=3) == (lo, hi)  # seeded


def test_paired_bootstrap():
    same = [0.0, 0.5, 1.0, 0.25]
    r = paired_bootstrap(same, same)
    assert r == {"diff": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0, "n": 4}
    # Every problem improves by 0.5: every resample has mean 0.5, none is on the far side of 0.
    r = paired_bootstrap([0.0, 0.25, 0.5], [0.5, 0.75, 1.0])
    assert r["diff"] == pytest.approx(0.5)
    assert r["ci95"] == pytest.approx([0.5, 0.5])
    assert r["p_value"] == 0.0
    # diffs [1, 1, 0, 0]: a resample has mean <= 0 only if it draws no 1: (1/2)^4 = 1/16,
    # so p ≈ 2/16 = 0.125.
    r = paired_bootstrap([0, 0, 1, 1], [1, 1, 1, 1], n_boot=4000, seed=1)
    assert r["diff"] == pytest.approx(0.5)
    assert r["p_value"] == pytest.approx(0.125, abs=0.03)
    assert r["ci95"] == pytest.approx([0.0, 1.0])
    # Sign: new worse than base gives a negative difference.
    assert paired_bootstrap([1, 1, 0], [0, 1, 0])["diff"] == pytest.approx(-1 / 3)
    assert paired_bootstrap([], [])["p_value"] == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [])


# --------------------------------------------------------------------------- summarize


def test_summarize_metrics():
    def row(correct, rule="boxed", n_tokens=10, finish="stop", timed_out=False):
        return {
            "correct": correct,
            "rule": rule,
            "n_tokens": n_tokens,
            "finish": finish,
            "timed_out": timed_out,
        }

    greedy = [row(True), row(False, "none", 20, "length"), row(True, "last_number", 30)]
    sampled = [
        [row(True), row(False)],  # 1/2
        [row(False), row(False, timed_out=True)],  # 0/2
        [row(True), row(True)],  # 2/2
    ]
    s = summarize(greedy, sampled, k=2)
    assert s["n"] == 3
    assert s["pass@1"] == pytest.approx(2 / 3)
    assert s["pass@1_ci95"] == pytest.approx(list(wilson_interval(2, 3)))
    assert s["extraction"] == {"boxed": 1, "none": 1, "last_number": 1}
    assert s["mean_tokens"] == pytest.approx(20.0)
    assert s["truncated"] == 1
    assert s["avg@k"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    # pass@2 from 2 samples: 1, 0, 1 → 2/3.
    assert s["pass@k"] == pytest.approx(2 / 3)
    assert s["timeouts"] == 1
    assert s["k"] == 2
    only_greedy = summarize(greedy, None, k=1)
    assert "avg@k" not in only_greedy and "pass@k" not in only_greedy
    assert not math.isnan(summarize([], None, k=1)["pass@1"])


def test_format_p():
    from reasonmaxxer.stats import format_p

    # no bootstrap resample on the far side of 0: one would have made p = 2 / 2000
    assert format_p(0.0, 2000) == "<1e-03"
    assert format_p(0.0) == "0"  # an exact test's 0 stays 0
    assert format_p(0.0893) == "0.089"
    assert format_p(1.74e-9) == "1.7e-09"
    assert format_p(1.0) == "1"
    assert format_p(None) == "–"


# --------------------------------------------------------------------------- pass counts


def test_pass_rates_and_their_count_histogram_by_hand():
    rows = [
        {"problem_id": pid, "reward": r}
        for pid, rewards in (("a", [1, 0, 1, 1]), ("b", [0, 0, 0, 0]), ("c", [1, 1, 1, 1]))
        for r in rewards
    ]
    rates = pass_rates(rows)
    assert rates == {"a": 0.75, "b": 0.0, "c": 1.0} and list(rates) == ["a", "b", "c"]
    assert pass_count_hist(rates, 4) == [1, 0, 0, 1, 1]  # b: 0, a: 3, c: 4 of 4
    # a problem with 2 of its 4 rollouts correct counts as 1 of k = 2
    assert pass_count_hist({"x": 0.5, "y": 0.5, "z": 1.0}, 2) == [0, 2, 1]


@pytest.mark.parametrize("k", range(1, 65))
def test_pass_count_of_c_correct_of_k_is_c(k):
    """``round(c / k * k) == c``: the histogram of rates counts a problem with c of k rollouts
    correct in bin c, as sampling's count of correct rollouts did."""
    hist = pass_count_hist({str(c): c / k for c in range(k + 1)}, k)
    assert hist == [1] * (k + 1)


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.04 -> x4, x3, x2, x1 = 0.04, 0.06, 0.06, 0.04 -> running max
    # 0.04, 0.06, 0.06, 0.06; returned in the input order
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 2 x 0.6 capped at 1
    assert holm([]) == []


def test_t_two_sided_p_against_closed_forms():
    from reasonmaxxer.stats import t_two_sided_p

    # df 1 is the Cauchy: P(|T| >= 1) = 1 - 2 atan(1) / pi = 0.5
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5, abs=1e-6)
    # df 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2); t = 2 gives 0.183503
    assert t_two_sided_p(2.0, 2) == pytest.approx(1 - 2 / math.sqrt(6), abs=1e-6)
    assert t_two_sided_p(-2.0, 2) == t_two_sided_p(2.0, 2)
    assert t_two_sided_p(0.0, 5) == 1.0
    # a huge t (near-zero spread): 1 - t / sqrt(2 + t^2) is ~1e-12, not a lost peak
    assert t_two_sided_p(1e6, 2) == pytest.approx(0.0, abs=1e-9)
    assert t_two_sided_p(1e6, 1) == pytest.approx(1 - 2 * math.atan(1e6) / math.pi, abs=1e-9)


def test_welch_t_by_hand():
    from reasonmaxxer.stats import welch_t

    # a = (1, 2, 3): mean 2, var 1; b = (3, 5, 7): mean 5, var 4
    # se^2 = 1/3 + 4/3 = 5/3, t = 3 / sqrt(5/3) = 2.32379
    # df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = (25/9) / (17/18) = 50/17 = 2.94118
    r = welch_t([1, 2, 3], [3, 5, 7])
    assert r["t"] == pytest.approx(3 / math.sqrt(5 / 3))
    assert r["df"] == pytest.approx(50 / 17)
    assert 0.05 < r["p_value"] < 0.15  # t 2.32 on ~2.9 df: between the 10% and 5% points
    with pytest.raises(ValueError):
        welch_t([1], [2, 3])


def test_holm_bootstrap_enters_a_zero_as_its_bound_and_flags_what_rests_on_it():
    from reasonmaxxer.stats import holm_bootstrap

    # n_boot 2000: a 0 is "below 2/2000 = 0.001". [0, 0.5]: Holm of [0.001, 0.5] is
    # [2 x 0.001, max(0.002, 0.5)] = [0.002, 0.5]; only the first rests on the bound.
    adj, bound = holm_bootstrap([0.0, 0.5], 2000)
    assert adj == pytest.approx([0.002, 0.5]) and bound == [True, False]
    # [0, 0, 0.001]: every p is 0.001 with the bounds in, so Holm gives 3 x 0.001 to all three;
    # with the bounds at 0 the third would be 0.001: it rests on them through the running max
    adj, bound = holm_bootstrap([0.0, 0.0, 0.001], 2000)
    assert adj == pytest.approx([0.003, 0.003, 0.003]) and bound == [True, True, True]
    adj, bound = holm_bootstrap([0.01, 0.04], 2000)  # no 0: plain Holm, nothing flagged
    assert adj == pytest.approx([0.02, 0.04]) and bound == [False, False]
