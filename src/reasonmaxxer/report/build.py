"""``build_report``: the sections in order, joined into one page and written atomically."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..io import atomic_write_text
from .beforeafter import section_examples
from .curves import section_training
from .entropy import section_entropy
from .headline import section_headline
from .html import esc, page
from .pages import section_analysis, section_manifest
from .plots import PLOT_STYLE, Figures
from .rollouts import section_rollouts
from .rundir import REPORT_DIR, REPORT_HTML, RUN_FILES, RunDir

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

    Reads files only: no torch, no model, no tokenizer is loaded.

    Args:
        run_dir: a run dir written by ``reasonmaxxer run`` (or any of its stages, a sweep
            variant, a GRPO run); missing files skip their section with a note.
        top5: show the base model's top-5 next tokens recorded by the producers (on hover in
            ``examples.jsonl``'s rollouts, at the before/after divergences from
            ``eval/divergences.jsonl``).
        max_examples: newly solved / newly failed examples shown per kind; the rollout section
            shows ``max_examples // 2`` problems (a correct and a wrong rollout each).
        tokenizer: an object with ``decode(ids) -> str``, used only for a run dir without
            ``examples.jsonl`` (older runs) to show token text instead of ``⟨id⟩``.

    Returns the path of the page.
    """
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise UserError(f"run dir not found: {run.path}")
    if not any(run.has(f) for f in RUN_FILES):
        raise UserError(f"{run.path} holds none of the run files ({', '.join(RUN_FILES[:4])}, …)")
    figs = Figures(run.path / REPORT_DIR)
    bodies = {
        "headline": lambda: section_headline(run, figs),
        "entropy": lambda: section_entropy(run, figs),
        "rollouts": lambda: section_rollouts(run, max_examples, top5=top5, tokenizer=tokenizer),
        "training": lambda: section_training(run, figs),
        "examples": lambda: section_examples(run, max_examples, top5=top5),
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
    out = run.path / REPORT_HTML
    atomic_write_text(out, run_page(run, sections))
    return out


def run_page(run: RunDir, sections: list[str]) -> str:
    """The page around ``sections``: the run's name, model, loss and gate, and a nav bar."""
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
    nav = [(k, t.split(":")[0]) for k, t in SECTIONS]
    return page(name, sub, nav, run.notes, "".join(sections))
