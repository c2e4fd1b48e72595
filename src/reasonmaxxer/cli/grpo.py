"""``reasonmaxxer grpo``: the full-RL baseline command (flags generated from GRPORunConfig)."""

from __future__ import annotations

from pathlib import Path

import click

from ..baselines.grpo import GRPORunConfig, build_grpo_config, grpo_defaults
from ..config import ModelConfig
from ..io import run_lock
from .util import check_out_dir, config_options, pick, set_threads

DEFAULTS = grpo_defaults()  # what grpo resolves when no flag is given; --help shows it


@click.command("grpo")
@config_options(GRPORunConfig, defaults=DEFAULTS)
@config_options(ModelConfig, only=("model", "threads"), defaults=DEFAULTS["model"])
@click.option(
    "--config",
    "config",
    type=click.Path(),
    default=None,
    help="YAML config to start from (these flags' names as keys, plus model: and prompt: sections)",
)
@click.option(
    "--out",
    type=click.Path(),
    required=True,
    help="run folder: adapter/, train_log.jsonl, eval_samples.jsonl, config.yaml, manifest.json",
)
def grpo_cmd(model, threads, config, out, **kw) -> None:
    """Full-RL baseline: TRL's GRPOTrainer on the same model, problems, prompts, reward and
    LoRA shape, with a greedy pass@1 on a fixed eval subset logged against wall time."""
    from rich.console import Console

    from ..baselines.grpo import run_grpo
    from ..models import check_model_spec

    check_out_dir(out)
    overrides: dict = pick(GRPORunConfig, kw)
    if model is not None:
        overrides.setdefault("model", {})["model"] = model
    if threads is not None:
        overrides.setdefault("model", {})["threads"] = threads
    cfg = build_grpo_config(config, overrides)
    check_model_spec(cfg.model.model)
    set_threads(cfg.model.threads)
    with run_lock(out):
        m = run_grpo(cfg, out)
    t = m["timing_s"]
    console = Console()
    if m["final_eval"]:
        for name, r in m["final_eval"]["benchmarks"].items():
            first = next((e for e in m["evals"] if f"eval/{name}/pass@1" in e), None)
            start = f"{100 * first[f'eval/{name}/pass@1']:.1f}% → " if first else ""
            console.print(f"{name}: greedy pass@1 {start}{100 * r['pass@1']:.1f}% (n={r['n']})")
    console.print(
        f"{m['steps']} steps ({m['stopped_by']}) in {t['train']:.0f}s of training "
        f"(generation {t['generation']:.0f}s, reward {t['reward']:.0f}s, "
        f"optimisation {t['optimisation']:.0f}s; evals {t['eval']:.0f}s) → {Path(out) / 'adapter'}"
    )
