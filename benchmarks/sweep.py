"""Sweep / ablation harness: many ReasonMaxxer variants on the same rollouts and eval set.

    python benchmarks/sweep.py SPEC.yaml --out runs/sweep

SPEC.yaml::

    base:                 # overrides of the packaged default config (same keys as run's YAML)
      sample: {k: 8}
    variants:             # name -> overrides on top of base
      default: {}
      bounded-all: {select: {gate: all}}
      paper: {preset: paper}   # a packaged preset in place of the default, then base

``--seeds N`` runs every variant N times: run i > 0 is ``NAME@i``, with the sampling, selection
and training seeds moved by i (sampled afresh, trained afresh; the greedy base eval is shared).
The seeds table (``OUT/seeds.md``) gives each variant's pass@1 mean ± sd over its runs, a
paired bootstrap over problems of the seed-averaged correctness against the base, and
Holm-adjusted p-values over the variants.

Rollouts are sampled once per distinct (model, prompt, sample) config and the base model is
evaluated once per eval config; each variant gets its own folder with copies of the rollouts
and cached entropies, then runs select → train → eval(adapter) and a paired test against the
shared base eval (``--shared DIR`` shares them across sweeps). Results are appended to ``OUT/sweep.jsonl`` (resumable: finished variants
are skipped) and printed as a table, also written to ``OUT/sweep.md``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import yaml

from reasonmaxxer import allocator
from reasonmaxxer.config import RunConfig, as_given, build_run_config, from_dict, merge, to_dict
from reasonmaxxer.errors import UserError
from reasonmaxxer.eval.comparison import compare, load_correct
from reasonmaxxer.eval.data import load_benchmark
from reasonmaxxer.eval.evaluation import evaluate
from reasonmaxxer.io import append_jsonl, atomic_write_text, iter_jsonl
from reasonmaxxer.method.pipeline import check_disjoint
from reasonmaxxer.method.sampling import sample, sampler_settings, settings_hash
from reasonmaxxer.method.selection import select
from reasonmaxxer.method.training import ADAPTER, train
from reasonmaxxer.stats import format_p, holm_bootstrap, paired_bootstrap

N_BOOT = 2000


def _h(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def run_variant(name: str, cfg: RunConfig, out: Path, shared: Path) -> dict:
    c = to_dict(cfg)
    roll_dir = shared / f"rollouts-{_h([c['model'], c['prompt'], c['sample']])}"
    if not (roll_dir / "sample.json").is_file():
        reuse_prefix(shared, roll_dir, cfg)
        sample(roll_dir, cfg)
    base_dir = shared / f"eval-base-{_h([c['model'], c['prompt'], c['eval']])}"
    if not (base_dir / "results.json").is_file():
        evaluate(cfg.model, cfg.prompt, cfg.eval, base_dir, label="base")
    vdir = out / name
    vdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(vdir / "config.yaml", yaml.safe_dump(c, sort_keys=False))
    shutil.copy(roll_dir / "rollouts.jsonl", vdir / "rollouts.jsonl")
    if (roll_dir / "entropies.jsonl").is_file():
        shutil.copy(roll_dir / "entropies.jsonl", vdir / "entropies.jsonl")
    sel = select(vdir, cfg)
    shutil.copy(vdir / "entropies.jsonl", roll_dir / "entropies.jsonl")  # share the cache
    tr = train(vdir, cfg)
    ev = evaluate(
        cfg.model,
        cfg.prompt,
        cfg.eval,
        vdir / "eval" / "adapter",
        adapter=str(vdir / ADAPTER),
        label=name,
    )
    cmp = compare(base_dir, vdir / "eval" / "adapter", seed=cfg.eval.seed)
    samp = json.loads((roll_dir / "sample.json").read_text())
    return {
        "variant": name,
        "overrides": None,
        "comparison": cmp,
        "selection": {
            k: sel[k] for k in ("problems_kept", "rollouts_kept", "frac_marked", "tau", "gate")
        },
        "train": {k: tr[k] for k in ("steps", "wall_time_s", "trainable_frac")},
        "sample": {
            k: samp[k] for k in ("problems", "mean_reward", "mixed_problems", "wall_time_s")
        },
        "eval_wall_time_s": ev["wall_time_s"],
        # relative to OUT: a committed sweep.jsonl names no machine's paths
        "eval_dirs": {
            "base": os.path.relpath(base_dir, out),
            "adapter": os.path.relpath(vdir / "eval" / "adapter", out),
        },
    }


SEEDED = (("sample", "seed"), ("select", "seed"), ("train", "seed"))


def seeded(name: str, overrides: dict, base: dict, i: int) -> tuple[str, dict]:
    """Run i of a variant: ``NAME@i`` with every seed moved by i (run 0 is the variant)."""
    if i == 0:
        return name, overrides
    resolved = variant_dict(overrides, base)
    out = copy.deepcopy(overrides)  # the spec's own dicts stay as they are
    for section, key in SEEDED:
        out.setdefault(section, {})[key] = resolved[section][key] + i
    return f"{name}@{i}", out


def _mean_sd(mean: float, sd: float | None) -> str:
    """``53.3 ± 1.4%``; a single run has no spread to show: ``52.2% (1 run)``."""
    return f"{100 * mean:.1f}% (1 run)" if sd is None else f"{100 * mean:.1f} ± {100 * sd:.1f}%"


def seeds_table(rows: list[dict], out: Path) -> str:
    """Per variant over its seeded runs: pass@1 mean ± sd, the base, a paired bootstrap of the
    seed-averaged per-problem correctness against the base, and Holm over the variants. The
    bootstrap resamples problems with the seeds held fixed: its p asks whether these seeds'
    average beats the base on this problem set; the sd is the seed-to-seed spread."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["variant"].rsplit("@", 1)[0], []).append(r)
    stats = []
    for name, runs in groups.items():
        base = load_correct(out / runs[0]["eval_dirs"]["base"])[0]
        per_run = [load_correct(out / r["eval_dirs"]["adapter"])[0] for r in runs]
        keys = sorted(k for k in base if all(k in c for c in per_run))
        if not keys:
            raise SystemExit(f"error: {name}: its runs and the base share no problem")
        accs = [sum(c[k] for k in keys) / len(keys) for c in per_run]
        mean_new = [sum(c[k] for c in per_run) / len(per_run) for k in keys]
        test = paired_bootstrap([float(base[k]) for k in keys], mean_new, n_boot=N_BOOT)
        sd = statistics.stdev(accs) if len(accs) > 1 else None  # n - 1 in the denominator
        base_acc = statistics.mean(base[k] for k in keys)
        stats.append((name, len(runs), len(keys), base_acc, statistics.mean(accs), sd, test))
    # a bootstrap p of 0 means p < 2/N_BOOT: it enters Holm as that bound, shown "≤"
    adjusted, bounded = holm_bootstrap([t["p_value"] for *_, t in stats], N_BOOT)
    lines = [
        "| variant | seeds | n | base pass@1 | pass@1 mean ± sd | Δ [95% CI] | bootstrap p | Holm p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, k, n, b, mean, sd, t), adj, is_bound in zip(stats, adjusted, bounded, strict=True):
        lo, hi = t["ci95"]
        lines.append(
            f"| {name} | {k} | {n} | {100 * b:.1f}% | {_mean_sd(mean, sd)} | "
            f"{100 * t['diff']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | "
            f"{format_p(t['p_value'], N_BOOT)} | {'≤ ' * is_bound}{format_p(adj)} |"
        )
    return "\n".join(lines) + "\n"


def variant_dict(overrides: dict, base: dict) -> dict:
    """A variant's resolved config: its ``preset`` (the packaged ``default`` unless it names
    another), then the spec's ``base``, then the variant's other overrides.

    A variant is one round (:func:`run_variant` samples from the base, selects, trains and
    evaluates once), so ``rounds`` is 1 whatever the preset says (the default preset runs three
    since 2026-12-07); a spec that asks for more is an error."""
    overrides = dict(overrides)
    preset = overrides.pop("preset", "default")
    if any(int(d.get("rounds", 1)) != 1 for d in (base, overrides)):
        raise SystemExit("error: a sweep variant runs one round; drop `rounds` from the spec")
    try:
        packaged = as_given(build_run_config(preset=preset))
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    return merge(merge({**packaged, "rounds": 1}, base), overrides)


def reuse_prefix(shared: Path, roll_dir: Path, cfg: RunConfig) -> bool:
    """Fill ``roll_dir`` with the rollouts of a larger sampled set in ``shared`` whose problems
    begin with this config's, when every other sampling setting is the same: a chunk's
    rollouts depend only on its problems and its seed (the run seed and the chunk index), so
    the first whole chunks of that set are what sampling these problems would produce. The
    sample stage then resumes every chunk and samples nothing. Returns whether it did."""
    want = sampler_settings(cfg)
    data_keys = ("train", "train_data", "limit")

    def rest(settings: dict) -> dict:
        return {k: v for k, v in settings.items() if k not in data_keys}

    problems = load_benchmark(cfg.sample.train, limit=cfg.sample.limit)
    if (roll_dir / "rollouts.jsonl").exists() or len(problems) % cfg.sample.chunk_problems:
        return False
    for src in sorted(shared.glob("rollouts-*/sample.json")):
        have = json.loads(src.read_text())["settings"]
        if rest(have) != rest(want):
            continue
        theirs = load_benchmark(have["train"], limit=have["limit"])
        if theirs[: len(problems)] != problems or len(theirs) == len(problems):
            continue
        chunks = len(problems) // cfg.sample.chunk_problems
        new_hash = settings_hash(want)
        rows = [
            {**r, "settings_hash": new_hash}
            for r in iter_jsonl(src.parent / "rollouts.jsonl")
            if r["chunk"] < chunks
        ]
        roll_dir.mkdir(parents=True, exist_ok=True)
        append_jsonl(roll_dir / "rollouts.jsonl", rows)
        print(f"rollouts of the first {chunks} chunks from {src.parent.name}", file=sys.stderr)
        return True
    return False


def shared_dir(args, out: Path) -> Path:
    return Path(args.shared) if args.shared else out


def seed_shared(run: Path, cfg: RunConfig, shared: Path) -> None:
    """Put a finished run's rollouts (+ entropies) and base eval where :func:`run_variant`
    looks for them, so the sweep samples nothing and evaluates the base once less. Refused
    when the run's sample/model/prompt/eval settings differ from the sweep's base."""
    ran = to_dict(from_dict(RunConfig, yaml.safe_load((run / "config.yaml").read_text())))
    c = to_dict(cfg)
    for section in ("model", "prompt", "sample", "eval"):
        if ran[section] != c[section]:
            raise SystemExit(f"error: --seed-from {run}: its {section} settings differ")
    roll_dir = shared / f"rollouts-{_h([c['model'], c['prompt'], c['sample']])}"
    base_dir = shared / f"eval-base-{_h([c['model'], c['prompt'], c['eval']])}"
    roll_dir.mkdir(parents=True, exist_ok=True)
    for name in ("rollouts.jsonl", "sample.json", "entropies.jsonl"):
        if (run / name).is_file() and not (roll_dir / name).is_file():
            shutil.copy(run / name, roll_dir / name)
    if not (base_dir / "results.json").is_file():
        shutil.copytree(run / "eval" / "base", base_dir, dirs_exist_ok=True)


def table(rows: list[dict]) -> str:
    lines = [
        "| variant | overrides | kept | τ (nats) | marked | steps | base pass@1 | adapter pass@1 | +/− | McNemar p | avg@k base → adapter | bootstrap p |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for e in r["comparison"].values():
            m = e["pass@1_mcnemar"]
            s = r["selection"]
            tau = f"{s['tau']:.2f}" if s["tau"] is not None else "-"
            avg = bp = "-"
            if "avg@k_bootstrap" in e:
                avg = f"{100 * e['base_avg@k']:.1f} → {100 * e['adapter_avg@k']:.1f}"
                bp = f"{e['avg@k_bootstrap']['p_value']:.3g}"
            lines.append(
                f"| {r['variant']} | `{json.dumps(r['overrides'], separators=(',', ':'))}` | {s['problems_kept']} | {tau} | "
                f"{100 * s['frac_marked']:.1f}% | {r['train']['steps']} | {100 * e['base_pass@1']:.1f}% | "
                f"{100 * e['adapter_pass@1']:.1f}% | +{m['gained']}/−{m['lost']} | {m['p_value']:.3g} | {avg} | {bp} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    # on mimalloc, as the reasonmaxxer command runs (torch is not imported yet): two float32
    # sampling sweeps under glibc showed a third of the machine's CPU time in the kernel (top)
    allocator.reexec([sys.executable, *sys.argv])
    allocator.restore_environ()
    from reasonmaxxer.cli.util import set_threads  # imports torch: after the re-exec

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("spec")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default=None, help="comma list of variant names to run")
    ap.add_argument(
        "--shared",
        default=None,
        help="folder for rollouts and base evals shared across sweeps (default: OUT)",
    )
    ap.add_argument(
        "--seed-from",
        default=None,
        help="a finished `reasonmaxxer run` folder whose rollouts, entropies and base eval "
        "the variants reuse (when its sample, model and eval settings are the sweep's)",
    )
    ap.add_argument(
        "--seeds", type=int, default=1, help="runs of each variant, seeds moved by 0..N-1"
    )
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="run nothing: write the tables from OUT/sweep.jsonl (rows of several "
        "processes that ran --only in parallel)",
    )
    args = ap.parse_args()
    if args.seeds < 1:
        raise SystemExit("error: --seeds must be >= 1")
    spec = yaml.safe_load(Path(args.spec).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.spec, out / "spec.yaml")
    results_path = out / "sweep.jsonl"
    done = {r["variant"]: r for r in iter_jsonl(results_path)} if results_path.is_file() else {}
    only = set(args.only.split(",")) if args.only else None
    base = variant_dict({}, spec.get("base") or {})
    if args.seed_from:
        seed_shared(Path(args.seed_from), from_dict(RunConfig, base), shared_dir(args, out))
    names = []
    for variant, spec_overrides in (spec.get("variants") or {}).items():
        for i in range(args.seeds):
            name, overrides = seeded(variant, spec_overrides or {}, spec.get("base") or {}, i)
            names.append(name)
            if name in done or (only and variant not in only) or args.table_only:
                continue
            cfg = from_dict(RunConfig, variant_dict(overrides, spec.get("base") or {}))
            check_disjoint(cfg)
            # model.threads as `reasonmaxxer run` takes it (None: the cores free right now);
            # two sweeps on 2 cores at torch's default 2 threads each sampled ~3x slower
            set_threads(cfg.model.threads)
            print(f"=== variant {name}: {json.dumps(overrides)}", file=sys.stderr, flush=True)
            row = run_variant(name, cfg, out, shared_dir(args, out))
            row["overrides"] = overrides
            append_jsonl(results_path, [row])
            done[name] = row
    rows = [done[n] for n in names if n in done]
    text = table(rows)
    atomic_write_text(out / "sweep.md", text)
    print(text)
    if args.seeds > 1:
        seeds = seeds_table([r for r in rows if "eval_dirs" in r], out)
        atomic_write_text(out / "seeds.md", seeds)
        print(seeds)


if __name__ == "__main__":
    main()
