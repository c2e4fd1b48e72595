"""``reasonmaxxer run``: sample → select → train → eval base and adapter → compare.

Writes ``config.yaml`` (resolved) once every check has passed and ``manifest.json`` last. A
stage whose output is already in the run dir, made with the same settings, model weights and
benchmark file contents, is skipped, so an interrupted run is resumed by running the same
command again.
"""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig, dump_yaml, from_dict, identity, load_yaml, on_model, to_dict
from ..errors import UserError
from ..eval.comparison import compare
from ..eval.data import benchmark_fingerprints, load_benchmark, load_benchmarks
from ..eval.evaluation import evaluate
from ..io import atomic_write_json, atomic_write_text, identity_hash, read_json
from ..models import model_fingerprint
from ..runinfo import (
    Timer,
    peak_gpu_mib,
    peak_rss_mib,
    process_peak_rss_mib,
    provenance,
    release_memory,
    reset_peak_rss,
)
from ..stats import format_p
from .sampling import ROLLOUTS, check_resumable, sample
from .selection import select
from .training import ADAPTER, train


def _hash(obj) -> str:
    return identity_hash(obj)


def check_disjoint(cfg: RunConfig) -> int:
    """Training and evaluation problems must not share a problem text."""
    train = {p.problem.strip() for p in load_benchmark(cfg.sample.train, limit=cfg.sample.limit)}
    overlap = 0
    for name, problems in load_benchmarks(cfg.eval.benchmarks, limit=cfg.eval.limit).items():
        shared = sum(p.problem.strip() in train for p in problems)
        if shared:
            raise UserError(
                f"{shared} problems of eval benchmark {name} are also training problems; "
                "choose disjoint sets (e.g. arith split=train vs split=eval)"
            )
        overlap += shared
    from .checkpoints import check_dev_disjoint

    check_dev_disjoint(cfg)
    return overlap


def check_resume(cfg: RunConfig, out: Path) -> None:
    """Refuse a run folder whose rollouts were made with other sample/model settings: by the
    settings its config.yaml records, then by the rollouts' own settings hash (which also
    covers the model's weights and the training file's contents)."""
    if not (out / ROLLOUTS).is_file():
        return
    if (out / "config.yaml").is_file():
        prev, new = (
            identity(from_dict(RunConfig, load_yaml(out / "config.yaml", run_folder=True))),
            identity(cfg),
        )
        if prev["sample"] != new["sample"] or prev["model"] != new["model"]:
            raise UserError(
                f"{out} holds a run with other sample/model settings; use a new --out folder"
            )
    check_resumable(out, cfg)


def stage_keys(cfg: RunConfig) -> dict[str, dict]:
    """What each stage's output depends on: the config without its execution settings, the
    model's weights fingerprint and the contents of the benchmark files (not their names)."""
    c = identity(cfg)
    model = {**c["model"], "fingerprint": model_fingerprint(cfg.model.model)}
    upstream = {
        "model": model,
        "prompt": c["prompt"],
        "sample": c["sample"],
        "train_data": benchmark_fingerprints(cfg.sample.train),
    }
    # how often train checkpoints does not change the adapter it makes
    train = {k: v for k, v in c["train"].items() if k not in ("checkpoint_every", "report_to")}
    train_key = {**upstream, "select": c["select"], "train": train}
    eval_key = {
        "model": model,
        "prompt": c["prompt"],
        "eval": c["eval"],
        "eval_data": benchmark_fingerprints(cfg.eval.benchmarks),
    }
    return {
        "sample": upstream,
        "select": {**upstream, "select": c["select"]},
        "train": train_key,
        "eval_base": eval_key,
        "eval_adapter": {**eval_key, "train": train_key},
    }


def run(cfg: RunConfig, out: str | Path, *, console=None) -> dict:
    """The whole pipeline into ``out``; returns the manifest.

    Every check runs before anything is written: a refused folder keeps its config.yaml.
    """
    out = Path(out)
    _check_run(cfg, out)
    keys = stage_keys(cfg)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    stages = Stages(out, console)
    stage = stages.run
    s_sample = stage("sample", keys["sample"], lambda: sample(out, cfg), ROLLOUTS)
    s_select = stage("select", keys["select"], lambda: select(out, cfg), "selection.jsonl")
    s_train = stage("train", keys["train"], lambda: train(out, cfg), ADAPTER)
    s_base, s_adapter = _eval_stages(cfg, out, stage, keys)
    comparison = compare(out / "eval" / "base", out / "eval" / "adapter", seed=cfg.eval.seed)
    rounds = [{"round": 1, "dir": ".", "comparison": comparison}]
    prev_key = keys["train"]
    for r in range(2, cfg.rounds + 1):
        prev_key, entry = _run_round(r, cfg, out, stage, prev_key, keys)
        rounds.append(entry)
    manifest = {
        "config": to_dict(cfg),
        "primary_metric": cfg.primary_metric,
        "comparison": comparison,
        "stages": stages.costs(),
        # this invocation's whole-process peak (a resumed run's skipped stages are not in it)
        "process_peak_rss_mib": round(process_peak_rss_mib(), 1),
        "counts": _counts(COUNTS, s_sample, s_select, s_train),
        **({"checkpoints": s_train["checkpoint_choice"]} if "checkpoint_choice" in s_train else {}),
        "eval": {"base": s_base, "adapter": s_adapter},
        "seeds": {
            "sample": cfg.sample.seed,
            "select": cfg.select.seed,
            "train": cfg.train.seed,
            "eval": cfg.eval.seed,
        },
        "provenance": provenance(),
    }
    # the adapter of the last round, relative to the run folder: what the run produced
    manifest["final_adapter"] = f"{rounds[-1]['dir']}/{ADAPTER}" if cfg.rounds > 1 else ADAPTER
    if cfg.rounds > 1:
        manifest["rounds"] = rounds
    # The manifest first: the report reads it, so the page always shows this run's numbers.
    atomic_write_json(out / "manifest.json", manifest)
    if cfg.report:
        _write_report(cfg, out, manifest)
    return manifest


def _check_run(cfg: RunConfig, out: Path) -> None:
    """Every check ``run`` makes before it writes anything (a UserError on the first that
    fails): the backend, ``out`` a folder, disjoint problem sets, a resumable folder."""
    from ..generation import pick_backend

    pick_backend(cfg.model.backend)  # --backend vllm without vllm fails before any stage
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    check_disjoint(cfg)  # also reports unreadable benchmark files
    check_resume(cfg, out)


class Stages:
    """The resumable stages of a run folder, recorded in ``out/stages.json``: each stage's
    key hash, result, wall time and peak memory."""

    def __init__(self, out: Path, console=None) -> None:
        self.out, self.console = out, console
        self.path = out / "stages.json"
        self.stages = read_json(self.path) if self.path.is_file() else {}

    def run(self, name: str, key: dict, fn, done_file: str):
        """``fn()``'s result, or the recorded one when stage ``name`` ran with the same
        ``key`` and ``out/done_file`` exists (then ``fn`` is not called)."""
        h = _hash(key)
        if self.stages.get(name, {}).get("hash") == h and (self.out / done_file).exists():
            if self.console:
                self.console.print(f"[dim]{name}: done already, skipped[/dim]")
            return self.stages[name]["result"]
        release_memory()  # the previous stage's model, optimizer and caches
        reset_peak_rss()
        with Timer() as t:
            result = fn()
        # this stage's own peak RSS (where the kernel lets us reset it; else the running max)
        self.stages[name] = {
            "hash": h,
            "result": result,
            "wall_time_s": t.seconds,
            "peak_rss_mib": peak_rss_mib(),
            **({"peak_gpu_mib": gpu} if (gpu := peak_gpu_mib()) is not None else {}),
        }
        atomic_write_json(self.path, self.stages)
        return result

    def costs(self) -> dict:
        """Each stage's wall time and peak memory, as the manifest shows them."""
        return {
            k: {key: v[key] for key in ("wall_time_s", "peak_rss_mib", "peak_gpu_mib") if key in v}
            for k, v in self.stages.items()
        }


def _eval_stages(cfg: RunConfig, out: Path, stage, keys: dict) -> tuple[dict, dict]:
    """The ``eval_base`` and ``eval_adapter`` stages of round 1; returns their summaries."""
    s_base = stage(
        "eval_base",
        keys["eval_base"],
        lambda: _eval_summary(
            evaluate(cfg.model, cfg.prompt, cfg.eval, out / "eval" / "base", label="base")
        ),
        "eval/base/results.json",
    )
    s_adapter = stage(
        "eval_adapter",
        keys["eval_adapter"],
        lambda: _eval_summary(
            evaluate(
                cfg.model,
                cfg.prompt,
                cfg.eval,
                out / "eval" / "adapter",
                adapter=str(out / ADAPTER),
                label="adapter",
            )
        ),
        "eval/adapter/results.json",
    )
    return s_base, s_adapter


# (count, stage, the stage summary's statistic), in the order they are written
COUNTS = (  # the manifest's, of round 1
    ("train_problems", "sample", "problems"),
    ("rollouts", "sample", "rollouts"),
    ("rollout_tokens", "sample", "tokens"),
    ("problems_kept", "select", "problems_kept"),
    ("rollouts_kept", "select", "rollouts_kept"),
    ("decision_tokens", "select", "decision_tokens"),
    ("frac_marked", "select", "frac_marked"),
    ("tau", "select", "tau"),
    ("train_steps", "train", "steps"),
    ("trainable_frac", "train", "trainable_frac"),
)
ROUND_COUNTS = (  # a later round's, in its ``round.json`` entry
    ("rollouts", "sample", "rollouts"),
    ("mean_reward", "sample", "mean_reward"),
    ("problems_kept", "select", "problems_kept"),
    ("rollouts_kept", "select", "rollouts_kept"),
    ("decision_tokens", "select", "decision_tokens"),
    ("train_steps", "train", "steps"),
)


def _counts(spec, s_sample: dict, s_select: dict, s_train: dict) -> dict:
    """A round's ``counts``: for each ``(count, stage, statistic)`` of ``spec`` (:data:`COUNTS`
    or :data:`ROUND_COUNTS`), that statistic of that stage's summary."""
    stages = {"sample": s_sample, "select": s_select, "train": s_train}
    return {name: stages[stage][key] for name, stage, key in spec}


def _write_report(cfg: RunConfig, out: Path, manifest: dict) -> None:
    """The divergences the report shows, then ``report.html``; its path goes into the
    manifest, which is written again."""
    from ..report import build_report
    from .examples import write_divergences

    # the base entropy and top-5 where the base and the final adapter diverge
    rounds = manifest.get("rounds") or []
    write_divergences(out, cfg, adapter_dir=rounds[-1]["dir"] if rounds else ".")
    manifest["report"] = str(build_report(out))
    atomic_write_json(out / "manifest.json", manifest)


def _run_round(
    r: int, cfg: RunConfig, out: Path, stage, prev_key: dict, keys: dict
) -> tuple[dict, dict]:
    """Round ``r >= 2`` in ``out/round{r}``: policy, sample, select, train, eval; each a
    resumable stage named ``round{r}/...``; ``keys`` are round 1's :func:`stage_keys`.
    Returns (this round's train key, its entry)."""
    from .rounds import materialise_policy, round_dir, round_models

    rdir = round_dir(out, r)
    rel = rdir.relative_to(out).as_posix()
    m = round_models(
        out, r, base=cfg.model.model, round_from=cfg.round_from, anchor=cfg.round_anchor
    )
    c = identity(cfg)
    policy_key = {"round": r, "from": prev_key}
    stage(
        f"{rel}/policy",
        policy_key,
        lambda: materialise_policy(
            m["prev_base"],
            m["prev_adapter"],
            Path(m["policy"]),
            trust_remote_code=cfg.model.trust_remote_code,
        ),
        f"{rel}/policy/config.json",
    )
    # round 1's sample key less its model: this round samples from the policy made above
    upstream = {**{k: v for k, v in keys["sample"].items() if k != "model"}, "policy": policy_key}
    s_sample = stage(
        f"{rel}/sample",
        upstream,
        lambda: sample(rdir, on_model(cfg, m["policy"])),
        f"{rel}/rollouts.jsonl",
    )
    select_key = {**upstream, "select": c["select"]}
    s_select = stage(
        f"{rel}/select",
        select_key,
        lambda: select(rdir, on_model(cfg, m["policy"])),
        f"{rel}/selection.jsonl",
    )
    train_key = _round_train_key(cfg, c["train"], select_key)
    s_train = stage(
        f"{rel}/train",
        train_key,
        lambda: train(
            rdir,
            on_model(cfg, m["train_base"]),
            init_adapter=m["init_adapter"],
            ref_model=m["ref"],
        ),
        f"{rel}/{ADAPTER}",
    )
    s_eval = _round_eval(r, cfg, rdir, rel, stage, {**keys["eval_base"], "train": train_key}, m)
    comparison = compare(out / "eval" / "base", rdir / "eval" / "adapter", seed=cfg.eval.seed)
    entry = {
        "round": r,
        "dir": rel,
        "models": {k: v for k, v in m.items() if v is not None},
        "comparison": comparison,
        "counts": _counts(ROUND_COUNTS, s_sample, s_select, s_train),
        "eval": s_eval,
    }
    atomic_write_json(rdir / "round.json", entry)
    return train_key, entry


def _round_train_key(cfg: RunConfig, train: dict, select_key: dict) -> dict:
    """A later round's train stage key: its select key, the identity ``train`` settings
    (less ``checkpoint_every``) and how the round picks its base and anchor."""
    train_settings = {k: v for k, v in train.items() if k != "checkpoint_every"}
    return {
        **select_key,
        "train": train_settings,
        "round_from": cfg.round_from,
        "round_anchor": cfg.round_anchor,
    }


def _round_eval(r: int, cfg: RunConfig, rdir: Path, rel: str, stage, key: dict, m: dict) -> dict:
    """Round ``r``'s ``eval_adapter`` stage: its adapter on the round's train base."""
    return stage(
        f"{rel}/eval_adapter",
        key,
        lambda: _eval_summary(
            evaluate(
                on_model(cfg, m["train_base"]).model,
                cfg.prompt,
                cfg.eval,
                rdir / "eval" / "adapter",
                adapter=str(rdir / ADAPTER),
                label=f"round {r}",
            )
        ),
        f"{rel}/eval/adapter/results.json",
    )


def _eval_summary(record: dict) -> dict:
    return {
        "metrics": record["metrics"],
        "benchmarks": record["benchmarks"],
        "wall_time_s": record["wall_time_s"],
        "tokens": record["tokens_generated"],
    }


def comparison_table(manifest: dict):
    """The base against the run's final adapter (the last round's, when there are rounds)."""
    from rich.table import Table

    primary = manifest.get("primary_metric", "pass@1")
    final = manifest["rounds"][-1] if manifest.get("rounds") else None
    which = f"round {final['round']}'s adapter" if final else "adapter"
    table = Table(title=f"base vs {which} (held-out; significance on {primary})")
    for col in (
        "benchmark",
        "n",
        "base pass@1",
        "adapter pass@1",
        "+/−",
        "McNemar p",
        "avg@k base → adapter",
        "bootstrap p",
    ):
        table.add_column(col, justify="left" if col == "benchmark" else "right")
    for bench, e in (final or manifest)["comparison"].items():
        m = e["pass@1_mcnemar"]
        row = [
            bench,
            str(e["n"]),
            f"{100 * e['base_pass@1']:.1f}%",
            f"{100 * e['adapter_pass@1']:.1f}%",
            f"+{m['gained']}/−{m['lost']}",
            format_p(m["p_value"]),
        ]
        if "avg@k_bootstrap" in e:
            bt = e["avg@k_bootstrap"]
            row += [
                f"{100 * e['base_avg@k']:.1f}% → {100 * e['adapter_avg@k']:.1f}%",
                format_p(bt["p_value"], bt.get("n_boot", 2000)),
            ]
        else:
            row += ["-", "-"]
        table.add_row(*row)
    return table


def rounds_table(manifest: dict):
    """Greedy pass@1 per round and benchmark (round 0 is the base)."""
    from rich.table import Table

    rounds = manifest["rounds"]
    benches = list(rounds[0]["comparison"])
    table = Table(title="greedy pass@1 per round (held-out)")
    table.add_column("round", justify="right")
    for b in benches:
        table.add_column(b, justify="right")
    table.add_row(
        "base", *(f"{100 * rounds[0]['comparison'][b]['base_pass@1']:.1f}%" for b in benches)
    )
    for e in rounds:
        table.add_row(
            str(e["round"]),
            *(f"{100 * e['comparison'][b]['adapter_pass@1']:.1f}%" for b in benches),
        )
    return table
