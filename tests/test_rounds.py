"""Iterated rounds: which models a round uses (by hand), ``--rounds 0``, and two rounds of the
pipeline on a tiny model, killed between rounds and resumed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from test_pipeline import _sets

from reasonmaxxer.cli import parse_sets, stage_config
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method import pipeline
from reasonmaxxer.method.rounds import round_dir, round_models

OUT = Path("runs/x")


@pytest.mark.parametrize(
    "round_from, anchor, r, expected",
    [
        # adapter r-1 keeps training on the base; the base anchors: π_ref = adapter off
        ("adapter", "base", 2, ("base", "runs/x/adapter", "base", "runs/x/adapter", None)),
        # ... anchored to the previous policy instead (the default), a model apart from the
        # weights it trains on
        (
            "adapter",
            "previous",
            3,
            (
                "base",
                "runs/x/round2/adapter",
                "base",
                "runs/x/round2/adapter",
                "runs/x/round3/policy",
            ),
        ),
        # a fresh LoRA on the merged previous policy, anchored to it: π_ref = adapter off
        (
            "merged",
            "previous",
            3,
            (
                "runs/x/round2/policy",
                "runs/x/round2/adapter",
                "runs/x/round3/policy",
                None,
                None,
            ),
        ),
        # ... anchored to the base, which must be loaded apart
        ("merged", "base", 2, ("base", "runs/x/adapter", "runs/x/round2/policy", None, "base")),
    ],
)
def test_round_models_by_hand(round_from, anchor, r, expected):
    m = round_models(OUT, r, base="base", round_from=round_from, anchor=anchor)
    got = (m["prev_base"], m["prev_adapter"], m["train_base"], m["init_adapter"], m["ref"])
    assert got == expected
    assert m["policy"] == f"runs/x/round{r}/policy"
    assert round_dir(OUT, 1) == OUT and round_dir(OUT, 4) == OUT / "round4"


def test_rounds_zero_is_one_error_line(tmp_path):
    proc = run_cli("run", "--rounds", "0", "--out", tmp_path / "r")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --rounds must be >= 1; got 0"]
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_two_rounds_killed_between_rounds_and_resumed(
    tmp_path, digit_model_dir, cache_dir, monkeypatch
):
    from peft import PeftModel
    from rich.console import Console

    from reasonmaxxer.models import load_model

    out = tmp_path / "run"
    overrides = parse_sets(tuple(_sets(tmp_path)) + ("train.max_steps=3",))
    overrides["model"]["model"] = str(digit_model_dir)
    overrides["rounds"] = 2
    cfg = stage_config(None, None, overrides)

    real_sample = pipeline.sample

    def dies_in_round_2(run_dir, c):
        if Path(run_dir).name == "round2":
            raise KeyboardInterrupt
        return real_sample(run_dir, c)

    monkeypatch.setattr(pipeline, "sample", dies_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(cfg, out)
    assert (out / "adapter").is_dir() and (out / "round2" / "policy" / "config.json").is_file()
    assert not (out / "round2" / "rollouts.jsonl").exists()
    monkeypatch.setattr(pipeline, "sample", real_sample)

    buf = io.StringIO()
    manifest = pipeline.run(cfg, out, console=Console(file=buf, width=200))
    log = buf.getvalue()
    for name in ("sample", "select", "train", "eval_base", "eval_adapter", "round2/policy"):
        assert f"{name}: done already, skipped" in log
    for name in ("round2/sample", "round2/select", "round2/train", "round2/eval_adapter"):
        assert f"{name}: done already" not in log

    # Round 2 sampled from base + the round-1 adapter: its policy folder is exactly that merge.
    base, _, _ = load_model(str(digit_model_dir))
    merged = PeftModel.from_pretrained(base, str(out / "adapter")).merge_and_unload()
    policy, _, _ = load_model(str(out / "round2" / "policy"))
    want, got = merged.state_dict(), policy.state_dict()
    assert want.keys() == got.keys()
    assert any(
        not torch.equal(want[k], base_w)
        for k, base_w in load_model(str(digit_model_dir))[0].state_dict().items()
    )
    for k in want:
        assert torch.allclose(want[k], got[k], atol=1e-6), k
    rollouts = list(iter_jsonl(out / "round2" / "rollouts.jsonl"))
    assert len(rollouts) == 6 * 4
    sample_json = json.loads((out / "round2" / "sample.json").read_text())
    assert sample_json["settings"]["model"] == str(out / "round2" / "policy")

    # One manifest entry per round, the comparison of each against the same base eval.
    assert [e["round"] for e in manifest["rounds"]] == [1, 2]
    assert manifest["final_adapter"] == "round2/adapter"
    # The report's divergences are the final round's, and its page says whose adapter it shows.
    assert (out / "round2" / "eval" / "divergences.jsonl").is_file()
    assert not (out / "eval" / "divergences.jsonl").exists()
    assert "round 2&#x27;s adapter (round2/adapter)" in (out / "report.html").read_text()
    assert manifest["rounds"][0]["comparison"] == manifest["comparison"]
    r2 = json.loads((out / "round2" / "round.json").read_text())
    assert r2["comparison"] == manifest["rounds"][1]["comparison"]
    assert r2["counts"]["train_steps"] == 3
    assert {"round2/sample", "round2/train", "round2/eval_adapter"} <= set(manifest["stages"])
    # round 2 continued the round-1 adapter (same rank), trained further
    a1 = json.loads((out / "adapter" / "adapter_config.json").read_text())
    a2 = json.loads((out / "round2" / "adapter" / "adapter_config.json").read_text())
    assert a1["r"] == a2["r"] == 4
    # Round 1 takes π_ref's log-probs from its selection (gate: all, π_ref is the base that
    # select scored with). Round 2 anchors to round 1's policy by default, the model that
    # sampled and scored round 2's selection, so it takes them from there too and loads no
    # second model.
    assert cfg.round_anchor == "previous"
    assert json.loads((out / "train.json").read_text())["reference"] == "stored"
    assert json.loads((out / "round2" / "train.json").read_text())["reference"] == "stored"
    assert r2["models"]["ref"] == str(out / "round2" / "policy")
    # ... and those stored log-probs are the round-1 policy's, computed here by hand
    row = next(iter_jsonl(out / "round2" / "selection.jsonl"))
    ids = torch.tensor([row["prompt_ids"] + row["completion_ids"]])
    with torch.no_grad():
        logits = policy(ids).logits[0, len(row["prompt_ids"]) - 1 : -1].float()
    want_logp = torch.log_softmax(logits, -1).gather(-1, ids[0, len(row["prompt_ids"]) :, None])
    assert torch.allclose(torch.tensor(row["ref_logp"]), want_logp[:, 0], atol=1e-4)

    # Anchored to the base instead, round 2 re-trains only, and runs π_ref (the base: the
    # adapter off) every step: its selection was scored by round 1's policy, not the base.
    r2 = _round2_retrained(out, {**overrides, "round_anchor": "base"})
    assert "ref" not in r2["models"]
    assert json.loads((out / "round2" / "train.json").read_text())["reference"] == "forward"

    # Another round setting re-trains round 2 only: a fresh LoRA on the merged policy, with the
    # base loaded apart as π_ref.
    r2 = _round2_retrained(out, {**overrides, "round_from": "merged", "round_anchor": "base"})
    assert r2["models"]["ref"] == str(digit_model_dir)
    assert json.loads((out / "round2" / "train.json").read_text())["reference"] == "forward"


def _round2_retrained(out: Path, overrides: dict) -> dict:
    """Run ``out`` again with ``overrides``, a round-2 training setting changed: round 2's
    policy, rollouts and selection are reused, its training and eval run again. Returns the
    new ``round.json``."""
    from rich.console import Console

    buf = io.StringIO()
    pipeline.run(stage_config(None, None, overrides), out, console=Console(file=buf, width=200))
    log = buf.getvalue()
    for name in ("round2/policy", "round2/sample", "round2/select"):
        assert f"{name}: done already, skipped" in log
    for name in ("round2/train", "round2/eval_adapter"):
        assert f"{name}: done already" not in log
    return json.loads((out / "round2" / "round.json").read_text())


def test_report_shows_accuracy_per_round_and_checkpoint_scores():
    from reasonmaxxer.report import rounds_and_checkpoints

    def comp(base, adapter):
        return {"arith-l2-eval": {"base_pass@1": base, "adapter_pass@1": adapter}}

    manifest = {
        "rounds": [
            {"round": 1, "comparison": comp(0.348, 0.494)},
            {"round": 2, "comparison": comp(0.348, 0.512)},
        ],
        "checkpoints": {
            "dev": "arith:level=2,n=53,split=dev",
            "chosen_step": 12,
            "checkpoints": [
                {"step": 6, "epoch": 0.15, "dev_pass@1": 0.4, "n": 53},
                {"step": 12, "epoch": 0.3, "dev_pass@1": 0.5, "n": 53},
            ],
        },
    }
    html = rounds_and_checkpoints(manifest)
    rows = html.split("<tr>")
    assert "<td>base</td><td>34.8%</td>" in rows[2]
    assert "<td>round 1</td><td>49.4%</td>" in rows[3]
    assert "<td>round 2</td><td>51.2%</td>" in rows[4]
    assert "<td>12 (kept)</td><td>0.30</td><td>50.0%</td><td>53</td>" in html
    assert "<td>6</td><td>0.15</td><td>40.0%</td>" in html
    assert rounds_and_checkpoints({}) == ""


def test_the_printed_comparison_is_the_last_rounds():
    from rich.console import Console

    from reasonmaxxer.method.pipeline import comparison_table

    def comp(adapter, gained, lost):
        mc = {"gained": gained, "lost": lost, "n": 500, "p_value": 0.5}
        return {"arith": {"n": 500, "base_pass@1": 0.324, "adapter_pass@1": adapter,
                          "pass@1_mcnemar": mc}}  # fmt: skip

    def printed(manifest) -> str:
        buf = io.StringIO()
        Console(file=buf, width=200).print(comparison_table(manifest))
        return buf.getvalue()

    one = {"comparison": comp(0.542, 136, 27)}
    two = {**one, "rounds": [{"round": 1, **one}, {"round": 2, "comparison": comp(0.594, 163, 28)}]}
    assert "base vs adapter" in printed(one) and "54.2%" in printed(one)
    text = printed(two)
    assert "base vs round 2's adapter" in text
    assert "59.4%" in text and "+163/−28" in text and "54.2%" not in text
