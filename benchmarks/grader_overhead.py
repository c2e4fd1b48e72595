"""The cost of running math-verify in a worker process instead of in-process.

    python benchmarks/grader_overhead.py --n 500 --out benchmarks/results/grader_overhead.json

Compares, on the same ``--n`` symbolic pairs (none decided by the numeric fast path or the
string comparison, so every one reaches math-verify):

* ``in-process``: math-verify called directly in this process, unbounded; the work the old
  SIGALRM path did (its ``setitimer`` calls cost microseconds), so it is the baseline;
* ``worker``: the same pairs through the worker process (``grading.math_verify_bounded``);
* ``answers_match``: the public call, normalisation and fast paths included.

Rounds alternate (in-process, worker, answers_match, in-process, ...) so that a noisy shared
machine affects all alike; per-call numbers are the median over rounds of each round's mean.
Because math-verify's own time (tens of ms here) varies more than the overhead, the overhead
is also measured directly: the worker reports the seconds it spent in math-verify, and the
parent's wall time per call minus that is the IPC cost (JSON, two pipe hops, a thread). Also
measured: a cold worker start (spawn, import sympy + math-verify, one warm-up comparison) and
a restart after a forced time-out. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from reasonmaxxer.eval import grading
from reasonmaxxer.eval._mv_worker import math_verify_equal
from reasonmaxxer.io import atomic_write_json
from reasonmaxxer.runinfo import provenance


def pairs(n: int) -> list[tuple[str, str, bool]]:
    """``n`` symbolic (pred, reference, hand-checked verdict) triples, all distinct."""
    forms = [
        # sqrt(k)/k == 1/sqrt(k)
        lambda k: (f"\\frac{{\\sqrt{{{k}}}}}{{{k}}}", f"\\frac{{1}}{{\\sqrt{{{k}}}}}", True),
        # x^2 + kx == x(x + k)
        lambda k: (f"x^2 + {k}x", f"x(x+{k})", True),
        # k pi/(k+1) == k/(k+1) pi
        lambda k: (f"\\frac{{{k}\\pi}}{{{k + 1}}}", f"\\frac{{{k}}}{{{k + 1}}}\\pi", True),
        # sqrt(k) != sqrt(k+1)
        lambda k: (f"\\sqrt{{{k}}}", f"\\sqrt{{{k + 1}}}", False),
        # (x+k)^2 != x^2 + k^2
        lambda k: (f"(x+{k})^2", f"x^2+{k * k}", False),
    ]
    return [forms[i % len(forms)](2 + i // len(forms)) for i in range(n)]


def timed(fn, items) -> tuple[float, list[bool]]:
    t = time.perf_counter()
    out = [fn(p, r) for p, r, _ in items]
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="symbolic pairs per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per path (alternating)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/grader_overhead.json"))
    args = ap.parse_args()
    items = pairs(args.n)
    load_start = os.getloadavg()[0]

    # Cold start: spawn, import, warm-up comparison.
    t = time.perf_counter()
    assert grading.math_verify_bounded("\\sqrt{2}", "2^{1/2}", 60.0) == (True, False)
    cold_start_s = time.perf_counter() - t
    math_verify_equal("\\sqrt{2}", "2^{1/2}")  # this process imports math-verify too

    def in_process(p: str, r: str) -> bool:
        return math_verify_equal(p, r)

    ipc_s: list[float] = []  # per call: wall time in the parent minus time inside the worker

    def worker(p: str, r: str) -> bool:
        t = time.perf_counter()
        eq, timed_out = grading.math_verify_bounded(p, r, 60.0)
        ipc_s.append(time.perf_counter() - t - grading.WORKER.last_worker_s)
        assert not timed_out
        return eq

    def public(p: str, r: str) -> bool:
        eq, timed_out = grading.answers_match(p, r, timeout_s=60.0)
        assert not timed_out
        return eq

    expected = [v for _, _, v in items]
    totals: dict[str, list[float]] = {"in-process": [], "worker": [], "answers_match": []}
    for _ in range(args.rounds):
        for name, fn in (("in-process", in_process), ("worker", worker), ("answers_match", public)):
            s, verdicts = timed(fn, items)
            assert verdicts == expected, name  # the worker gives the same verdicts
            totals[name].append(s)

    # IPC on a pair math-verify answers in well under a millisecond.
    ipc_trivial_s = []
    for i in range(200):
        t = time.perf_counter()
        assert grading.math_verify_bounded(f"a_{{{i}}}", f"b_{{{i}}}", 60.0) == (False, False)
        ipc_trivial_s.append(time.perf_counter() - t - grading.WORKER.last_worker_s)

    # Restart after a forced time-out: kill, spawn, import, warm up, then one comparison.
    pid = grading.WORKER.pid
    assert grading.math_verify_bounded(
        "(x+y+1)^{16}(x-y+1)^{16}", "((x+1)^{2}-y^{2})^{16}", 0.05
    ) == (False, True)
    t = time.perf_counter()
    assert grading.math_verify_bounded("\\sqrt{2}", "2^{1/2}", 60.0) == (True, False)
    restart_s = time.perf_counter() - t
    assert grading.WORKER.pid != pid

    per_call = {k: statistics.median(v) / args.n for k, v in totals.items()}
    overhead = per_call["worker"] - per_call["in-process"]
    result = {
        "n_pairs": args.n,
        "rounds": args.rounds,
        "total_s": totals,
        "per_call_ms": {k: 1e3 * v for k, v in per_call.items()},
        "worker_overhead_ms_per_call": 1e3 * overhead,
        "ipc_ms_per_call": {
            "median": 1e3 * statistics.median(ipc_s),
            "p90": 1e3 * statistics.quantiles(ipc_s, n=10)[-1],
            "max": 1e3 * max(ipc_s),
        },
        "worker_overhead_frac": overhead / per_call["in-process"],
        "ipc_ms_per_call_trivial_pairs": {
            "median": 1e3 * statistics.median(ipc_trivial_s),
            "p90": 1e3 * statistics.quantiles(ipc_trivial_s, n=10)[-1],
        },
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "cpus": os.cpu_count(),
        "cold_start_s": cold_start_s,
        "restart_after_timeout_s": restart_s,
        "note": (
            "restart_after_timeout_s is the wait of the first comparison after a time-out; the "
            "replacement worker starts right after the kill, so work done in between hides it"
        ),
        "provenance": provenance(),
    }
    print(f"{args.n} symbolic pairs, {args.rounds} rounds (median of round means)\n")
    print("| path | per call (ms) | total per round (s) |")
    print("|---|---|---|")
    for k, v in per_call.items():
        rounds = ", ".join(f"{s:.2f}" for s in totals[k])
        print(f"| {k} | {1e3 * v:.2f} | {rounds} |")
    ipc = result["ipc_ms_per_call"]
    print(
        f"\nIPC per call (parent wall time minus time inside the worker): median "
        f"{ipc['median']:.3f} ms, p90 {ipc['p90']:.3f} ms, max {ipc['max']:.1f} ms"
    )
    triv = result["ipc_ms_per_call_trivial_pairs"]
    print(
        f"IPC per call on trivial pairs: median {triv['median']:.3f} ms, p90 {triv['p90']:.3f} ms"
    )
    print(
        f"load average {load_start:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
        f"worker - in-process: {1e3 * overhead:+.2f} ms per call "
        f"({100 * result['worker_overhead_frac']:+.1f}%); cold start {cold_start_s:.2f} s; "
        f"first comparison after a time-out {restart_s:.2f} s"
    )
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
