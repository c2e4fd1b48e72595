"""Section 1: base vs adapter greedy pass@1 per benchmark (95% CI, paired McNemar p), the
cost of the run, and accuracy per round and per checkpoint when the run has them."""

from __future__ import annotations

from typing import Any

from ..stats import format_p as fmt_p
from .html import esc, finite, fmt_num, fmt_pct, fmt_seconds, metric_table, note, table
from .plots import Figures, headline_plot
from .rundir import RunDir, bench_stats


def section_headline(run: RunDir, figs: Figures) -> str:
    parts = []
    comparison = run.comparison or {}
    results = {label: run.eval_results(label) for label in ("base", "adapter")}
    final = (run.manifest or {}).get("final_eval") or {}
    if results["adapter"] is None and final.get("benchmarks"):  # a GRPO run's last eval
        results["adapter"] = {"benchmarks": final["benchmarks"]}
        parts.append(note(f"Adapter numbers: manifest.json final_eval (step {final.get('step')})."))
    benches = list(comparison) or sorted(
        {b for r in results.values() if r for b in (r.get("benchmarks") or {})}
    )
    if benches:
        primary = (run.manifest or {}).get("primary_metric") or run.config.get("primary_metric")
        if primary:
            parts.append(
                f'<p class="lead">Primary metric, fixed before looking: '
                f"<code>{esc(primary)}</code>. Greedy decoding; 95% Wilson intervals; "
                "p from the exact McNemar test on paired problems.</p>"
            )
        if final_round := run.final_round:
            parts.append(note(final_round_note(final_round)))
        parts.append(_headline_table(benches, comparison, results))
        plot = headline_plot(benches, comparison, results, figs)
        cost = _cost_table(run)
        parts.append(f'<div class="grid2"><div>{plot}</div><div><h3>Cost</h3>{cost}</div></div>')
        parts.append(rounds_and_checkpoints(run.manifest or {}))
        return "".join(parts)
    parts.append(note("No eval results (eval/base, eval/adapter) in this run dir."))
    final = _final_eval_from_log(run.train_log or [])
    if final:
        parts.append("<p>Last periodic evaluation in <code>train_log.jsonl</code>:</p>")
        parts.append(metric_table(final.items()))
    parts.append("<h3>Cost</h3>")
    parts.append(_cost_table(run))
    return "".join(parts)


def final_round_note(entry: dict) -> str:
    """What a page of a run with several rounds shows of which round."""
    return (
        f"The base against round {entry['round']}'s adapter ({entry['dir']}/adapter), the "
        "run's final one: this table and the before/after examples. The training section has "
        "every round's curves; the entropy, selection and rollout sections are round 1's "
        "(the base's rollouts). Each round's accuracy is in the per-round table under the plot."
    )


def rounds_and_checkpoints(manifest: dict) -> str:
    """Greedy pass@1 per round (``run --rounds``) and the dev score of every checkpoint
    (``train.save_every_frac``), when the run has them."""
    parts = []
    rounds = manifest.get("rounds") or []
    if rounds:
        benches = list(rounds[0]["comparison"])
        rows = [["base", *(fmt_pct(rounds[0]["comparison"][b]["base_pass@1"]) for b in benches)]]
        for e in rounds:
            comp = e["comparison"]
            rows.append(
                [f"round {e['round']}", *(fmt_pct(comp[b]["adapter_pass@1"]) for b in benches)]
            )
        parts.append("<h3>Accuracy per round (greedy pass@1)</h3>")
        parts.append(table(["", *(esc(b) for b in benches)], rows))
    ckpt = manifest.get("checkpoints")
    if ckpt:
        rows = [
            [
                str(c["step"]) + (" (kept)" if c["step"] == ckpt["chosen_step"] else ""),
                f"{c['epoch']:.2f}",
                fmt_pct(c["dev_pass@1"]),
                str(c["n"]),
            ]
            for c in ckpt["checkpoints"]
        ]
        parts.append(f"<h3>Checkpoints on the dev split <code>{esc(ckpt['dev'])}</code></h3>")
        parts.append(table(["step", "epoch", "dev pass@1", "n"], rows))
    return "".join(parts)


def _ci_text(ci: Any) -> str:
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(finite(c) for c in ci):
        return f'<span class="ci">[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]</span>'
    return ""


def _headline_table(benches: list[str], comparison: dict, results: dict) -> str:
    rows = []
    for bench in benches:
        c = comparison.get(bench) or {}
        b, a = bench_stats(results["base"], bench), bench_stats(results["adapter"], bench)
        base_p = c.get("base_pass@1", b.get("pass@1"))
        ad_p = c.get("adapter_pass@1", a.get("pass@1"))
        m = c.get("pass@1_mcnemar") or {}
        delta = (ad_p - base_p) if finite(base_p) and finite(ad_p) else None
        sign = "pos" if delta and delta > 0 else "neg" if delta and delta < 0 else ""
        delta_txt = "–" if delta is None else f"{100 * delta:+.1f} pts"
        rows.append(
            [
                f"<code>eval/{esc(bench)}/pass@1</code>",
                esc(fmt_num(c.get("n", b.get("n", a.get("n"))))),
                f"{fmt_pct(base_p)} {_ci_text(b.get('pass@1_ci95'))}",
                f"{fmt_pct(ad_p)} {_ci_text(a.get('pass@1_ci95'))}",
                f'<span class="{sign}">{delta_txt}</span>',
                f"+{m['gained']} / −{m['lost']}" if m else "–",
                esc(fmt_p(m.get("p_value"))) if m else "–",
            ]
        )
        if "avg@k_bootstrap" in c or "avg@k" in b or "avg@k" in a:
            bt = c.get("avg@k_bootstrap") or {}
            k = b.get("k") or a.get("k") or "k"
            base_v, ad_v = (
                c.get("base_avg@k", b.get("avg@k")),
                c.get("adapter_avg@k", a.get("avg@k")),
            )
            d = bt.get("diff")
            rows.append(
                [
                    f"<code>eval/{esc(bench)}/avg@{esc(k)}</code>",
                    esc(fmt_num(bt.get("n", c.get("n")))),
                    f"{fmt_pct(base_v)} {_ci_text(b.get('avg@k_ci95'))}",
                    f"{fmt_pct(ad_v)} {_ci_text(a.get('avg@k_ci95'))}",
                    "–" if d is None else f"{100 * d:+.1f} pts {_ci_text(bt.get('ci95'))}",
                    "bootstrap",
                    esc(fmt_p(bt.get("p_value"), bt.get("n_boot", 2000))) if bt else "–",
                ]
            )
    return table(
        ["metric", "n", "base [95% CI]", "adapter [95% CI]", "Δ", "gained / lost", "p"],
        rows,
        cls="headline",
    )


def _final_eval_from_log(log: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for row in log:
        for k, v in row.items():
            if k.startswith("eval/") and finite(v):
                out[k] = v
                out["step"] = row.get("step")
    return out


def stage_times(run: RunDir) -> dict[str, float]:
    """Wall time per stage: manifest, else stages.json, else each stage's own file."""
    if run.manifest and run.manifest.get("stages"):
        return {k: v.get("wall_time_s") for k, v in run.manifest["stages"].items()}
    if run.manifest and isinstance(run.manifest.get("timing_s"), dict):  # GRPO
        return {k: v for k, v in run.manifest["timing_s"].items() if k != "total"}
    if run.stages:
        return {k: v.get("wall_time_s") for k, v in run.stages.items() if isinstance(v, dict)}
    out = {}
    for name, rec in (("sample", run.sample), ("select", run.selection), ("train", run.train)):
        if rec and finite(rec.get("wall_time_s")):
            out[name] = rec["wall_time_s"]
    for label in ("base", "adapter"):
        r = run.eval_results(label)
        if r and finite(r.get("wall_time_s")):
            out[f"eval_{label}"] = r["wall_time_s"]
    return out


def _cost_table(run: RunDir) -> str:
    items: list[tuple[str, str]] = []
    times = stage_times(run)
    for name, s in times.items():
        items.append((f"time/{name}", fmt_seconds(s)))
    if times:
        total = sum(v for v in times.values() if finite(v))
        items.append(("time/total", fmt_seconds(total)))
    counts = (run.manifest or {}).get("counts") or {}
    tokens = counts.get("rollout_tokens") or (run.sample or {}).get("tokens")
    n_roll = counts.get("rollouts") or (run.sample or {}).get("rollouts")
    if tokens is None and run.has("rollouts.jsonl"):
        rows = run.rollouts or []
        tokens, n_roll = sum(len(r.get("completion_ids") or []) for r in rows), len(rows)
    if tokens is not None:
        items.append(("sample/tokens", f"{fmt_num(tokens)} in {fmt_num(n_roll)} rollouts"))
    gen = (run.sample or {}).get("generation") or {}
    if finite(gen.get("seconds")) and gen.get("tokens"):
        items.append(("sample/tokens_per_s", fmt_num(gen["tokens"] / max(gen["seconds"], 1e-9))))
    for label in ("base", "adapter"):
        r = run.eval_results(label)
        if r and r.get("tokens_generated") is not None:
            items.append((f"eval_{label}/tokens", fmt_num(r["tokens_generated"])))
    m_tokens = (run.manifest or {}).get("tokens")
    if isinstance(m_tokens, dict):  # GRPO
        items += [(f"tokens/{k}", fmt_num(v)) for k, v in m_tokens.items() if v is not None]
    tr = dict(run.train or {})
    for key in ("trainable_params", "total_params"):
        if key not in tr and finite((run.manifest or {}).get(key)):
            tr[key] = run.manifest[key]
    if "trainable_frac" not in tr and tr.get("trainable_params") and tr.get("total_params"):
        tr["trainable_frac"] = tr["trainable_params"] / tr["total_params"]
    frac = tr.get("trainable_frac", counts.get("trainable_frac"))
    if frac is not None:
        detail = ""
        if tr.get("trainable_params") and tr.get("total_params"):
            detail = f" ({tr['trainable_params'] / 1e6:.2f}M of {tr['total_params'] / 1e6:.1f}M)"
        items.append(("train/trainable_frac", f"{100 * frac:.2f}%{detail}"))
    if tr.get("tokens_processed") is not None:
        items.append(("train/tokens_processed", fmt_num(tr["tokens_processed"])))
    steps = tr.get("steps", counts.get("train_steps", (run.manifest or {}).get("steps")))
    if steps is not None:
        items.append(("train/steps", fmt_num(steps)))
    if not items:
        return note("No timings or token counts recorded.")
    return metric_table(items, per=len(items), header=("cost", "value"))
