"""What the analyses write: the record and resolved config, and the Fig. 1 / Fig. 2 plots
(PNG, written atomically)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from ..config import dump_yaml
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text
from .metrics import CLASSES


def write_record(out: Path, name: str, record: dict, cfg: Any) -> None:
    """``OUT/<name>.json`` and ``OUT/config.yaml`` (the resolved settings), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    atomic_write_json(out / f"{name}.json", record)


def save_figure(fig, path: Path) -> None:
    """Render ``fig`` to PNG and write it atomically (temp file + rename); closes the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


COLORS = {"unchanged": "#9e9e9e", "reranked": "#1f77b4", "shifted": "#d62728"}


def plot_disagree(cat: dict, summary: dict, plots: Path) -> list[Path]:
    """Fig. 1-style plots: base entropy per class (log-y and log-x), the base rank of the
    teacher's token, and the entropy gate's precision/recall."""
    import numpy as np

    plt = pyplot()
    classes, entropy = cat["classes"].numpy(), cat["entropy"].numpy()
    paths = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    h_max = float(entropy.max()) if entropy.size else 1.0
    lin_bins = np.linspace(0, max(h_max, 1e-3), 41)
    log_bins = np.logspace(-4, np.log10(max(h_max, 1e-3)) + 0.01, 41)
    for c, name in enumerate(CLASSES):
        h = entropy[classes == c]
        if not h.size:
            continue
        lbl = f"{name} ({100 * summary[name]['frac']:.2f}%, mean H {h.mean():.2f})"
        kw = {"histtype": "step", "density": True, "color": COLORS[name], "linewidth": 1.6}
        axes[0].hist(h, bins=lin_bins, label=lbl, **kw)
        axes[1].hist(np.clip(h, 1e-4, None), bins=log_bins, label=lbl, **kw)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("base entropy (nats)")
    axes[0].set_ylabel("density (log)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("base entropy (nats, log; clipped at 1e-4)")
    axes[1].set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Base entropy by disagreement class ({summary['positions']} positions)")
    paths.append(plots / "disagree_entropy.png")
    save_figure(fig, paths[-1])

    fig, ax = plt.subplots(figsize=(7, 3.6))
    hist = summary["rank_hist"]
    labels = [k for k in hist if k != "1"]
    ax.bar(labels, [hist[k] for k in labels], color=COLORS["reranked"])
    ax.set_xlabel("base rank of the teacher's top-1 (disagreeing positions)")
    ax.set_ylabel("positions")
    mr = summary["mean_rank_reranked"]
    ax.set_title(f"mean rank at reranked positions: {mr:.2f}" if mr else "no disagreements")
    paths.append(plots / "disagree_rank.png")
    save_figure(fig, paths[-1])

    fig, ax = plt.subplots(figsize=(6, 3.6))
    gate = summary["gate"]
    xs = [100 * g["frac"] for g in gate]
    ax.plot(xs, [g["precision"] or 0 for g in gate], "o-", label="precision")
    ax.plot(xs, [g["recall"] or 0 for g in gate], "s-", label="recall")
    ax.axhline(summary["reranked"]["frac"], color="grey", ls=":", label="chance precision")
    ax.set_xscale("log")
    ax.set_xlabel("top x% base-entropy positions")
    ax.set_ylabel("vs reranked positions")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    paths.append(plots / "entropy_gate.png")
    save_figure(fig, paths[-1])
    return paths


def plot_intervene(rows: list[dict], plots: Path) -> Path:
    """Fig. 2-style bars: pass@1 per policy, annotated with the fraction of tokens touched."""
    plt = pyplot()
    bars: list[tuple[str, float, float, float | None, str]] = []  # label, acc, err, frac, color
    for kind, color in (("base", "#9e9e9e"), ("teacher", "#2ca02c"), ("oracle", "#ff7f0e")):
        for r in rows:
            if r["policy"] == kind:
                bars.append((kind, r["pass@1"], 0.0, r["frac_touched"], color))
    rnd = [r for r in rows if r["policy"] == "random"]
    if rnd:
        acc = [r["pass@1"] for r in rnd]
        mean = sum(acc) / len(acc)
        sd = math.sqrt(sum((a - mean) ** 2 for a in acc) / max(len(acc) - 1, 1))
        frac = sum(r["frac_touched"] or 0 for r in rnd) / len(rnd)
        bars.append((f"random\n({len(rnd)} seeds)", mean, sd, frac, "#d62728"))
    for r in rows:
        if r["policy"] == "entropy":
            bars.append((f"H>{r['tau']:.2g}", r["pass@1"], 0.0, r["frac_touched"], "#1f77b4"))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(bars) + 2), 4))
    xs = range(len(bars))
    ax.bar(
        xs,
        [100 * b[1] for b in bars],
        yerr=[100 * b[2] for b in bars],
        color=[b[4] for b in bars],
        capsize=3,
    )
    for x, b in zip(xs, bars, strict=True):
        if b[3] is not None and b[0] != "base":
            ax.annotate(
                f"{100 * b[3]:.1f}%",
                (x, 100 * b[1]),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 3),
                textcoords="offset points",
            )
    for kind, style in (("base", ":"), ("teacher", "--")):
        for r in rows:
            if r["policy"] == kind:
                ax.axhline(100 * r["pass@1"], color="black", ls=style, lw=0.8, label=kind)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([b[0] for b in bars], fontsize=8)
    ax.set_ylabel("greedy pass@1 (%)")
    ax.set_ylim(0, max(5.0, 1.2 * max(100 * (b[1] + b[2]) for b in bars)) if bars else 100)
    ax.set_title("Token substitution during base decoding (labels: % of tokens changed)")
    ax.legend(fontsize=8)
    path = plots / "intervene_pass1.png"
    save_figure(fig, path)
    return path
