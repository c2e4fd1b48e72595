"""The ``reasonmaxxer`` command line: a thin layer over the stage modules.

Every stage's flags are generated from its config dataclass (name, type, help text), so the
flags, the YAML keys and the recorded config can never drift apart. Bad input is one line on
stderr and exit status 2; an interrupt keeps finished work and says how to resume.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import allocator
from ..config import (
    EvalConfig,
    ModelConfig,
    PromptConfig,
    RunConfig,
    SampleConfig,
    SelectConfig,
    TrainConfig,
    dump_yaml,
    resolve,
    run_defaults,
)
from ..errors import UserError
from ..io import run_lock
from .util import check_out_dir, check_run_dir, config_options, pick, set_threads

# What a command uses when a flag is not given: the packaged default preset (the eval command
# alone starts its eval section from the dataclass: greedy only). --help shows these.
PACKAGED = run_defaults()
PLAIN = run_defaults(plain_eval=True)


def parse_sets(sets: tuple[str, ...]) -> dict:
    """``--set train.lr=3e-4`` → ``{"train": {"lr": "3e-4"}}``; a top-level field takes no
    section (``--set round_anchor=base``). Types and names are checked by the config."""
    out: dict = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key or key.startswith(".") or key.endswith("."):
            raise UserError(f"--set expects [section.]key=value, got {item!r}")
        if "." not in key:
            if isinstance(out.get(key), dict):
                raise UserError(f"--set {item!r}: {key!r} is a section; name one of its keys")
            out[key] = value
            continue
        section, name = key.split(".", 1)
        if not isinstance(out.setdefault(section, {}), dict):
            raise UserError(f"--set {item!r}: {section!r} is not a section")
        out[section][name] = value  # "none" switches an optional field off
    return out


def _console():
    from rich.console import Console

    # Off a terminal (logs, CI) rich would wrap at 80 columns and cut the comparison table.
    return Console(width=None if sys.stdout.isatty() else 140)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="reasonmaxxer")
def cli() -> None:
    """Improve a model's math reasoning without RL (entropy-gated contrastive LoRA), and
    analyse why it works."""


def stage_config(
    run_dir: Path | None,
    config: str | None,
    overrides: dict,
    *,
    plain_eval: bool = False,
    preset: str = "default",
) -> RunConfig:
    """:func:`~reasonmaxxer.config.resolve` for the pipeline commands: the packaged
    ``preset`` (:func:`~reasonmaxxer.config.run_defaults`; with ``plain_eval`` the eval
    section is the dataclass's, greedy only) ← run dir's config.yaml (if any) ← --config YAML
    ← flags."""
    defaults = run_defaults(preset, plain_eval=plain_eval)
    return resolve(
        RunConfig, defaults=defaults, run_dir=run_dir, config=config, overrides=overrides
    )


def _preflight(
    model_cfg: ModelConfig, *, adapter: str | None = None, check_model: bool = True
) -> None:
    """Everything about the model that can be checked before it loads (seconds, not minutes):
    the device (`--device cuda` without CUDA), the model spec (unless ``check_model`` is off:
    a stage that may not load the model at all), the adapter, the threads."""
    from ..devices import resolve_device
    from ..models import check_adapter_dir, check_model_spec

    resolve_device(model_cfg.device)
    if check_model:
        check_model_spec(model_cfg.model)
    if adapter is not None:
        check_adapter_dir(adapter)
    set_threads(model_cfg.threads)


def execution_options(fn):
    """``--device``, ``--threads`` and ``--trust-remote-code`` for commands that read the model
    from a run folder: how to run it, never what it computes (and code execution is only ever
    switched on here, on the command line)."""
    return config_options(
        ModelConfig,
        skip=("model", "dtype", "gen_dtype", "backend", "merge_adapter"),
        defaults=PACKAGED["model"],
    )(fn)


@cli.command("eval")
@config_options(ModelConfig, defaults=PLAIN["model"])
@config_options(PromptConfig, defaults=PLAIN["prompt"])
@config_options(EvalConfig, defaults=PLAIN["eval"])
@click.option("--adapter", type=click.Path(), default=None, help="PEFT adapter folder to apply")
@click.option(
    "--config", "config", type=click.Path(), default=None, help="YAML config to start from"
)
@click.option(
    "--out",
    type=click.Path(),
    required=True,
    help="output folder for results.json and samples.jsonl",
)
def eval_cmd(adapter, config, out, **kw) -> None:
    """Evaluate a model (optionally + adapter) on benchmarks: greedy pass@1, avg@k, pass@k."""
    from ..eval.evaluation import evaluate, results_table

    check_out_dir(out)
    cfg = stage_config(
        None,
        config,
        {
            "model": pick(ModelConfig, kw),
            "prompt": pick(PromptConfig, kw),
            "eval": pick(EvalConfig, kw),
        },
        plain_eval=True,
    )
    _preflight(cfg.model, adapter=adapter)
    with run_lock(out):
        record = evaluate(cfg.model, cfg.prompt, cfg.eval, out, adapter=adapter)
    console = _console()
    console.print(
        results_table(
            record, title=f"eval: {record['model']['spec']}" + (f" + {adapter}" if adapter else "")
        )
    )
    console.print(
        f"wrote {Path(out) / 'results.json'} and samples.jsonl ({record['wall_time_s']:.0f}s)"
    )


def _save_config(run_dir: Path, cfg: RunConfig) -> None:
    from ..io import atomic_write_text

    atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))


@cli.command("sample")
@config_options(ModelConfig, defaults=PACKAGED["model"])
@config_options(PromptConfig, defaults=PACKAGED["prompt"])
@config_options(SampleConfig, defaults=PACKAGED["sample"])
@click.option(
    "--config", "config", type=click.Path(), default=None, help="YAML config to start from"
)
@click.option(
    "--out", type=click.Path(), required=True, help="run folder (created; resumed if it exists)"
)
def sample_cmd(config, out, **kw) -> None:
    """Sample K rollouts per training problem from the frozen base (resumable)."""
    from ..method.sampling import check_resumable, sample

    run_dir = check_out_dir(out)
    cfg = stage_config(
        run_dir,
        config,
        {
            "model": pick(ModelConfig, kw),
            "prompt": pick(PromptConfig, kw),
            "sample": pick(SampleConfig, kw),
        },
    )
    _preflight(cfg.model)
    with run_lock(run_dir):
        check_resumable(run_dir, cfg)  # refused: config.yaml stays as it was
        _save_config(run_dir, cfg)
        s = sample(run_dir, cfg)
    _console().print(
        f"{s['problems']} problems × {cfg.sample.k} rollouts, mean reward {s['mean_reward']:.3f}, "
        f"{s['mixed_problems']} mixed / {s['all_correct']} all-correct / {s['all_wrong']} all-wrong "
        f"→ {run_dir / 'rollouts.jsonl'}"
    )


def run_dir_stage(section: str, cls: type):
    """The options of a stage that works in an existing run folder (``select``, ``train``):
    RUN_DIR, the flags of its ``section`` (a ``cls``), the execution flags and --config."""

    def decorate(fn):
        fn = click.option(
            "--config", "config", type=click.Path(), default=None, help="YAML config to start from"
        )(fn)
        fn = execution_options(fn)
        fn = config_options(cls, defaults=PACKAGED[section])(fn)
        return click.argument("run_dir", type=click.Path())(fn)

    return decorate


def run_dir_config(run_dir: str, config: str | None, section: str, cls: type, kw: dict):
    """``(run folder, its resolved config)`` for a RUN_DIR stage: the folder's config.yaml
    under the --config YAML and the flags of ``section`` and of the model."""
    folder = check_run_dir(run_dir)
    overrides = {section: pick(cls, kw), "model": pick(ModelConfig, kw)}
    return folder, stage_config(folder, config, overrides)


@cli.command("select")
@run_dir_stage("select", SelectConfig)
def select_cmd(run_dir, config, **kw) -> None:
    """Keep mixed-success problems, compute base entropies, mark decision points."""
    from ..method.selection import select

    run_dir, cfg = run_dir_config(run_dir, config, "select", SelectConfig, kw)
    # the model loads only if entropies or examples are missing
    _preflight(cfg.model, check_model=False)
    with run_lock(run_dir, create=False):
        s = select(run_dir, cfg)
        _save_config(run_dir, cfg)  # only once the selection is made with it
    tau = f"{s['tau']:.3f}" if s["tau"] is not None else "-"
    _console().print(
        f"kept {s['problems_kept']}/{s['problems_total']} problems, {s['rollouts_kept']} rollouts; "
        f"gate={s['gate']} τ={tau} nats marks {s['decision_tokens']}/{s['tokens']} tokens "
        f"({100 * s['frac_marked']:.1f}%) → {run_dir / 'selection.jsonl'}"
    )


@cli.command("train")
@run_dir_stage("train", TrainConfig)
def train_cmd(run_dir, config, **kw) -> None:
    """Train the LoRA adapter with the decision-point loss and the KL anchor."""
    from ..method.training import train

    run_dir, cfg = run_dir_config(run_dir, config, "train", TrainConfig, kw)
    _preflight(cfg.model)
    from ..scaleout.dist import is_main_process

    if not is_main_process():  # under `accelerate launch` only the main process locks and writes
        train(run_dir, cfg)
        return
    with run_lock(run_dir, create=False):
        s = train(run_dir, cfg)
        _save_config(run_dir, cfg)  # only once the adapter is trained with it
    _console().print(
        f"{s['steps']} steps on {s['rollouts']} rollouts in {s['wall_time_s']:.0f}s; "
        f"trainable {100 * s['trainable_frac']:.2f}% of parameters → {run_dir / 'adapter'}"
    )


@cli.command("run")
@click.option(
    "--config",
    "config",
    type=click.Path(),
    default=None,
    help="YAML config (default: the packaged one)",
)
@click.option(
    "--out", type=click.Path(), default="runs/default", show_default=True, help="run folder"
)
@config_options(ModelConfig, only=("model",), defaults=PACKAGED["model"])
@click.option(
    "--preset",
    default="default",
    show_default=True,
    help="packaged config to start from: default (embedded model, CPU), paper (the authors' "
    "recipe on the default task) or qwen2.5-1.5b (the paper's recipe, GPU)",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="[SECTION.]KEY=VALUE",
    help="override any config field, e.g. --set train.lr=3e-4 or --set round_anchor=base",
)
@config_options(RunConfig, only=("rounds", "round_from", "round_anchor"), defaults=PACKAGED)
@execution_options
def run_cmd(config, out, model, preset, sets, rounds, round_from, round_anchor, **kw) -> None:
    """The whole method from one YAML config: sample → select → train → eval → compare."""
    from ..method.pipeline import comparison_table, rounds_table, run

    overrides = parse_sets(sets)
    rounds_flags = {"rounds": rounds, "round_from": round_from, "round_anchor": round_anchor}
    overrides.update({k: v for k, v in rounds_flags.items() if v is not None})
    if model:
        overrides.setdefault("model", {})["model"] = model
    overrides["model"] = {**overrides.get("model", {}), **pick(ModelConfig, kw)}
    check_out_dir(out)
    cfg = stage_config(None, config, overrides, preset=preset)
    _preflight(cfg.model)
    console = _console()
    with run_lock(out):
        manifest = run(cfg, out, console=console)
    console.print(comparison_table(manifest))
    if manifest.get("rounds"):
        console.print(rounds_table(manifest))
    if manifest.get("report"):
        console.print(f"report: {manifest['report']}")
    final = manifest.get("final_adapter", "adapter")
    console.print(f"run folder: {out} (manifest.json, config.yaml; final adapter: {final}/)")


@cli.command("benchmarks")
def benchmarks_cmd() -> None:
    """List the bundled benchmarks and the arith generator's spec syntax."""
    from ..eval.data import BUNDLED, load_benchmark

    console = _console()
    for name in BUNDLED:
        console.print(f"{name:16s} {len(load_benchmark(name)):6d} problems")
    console.print(
        "arith:level=1..5,n=N,split=train|eval|dev|test|all,seed=S,style=expr|word|mixed|heldout  (synthetic)"
    )


def _register() -> None:
    from .analysis import analyze_group, distill_cmd
    from .grpo import grpo_cmd
    from .report import report_cmd

    for command in (report_cmd, grpo_cmd, analyze_group, distill_cmd):
        cli.add_command(command)


_register()


def main() -> None:
    allocator.restore_environ()  # after launcher.entry()'s re-exec under mimalloc
    try:
        cli.main(standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo(
            "interrupted: finished work is kept; re-run the same command to resume", err=True
        )
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo(
            "interrupted: finished work is kept; re-run the same command to resume", err=True
        )
        sys.exit(130)
