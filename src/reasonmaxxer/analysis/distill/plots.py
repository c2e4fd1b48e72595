"""The distillation's plots: the KL / agreement curve and the pass@1 bars."""

from __future__ import annotations

from pathlib import Path

from ..outputs import pyplot, save_figure


def plot_distill(log: list[dict], table: list[dict], trainable_frac: float, plots: Path) -> None:
    """The KL / top-1 agreement curve, and the pass@1 bars of base, teacher and student."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    steps = [r["step"] for r in log]
    ax.plot(steps, [r["train/kl"] for r in log], color="#1f77b4", label="KL(teacher‖student)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("KL (nats / token)", color="#1f77b4")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["train/top1_agree"] for r in log], color="#ff7f0e", ls="--")
    ax2.set_ylabel("student top-1 = teacher top-1", color="#ff7f0e")
    ax2.set_ylim(0, 1.02)
    ax.set_title("KL-LoRA distillation")
    save_figure(fig, plots / "distill_loss.png")

    if not table:
        return
    benches = list(dict.fromkeys(r["benchmark"] for r in table))
    who = ["base", "teacher", "student"]
    colors = {"base": "#9e9e9e", "teacher": "#2ca02c", "student": "#1f77b4"}
    fig, ax = plt.subplots(figsize=(max(5, 2.2 * len(benches) + 2), 4))
    width = 0.8 / len(who)
    for j, w in enumerate(who):
        acc = {r["benchmark"]: r["pass@1"] for r in table if r["model"] == w}
        xs = [b + (j - 1) * width for b in range(len(benches))]
        ax.bar(xs, [100 * acc.get(b, 0.0) for b in benches], width, label=w, color=colors[w])
    ax.set_xticks(list(range(len(benches))))
    ax.set_xticklabels(benches, fontsize=8)
    ax.set_ylabel("greedy pass@1 (%)")
    ax.set_title(f"student = base + LoRA ({100 * trainable_frac:.2f}% of parameters trainable)")
    ax.legend(fontsize=8)
    save_figure(fig, plots / "distill_pass1.png")
