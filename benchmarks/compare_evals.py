"""Greedy pass@1 of several eval folders on the same problems, in groups: each run, each
group's mean ± sd over its runs, and paired tests between groups.

    python benchmarks/compare_evals.py --out benchmarks/results/cpu_precision/compare.json \
        --group bf16 runs/bf16/eval/adapter runs/seeds/s43/eval/adapter ... \
        --group fp32 runs/fp32/eval/adapter runs/seeds/f43/eval/adapter ...

A folder is an eval output (``samples.jsonl`` with one greedy row per problem, as
``reasonmaxxer eval`` and every run's ``eval/adapter`` write). For each pair of groups:

- the i-th runs against each other, exact McNemar (use the same i for the same seed);
- the seed-averaged correctness of each problem, paired bootstrap over problems (the
  difference of the group means, with its 95% interval): the seeds held fixed;
- Welch's t on the groups' run scores: the seeds as the noise (weak with 3 a side);
- Holm's adjustment of the bootstrap p-values over the pairs shown (``--against NAME``: only
  NAME against each other group, e.g. the base against every method).

Writes ``--out`` (JSON) and the table beside it (``.md``); ``--redraw`` re-renders it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import add_record_args, redraw  # noqa: E402

from reasonmaxxer.eval.comparison import load_correct  # noqa: E402
from reasonmaxxer.io import atomic_write_text  # noqa: E402
from reasonmaxxer.stats import (  # noqa: E402
    format_p,
    holm_bootstrap,
    mcnemar_exact,
    paired_bootstrap,
    welch_t,
)

N_BOOT = 2000  # paired_bootstrap's default: a p of 0 means p < 2/N_BOOT


def compare(groups: dict[str, list[Path]], against: str | None = None) -> dict:
    """Every pair of groups, or with ``against`` only that group against each other one."""
    runs = {name: [load_correct(f)[0] for f in folders] for name, folders in groups.items()}
    ids = sorted(next(iter(next(iter(runs.values())))))
    for name, results in runs.items():
        for folder, result in zip(groups[name], results, strict=True):
            if sorted(result) != ids:
                raise ValueError(f"{folder} scores other problems than the first folder")
    record: dict = {"n": len(ids), "groups": {}, "pairs": []}
    for name, results in runs.items():
        scores = [sum(r[i] for i in ids) / len(ids) for r in results]
        record["groups"][name] = {
            "runs": [str(f) for f in groups[name]],
            "pass@1": scores,
            "mean": statistics.fmean(scores),
            "sd": statistics.stdev(scores) if len(scores) > 1 else None,
        }
    pairs = [(a, b) for a, b in combinations(runs, 2) if against in (None, a, b)]
    for a, b in [(against, b if a == against else a) for a, b in pairs] if against else pairs:
        mean_a = [statistics.fmean(r[i] for r in runs[a]) for i in ids]
        mean_b = [statistics.fmean(r[i] for r in runs[b]) for i in ids]
        record["pairs"].append(
            {
                "groups": [a, b],
                "run_by_run": [
                    mcnemar_exact([ra[i] for i in ids], [rb[i] for i in ids])
                    for ra, rb in zip(runs[a], runs[b], strict=False)
                ],
                "seed_averaged": paired_bootstrap(mean_a, mean_b),
                "seed_level": _welch(record["groups"][a]["pass@1"], record["groups"][b]["pass@1"]),
            }
        )
    # Holm over the pairs shown; a bootstrap p of 0 enters as its bound 2/N_BOOT
    adjusted, bounded = holm_bootstrap(
        [p["seed_averaged"]["p_value"] for p in record["pairs"]], N_BOOT
    )
    for p, adj, is_bound in zip(record["pairs"], adjusted, bounded, strict=True):
        p["seed_averaged"]["holm_p"] = adj
        p["seed_averaged"]["holm_p_is_bound"] = is_bound
    return record


def _welch(a: list[float], b: list[float]) -> dict | None:
    """Welch's t on the run scores: the seeds as the noise (None below 2 runs a side or
    with no spread)."""
    try:
        return welch_t(a, b)
    except ValueError:
        return None


def markdown(record: dict) -> str:
    lines = [
        f"# Greedy pass@1 on {record['n']} problems",
        "",
        "| group | runs | pass@1 of each run | mean ± sd |",
        "|---|---|---|---|",
    ]
    for name, g in record["groups"].items():
        each = ", ".join(f"{s:.1%}" for s in g["pass@1"])
        sd = "" if g["sd"] is None else f" ± {g['sd']:.1%}"
        lines.append(f"| {name} | {len(g['pass@1'])} | {each} | {g['mean']:.1%}{sd} |")
    lines += [
        "",
        "| A vs B | run i vs run i: B gained / lost, McNemar p | seed-averaged B − A [95%], "
        "bootstrap p over problems | Holm p | Welch t over runs |",
        "|---|---|---|---|---|",
    ]
    for p in record["pairs"]:
        each = "; ".join(
            f"+{m['gained']}/−{m['lost']}, p {format_p(m['p_value'])}" for m in p["run_by_run"]
        )
        s = p["seed_averaged"]
        lo, hi = s["ci95"]
        w = p.get("seed_level")
        welch = (
            "-" if w is None else f"t {w['t']:.2f}, {w['df']:.1f} df, p {format_p(w['p_value'])}"
        )
        holm_p = "-" if "holm_p" not in s else format_p(s["holm_p"])
        if s.get("holm_p_is_bound"):
            holm_p = f"≤ {holm_p}"
        lines.append(
            f"| {p['groups'][0]} vs {p['groups'][1]} | {each} | {s['diff']:+.1%} "
            f"[{lo:+.1%}, {hi:+.1%}], p {format_p(s['p_value'], N_BOOT)} | {holm_p} | {welch} |"
        )
    if record.get("notes"):
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", nargs="+", action="append", metavar=("NAME", "FOLDER"), default=[])
    ap.add_argument("--against", metavar="NAME", help="compare NAME with each other group only")
    add_record_args(ap, None)
    args = ap.parse_args()
    if redraw(args, markdown):
        return
    if not args.out or not args.group or any(len(g) < 2 for g in args.group):
        ap.error("give --out and at least one --group NAME FOLDER [FOLDER ...]")
    groups = {g[0]: [Path(f) for f in g[1:]] for g in args.group}
    if args.against is not None and args.against not in groups:
        ap.error(f"--against {args.against}: no such --group")
    for folders in groups.values():
        for f in folders:
            if not (f / "samples.jsonl").is_file():
                ap.error(f"{f}/samples.jsonl not found")
    try:
        record = compare(groups, args.against)
    except ValueError as e:
        ap.error(str(e))
    if args.notes:
        record["notes"] = Path(args.notes).read_text().strip()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
