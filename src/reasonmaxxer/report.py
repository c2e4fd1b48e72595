"""``reasonmaxxer report``: one self-contained HTML page per run dir.

Reads whatever the run dir holds (every stage writes its own files, so any subset may be
there) and writes ``RUN_DIR/report.html`` plus the plots as ``RUN_DIR/report/*.png``. The page
embeds every plot as a base64 data URI and uses only inline CSS and system fonts, so it opens
offline and makes no network request. Sections, each replaced by a one-line note when its
files are missing:

1. Headline: base vs adapter greedy pass@1 per benchmark (95% CI, paired McNemar p) and cost.
2. Entropy and selection: base entropy histogram (nats, log y) with τ and the gated fraction;
   the training problems' pass-count histogram with the kept window shaded.
3. Rollouts: a correct and a wrong rollout of the same problem, each token shaded by its base
   entropy, decision points outlined; hovering a token shows its entropy and, with ``top5``,
   the base model's top-5 next tokens (computed here by teacher-forcing those few rollouts).
4. Training curves from ``train_log.jsonl`` (loss terms, KL to base, decision tokens moved up or
   down, and any periodic ``eval/*`` rows, as GRPO runs write them).
5. Before/after: eval problems the adapter newly solves and newly fails (greedy), with the
   first character where the two outputs diverge marked (and the base entropy there, with
   ``top5``).
6. Analysis files (``disagree.json``, ``intervene.json``, ``distill.json``) rendered as tables,
   and any images in ``plots/``.
7. The manifest: config, versions, git hash, seeds.

Metric names are the namespaced ones of the logs (``eval/<bench>/pass@1``, ``train/loss``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import atomic_write_text, iter_jsonl, read_json
from .stats import format_p as fmt_p

REPORT_HTML = "report.html"
REPORT_DIR = "report"
ANALYSIS_FILES = ("disagree.json", "intervene.json", "distill.json")
# Files that make a folder a run dir; a folder with none of them is refused.
RUN_FILES = (
    "config.yaml",
    "manifest.json",
    "rollouts.jsonl",
    "sample.json",
    "entropies.jsonl",
    "selection.json",
    "selection.jsonl",
    "train.json",
    "train_log.jsonl",
    "eval/base/results.json",
    "eval/adapter/results.json",
    *ANALYSIS_FILES,
)

BASE_COLOR = "#8c96a6"
ADAPTER_COLOR = "#2563eb"
GATED_COLOR = "#ea580c"
ENTROPY_CMAP = "YlOrRd"


# --------------------------------------------------------------------------- reading the run dir


class RunDir:
    """Lazy, tolerant view of a run dir: every accessor returns None when its file is absent."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.notes: list[str] = []  # where a file came from outside the run dir, and why

    def has(self, rel: str) -> bool:
        return (self.path / rel).is_file()

    def json(self, rel: str) -> Any | None:
        return read_json(self.path / rel) if self.has(rel) else None

    def jsonl(self, rel: str) -> list[dict] | None:
        if not self.has(rel):
            return None
        return list(iter_jsonl(self.path / rel, tolerate_torn_tail=True))

    @cached_property
    def manifest(self) -> dict | None:
        return self.json("manifest.json")

    @cached_property
    def config(self) -> dict:
        """The resolved config: ``config.yaml``, else the manifest's copy, else empty."""
        if self.has("config.yaml"):
            from .config import load_yaml

            return load_yaml(self.path / "config.yaml", run_folder=True)
        return dict((self.manifest or {}).get("config") or {})

    @cached_property
    def sample(self) -> dict | None:
        return self.json("sample.json")

    @cached_property
    def selection(self) -> dict | None:
        return self.json("selection.json")

    @cached_property
    def train(self) -> dict | None:
        return self.json("train.json")

    @cached_property
    def train_log(self) -> list[dict] | None:
        return self.jsonl("train_log.jsonl")

    @cached_property
    def stages(self) -> dict | None:
        return self.json("stages.json")

    @cached_property
    def selected(self) -> list[dict] | None:
        return self.jsonl("selection.jsonl")

    @cached_property
    def rollouts(self) -> list[dict] | None:
        return self.jsonl("rollouts.jsonl")

    @cached_property
    def eval_dirs(self) -> dict[str, Path]:
        """``{"base": dir, "adapter": dir}`` for the evals found.

        A sweep variant dir has no ``eval/base``: the sweep evaluates the base once per eval
        config in a sibling ``eval-base-*`` folder, which is used when its recorded
        model/prompt/eval config is the one this run was evaluated with.
        """
        out = {}
        for label in ("base", "adapter"):
            d = self.path / "eval" / label
            if (d / "results.json").is_file():
                out[label] = d
        if "base" not in out:
            want = self._eval_config()
            for d in sorted(self.path.parent.glob("eval-base-*")):
                if d.resolve() == self.path.resolve() or not (d / "results.json").is_file():
                    continue
                got = read_json(d / "results.json").get("config") or {}
                if want and all(got.get(k) == want.get(k) for k in ("model", "prompt", "eval")):
                    out["base"] = d
                    self.notes.append(f"base eval read from the sibling folder {d.name}/")
                    break
        return out

    def section(self, name: str) -> dict:
        """One config section as a dict ({} when absent or, as in a GRPO config, a scalar)."""
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    def _eval_config(self) -> dict:
        if self.has("eval/adapter/results.json"):
            cfg = read_json(self.path / "eval/adapter/results.json").get("config")
            if cfg:
                return cfg
        return {k: self.config.get(k) for k in ("model", "prompt", "eval") if k in self.config}

    def eval_results(self, label: str) -> dict | None:
        d = self.eval_dirs.get(label)
        return read_json(d / "results.json") if d else None

    def eval_samples(self, label: str) -> list[dict] | None:
        d = self.eval_dirs.get(label)
        if d is None or not (d / "samples.jsonl").is_file():
            return None
        return list(iter_jsonl(d / "samples.jsonl", tolerate_torn_tail=True))

    @cached_property
    def comparison(self) -> dict | None:
        """Per-benchmark paired comparison: the manifest's, else recomputed from the samples."""
        if self.manifest and self.manifest.get("comparison"):
            return self.manifest["comparison"]
        dirs = self.eval_dirs
        if all(k in dirs and (dirs[k] / "samples.jsonl").is_file() for k in ("base", "adapter")):
            from .comparison import compare

            seed = int(self.section("eval").get("seed", 0) or 0)
            return compare(dirs["base"], dirs["adapter"], seed=seed)
        return None


# --------------------------------------------------------------------------- formatting helpers


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fmt_num(x: Any) -> str:
    """A scalar for a table cell: 4 significant digits for floats, thousands separators."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.4g}"
    return str(x)


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def table(header: list[str], rows: Iterable[list[str]], *, cls: str = "") -> str:
    """An HTML table from already-escaped cell strings."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def metric_table(
    items: Iterable[tuple[str, Any]], *, per: int = 8, header=("metric", "value")
) -> str:
    """Namespaced metric → value tables, side by side in blocks of ``per`` rows."""
    rows = [
        [f"<code>{esc(k)}</code>", esc(v if isinstance(v, str) else fmt_num(v))] for k, v in items
    ]
    if len(rows) <= per:
        return table(list(header), rows, cls="kv")
    n_blocks = math.ceil(len(rows) / per)
    size = math.ceil(len(rows) / n_blocks)
    blocks = [table(list(header), rows[i : i + size], cls="kv") for i in range(0, len(rows), size)]
    return f'<div class="kvwrap">{"".join(blocks)}</div>'


# --------------------------------------------------------------------------- plots


class Figures:
    """Saves matplotlib figures as ``RUN_DIR/report/NAME.png`` and returns an embedding <img>."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.written: set[str] = set()

    def embed(self, fig, name: str, alt: str) -> str:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        data = buf.getvalue()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{name}.png").write_bytes(data)
        self.written.add(f"{name}.png")
        return img_tag(data, "image/png", alt)

    def remove_stale(self) -> None:
        """Drop PNGs of an earlier report that this one did not write (a section now absent)."""
        if self.out_dir.is_dir():
            for p in self.out_dir.glob("*.png"):
                if p.name not in self.written:
                    p.unlink()


def img_tag(data: bytes, mime: str, alt: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:{mime};base64,{b64}" alt="{esc(alt)}">'


PLOT_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- 1. headline


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
        parts.append(_headline_table(benches, comparison, results))
        plot = _headline_plot(benches, comparison, results, figs)
        cost = _cost_table(run)
        parts.append(f'<div class="grid2"><div>{plot}</div><div><h3>Cost</h3>{cost}</div></div>')
        parts.append(_rounds_and_checkpoints(run.manifest or {}))
        return "".join(parts)
    parts.append(note("No eval results (eval/base, eval/adapter) in this run dir."))
    final = _final_eval_from_log(run.train_log or [])
    if final:
        parts.append("<p>Last periodic evaluation in <code>train_log.jsonl</code>:</p>")
        parts.append(metric_table(final.items()))
    parts.append("<h3>Cost</h3>")
    parts.append(_cost_table(run))
    return "".join(parts)


def _rounds_and_checkpoints(manifest: dict) -> str:
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


def _bench_stats(results: dict | None, bench: str) -> dict:
    return ((results or {}).get("benchmarks") or {}).get(bench) or {}


def _ci_text(ci: Any) -> str:
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(_finite(c) for c in ci):
        return f'<span class="ci">[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]</span>'
    return ""


def _headline_table(benches: list[str], comparison: dict, results: dict) -> str:
    rows = []
    for bench in benches:
        c = comparison.get(bench) or {}
        b, a = _bench_stats(results["base"], bench), _bench_stats(results["adapter"], bench)
        base_p = c.get("base_pass@1", b.get("pass@1"))
        ad_p = c.get("adapter_pass@1", a.get("pass@1"))
        m = c.get("pass@1_mcnemar") or {}
        delta = (ad_p - base_p) if _finite(base_p) and _finite(ad_p) else None
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


def _headline_plot(benches: list[str], comparison: dict, results: dict, figs: Figures) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 + 1.6 * len(benches)), 2.8))
    width = 0.36
    for i, (label, color) in enumerate((("base", BASE_COLOR), ("adapter", ADAPTER_COLOR))):
        xs, ys, lo, hi = [], [], [], []
        for j, bench in enumerate(benches):
            st = _bench_stats(results[label], bench)
            y = st.get("pass@1", (comparison.get(bench) or {}).get(f"{label}_pass@1"))
            if not _finite(y):
                continue
            ci = st.get("pass@1_ci95") or [y, y]
            xs.append(j + (i - 0.5) * width)
            ys.append(100 * y)
            lo.append(100 * max(0.0, y - ci[0]))
            hi.append(100 * max(0.0, ci[1] - y))
        if xs:
            ax.bar(xs, ys, width, color=color, label=label, yerr=[lo, hi], capsize=3)
            for x, y in zip(xs, ys, strict=True):
                ax.text(x, 1, f"{y:.1f}", ha="center", va="bottom", fontsize=8, color="white")
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("greedy pass@1 (%)")
    ax.set_title("base vs adapter, 95% CI")
    ax.legend(loc="upper right")
    ax.set_ylim(0, 100)
    return (
        f'<figure class="plot small">{figs.embed(fig, "headline", "pass@1 per benchmark")}</figure>'
    )


def _final_eval_from_log(log: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for row in log:
        for k, v in row.items():
            if k.startswith("eval/") and _finite(v):
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
        if rec and _finite(rec.get("wall_time_s")):
            out[name] = rec["wall_time_s"]
    for label in ("base", "adapter"):
        r = run.eval_results(label)
        if r and _finite(r.get("wall_time_s")):
            out[f"eval_{label}"] = r["wall_time_s"]
    return out


def _cost_table(run: RunDir) -> str:
    items: list[tuple[str, str]] = []
    times = stage_times(run)
    for name, s in times.items():
        items.append((f"time/{name}", fmt_seconds(s)))
    if times:
        total = sum(v for v in times.values() if _finite(v))
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
    if _finite(gen.get("seconds")) and gen.get("tokens"):
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
        if key not in tr and _finite((run.manifest or {}).get(key)):
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


# --------------------------------------------------------------------------- 2. entropy, selection


def section_entropy(run: RunDir, figs: Figures) -> str:
    sel = run.selection or {}
    plots, tables = [], []
    hist, tau, frac = sel.get("entropy_hist"), sel.get("tau"), sel.get("frac_marked")
    source = "kept rollouts (selection.json)"
    if not hist and run.has("entropies.jsonl"):
        from .selection import histogram

        values = [h for r in run.jsonl("entropies.jsonl") or [] for h in r.get("entropy") or []]
        if values:
            hist, source = histogram(values), "all rollouts with cached entropies (entropies.jsonl)"
            if tau is not None and frac is None:
                frac = sum(v > tau for v in values) / len(values)
    if hist and hist.get("counts"):
        plots.append(_entropy_plot(hist, tau, frac, sel.get("gate"), source, figs))
        items = [
            ("select/tau", tau),
            ("select/frac_marked", frac),
            ("select/gate", sel.get("gate")),
        ]
        items += [("select/entropy_mean", sel.get("entropy_mean"))]
        items += [
            (f"select/entropy_{k}", v) for k, v in (sel.get("entropy_quantiles") or {}).items()
        ]
        items += [(f"select/{k}", sel.get(k)) for k in SELECT_COUNTS]
        tables.append(metric_table([(k, v) for k, v in items if v is not None]))
    else:
        plots.append(note("No entropy histogram (selection.json or entropies.jsonl) here."))
    counts, k = _pass_counts(run)
    if counts:
        cfg = run.section("select")
        window = sel.get("window") or [cfg.get("min_pass", 0.0), cfg.get("max_pass", 1.0)]
        plots.append(_pass_plot(counts, k, window, sel, figs))
    else:
        plots.append(note("No pass-rate histogram (sample.json, selection.json or rollouts)."))
    return f'<div class="grid2">{"".join(plots)}</div>' + "".join(tables)


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


def gated_bins(edges: list[float], tau: float | None, gate: str | None) -> list[bool]:
    """Which histogram bins to shade as decision points. Only the entropy gate is a threshold:
    ``all`` marks every bin; ``random`` and ``low`` mark tokens across bins (the τ they record
    only fixed their count), so no bin is shaded for them."""
    n = len(edges) - 1
    if gate == "all":
        return [True] * n
    if gate not in (None, "entropy") or tau is None:
        return [False] * n
    return [edges[i] >= tau for i in range(n)]


def _entropy_plot(hist, tau, frac, gate, source, figs: Figures) -> str:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plt = _plt()
    edges, counts = hist["edges"], hist["counts"]
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
    colors = [GATED_COLOR if g else BASE_COLOR for g in gated_bins(edges, tau, gate)]
    ax.bar(edges[:-1], [max(c, 0) for c in counts], widths, align="edge", color=colors, lw=0)
    ax.set_yscale("log")
    ax.set_ylim(0.7, max(max(counts), 1) * 1.8)
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else "")
    ax.yaxis.set_major_formatter(plain)

    # Few decades: label the 2s and 5s between the powers of ten too.
    def two_five(v, _):
        return (
            f"{v:,.0f}" if v >= 1 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""
        )

    ax.yaxis.set_minor_formatter(FuncFormatter(two_five) if max(counts) < 100 else NullFormatter())
    ax.set_xlabel("base entropy of the generated token (nats)")
    ax.set_ylabel("tokens (log scale)")
    ax.set_title("Entropy of generated tokens")
    if tau is not None and gate in (None, "entropy"):
        ax.axvline(tau, color="black", lw=1.2, ls="--")
        label = f"τ = {tau:.2f} nats"
        if frac is not None:
            label += f"\n{100 * frac:.1f}% of tokens gated"
        right = tau > (edges[0] + edges[-1]) / 2  # put the label on the roomier side
        ax.text(
            tau,
            0.97,
            f" {label} ".replace("\n", " \n "),
            transform=ax.get_xaxis_transform(),
            va="top",
            ha="right" if right else "left",
            fontsize=8,
            bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1},
        )
    elif frac is not None:
        ax.text(
            0.98,
            0.97,
            f"gate: {gate}\n{100 * frac:.1f}% of tokens gated",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    alt = f"entropy histogram of {source}"
    return (
        f'<figure class="plot">{figs.embed(fig, "entropy_hist", alt)}'
        f"<figcaption>{esc(sum(counts))} tokens of {esc(source)}.</figcaption></figure>"
    )


def _pass_counts(run: RunDir) -> tuple[list[int] | None, int | None]:
    for rec in (run.selection, run.sample):
        if rec and rec.get("pass_count_hist"):
            h = rec["pass_count_hist"]
            return h, len(h) - 1
    if run.has("rollouts.jsonl"):
        groups: dict[str, list[float]] = defaultdict(list)
        for r in run.rollouts or []:
            groups[r["problem_id"]].append(r.get("reward", 0))
        if groups:
            k = max(len(v) for v in groups.values())
            h = [0] * (k + 1)
            for v in groups.values():
                h[int(round(sum(v)))] += 1
            return h, k
    return None, None


def _pass_plot(counts: list[int], k: int, window, sel: dict, figs: Figures) -> str:
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    lo, hi = window
    inside = [lo < c / k < hi for c in range(k + 1)]
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    kept_x = [c for c in range(k + 1) if inside[c]]
    if kept_x:
        ax.axvspan(min(kept_x) - 0.5, max(kept_x) + 0.5, color=ADAPTER_COLOR, alpha=0.08, lw=0)
    ax.bar(range(k + 1), counts, 0.8, color=[ADAPTER_COLOR if x else BASE_COLOR for x in inside])
    for c, n in enumerate(counts):
        if n:
            ax.text(c, n, str(n), ha="center", va="bottom", fontsize=8)
    step = max(1, (k + 1) // 10)
    ax.set_xticks(range(0, k + 1, step), [f"{c}/{k}" for c in range(0, k + 1, step)])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("correct rollouts per training problem")
    ax.set_ylabel("problems")
    ax.set_title(f"Pass rate of training problems (kept: {lo:g} < p < {hi:g}, shaded)")
    eligible = sum(n for c, n in enumerate(counts) if inside[c])
    kept = sel.get("problems_kept")
    cap = f" ({kept} kept after the cap)" if kept is not None and kept != eligible else ""
    caption = f"{sum(counts)} problems, {eligible} in the window{cap}."
    return (
        f'<figure class="plot">{figs.embed(fig, "pass_rate_hist", "pass-rate histogram")}'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


# --------------------------------------------------------------------------- 3. rollouts


def choose_rollout_pairs(rows: list[dict], n_problems: int) -> list[tuple[dict, dict]]:
    """(correct, wrong) rollouts of the same problem for up to ``n_problems`` problems.

    Problems with the pass rate closest to 0.5 first, then the shortest pair; within a problem
    the shortest correct rollout that has a decision point and the shortest wrong one.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["problem_id"]].append(r)
    candidates = []
    for pid, rs in groups.items():
        good = [r for r in rs if r.get("reward", 0) > 0.5]
        bad = [r for r in rs if r.get("reward", 0) <= 0.5]
        if not good or not bad:
            continue
        g, b = min(good, key=_readable_first), min(bad, key=_readable_first)
        rate = len(good) / len(rs)
        length = len(g.get("completion_ids") or []) + len(b.get("completion_ids") or [])
        candidates.append(((abs(rate - 0.5), length, pid), (g, b)))
    candidates.sort(key=lambda c: c[0])
    return [pair for _, pair in candidates[:n_problems]]


def _readable_first(r: dict) -> tuple:
    return (not r.get("decision"), len(r.get("completion_ids") or []))


def _rollout_rows(run: RunDir) -> tuple[list[dict], str]:
    """Rows with prompt_ids, completion_ids, entropy and decision: selection.jsonl, else
    rollouts.jsonl joined with entropies.jsonl (decision points then from τ, if known)."""
    if run.selected:
        return run.selected, "selection.jsonl"
    if not (run.has("rollouts.jsonl") and run.has("entropies.jsonl")):
        return [], ""
    ent = {(r["problem_id"], r["rollout"]): r["entropy"] for r in run.jsonl("entropies.jsonl")}
    tau = (run.selection or {}).get("tau")
    out = []
    for r in run.rollouts or []:
        h = ent.get((r["problem_id"], r["rollout"]))
        if h is None:
            continue
        dec = [i for i, x in enumerate(h) if tau is not None and x > tau]
        out.append({**r, "entropy": h, "decision": dec})
    return out, "rollouts.jsonl + entropies.jsonl"


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds, decoded id by id; ``⟨id⟩`` with no tokenizer.

    A token that is only part of a multi-byte character decodes alone to U+FFFD; its text is
    then taken as what it adds to the decoding of the few tokens before it, so the character
    shows on the token that completes it and the fragments show as ``·``.
    """
    if tokenizer is None:
        return [f"⟨{i}⟩" for i in ids]
    out = []
    for j, i in enumerate(ids):
        text = tokenizer.decode([i])
        if "\ufffd" in text:
            a = max(0, j - 8)
            before = tokenizer.decode(ids[a:j]).rstrip("\ufffd")
            upto = tokenizer.decode(ids[a : j + 1])
            piece = upto[len(before) :] if upto.startswith(before) else text
            text = piece if piece and "\ufffd" not in piece else FRAGMENT
        out.append(text)
    return out


FRAGMENT = "·"


def shade(h: float, hmax: float) -> str:
    """Background colour for entropy ``h`` (nats) on a 0..hmax sequential scale."""
    from matplotlib import colormaps

    x = 0.0 if hmax <= 0 else min(1.0, max(0.0, h / hmax))
    r, g, b, _ = colormaps[ENTROPY_CMAP](0.02 + 0.8 * x)
    return f"rgb({round(255 * r)},{round(255 * g)},{round(255 * b)})"


def token_style(h: float, hmax: float) -> str:
    """Inline style of a token: its entropy shade, with white text where the shade is dark."""
    bg = shade(h, hmax)
    r, g, b = (int(v) for v in bg[4:-1].split(","))
    dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 140
    return f"background:{bg}" + (";color:#fff" if dark else "")


def render_tokens(
    texts: list[str],
    entropy: list[float],
    decision: Iterable[int],
    hmax: float,
    top5: list[list[tuple[str, float]]] | None = None,
) -> str:
    """One ``<span class="tok">`` per token, shaded by entropy, decision points with class
    ``dp``; ``data-h`` holds the entropy (nats) and ``data-tip`` the hover text."""
    dec = set(decision)
    spans = []
    for j, text in enumerate(texts):
        h = entropy[j] if j < len(entropy) else None
        tip = f"#{j}  {json.dumps(text, ensure_ascii=False)}\n"
        tip += "H = –" if h is None else f"H = {h:.3f} nats"
        if j in dec:
            tip += "  · decision point"
        if top5 is not None and j < len(top5):
            tip += "\nbase top-5:" + "".join(
                f"\n  {p:6.1%}  {json.dumps(t, ensure_ascii=False)}" for t, p in top5[j]
            )
        if text == FRAGMENT:
            tip += "\n(byte fragment of a multi-byte character)"
        shown = text.replace("\n", "↵\n") if text else "∅"
        style = f' style="{token_style(h, hmax)}"' if h is not None else ""
        cls = "tok dp" if j in dec else "tok"
        hattr = f' data-h="{h:.4f}"' if h is not None else ""
        spans.append(f'<span class="{cls}"{style}{hattr} data-tip="{esc(tip)}">{esc(shown)}</span>')
    return "".join(spans)


def compute_top5(model, tokenizer, rows: list[dict]) -> list[list[list[tuple[str, float]]]]:
    """Base top-5 next tokens and probabilities at every completion position of each row,
    by teacher-forcing the stored ids (one row at a time: ``[L, V]`` logits stay small)."""
    import torch

    from .selection import teacher_forced_logits

    out = []
    with torch.inference_mode():
        for r in rows:
            logits, starts, lengths = teacher_forced_logits(model, [r])
            lp = logits[0, starts[0] : starts[0] + lengths[0]].float().log_softmax(-1)  # [L, V]
            vals, idx = lp.topk(5, dim=-1)  # [L, 5]
            probs = vals.exp().tolist()
            out.append(
                [
                    list(zip(token_strings(tokenizer, ids), ps, strict=True))
                    for ids, ps in zip(idx.tolist(), probs, strict=True)
                ]
            )
    return out


def section_rollouts(run: RunDir, ctx: Context, max_examples: int) -> str:
    rows, source = _rollout_rows(run)
    if not rows:
        return note("No rollouts with entropies (selection.jsonl, or rollouts + entropies).")
    pairs = choose_rollout_pairs(rows, max(1, max_examples // 2))
    if not pairs:
        return note(f"No problem in {source} has both a correct and a wrong rollout.")
    flat = [r for pair in pairs for r in pair]
    tok = ctx.tokenizer()
    top5 = ctx.top5_for(flat)
    hmax = max((h for r in flat for h in r.get("entropy") or []), default=1.0)
    tau = (run.selection or {}).get("tau")
    info = _rollout_info(run)
    prompts = _prompt_texts(info, tok, pairs)
    parts = [
        '<p class="lead">Each token is shaded by the base model\'s entropy before it was '
        "sampled; decision points (where the loss acts) are outlined. Hover a token for its "
        + ("entropy and the base model's top-5 next tokens." if top5 else "entropy.")
        + "</p>",
        _legend(hmax, tau),
    ]
    if ctx.top5_note:
        parts.append(note(ctx.top5_note))
    if tok is None:
        parts.append(note("Tokenizer not available: tokens are shown as ⟨id⟩."))
    for good, bad in pairs:
        pid = good["problem_id"]
        meta = info.get(pid, {})
        k = sum(1 for r in rows if r["problem_id"] == pid)
        n_good = sum(1 for r in rows if r["problem_id"] == pid and r.get("reward", 0) > 0.5)
        head = f"<code>{esc(pid)}</code> · {n_good}/{k} kept rollouts correct"
        if meta.get("answer") is not None:
            head += f" · answer <b>{esc(meta['answer'])}</b>"
        parts.append(f'<div class="problem"><h3>{head}</h3>{_prompt_block(prompts.get(pid))}')
        parts.append('<div class="grid2">')
        for r in (good, bad):
            i = flat.index(r)
            extracted = info.get((pid, r["rollout"]), {}).get("extracted")
            verdict = "correct" if r.get("reward", 0) > 0.5 else "wrong"
            n_dec = len(r.get("decision") or [])
            sub = f"rollout {r['rollout']} · {verdict}"
            if extracted is not None:
                sub += f" · extracted {esc(extracted)}"
            if r.get("advantage") is not None:
                sub += f" · advantage {r['advantage']:+.2f}"
            sub += f" · {len(r.get('completion_ids') or [])} tokens, {n_dec} decision points"
            body = render_tokens(
                token_strings(tok, r.get("completion_ids") or []),
                r.get("entropy") or [],
                r.get("decision") or [],
                hmax,
                top5[i] if top5 else None,
            )
            parts.append(
                f'<div class="rollout {verdict}"><div class="rhead">{sub}</div>'
                f'<div class="tokens">{body}</div></div>'
            )
        parts.append("</div></div>")
    return "".join(parts)


def _legend(hmax: float, tau: float | None) -> str:
    stops = ", ".join(shade(hmax * i / 8, hmax) for i in range(9))
    tau_mark = ""
    if tau is not None and 0 <= tau <= hmax:
        tau_mark = f'<span class="taumark" style="left:{100 * tau / hmax:.1f}%">τ</span>'
    return (
        '<div class="legend"><span>0 nats</span>'
        f'<span class="bar" style="background:linear-gradient(to right, {stops})">{tau_mark}</span>'
        f'<span>{hmax:.1f} nats</span><span class="tok dp">decision point</span></div>'
    )


def _rollout_info(run: RunDir) -> dict:
    """problem_id → {answer}, (problem_id, rollout) → {extracted} from rollouts.jsonl."""
    info: dict = {}
    for r in run.rollouts or []:
        info[r["problem_id"]] = {"answer": r.get("answer"), "prompt": r.get("prompt")}
        info[(r["problem_id"], r.get("rollout"))] = {"extracted": r.get("extracted")}
    return info


def _prompt_texts(info: dict, tok, pairs) -> dict[str, tuple[str, str]]:
    """problem_id → (problem text without the chat template, full prompt)."""
    texts = {}
    for good, _ in pairs:
        pid = good["problem_id"]
        text = (info.get(pid) or {}).get("prompt")
        if text is None and tok is not None and good.get("prompt_ids"):
            text = tok.decode(good["prompt_ids"])
        if text is not None:
            texts[pid] = text
    all_prompts = [v.get("prompt") for k, v in info.items() if isinstance(k, str)]
    strip = template_stripper([p for p in all_prompts if p] or list(texts.values()))
    return {pid: (strip(t), t) for pid, t in texts.items()}


def template_stripper(prompts: list[str]) -> Callable[[str], str]:
    """Returns a function that cuts the chat template off a prompt: the longest common prefix
    and suffix of all ``prompts``, each backed off to a line boundary so that a shared opening
    word of the problems ("What is") is kept."""
    if len(set(prompts)) < 2:
        return lambda p: p
    prefix = os.path.commonprefix(prompts)
    prefix = prefix[: prefix.rfind("\n") + 1]
    suffix = os.path.commonprefix([p[::-1] for p in prompts])[::-1]
    cut = suffix.find("\n")
    suffix = suffix[cut:] if cut >= 0 else ""

    def strip(p: str) -> str:
        if p.startswith(prefix) and p.endswith(suffix) and len(p) > len(prefix) + len(suffix):
            return p[len(prefix) : len(p) - len(suffix)]
        return p

    return strip


def _prompt_block(texts: tuple[str, str] | None) -> str:
    if not texts:
        return ""
    problem, full = texts
    out = f'<pre class="problemtext">{esc(problem.strip())}</pre>'
    if problem != full:
        out += (
            "<details><summary>full prompt</summary>"
            f'<pre class="prompt">{esc(full)}</pre></details>'
        )
    return out


# --------------------------------------------------------------------------- 4. training curves

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
            if k in CURVE_SKIP or not _finite(v):
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(x)
            ys.append(float(v))
    return series


def _ema(ys: list[float], alpha: float) -> list[float]:
    out, m = [], ys[0]
    for y in ys:
        m = alpha * y + (1 - alpha) * m
        out.append(m)
    return out


def _plot_lines(ax, series: dict, keys: list[str]) -> None:
    from matplotlib.ticker import MaxNLocator

    for k in keys:
        xs, ys = series[k]
        if len(xs) > 60:
            line = ax.plot(xs, ys, lw=0.8, alpha=0.3)[0]
            ax.plot(xs, _ema(ys, 0.1), lw=1.5, color=line.get_color(), label=k)
        else:
            ax.plot(xs, ys, lw=1.5, marker="o" if len(xs) < 25 else None, ms=3, label=k)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best")


def section_training(run: RunDir, figs: Figures) -> str:
    log = run.train_log
    if not log:
        return note("No train_log.jsonl in this run dir.")
    plt = _plt()
    series = curve_series(log)
    used: set[str] = set()
    images = []
    for name, title, pred in CURVE_GROUPS:
        keys = [k for k in series if k not in used and pred(k)]
        if not keys:
            continue
        used.update(keys)
        fig, ax = plt.subplots(figsize=(5.2, 3.0))
        if name == "train_optim" and len(keys) == 2:  # lr and grad norm differ by 1e4
            _plot_lines(ax, series, keys[:1])
            ax2 = ax.twinx()
            ax2.grid(False)
            xs, ys = series[keys[1]]
            ax2.plot(xs, ys, lw=1, color="#64748b", alpha=0.8, label=keys[1])
            ax2.set_ylabel(keys[1])
            ax.set_ylabel(keys[0])
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
            lines = ax.get_legend_handles_labels()
            lines2 = ax2.get_legend_handles_labels()
            ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
            ax2.spines["right"].set_visible(True)
        else:
            _plot_lines(ax, series, keys)
        if name == "train_moved":
            ax.axhline(0.5, color="black", lw=0.8, ls=":")
            ax.set_ylim(0, 1)
        ax.set_title(title)
        images.append(f'<figure class="plot">{figs.embed(fig, name, title)}</figure>')
    rest = [k for k in series if k not in used]
    if rest:
        rest = rest[:12]
        cols = 3
        nrows = math.ceil(len(rest) / cols)
        from matplotlib.ticker import MaxNLocator

        fig, axes = plt.subplots(nrows, cols, figsize=(10.5, 2.3 * nrows), squeeze=False)
        for ax, k in zip(axes.flat, rest, strict=False):
            xs, ys = series[k]
            ax.plot(xs, ys, lw=1.2, marker="o" if len(xs) < 25 else None, ms=2)
            ax.set_title(k, fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in list(axes.flat)[len(rest) :]:
            ax.set_visible(False)
        fig.tight_layout()
        images.append(
            f'<figure class="plot wide">{figs.embed(fig, "train_other", "other metrics")}</figure>'
        )
    last = {}
    for k, (_, ys) in series.items():
        last[k] = ys[-1]
    summary = (
        f"<p>{len(log)} logged steps"
        + (f" (to epoch {fmt_num(log[-1]['epoch'])})" if _finite(log[-1].get("epoch")) else "")
        + ". Last value of each metric:</p>"
    )
    table_html = (
        f"<details><summary>last values ({len(last)} metrics)</summary>"
        f"{metric_table(sorted(last.items()))}</details>"
    )
    return f'<div class="grid2">{"".join(images)}</div>{summary}{table_html}'


# --------------------------------------------------------------------------- 5. before / after


def greedy_by_key(rows: list[dict] | None) -> dict[tuple[str, str], dict]:
    return {(r["benchmark"], str(r["id"])): r for r in rows or [] if r.get("sample") == "greedy"}


def divergence(a: str, b: str) -> int:
    """Index of the first character where ``a`` and ``b`` differ (``min(len)`` if one is a
    prefix of the other)."""
    return len(os.path.commonprefix([a, b]))


def _marked(text: str, i: int, *, keep_prefix: int = 300, keep_tail: int = 1500) -> str:
    """``text`` with the common prefix plain, the character at ``i`` marked and the rest
    tinted; a long prefix or tail is cut with an ellipsis."""
    prefix, rest = text[:i], text[i:]
    cut = ""
    if len(prefix) > keep_prefix:
        cut = f'<span class="cut">… {len(prefix) - keep_prefix:,} identical characters …</span>'
        prefix = prefix[-keep_prefix:]
    tail = ""
    if len(rest) > keep_tail:
        tail = f'<span class="cut"> … ({len(rest) - keep_tail:,} more characters)</span>'
        rest = rest[:keep_tail]
    first = rest[:1] or "∅"
    shown_first = "↵\n" if first == "\n" else first
    return (
        f'{cut}{esc(prefix)}<mark class="div">{esc(shown_first)}</mark>'
        f'<span class="after">{esc(rest[1:])}</span>{tail}'
    )


def section_examples(run: RunDir, ctx: Context, max_examples: int) -> str:
    base, adapter = run.eval_samples("base"), run.eval_samples("adapter")
    if not base or not adapter:
        missing = [lab for lab, s in (("base", base), ("adapter", adapter)) if not s]
        return note(f"No greedy eval samples for {' and '.join(missing)}: skipped.")
    gb, ga = greedy_by_key(base), greedy_by_key(adapter)
    keys = [k for k in gb if k in ga]
    gained = [k for k in keys if ga[k].get("correct") and not gb[k].get("correct")]
    lost = [k for k in keys if gb[k].get("correct") and not ga[k].get("correct")]
    strip = template_stripper([gb[k].get("prompt") or "" for k in keys])

    def by_len(k):  # shortest first: a divergence is easiest to read on short outputs
        return (len(gb[k].get("completion", "")) + len(ga[k].get("completion", "")), k)

    chosen = {
        "gained": sorted(gained, key=by_len)[:max_examples],
        "lost": sorted(lost, key=by_len)[:max_examples],
    }
    div_info = ctx.divergence_entropy(
        [
            (gb[k], divergence(gb[k]["completion"], ga[k]["completion"]))
            for ks in chosen.values()
            for k in ks
        ]
    )
    tau = (run.selection or {}).get("tau")
    parts = [
        f'<p class="lead">{len(keys)} paired problems: the adapter newly solves '
        f"<b>{len(gained)}</b> and newly fails <b>{len(lost)}</b> (greedy). "
        "The first character where the two outputs differ is marked; everything after it is "
        "tinted.</p>"
    ]
    if div_info:
        parts.append(
            note(
                "Entropy and top-5 at a divergence: the base model teacher-forced on its own "
                "output, re-tokenized, at the scoring dtype; generation may have run at another "
                "dtype, so near-ties can rank differently from what was generated."
            )
        )
    titles = {"gained": "Newly solved by the adapter", "lost": "Newly failed by the adapter"}
    for kind, ks in chosen.items():
        parts.append(
            f"<h3>{titles[kind]} ({len(ks)} of {len(gained if kind == 'gained' else lost)})</h3>"
        )
        if not ks:
            parts.append(note("None."))
        for k in ks:
            b, a = gb[k], ga[k]
            i = divergence(b["completion"], a["completion"])
            d = div_info.get(id(b))
            where = f"diverge at character {i}"
            if d:
                where += f" (base token {d['token']}: {json.dumps(d['text'], ensure_ascii=False)}"
                where += f", base H = {d['entropy']:.2f} nats"
                if tau is not None:
                    where += " > τ" if d["entropy"] > tau else " ≤ τ"
                where += ")"
                where += "; base top-5: " + ", ".join(
                    f"{json.dumps(t, ensure_ascii=False)} {p:.0%}" for t, p in d["top5"]
                )
            prompt = b.get("prompt") or ""
            parts.append(
                f'<div class="example {kind}"><div class="rhead">'
                f"<code>{esc(k[0])}/{esc(k[1])}</code>"
                f" · answer <b>{esc(b.get('answer'))}</b> · {esc(where)}</div>"
                f"{_prompt_block((strip(prompt), prompt)) if prompt else ''}"
                '<div class="grid2">'
                + _completion_box("base", b, i)
                + _completion_box("adapter", a, i)
                + "</div></div>"
            )
    return "".join(parts)


def _completion_box(label: str, row: dict, i: int) -> str:
    ok = bool(row.get("correct"))
    verdict = "✓ correct" if ok else "✗ wrong"
    extra = f" · extracted {esc(row.get('extracted'))}" if row.get("extracted") is not None else ""
    if row.get("finish") == "length":
        extra += " · truncated"
    return (
        f'<div class="rollout {"correct" if ok else "wrong"}"><div class="rhead">{label}: '
        f'{verdict}{extra}</div><pre class="completion">'
        f"{_marked(row.get('completion', ''), i)}</pre></div>"
    )


# --------------------------------------------------------------------------- 6. analysis


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def _cell(v: Any) -> str:
    if _scalar(v):
        return esc(fmt_num(v))
    return f"<code>{esc(json.dumps(v, ensure_ascii=False)[:200])}</code>"


def json_to_html(obj: Any, depth: int = 0) -> str:
    """Any JSON as tables: a dict of scalars → metric/value; a list of dicts → one row each;
    a dict of flat dicts → one row per key; other nesting → a sub-heading per key."""
    if _scalar(obj):
        return f"<p>{esc(fmt_num(obj))}</p>"
    if isinstance(obj, list):
        if obj and all(isinstance(r, dict) for r in obj):
            cols: list[str] = []
            for r in obj:
                cols += [c for c in r if c not in cols]
            rows = [[_cell(r.get(c)) for c in cols] for r in obj[:500]]
            more = note(f"({len(obj) - 500} more rows)") if len(obj) > 500 else ""
            return table([esc(c) for c in cols], rows) + more
        if all(_scalar(v) for v in obj):
            return f"<p>{esc(', '.join(fmt_num(v) for v in obj[:200]))}</p>"
        return f"<pre>{esc(json.dumps(obj, indent=1, ensure_ascii=False)[:5000])}</pre>"
    if not isinstance(obj, dict):
        return f"<pre>{esc(obj)}</pre>"
    scalars = [(k, v) for k, v in obj.items() if _scalar(v)]
    nested = [(k, v) for k, v in obj.items() if not _scalar(v)]
    out = [metric_table(scalars)] if scalars else []
    flat_dicts = [
        (k, v)
        for k, v in nested
        if isinstance(v, dict) and v and all(_scalar(x) for x in v.values())
    ]
    if len(flat_dicts) >= 2:
        cols: list[str] = []
        for _, v in flat_dicts:
            cols += [c for c in v if c not in cols]
        rows = [[f"<code>{esc(k)}</code>"] + [_cell(v.get(c)) for c in cols] for k, v in flat_dicts]
        out.append(table([""] + [esc(c) for c in cols], rows))
        nested = [(k, v) for k, v in nested if (k, v) not in flat_dicts]
    for k, v in nested:
        if depth >= 3:
            out.append(f"<h5>{esc(k)}</h5><pre>{esc(json.dumps(v, indent=1)[:3000])}</pre>")
        else:
            out.append(f"<h{min(6, 4 + depth)}>{esc(k)}</h{min(6, 4 + depth)}>")
            out.append(json_to_html(v, depth + 1))
    return "".join(out)


def section_analysis(run: RunDir) -> str:
    parts = []
    for name in ANALYSIS_FILES:
        if run.has(name):
            parts.append(f"<h3><code>{esc(name)}</code></h3>{json_to_html(run.json(name))}")
    plots = run.path / "plots"
    images = []
    if plots.is_dir():
        mimes = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}
        for p in sorted(plots.iterdir()):
            if p.suffix.lower() in mimes and p.is_file():
                img = img_tag(p.read_bytes(), mimes[p.suffix.lower()], p.name)
                images.append(
                    f'<figure class="plot">{img}'
                    f"<figcaption><code>plots/{esc(p.name)}</code></figcaption></figure>"
                )
    if images:
        parts.append(f'<h3>Plots</h3><div class="grid2">{"".join(images)}</div>')
    if not parts:
        return note(
            "No analysis files (" + ", ".join(ANALYSIS_FILES) + ", plots/) in this run dir."
        )
    return "".join(parts)


# --------------------------------------------------------------------------- 7. manifest


def section_manifest(run: RunDir) -> str:
    m = run.manifest or {}
    prov = m.get("provenance") or {}
    parts = []
    git = prov.get("git") or {}
    if git:
        commit = git.get("commit") or "unknown (not a git checkout)"
        dirty = " (dirty)" if git.get("dirty") else ""
        parts.append(f"<p>git <code>{esc(commit)}</code>{esc(dirty)}")
        if prov.get("time"):
            parts.append(f" · finished {esc(prov['time'])}")
        parts.append("</p>")
    seeds = m.get("seeds") or {
        k: v.get("seed") for k, v in run.config.items() if isinstance(v, dict) and "seed" in v
    }
    if seeds:
        parts.append(
            "<details open><summary>seeds</summary>"
            + metric_table((f"{k}/seed", v) for k, v in seeds.items())
            + "</details>"
        )
    if prov.get("versions"):
        parts.append(
            "<details><summary>versions</summary>"
            + metric_table(prov["versions"].items())
            + "</details>"
        )
    if prov.get("host"):
        parts.append("<details><summary>host</summary>" + json_to_html(prov["host"]) + "</details>")
    if run.config:
        import yaml

        text = yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True, width=100)
        parts.append(f"<details><summary>config</summary><pre>{esc(text)}</pre></details>")
    if m:
        text = json.dumps(m, indent=2, ensure_ascii=False)
        parts.append(f"<details><summary>manifest.json</summary><pre>{esc(text)}</pre></details>")
    else:
        parts.insert(0, note("No manifest.json (the run did not finish, or is a sweep variant)."))
    return "".join(parts)


# --------------------------------------------------------------------------- model context


class Context:
    """The tokenizer and, with ``top5``, the base model: loaded once, on first need."""

    def __init__(self, run: RunDir, *, top5: bool, tokenizer=None):
        self.run = run
        self.want_top5 = top5
        self._tokenizer = tokenizer
        self._model = None
        self._tried = False
        self.top5_note = ""

    def _model_cfg(self) -> dict:
        return self.run.section("model")

    def _load(self) -> None:
        if self._tried:
            return
        self._tried = True
        cfg = self._model_cfg()
        if self.want_top5:
            from .models import load_model

            try:
                self._model, tok, _ = load_model(
                    cfg.get("model"),
                    dtype=cfg.get("dtype", "float32"),
                    trust_remote_code=False,
                    device="cpu",
                )
                self._tokenizer = self._tokenizer or tok
            except UserError as e:
                self.top5_note = f"Base top-5 not computed: {e}"
        if self._tokenizer is None:
            from .models import load_tokenizer, resolve_model

            try:
                _, location, _ = resolve_model(cfg.get("model"))
                self._tokenizer = load_tokenizer(location, trust_remote_code=False)
            except Exception:  # the page is still useful with ids instead of token text
                self._tokenizer = None

    def tokenizer(self):
        if self._tokenizer is None:
            self._load()
        return self._tokenizer

    def top5_for(self, rows: list[dict]):
        if not self.want_top5:
            return None
        self._load()
        if self._model is None:
            return None
        return compute_top5(self._model, self._tokenizer, rows)

    def divergence_entropy(self, items: list[tuple[dict, int]]) -> dict[int, dict]:
        """Base entropy and top-5 at the token of the base completion that holds character
        ``i`` (the first differing one), keyed by ``id(row)``; empty without the model."""
        if not self.want_top5 or not items:
            return {}
        self._load()
        if self._model is None or self._tokenizer is None:
            return {}
        import torch

        from .losses import entropy_from_logits
        from .selection import teacher_forced_logits

        tok = self._tokenizer
        out = {}
        with torch.inference_mode():
            for row, i in items:
                try:
                    enc = tok(
                        row["completion"], add_special_tokens=False, return_offsets_mapping=True
                    )
                except Exception:  # slow tokenizers have no offsets
                    return out
                offsets = enc["offset_mapping"]
                j = next((t for t, (_, e) in enumerate(offsets) if e > i), None)
                if j is None:
                    continue
                prompt_ids = tok(row.get("prompt") or "", add_special_tokens=False)["input_ids"]
                batch = [{"prompt_ids": prompt_ids, "completion_ids": enc["input_ids"][: j + 1]}]
                logits, starts, _ = teacher_forced_logits(self._model, batch)
                lg = logits[0, starts[0] + j].float()  # [V]
                probs = lg.softmax(-1)
                vals, idx = probs.topk(5)
                out[id(row)] = {
                    "token": j,
                    "text": tok.decode([enc["input_ids"][j]]),
                    "entropy": float(entropy_from_logits(lg)),
                    "top5": list(zip(token_strings(tok, idx.tolist()), vals.tolist(), strict=True)),
                }
        return out


# --------------------------------------------------------------------------- the page

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#ffffff; --soft:#f8fafc;
  --blue:#2563eb; --green:#15803d; --red:#b91c1c; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 15px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 80px; }
h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 20px; margin: 44px 0 12px; padding-bottom: 6px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
h4, h5, h6 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); }
code, pre, .tokens { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
  "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 13px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; overflow: auto; max-height: 420px; white-space: pre-wrap;
  word-break: break-word; }
.sub { color: var(--muted); margin: 0 0 14px; }
nav a { margin-right: 14px; color: var(--blue); text-decoration: none; font-size: 14px; }
.lead { color: #374151; }
.note { color: var(--muted); font-style: italic; margin: 6px 0; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px 5px 0; text-align: left;
  vertical-align: top; }
th { font-weight: 600; color: #374151; border-bottom: 2px solid #d1d5db; }
td { font-variant-numeric: tabular-nums; }
table.headline td, table.headline th { padding-right: 18px; }
table.headline { font-size: 15px; }
.kvwrap { display: flex; flex-wrap: wrap; gap: 0 36px; align-items: flex-start; }
.ci { color: var(--muted); font-size: 13px; }
.pos { color: var(--green); font-weight: 600; } .neg { color: var(--red); font-weight: 600; }
.grid2 { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px 22px; }
figure { margin: 6px 0; }
figure img { max-width: 100%; height: auto; display: block; }
figure.small img { max-width: 640px; }
figure.wide { grid-column: 1 / -1; }
figcaption { color: var(--muted); font-size: 13px; }
details { margin: 8px 0; } summary { cursor: pointer; color: #374151; font-weight: 600; }
.problem { margin: 18px 0 26px; }
.problem h3 { font-weight: 500; }
pre.problemtext { background: #fff; font-size: 14px; max-height: 160px; }
.rollout { border: 1px solid var(--line); border-radius: 8px; overflow: visible;
  border-top: 4px solid var(--line); background: #fff; }
.rollout.correct { border-top-color: var(--green); }
.rollout.wrong { border-top-color: var(--red); }
.rhead { font-size: 13px; color: #374151; padding: 6px 10px; background: var(--soft);
  border-bottom: 1px solid var(--line); }
.tokens { padding: 10px; line-height: 1.9; white-space: pre-wrap; word-break: break-word; }
.tok { position: relative; border-radius: 2px; padding: 1px 0; }
.tok.dp { outline: 2px solid var(--blue); outline-offset: -1px; font-weight: 700; }
.tok[data-tip]:hover { outline: 2px solid #111827; z-index: 5; }
.tok[data-tip]:hover::after { content: attr(data-tip); position: absolute; left: 0; top: 1.9em;
  z-index: 10; white-space: pre; background: #111827; color: #f9fafb; font-size: 12px;
  line-height: 1.45; font-weight: 400; padding: 6px 9px; border-radius: 6px;
  box-shadow: 0 4px 14px rgba(0,0,0,.25); pointer-events: none; }
.legend { display: flex; align-items: center; gap: 10px; font-size: 13px; color: var(--muted);
  margin: 8px 0 4px; }
.legend .bar { position: relative; display: inline-block; width: 240px; height: 14px;
  border-radius: 3px; border: 1px solid var(--line); }
.legend .taumark { position: absolute; top: -3px; height: 20px; border-left: 2px dashed #111827;
  padding-left: 3px; font-size: 11px; color: #111827; line-height: 20px; }
.legend .tok.dp { padding: 1px 4px; color: var(--fg); }
.example { margin: 14px 0 24px; border-left: 3px solid var(--line); padding-left: 12px; }
.example.gained { border-left-color: var(--green); }
.example.lost { border-left-color: var(--red); }
.example > .rhead { background: none; border: 0; padding: 0 0 6px; }
pre.completion { border: 0; margin: 0; border-radius: 0 0 8px 8px; max-height: 320px; }
mark.div { background: #fde047; outline: 2px solid #ca8a04; border-radius: 2px; }
.after { color: #9a3412; background: #fff7ed; }
.cut { color: var(--muted); font-style: italic; }
kbd { font-size: 12px; }
@media (max-width: 860px) { .grid2 { grid-template-columns: 1fr; } }
"""

SECTIONS = [
    ("headline", "Headline: base vs adapter"),
    ("entropy", "Entropy and problem selection"),
    ("rollouts", "Rollouts: token entropy and decision points"),
    ("training", "Training curves"),
    ("examples", "Before / after: greedy examples"),
    ("analysis", "Analysis"),
    ("manifest", "Manifest"),
]


def build_report(
    run_dir: str | os.PathLike, *, top5: bool = True, max_examples: int = 4, tokenizer=None
) -> Path:
    """Write ``RUN_DIR/report.html`` (self-contained) and ``RUN_DIR/report/*.png``.

    Args:
        run_dir: a run dir written by ``reasonmaxxer run`` (or any of its stages, a sweep
            variant, a GRPO run); missing files skip their section with a note.
        top5: teacher-force the shown rollouts through the base model for hover top-5 and the
            base entropy at before/after divergences (loads the model once).
        max_examples: newly solved / newly failed examples shown per kind; the rollout section
            shows ``max_examples // 2`` problems (a correct and a wrong rollout each).
        tokenizer: decodes token ids for display; default: the run's model tokenizer (files
            only, no weights, unless ``top5``), or ``⟨id⟩`` when it cannot be loaded.

    Returns the path of the page.
    """
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise UserError(f"run dir not found: {run.path}")
    if not any(run.has(f) for f in RUN_FILES):
        raise UserError(f"{run.path} holds none of the run files ({', '.join(RUN_FILES[:4])}, …)")
    figs = Figures(run.path / REPORT_DIR)
    ctx = Context(run, top5=top5, tokenizer=tokenizer)
    bodies = {
        "headline": lambda: section_headline(run, figs),
        "entropy": lambda: section_entropy(run, figs),
        "rollouts": lambda: section_rollouts(run, ctx, max_examples),
        "training": lambda: section_training(run, figs),
        "examples": lambda: section_examples(run, ctx, max_examples),
        "analysis": lambda: section_analysis(run),
        "manifest": lambda: section_manifest(run),
    }
    import matplotlib

    sections = []
    with matplotlib.rc_context(PLOT_STYLE):
        for key, title in SECTIONS:
            body = bodies[key]()
            sections.append(f'<section id="{key}"><h2>{esc(title)}</h2>{body}</section>')
    figs.remove_stale()
    page = _page(run, sections)
    out = run.path / REPORT_HTML
    atomic_write_text(out, page)
    return out


def _page(run: RunDir, sections: list[str]) -> str:
    name = run.path.resolve().name
    model = run.section("model").get("model") or "?"
    resolved = ((run.sample or {}).get("model") or {}).get("resolved")
    sub = [f"<code>{esc(run.path.resolve())}</code>", f"model <b>{esc(resolved or model)}</b>"]
    train, sel = run.section("train"), run.section("select")
    if train.get("loss"):
        sub.append(f"loss <code>{esc(train['loss'])}</code>, λ = {esc(train.get('lam'))}")
    if sel.get("gate"):
        sub.append(f"gate <code>{esc(sel['gate'])}</code>")
    sub.append("report written " + datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    notes = "".join(note(n) for n in run.notes)
    nav = "".join(f'<a href="#{k}">{esc(t.split(":")[0])}</a>' for k, t in SECTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>report · {esc(name)}</title><style>{CSS}</style></head><body><main>"
        f'<header><h1>Run report: {esc(name)}</h1><p class="sub">{" · ".join(sub)}</p>'
        f"<nav>{nav}</nav>{notes}</header>" + "".join(sections) + "</main></body></html>\n"
    )
