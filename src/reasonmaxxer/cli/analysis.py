"""Command line of the analysis suite (paper §3–§4).

``analyze_group`` (``reasonmaxxer analyze disagree|intervene``) and ``distill_cmd``
(``reasonmaxxer distill``); the main CLI registers both. As in the main CLI, every flag comes
from a config dataclass field (name, type, help text), so the flags, the YAML keys of
``--config`` and the ``config.yaml`` a run writes never drift apart. Heavy modules (torch,
transformers) are imported inside the command bodies.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..analysis import AnalysisConfig, DisagreeConfig, InterveneConfig
from ..analysis.distill import DistillConfig
from ..config import PromptConfig, field_defaults, resolve, to_dict
from ..io import run_lock
from .util import check_out_dir, config_options

MULTI = frozenset({"tau", "tau_fracs", "gate_fracs", "policies", "benchmarks"})  # comma lists


def shown_defaults(cls: type) -> dict:
    """What the command resolves when no flag is given, for ``--help``: the dataclass defaults
    built and validated, so ``auto`` settings show what they resolve to on this machine. The
    teacher has no default, so a stand-in makes them valid and is then dropped."""
    stand_in = {"teacher_adapter": "TEACHER"}
    out = to_dict(resolve(cls, defaults=field_defaults(cls), overrides=stand_in))
    return {**out, "teacher_adapter": None}


def _options(cls: type):
    """One ``--flag`` per field (see :func:`.util.config_options`); MULTI fields repeat."""
    return config_options(cls, multi=MULTI, defaults=shown_defaults(cls))


def build_config(cls: type, config: str | None, kw: dict):
    """:func:`~reasonmaxxer.config.resolve` from the dataclass defaults ← ``--config`` YAML ←
    flags (comma-list flags joined, prompt flags into the ``prompt`` section); validated."""
    names = {f.name for f in dataclasses.fields(cls)}
    prompt_names = {f.name for f in dataclasses.fields(PromptConfig)}
    flags: dict = {}
    for k, v in kw.items():
        if isinstance(v, tuple):
            v = ",".join(v) if v else None
        if v is None:
            continue
        if k in names:
            flags[k] = v
        elif k in prompt_names:
            flags.setdefault("prompt", {})[k] = v
    return resolve(cls, defaults=field_defaults(cls), config=config, overrides=flags)


def preflight(cfg: AnalysisConfig, out: str) -> None:
    """The out folder, both models and the teacher adapter, checked before anything loads."""
    from ..models import check_adapter_dir, check_model_spec

    check_out_dir(out)
    check_model_spec(cfg.model)
    if cfg.teacher is not None:
        check_model_spec(cfg.teacher)
    if cfg.teacher_adapter is not None:
        check_adapter_dir(cfg.teacher_adapter)


def _common(cls: type):
    def decorate(fn):
        fn = click.option(
            "--out", type=click.Path(), required=True, help="output folder (created)"
        )(fn)
        fn = click.option(
            "--config", "config", type=click.Path(), default=None, help="YAML config to start from"
        )(fn)
        fn = config_options(PromptConfig, multi=MULTI, defaults=field_defaults(cls)["prompt"])(fn)
        return _options(cls)(fn)

    return decorate


def _print_table(rows: list[dict], columns: list[str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in ("benchmark", "label", "model") else "right")
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            if isinstance(v, float):
                pct = c.endswith(("frac", "pass@1", "frac_touched", "frac_gated"))
                cells.append(f"{100 * v:.2f}%" if pct else f"{v:.3g}")
            else:
                cells.append("-" if v is None else str(v))
        table.add_row(*cells)
    Console().print(table)


analyze_group = click.Group(
    "analyze",
    help="Token-level analysis of a base/teacher pair (paper §3): disagreement and intervention.",
)


@analyze_group.command("disagree")
@_common(DisagreeConfig)
def disagree_cmd(config, out, **kw) -> None:
    """Classify every position of the base's greedy rollouts as unchanged / reranked /
    shifted under the teacher (Table 2, Fig. 1)."""
    from ..analysis import run_disagree

    cfg = build_config(DisagreeConfig, config, kw)
    preflight(cfg, out)
    with run_lock(out):
        record = run_disagree(cfg, out)
    _print_table(
        record["table"],
        [
            "benchmark",
            "positions",
            "reranked_frac",
            "shifted_frac",
            "mean_rank_reranked",
            "entropy_unchanged",
            "entropy_reranked",
            "entropy_ratio",
            "auroc_reranked",
        ],
        "disagreement classes",
    )
    gate = record["summary"]["gate"]
    _print_table(
        [{**g, "frac": g["frac"]} for g in gate],
        ["frac", "n_gated", "tau", "precision", "recall", "lift"],
        "top-x% base-entropy positions vs reranked positions",
    )
    click.echo(
        f"wrote {Path(out) / 'disagree.json'} and plots/ ({record['summary']['wall_time_s']:.0f}s)"
    )


@analyze_group.command("intervene")
@_common(InterveneConfig)
def intervene_cmd(config, out, **kw) -> None:
    """Greedy base decoding with token substitutions: oracle, random and entropy-gated
    (Fig. 2), next to the base's and the teacher's own greedy pass@1."""
    from ..analysis import run_intervene

    cfg = build_config(InterveneConfig, config, kw)
    preflight(cfg, out)
    with run_lock(out):
        record = run_intervene(cfg, out)
    key = record["summary"]["benchmark"]
    _print_table(
        [r for r in record["table"] if r["benchmark"] == key],
        ["label", "n", "pass@1", "frac_touched", "frac_gated", "mean_tokens"],
        f"intervention on {key}",
    )
    click.echo(
        f"wrote {Path(out) / 'intervene.json'} and plots/ ({record['summary']['wall_time_s']:.0f}s)"
    )


@click.command("distill")
@_common(DistillConfig)
def distill_cmd(config, out, **kw) -> None:
    """KL-LoRA distillation of the teacher into a LoRA on the base (paper §4): cache the
    teacher's top-k log-probs on its own rollouts, train, compare greedy pass@1."""
    from ..analysis.distill import run_distill

    cfg = build_config(DistillConfig, config, kw)
    preflight(cfg, out)
    with run_lock(out):
        record = run_distill(cfg, out)
    s = record["summary"]
    if record["table"]:
        _print_table(record["table"], ["model", "benchmark", "n", "pass@1"], "distillation")
    click.echo(
        f"{s['steps']} steps, KL {s['kl_first']:.4f} → {s['kl_last']:.4f}; trainable "
        f"{100 * s['trainable_frac']:.3f}% of parameters → {Path(out) / 'adapter'} "
        f"({s['wall_time_s']:.0f}s)"
    )


__all__ = ["AnalysisConfig", "analyze_group", "build_config", "distill_cmd"]
