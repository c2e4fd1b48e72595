"""``reasonmaxxer run`` end to end on a tiny model: sample → select → train → eval → compare,
then the same command again (every stage skipped), then changed settings.

The model is ``digit_model_dir`` (conftest): it mostly writes spaces and digits, above all
``7``, so on problems whose answer is 7 its pass rate over K rollouts is often strictly
between 0 and 1 and the selection stage has something to keep.
"""

from __future__ import annotations

import io
import json

import pytest
import yaml
from conftest import run_cli

from reasonmaxxer.cli import parse_sets, stage_config
from reasonmaxxer.errors import UserError
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method.pipeline import run

STAGES = ("sample", "select", "train", "eval_base", "eval_adapter")
EVAL_K = 2


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sets(tmp_path) -> list[str]:
    train = _write_jsonl(
        tmp_path / "sevens_train.jsonl",
        [{"id": f"t{a}", "problem": f"What is {a} + {7 - a}?", "answer": "7"} for a in range(6)],
    )
    evalset = _write_jsonl(
        tmp_path / "sevens_eval.jsonl",
        [{"id": f"e{a}", "problem": f"Add {a} and {7 - a}.", "answer": "7"} for a in range(8)],
    )
    return [
        "rounds=1",  # the default preset runs three; tests/test_rounds.py covers round 2
        "model.gen_dtype=float32",
        "model.threads=1",
        f"sample.train={train}",
        "sample.k=4",
        "sample.max_new_tokens=8",
        "sample.chunk_problems=3",
        "select.top_frac=0.5",
        "select.drop_longest=0",  # keep every mixed problem (drop_longest has its own test)
        "train.max_steps=2",
        "train.batch_size=4",
        "train.lora_r=4",
        "train.lora_alpha=8",
        "train.lr=0.01",
        "train.warmup_steps=1",
        f"eval.benchmarks={evalset}",
        f"eval.k={EVAL_K}",
        "eval.max_new_tokens=8",
    ]


def _cli_args(model_dir, out, sets):
    args = ["run", "--model", str(model_dir), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return args


@pytest.mark.slow
def test_run_pipeline_then_skip_then_rerun_changed_stages(tmp_path, digit_model_dir, cache_dir):
    from peft import PeftModel

    from reasonmaxxer.models import load_model

    out = tmp_path / "run"
    sets = _sets(tmp_path)
    first = run_cli(*_cli_args(digit_model_dir, out, sets), cache=cache_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "skipped" not in first.stdout

    # config.yaml: the resolved config, flags included.
    cfg_yaml = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg_yaml["model"]["model"] == str(digit_model_dir)
    assert cfg_yaml["train"]["max_steps"] == 2 and cfg_yaml["sample"]["k"] == 4
    assert cfg_yaml["select"]["top_frac"] == 0.5 and cfg_yaml["select"]["tau"] is None

    # Stage outputs.
    rollouts = list(iter_jsonl(out / "rollouts.jsonl"))
    assert len(rollouts) == 6 * 4
    selected = list(iter_jsonl(out / "selection.jsonl"))
    kept = {r["problem_id"] for r in selected}
    rates = {}
    for r in rollouts:
        rates.setdefault(r["problem_id"], []).append(r["reward"])
    mixed = {p for p, v in rates.items() if 0 < sum(v) < len(v)}
    assert kept == mixed and kept, rates  # the default window keeps exactly the mixed ones
    assert [r["step"] for r in iter_jsonl(out / "train_log.jsonl")] == [1, 2]
    adapter = out / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "adapter_config.json").is_file()
    base, _, _ = load_model(str(digit_model_dir))
    tuned = PeftModel.from_pretrained(base, str(adapter))
    assert tuned.peft_config["default"].r == 4

    # manifest.json with the comparison, checked against the two samples.jsonl files.
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["stages"]) == set(STAGES)
    assert manifest["final_adapter"] == "adapter" and "rounds" not in manifest
    # each stage's own peak RSS (the window is reset before it; test_runinfo checks that the
    # window and the process's peak across windows behave), and the process's peak, recorded
    rss = [manifest["stages"][s]["peak_rss_mib"] for s in STAGES]
    assert all(r > 0 for r in rss) and manifest["process_peak_rss_mib"] > 0
    assert manifest["counts"]["train_steps"] == 2
    assert manifest["counts"]["problems_kept"] == len(kept)
    assert manifest["counts"]["rollouts"] == 24
    comp = manifest["comparison"]["sevens_eval"]
    greedy = {}
    for label in ("base", "adapter"):
        samples = list(iter_jsonl(out / "eval" / label / "samples.jsonl"))
        assert len(samples) == 8 * (1 + EVAL_K)
        greedy[label] = {r["id"]: r["correct"] for r in samples if r["sample"] == "greedy"}
        results = json.loads((out / "eval" / label / "results.json").read_text())
        assert results["metrics"]["eval/sevens_eval/pass@1"] == comp[f"{label}_pass@1"]
    assert comp["n"] == 8
    assert comp["base_pass@1"] == sum(greedy["base"].values()) / 8
    assert comp["adapter_pass@1"] == sum(greedy["adapter"].values()) / 8
    m = comp["pass@1_mcnemar"]
    assert m["gained"] == sum(
        greedy["adapter"][i] and not greedy["base"][i] for i in greedy["base"]
    )
    assert m["lost"] == sum(greedy["base"][i] and not greedy["adapter"][i] for i in greedy["base"])
    assert 0 <= m["p_value"] <= 1
    assert "avg@k_bootstrap" in comp and 0 <= comp["base_avg@k"] <= 1
    assert "base vs adapter" in first.stdout

    # The same command again: every stage is skipped and nothing is rewritten.
    mtimes = {p: (out / p).stat().st_mtime_ns for p in ("rollouts.jsonl", "selection.jsonl")}
    adapter_mtime = (adapter / "adapter_model.safetensors").stat().st_mtime_ns
    second = run_cli(*_cli_args(digit_model_dir, out, sets), cache=cache_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in STAGES:
        assert f"{stage}: done already, skipped" in second.stdout
    assert {p: (out / p).stat().st_mtime_ns for p in mtimes} == mtimes
    assert (adapter / "adapter_model.safetensors").stat().st_mtime_ns == adapter_mtime
    assert json.loads((out / "manifest.json").read_text())["comparison"] == manifest["comparison"]

    from rich.console import Console

    # In this process: the checkpoint frequency alone does not make train stale.
    overrides = parse_sets(tuple(sets) + ("train.checkpoint_every=5",))
    overrides["model"]["model"] = str(digit_model_dir)
    buf = io.StringIO()
    run(stage_config(None, None, overrides), out, console=Console(file=buf, width=200))
    for stage in STAGES:
        assert f"{stage}: done already, skipped" in buf.getvalue()

    # A new training setting re-runs train and the adapter eval only.

    overrides = parse_sets(tuple(sets) + ("train.lr=0.02",))
    overrides["model"]["model"] = str(digit_model_dir)
    buf = io.StringIO()
    run(stage_config(None, None, overrides), out, console=Console(file=buf, width=200))
    log = buf.getvalue()
    for stage in ("sample", "select", "eval_base"):
        assert f"{stage}: done already, skipped" in log
    for stage in ("train", "eval_adapter"):
        assert f"{stage}: done already" not in log
    assert (adapter / "adapter_model.safetensors").stat().st_mtime_ns != adapter_mtime
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 0.02

    # The report was built from this run's manifest, not the previous one's.
    new_manifest = json.loads((out / "manifest.json").read_text())
    assert new_manifest["config"]["train"]["lr"] == 0.02
    page = (out / "report.html").read_text()
    headline = page[page.index('<section id="headline">') : page.index('<section id="entropy">')]
    for e in new_manifest["comparison"].values():
        m = e["pass@1_mcnemar"]
        assert f"{100 * e['adapter_pass@1']:.1f}%" in headline
        assert f"+{m['gained']}" in headline
    shown = page[page.index('<section id="manifest">') :]
    assert "&quot;lr&quot;: 0.02" in shown and "&quot;lr&quot;: 0.01" not in shown

    # A new sampling setting on the same folder is refused before anything runs.
    overrides = parse_sets(tuple(sets) + ("sample.k=5",))
    overrides["model"]["model"] = str(digit_model_dir)
    with pytest.raises(UserError, match="holds a run with other sample/model settings"):
        run(stage_config(None, None, overrides), out)


def test_run_refuses_overlapping_train_and_eval(tmp_path, cache_dir):
    same = _write_jsonl(tmp_path / "same.jsonl", [{"problem": "What is 3 + 4?", "answer": "7"}])
    overrides = parse_sets((f"sample.train={same}", f"eval.benchmarks={same}"))
    overrides["model"] = {"model": str(tmp_path / "no-model")}  # never reached
    with pytest.raises(UserError, match="1 problems of eval benchmark same are also training"):
        run(stage_config(None, None, overrides), tmp_path / "out")
