"""Section 2: the base entropy histogram with τ and the gated fraction, and the training
problems' pass-count histogram with the kept window shaded."""

from __future__ import annotations

from collections import Counter

from ..stats import pass_count_hist, pass_rates
from .html import metric_table, note
from .plots import Figures, entropy_plot, pass_plot
from .rundir import RunDir

SELECT_COUNTS = (
    "problems_total",
    "problems_kept",
    "rollouts_kept",
    "rollouts_dropped_long",
    "positive_rollouts",
    "negative_rollouts",
    "tokens",
    "decision_tokens",
)


def section_entropy(run: RunDir, figs: Figures) -> str:
    sel = run.selection or {}
    plots, tables = [], []
    hist, frac, source = entropy_histogram(run)
    tau = sel.get("tau")
    if hist and hist.get("counts"):
        plots.append(entropy_plot(hist, tau, frac, sel.get("gate"), source, figs))
        tables.append(metric_table(selection_items(sel, frac)))
    else:
        plots.append(note("No entropy histogram (selection.json or entropies.jsonl) here."))
    counts, k = pass_counts(run)
    if counts:
        cfg = run.section("select")
        window = sel.get("window") or [cfg.get("min_pass", 0.0), cfg.get("max_pass", 1.0)]
        plots.append(pass_plot(counts, k, window, sel, figs))
    else:
        plots.append(note("No pass-rate histogram (sample.json, selection.json or rollouts)."))
    return f'<div class="grid2">{"".join(plots)}</div>' + "".join(tables)


def entropy_histogram(run: RunDir) -> tuple[dict | None, float | None, str]:
    """``(histogram, gated fraction, source)``: selection.json's histogram of the kept
    rollouts, else one of every cached entropy in entropies.jsonl."""
    sel = run.selection or {}
    hist, tau, frac = sel.get("entropy_hist"), sel.get("tau"), sel.get("frac_marked")
    source = "kept rollouts (selection.json)"
    if not hist and run.has("entropies.jsonl"):
        from ..method.selection import histogram

        values = [h for r in run.jsonl("entropies.jsonl") or [] for h in r.get("entropy") or []]
        if values:
            hist, source = histogram(values), "all rollouts with cached entropies (entropies.jsonl)"
            if tau is not None and frac is None:
                frac = sum(v > tau for v in values) / len(values)
    return hist, frac, source


def selection_items(sel: dict, frac: float | None) -> list[tuple[str, object]]:
    """The ``select/*`` statistics worth a table row (those recorded)."""
    items = [
        ("select/tau", sel.get("tau")),
        ("select/frac_marked", frac),
        ("select/gate", sel.get("gate")),
        ("select/entropy_mean", sel.get("entropy_mean")),
    ]
    items += [(f"select/entropy_{k}", v) for k, v in (sel.get("entropy_quantiles") or {}).items()]
    items += [(f"select/{k}", sel.get(k)) for k in SELECT_COUNTS]
    return [(k, v) for k, v in items if v is not None]


def pass_counts(run: RunDir) -> tuple[list[int] | None, int | None]:
    """Problems per number of correct rollouts (index c = c of K correct) and K."""
    for rec in (run.selection, run.sample):
        if rec and rec.get("pass_count_hist"):
            h = rec["pass_count_hist"]
            return h, len(h) - 1
    rows = [{**r, "reward": r.get("reward", 0)} for r in run.rollouts or []]
    if rows:  # every problem has k rollouts, k the most any has
        k = max(Counter(r["problem_id"] for r in rows).values())
        return pass_count_hist(pass_rates(rows), k), k
    return None, None
