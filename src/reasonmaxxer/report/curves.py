"""Section 4: training curves from ``train_log.jsonl`` (loss terms, KL to base, decision
tokens moved up or down, optimizer, and any periodic ``eval/*`` rows, as GRPO runs write)."""

from __future__ import annotations

from collections.abc import Callable

from .html import finite, fmt_num, metric_table, note
from .plots import Figures, curve_plot, small_multiples
from .rundir import RunDir

CURVE_GROUPS: list[tuple[str, str, Callable[[str], bool]]] = [
    ("train_loss", "Loss terms", lambda k: "loss" in k),
    ("train_kl", "KL to base (nats/token)", lambda k: "kl" in k.lower()),
    (
        "train_moved",
        "Decision tokens whose probability moved",
        lambda k: "up_frac" in k or "down_frac" in k,
    ),
    ("train_logratio", "Decision-token log π/π_ref", lambda k: "logratio" in k),
    ("train_eval", "Periodic evaluation", lambda k: k.startswith("eval/")),
    ("train_memory", "Process memory (MiB)", lambda k: k.startswith("sys/")),
    (
        "train_optim",
        "Optimizer",
        lambda k: k.split("/")[-1] in ("lr", "learning_rate", "grad_norm"),
    ),
]
CURVE_SKIP = {"step", "epoch", "global_step", "time", "wall_time_s"}


def curve_series(log: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """Every numeric key of the log → (steps, finite values); NaN rows are skipped per key."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for i, row in enumerate(log):
        x = row.get("step", i + 1)
        for k, v in row.items():
            if k in CURVE_SKIP or not finite(v):
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(x)
            ys.append(float(v))
    return series


def section_training(run: RunDir, figs: Figures) -> str:
    """Round 1's curves (the run folder's ``train_log.jsonl``), then each later round's
    (``round{N}/train_log.jsonl``) under its own heading."""
    later = [
        (e["round"], e["dir"])
        for e in ((run.manifest or {}).get("rounds") or [])[1:]
        if run.has(f"{e['dir']}/train_log.jsonl")
    ]
    if not later:
        return _round_curves(run.train_log, run.train, figs, "")
    parts = ["<h3>Round 1</h3>", _round_curves(run.train_log, run.train, figs, "")]
    for r, rel in later:
        log, summary = run.jsonl(f"{rel}/train_log.jsonl"), run.json(f"{rel}/train.json")
        parts += [f"<h3>Round {r}</h3>", _round_curves(log, summary, figs, f"_round{r}")]
    return "".join(parts)


def _round_curves(log: list[dict] | None, summary: dict | None, figs: Figures, suffix: str) -> str:
    """One round's curve panels (PNG names end in ``suffix``) and last values."""
    if not log:
        return note("No train_log.jsonl in this run dir.")
    series = curve_series(log)
    used: set[str] = set()
    images = []
    for name, title, pred in CURVE_GROUPS:
        keys = [k for k in series if k not in used and pred(k)]
        if keys:
            used.update(keys)
            images.append(curve_plot(series, keys, name, title, figs, file=name + suffix))
    rest = [k for k in series if k not in used]
    if rest:
        images.append(small_multiples(series, rest[:12], figs, "train_other" + suffix))
    last = {k: ys[-1] for k, (_, ys) in series.items()}
    epoch = log[-1].get("epoch")
    summary_html = (
        f"<p>{len(log)} logged steps"
        + (f" (to epoch {fmt_num(epoch)})" if finite(epoch) else "")
        + ". Last value of each metric:</p>"
    )
    if (summary or {}).get("reference") == "stored":
        summary_html = (
            note(
                "π_ref's log-probs came from the selection (stored reference): no position is "
                "KL-anchored, so no KL is computed; the log-ratio panel shows how far π moved."
            )
            + summary_html
        )
    table_html = (
        f"<details><summary>last values ({len(last)} metrics)</summary>"
        f"{metric_table(sorted(last.items()))}</details>"
    )
    return f'<div class="grid2">{"".join(images)}</div>{summary_html}{table_html}'
