"""``analyze intervene`` (paper §3.2-3.3, Fig. 2): greedy decoding from the base with no /
oracle / random / entropy-gated substitution of the teacher's token, graded."""

from __future__ import annotations

from pathlib import Path

from ..config import to_dict
from ..io import atomic_write_jsonl
from .config import InterveneConfig
from .disagree import benchmark_groups
from .metrics import intervene_summary, intervene_table
from .outputs import plot_intervene, write_record
from .pair import ModelPair, build_prompts, load_pair, load_problems, set_threads
from .policy import Policy, policy_decode, random_plan


def wanted_policies(cfg: InterveneConfig) -> list[str]:
    """The policies to run: the requested ones, plus ``oracle`` when ``random`` needs its
    counts and ``base`` when a quantile τ needs the base's own entropies."""
    wanted = cfg.policy_list
    if "random" in wanted and "oracle" not in wanted:
        wanted = [*wanted, "oracle"]
    if cfg.tau_frac_list and "base" not in wanted:
        wanted = [*wanted, "base"]
    return wanted


class Runner:
    """Decodes and grades every problem under one policy at a time; keeps every run."""

    def __init__(self, pair: ModelPair, problems: list, cfg: InterveneConfig):
        from ..eval.prompting import stop_strings

        tok = pair.tokenizer
        self.pair, self.problems, self.cfg = pair, problems, cfg
        self.stops = stop_strings(tok, cfg.prompt)
        self.prompt_ids = [
            tok(p, add_special_tokens=False)["input_ids"]
            for p in build_prompts(tok, problems, cfg.prompt)
        ]
        self.runs: list[dict] = []
        self.by_kind: dict[str, dict] = {}

    def run(self, policy: Policy) -> dict:
        """Decode under ``policy``, finish each row as generation does (cut at end of
        sequence / a stop string) and grade it; the run is kept and returned."""
        from ..eval.grading import grade
        from ..generation import to_completion

        rows = policy_decode(
            self.pair,
            self.prompt_ids,
            policy,
            max_new_tokens=self.cfg.max_new_tokens,
            batch_size=self.cfg.batch_size,
            stop=self.stops,
            desc=policy.label,
        )
        tok, eos = self.pair.tokenizer, list(self.pair.eos_ids)
        for r, p in zip(rows, self.problems, strict=True):
            c = to_completion(r["token_ids"], [], tok, eos, self.stops)
            r["text"], r["finish"] = c.text, c.finish
            g = grade(r["text"], p.answer, timeout_s=self.cfg.grader_timeout)
            r["correct"], r["extracted"], r["timed_out"] = g.correct, g.extracted, g.timed_out
        res = {"policy": policy.kind, "label": policy.label, "tau": policy.tau}
        res.update(seed=policy.seed, rows=rows)
        self.runs.append(res)
        return res

    def run_random(self) -> None:
        """The random control: as many substitutions per problem as the oracle made, from
        the base top-K without its top-1, one run per seed."""
        cfg, oracle_rows = self.cfg, self.by_kind["oracle"]["rows"]
        k = min(cfg.random_k, self.pair.vocab_size())
        for s in range(cfg.seed, cfg.seed + cfg.seeds):
            plan = random_plan(
                [p.id for p in self.problems],
                [len(r["touched"]) for r in oracle_rows],
                [len(r["token_ids"]) for r in oracle_rows],
                seed=s,
                k=k,
            )
            self.run(Policy("random", plan=plan, label=f"random s={s}", seed=s))

    def taus(self) -> list[tuple[float, float | None]]:
        """``(τ, top fraction or None)``: the given τs, then the τ that marks each
        ``tau_fracs`` fraction of the base's own greedy tokens."""
        import torch

        from ..method.losses import decision_mask

        taus = [(t, None) for t in self.cfg.tau_list]
        if self.cfg.tau_frac_list:
            pooled = torch.tensor([h for r in self.by_kind["base"]["rows"] for h in r["entropy"]])
            for q in self.cfg.tau_frac_list:
                _, t = decision_mask(
                    pooled[None, :], torch.ones(1, pooled.numel(), dtype=torch.bool), top_frac=q
                )
                taus.append((t, q))
        return taus

    def run_all(self, wanted: list[str]) -> None:
        for kind in ("base", "teacher", "oracle"):
            if kind in wanted:
                self.by_kind[kind] = self.run(Policy(kind))
        if "random" in wanted:
            self.run_random()
        taus = self.taus()
        if "entropy" in wanted:
            for t, q in taus:
                label = f"entropy τ={t:.3g}" + (f" (top {100 * q:g}%)" if q is not None else "")
                res = self.run(Policy("entropy", tau=t, label=label))
                res["tau_frac"] = q


def intervene_samples(runs: list[dict], problems: list) -> list[dict]:
    """One ``intervene_samples.jsonl`` row per (run, problem)."""
    samples = []
    for res in runs:
        for p, r in zip(problems, res["rows"], strict=True):
            samples.append(
                {
                    "benchmark": p.benchmark,
                    "id": p.id,
                    "answer": p.answer,
                    "policy": res["policy"],
                    "label": res["label"],
                    "tau": res["tau"],
                    "seed": res["seed"],
                    "completion": r["text"],
                    "extracted": r["extracted"],
                    "correct": r["correct"],
                    "timed_out": r["timed_out"],
                    "finish": r["finish"],
                    "n_tokens": len(r["token_ids"]),
                    "touched_steps": r["touched"],
                    "gated": len(r["gated"]),
                }
            )
    return samples


def run_intervene(cfg: InterveneConfig, out: str | Path) -> dict:
    """§3.2–3.3 on ``cfg``'s pair: writes ``intervene.json``, ``intervene_samples.jsonl``,
    ``config.yaml`` and ``plots/intervene_pass1.png`` into ``out``; returns the record."""
    from ..runinfo import Timer, provenance

    out = Path(out)
    set_threads(cfg)
    names, problems = load_problems(cfg)
    with Timer() as wall:
        pair = load_pair(cfg)
        runner = Runner(pair, problems, cfg)
        runner.run_all(wanted_policies(cfg))
    table = intervene_table(runner.runs, benchmark_groups(names, problems), runner.by_kind)
    key = "all" if len(names) > 1 else names[0]
    summary = intervene_summary([r for r in table if r["benchmark"] == key], runner.by_kind)
    summary.update(benchmark=key, wall_time_s=wall.seconds, problems=len(problems))
    record = {
        "table": table,
        "summary": summary,
        "config": to_dict(cfg),
        "models": {"base": pair.base_info, "teacher": pair.teacher_info},
        "eos_ids": pair.eos_ids,
        "provenance": provenance(),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out / "intervene_samples.jsonl", intervene_samples(runner.runs, problems))
    write_record(out, "intervene", record, cfg)
    plot_intervene([r for r in table if r["benchmark"] == key], out / "plots")
    return record
