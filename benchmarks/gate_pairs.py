"""Each entropy gate against a random gate that marks the same share of tokens, on the same
rollouts: the paper's "where the loss goes matters" control (issue #13, item 4).

    python benchmarks/gate_pairs.py --out benchmarks/results/gates_frac/pairs.json \
        --pair "top 20%" runs/gates_frac/entropy-top20 runs/gates_frac/random-top20 \
        --pair "τ 1.4" runs/gates_tau/entropy-tau1.4 runs/gates_tau/random-0.408 \
        --single "all tokens" runs/vs/rm

A folder is a run folder (``reasonmaxxer run`` or a sweep variant): its ``selection.json``
gives the share of kept completion tokens the gate marked, its ``eval/adapter`` the greedy
outputs. For each ``--pair LABEL ENTROPY RANDOM``: both arms' greedy pass@1 and the exact
McNemar test of the entropy arm against the random one (both on the same problems).
``--single LABEL FOLDER`` adds an arm with no twin (all tokens, where a random gate of the
same size is the same gate). Rows are sorted by the entropy arm's marked share.

Writes ``--out`` (JSON) and the table beside it (``.md``); ``--redraw`` re-renders it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from records import add_record_args, redraw  # noqa: E402

from reasonmaxxer.eval.comparison import load_correct  # noqa: E402
from reasonmaxxer.io import atomic_write_text  # noqa: E402
from reasonmaxxer.stats import format_p, mcnemar_exact  # noqa: E402


def arm(folder: Path) -> dict:
    """One run folder's gate (marked share, τ) and its greedy correctness by problem."""
    sel = json.loads((folder / "selection.json").read_text())
    greedy, _ = load_correct(folder / "eval" / "adapter")
    return {
        "folder": str(folder),
        "gate": sel.get("gate"),
        "frac_marked": sel["frac_marked"],
        "tau": sel.get("tau"),
        "n": len(greedy),
        "pass@1": sum(greedy.values()) / len(greedy),
        "_greedy": greedy,
    }


def pair_row(label: str, entropy: Path, random: Path | None) -> dict:
    e = arm(entropy)
    row = {"label": label, "entropy": e}
    if random is not None:
        r = arm(random)
        keys = sorted(e["_greedy"])
        if set(keys) != set(r["_greedy"]):
            raise ValueError(f"{entropy} and {random} were evaluated on other problems")
        test = mcnemar_exact([r["_greedy"][k] for k in keys], [e["_greedy"][k] for k in keys])
        row |= {"random": r, "entropy_vs_random": test}
    for a in ("entropy", "random"):
        row.get(a, {}).pop("_greedy", None)
    return row


def markdown(record: dict) -> str:
    lines = [
        "| gate | τ (nats) | tokens marked | entropy gate | random gate, same share "
        "| entropy vs random: +/−, McNemar p |",
        "|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        e, r = row["entropy"], row.get("random")
        tau = "-" if e["tau"] is None or e["gate"] == "all" else f"{e['tau']:.2f}"
        test = row.get("entropy_vs_random")
        vs = (
            "-" if not test else f"+{test['gained']}/−{test['lost']}, p {format_p(test['p_value'])}"
        )
        rand = "-" if not r else f"{r['pass@1']:.1%} ({r['frac_marked']:.1%})"
        lines.append(
            f"| {row['label']} | {tau} | {e['frac_marked']:.1%} | {e['pass@1']:.1%} "
            f"| {rand} | {vs} |"
        )
    if record.get("notes"):
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", nargs=3, action="append", default=[], metavar=("LABEL", "E", "R"))
    ap.add_argument("--single", nargs=2, action="append", default=[], metavar=("LABEL", "DIR"))
    add_record_args(ap, None)
    args = ap.parse_args()
    if not args.out:
        ap.error("--out is required")
    if redraw(args, markdown):
        return
    specs = [(lab, Path(e), Path(r)) for lab, e, r in args.pair]
    specs += [(lab, Path(d), None) for lab, d in args.single]
    try:
        for _, *folders in specs:
            for f in folders:
                if f is not None and not (f / "selection.json").is_file():
                    raise ValueError(f"{f} has no selection.json (not a run folder)")
        rows = sorted((pair_row(*s) for s in specs), key=lambda r: r["entropy"]["frac_marked"])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    record = {"rows": rows}
    if args.notes:
        record["notes"] = Path(args.notes).read_text().strip()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    text = markdown(record)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text, end="")


if __name__ == "__main__":
    main()
