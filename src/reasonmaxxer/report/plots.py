"""The report's plots: matplotlib (Agg) figures saved as ``RUN_DIR/report/NAME.png`` and
embedded in the page as data URIs, and the entropy colour scale of the token view.

Each ``*_plot`` function takes plain numbers (already read from the run dir) and returns a
``<figure>``; none of them reads a file.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from .html import esc, finite, img_tag
from .rundir import bench_stats

BASE_COLOR = "#8c96a6"
ADAPTER_COLOR = "#2563eb"
GATED_COLOR = "#ea580c"
ENTROPY_CMAP = "YlOrRd"


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


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def headline_plot(benches: list[str], comparison: dict, results: dict, figs: Figures) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 + 1.6 * len(benches)), 2.8))
    width = 0.36
    for i, (label, color) in enumerate((("base", BASE_COLOR), ("adapter", ADAPTER_COLOR))):
        xs, ys, lo, hi = [], [], [], []
        for j, bench in enumerate(benches):
            st = bench_stats(results[label], bench)
            y = st.get("pass@1", (comparison.get(bench) or {}).get(f"{label}_pass@1"))
            if not finite(y):
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


def entropy_plot(hist, tau, frac, gate, source, figs: Figures) -> str:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plt = pyplot()
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


def pass_plot(counts: list[int], k: int, window, sel: dict, figs: Figures) -> str:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
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


def curve_plot(
    series: dict, keys: list[str], name: str, title: str, figs: Figures, file: str | None = None
) -> str:
    """One training-curve panel of ``keys`` (each ``series[k] = (steps, values)``) of the curve
    group ``name``, saved as ``FILE.png`` (default: the group's name). The optimizer panel
    puts the second key (grad norm, 1e4 times the lr) on its own axis."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    if name == "train_optim" and len(keys) == 2:
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
    return f'<figure class="plot">{figs.embed(fig, file or name, title)}</figure>'


def small_multiples(series: dict, keys: list[str], figs: Figures, name: str = "train_other") -> str:
    """One small panel per key, three to a row (the metrics no curve group took)."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    cols = 3
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(10.5, 2.3 * nrows), squeeze=False)
    for ax, k in zip(axes.flat, keys, strict=False):
        xs, ys = series[k]
        ax.plot(xs, ys, lw=1.2, marker="o" if len(xs) < 25 else None, ms=2)
        ax.set_title(k, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return f'<figure class="plot wide">{figs.embed(fig, name, "other metrics")}</figure>'
