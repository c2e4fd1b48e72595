"""Reading a run dir: every stage's files, each accessor None (or empty) when absent."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

from ..io import iter_jsonl, read_json
from ..method.examples import DIVERGENCES, EXAMPLES

REPORT_HTML = "report.html"
REPORT_DIR = "report"
ANALYSIS_FILES = ("disagree.json", "intervene.json", "distill.json")
# Files that make a folder a run dir; a folder with none of them is refused.
RUN_FILES = (
    "config.yaml",
    "manifest.json",
    "rollouts.jsonl",
    "sample.json",
    "entropies.jsonl",
    "selection.json",
    "selection.jsonl",
    "train.json",
    "train_log.jsonl",
    "eval/base/results.json",
    "eval/adapter/results.json",
    EXAMPLES,
    *ANALYSIS_FILES,
)
# --------------------------------------------------------------------------- reading the run dir


class RunDir:
    """Lazy, tolerant view of a run dir: every accessor returns None when its file is absent."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.notes: list[str] = []  # where a file came from outside the run dir, and why

    def has(self, rel: str) -> bool:
        return (self.path / rel).is_file()

    def json(self, rel: str) -> Any | None:
        return read_json(self.path / rel) if self.has(rel) else None

    def jsonl(self, rel: str) -> list[dict] | None:
        if not self.has(rel):
            return None
        return list(iter_jsonl(self.path / rel, tolerate_torn_tail=True))

    @cached_property
    def manifest(self) -> dict | None:
        return self.json("manifest.json")

    @cached_property
    def config(self) -> dict:
        """The resolved config: ``config.yaml``, else the manifest's copy, else empty."""
        if self.has("config.yaml"):
            from ..config import load_yaml

            return load_yaml(self.path / "config.yaml", run_folder=True)
        return dict((self.manifest or {}).get("config") or {})

    @cached_property
    def sample(self) -> dict | None:
        return self.json("sample.json")

    @cached_property
    def selection(self) -> dict | None:
        return self.json("selection.json")

    @cached_property
    def train(self) -> dict | None:
        return self.json("train.json")

    @cached_property
    def train_log(self) -> list[dict] | None:
        return self.jsonl("train_log.jsonl")

    @cached_property
    def stages(self) -> dict | None:
        return self.json("stages.json")

    @cached_property
    def selected(self) -> list[dict] | None:
        return self.jsonl("selection.jsonl")

    @cached_property
    def rollouts(self) -> list[dict] | None:
        return self.jsonl("rollouts.jsonl")

    @cached_property
    def examples(self) -> list[dict] | None:
        """``examples.jsonl``: the rollouts ``select`` chose to show, token by token."""
        return self.jsonl(EXAMPLES)

    @cached_property
    def final_round(self) -> dict | None:
        """The manifest's entry of the run's last round (``run --rounds N``) when there are
        several and its adapter was evaluated, else None: the headline and the before/after
        examples then show that round's adapter, the run's final one."""
        rounds = (self.manifest or {}).get("rounds") or []
        if len(rounds) < 2 or not self.has(f"{rounds[-1]['dir']}/eval/adapter/results.json"):
            return None
        return rounds[-1]

    @property
    def final_rel(self) -> str:
        """The folder, relative to the run dir, of the adapter the page shows (``.`` or
        ``round{N}``)."""
        return self.final_round["dir"] if self.final_round else "."

    @cached_property
    def divergences(self) -> dict[tuple[str, str], dict]:
        """``(benchmark, id)`` → the base entropy and top-5 where base and adapter diverge."""
        rows = self.jsonl(f"{self.final_rel}/{DIVERGENCES}") or []
        return {(r.get("benchmark"), str(r.get("id"))): r for r in rows}

    @cached_property
    def eval_dirs(self) -> dict[str, Path]:
        """``{"base": dir, "adapter": dir}`` for the evals found; the adapter is the final
        round's (:attr:`final_round`).

        A sweep variant dir has no ``eval/base``: the sweep evaluates the base once per eval
        config in a sibling ``eval-base-*`` folder, which is used when its recorded
        model/prompt/eval config is the one this run was evaluated with.
        """
        out = {}
        for label, d in (
            ("base", self.path / "eval" / "base"),
            ("adapter", self.path / self.final_rel / "eval" / "adapter"),
        ):
            if (d / "results.json").is_file():
                out[label] = d
        if "base" not in out:
            want = self._eval_config()
            for d in sorted(self.path.parent.glob("eval-base-*")):
                if d.resolve() == self.path.resolve() or not (d / "results.json").is_file():
                    continue
                got = read_json(d / "results.json").get("config") or {}
                if want and all(got.get(k) == want.get(k) for k in ("model", "prompt", "eval")):
                    out["base"] = d
                    self.notes.append(f"base eval read from the sibling folder {d.name}/")
                    break
        return out

    def section(self, name: str) -> dict:
        """One config section as a dict ({} when absent or, as in a GRPO config, a scalar)."""
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    def _eval_config(self) -> dict:
        if self.has(adapter := f"{self.final_rel}/eval/adapter/results.json"):
            cfg = read_json(self.path / adapter).get("config")
            if cfg:
                return cfg
        return {k: self.config.get(k) for k in ("model", "prompt", "eval") if k in self.config}

    def eval_results(self, label: str) -> dict | None:
        d = self.eval_dirs.get(label)
        return read_json(d / "results.json") if d else None

    def eval_samples(self, label: str) -> list[dict] | None:
        d = self.eval_dirs.get(label)
        if d is None or not (d / "samples.jsonl").is_file():
            return None
        return list(iter_jsonl(d / "samples.jsonl", tolerate_torn_tail=True))

    @cached_property
    def comparison(self) -> dict | None:
        """Per-benchmark paired comparison (of the final round's adapter): the manifest's,
        else recomputed from the samples."""
        if self.final_round and self.final_round.get("comparison"):
            return self.final_round["comparison"]
        if self.manifest and self.manifest.get("comparison"):
            return self.manifest["comparison"]
        dirs = self.eval_dirs
        if all(k in dirs and (dirs[k] / "samples.jsonl").is_file() for k in ("base", "adapter")):
            from ..eval.comparison import compare

            seed = int(self.section("eval").get("seed", 0) or 0)
            return compare(dirs["base"], dirs["adapter"], seed=seed)
        return None


def bench_stats(results: dict | None, bench: str) -> dict:
    """One benchmark's entry of an eval ``results.json`` ({} when absent)."""
    return ((results or {}).get("benchmarks") or {}).get(bench) or {}
