"""Checkpoint choice on a dev split, as the authors do (off by default).

With ``train.save_every_frac`` the adapter is saved every that fraction of an epoch into
``checkpoints/step-NNNNN/`` (the final adapter too); each is scored by greedy pass@1 on
``train.dev`` (cached in the checkpoint's ``dev/results.json``, so an interrupted choice
resumes), every score goes to ``checkpoints.json``, and the best becomes ``adapter/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..config import EvalConfig, RunConfig, to_dict
from ..errors import UserError
from ..io import atomic_write_json, atomic_write_text, identity_hash, read_json

ADAPTER = "adapter"  # the run folder's final adapter (training saves it, the dev choice fills it)
CHECKPOINTS = "checkpoints"


def snapshot_every(frac: float, n_rows: int, per_step: int) -> int:
    """Optimizer steps between saves: ``frac`` of an epoch of ``n_rows`` rollouts at
    ``per_step`` rollouts a step, rounded, at least 1."""
    return max(1, round(frac * n_rows / per_step))


def choose_best(scores: list[tuple[int, float]]) -> int:
    """The step with the highest score; ties go to the later step (more training, and the
    final adapter when nothing beats it)."""
    if not scores:
        raise ValueError("no checkpoint to choose from")
    return max(scores, key=lambda s: (s[1], s[0]))[0]


def check_dev_disjoint(cfg: RunConfig) -> None:
    """``train.dev`` may share no problem (same canonical arith problem or same text) with the
    training problems or any eval benchmark; otherwise one UserError."""
    from ..eval.arith import canonical_keys
    from ..eval.data import load_benchmark, load_benchmarks

    if not cfg.train.dev:
        return
    dev = [p for ps in load_benchmarks(cfg.train.dev).values() for p in ps]
    dev_keys = canonical_keys(dev)
    train = load_benchmark(cfg.sample.train, limit=cfg.sample.limit)
    shared = len(dev_keys & canonical_keys(train))
    if shared:
        raise UserError(
            f"the dev split {cfg.train.dev!r} shares {shared} problems with the training "
            f"problems {cfg.sample.train!r}; choose a disjoint dev split (arith: split=dev)"
        )
    for name, problems in load_benchmarks(cfg.eval.benchmarks, limit=cfg.eval.limit).items():
        shared = len(dev_keys & canonical_keys(problems))
        if shared:
            raise UserError(
                f"the dev split {cfg.train.dev!r} shares {shared} problems with eval benchmark "
                f"{name}; choose a disjoint dev split (arith split=dev with the eval's seed and "
                "an eval n that leaves the tail free)"
            )


def prepare(run_dir: Path, cfg: RunConfig, scope) -> Path:
    """The checkpoint folder, emptied when it holds saves made for another ``scope``."""
    folder = run_dir / CHECKPOINTS
    key = identity_hash([scope, to_dict(dev_config(cfg))])
    marker = folder / "scope.txt"
    if not marker.is_file() or marker.read_text().strip() != key:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        atomic_write_text(marker, key + "\n")
    return folder


def mark_trained(folder: Path, steps: int) -> None:
    """Training is over and every checkpoint is saved: only the scoring may be left."""
    atomic_write_json(folder / "trained.json", {"steps": steps})


def trained_steps(folder: Path) -> int | None:
    """The step count of a finished training in ``folder`` (see :func:`prepare`), else None."""
    marker = folder / "trained.json"
    return read_json(marker)["steps"] if marker.is_file() else None


def step_dir(folder: Path, step: int) -> Path:
    return folder / f"step-{step:05d}"


def dev_config(cfg: RunConfig) -> EvalConfig:
    """Greedy pass@1 on the dev split with the eval section's length and batch settings."""
    e = cfg.eval
    return EvalConfig(
        benchmarks=cfg.train.dev or "",
        k=1,
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        grader_timeout=e.grader_timeout,
    )


def score_and_choose(run_dir: Path, cfg: RunConfig, folder: Path, *, steps_per_epoch: float):
    """Score every saved checkpoint on the dev split, write ``checkpoints.json`` and copy the
    best to ``adapter/``; returns that record."""
    from ..eval.evaluation import evaluate
    from ..io import atomic_dir

    dev_cfg = dev_config(cfg)
    rows = []
    for d in sorted(folder.glob("step-*")):
        step = int(d.name.split("-")[1])
        results = d / "dev" / "results.json"
        record = (
            read_json(results)
            if results.is_file()
            else evaluate(cfg.model, cfg.prompt, dev_cfg, d / "dev", adapter=str(d), label=d.name)
        )
        benches = record["benchmarks"].values()
        n = sum(b["n"] for b in benches)
        score = sum(b["pass@1"] * b["n"] for b in benches) / max(n, 1)  # pooled over problems
        rows.append({"step": step, "epoch": step / steps_per_epoch, "dev_pass@1": score, "n": n})
    if not rows:
        raise UserError(f"no checkpoint saved in {folder}")
    best = choose_best([(r["step"], r["dev_pass@1"]) for r in rows])
    src = step_dir(folder, best)

    def fill(tmp: Path) -> None:
        for f in src.iterdir():
            if f.is_file():  # the adapter files, not the dev/ results
                shutil.copy2(f, tmp / f.name)

    atomic_dir(run_dir / ADAPTER, fill)
    out = {"dev": cfg.train.dev, "chosen_step": best, "checkpoints": rows}
    atomic_write_json(run_dir / "checkpoints.json", out)
    return out
