"""benchmarks/sweep.py: how a variant's config resolves (preset, then base, then overrides)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_benchmark_script, sample_config

from reasonmaxxer.config import as_given, build_run_config
from reasonmaxxer.stats import holm


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark_script("sweep")


def test_a_variant_without_a_preset_is_the_default_plus_base_plus_overrides(sweep):
    d = sweep.variant_dict({"select": {"gate": "random"}}, {"train": {"lr": 3e-4}})
    want = as_given(build_run_config())
    want["select"]["gate"] = "random"
    want["train"]["lr"] = 3e-4
    want["rounds"] = 1  # a variant is one round, though the default preset runs three
    assert want != as_given(build_run_config()) and d == want


def test_a_spec_asking_for_rounds_is_one_error_line(sweep):
    for overrides, base in (({"rounds": 2}, {}), ({}, {"rounds": 3})):
        with pytest.raises(SystemExit, match=r"^error: a sweep variant runs one round"):
            sweep.variant_dict(overrides, base)
    assert sweep.variant_dict({"rounds": 1}, {})["rounds"] == 1


def test_a_preset_variant_is_that_preset_and_shares_the_default_rollouts(sweep):
    d = sweep.variant_dict({"preset": "paper"}, {})
    assert d == as_given(build_run_config(preset="paper"))
    assert d["select"]["tau"] == 1.4 and d["train"]["loss"] == "contrastive"
    default = as_given(build_run_config())
    # the sweep keys its shared rollouts and base eval on these sections
    assert all(d[s] == default[s] for s in ("model", "prompt", "sample", "eval"))


def test_base_applies_over_the_preset_and_overrides_over_base(sweep):
    d = sweep.variant_dict({"preset": "paper", "train": {"lam": 0.5}}, {"train": {"lam": 0.1}})
    assert d["train"]["lam"] == 0.5 and d["train"]["loss"] == "contrastive"
    assert sweep.variant_dict({"preset": "paper"}, {"train": {"lam": 0.1}})["train"]["lam"] == 0.1


def test_an_unknown_preset_is_one_error_line(sweep):
    with pytest.raises(SystemExit, match=r"^error: unknown preset 'nope'"):
        sweep.variant_dict({"preset": "nope"}, {})


def test_seeded_run_i_moves_every_seed_by_i_and_run_0_is_the_variant(sweep):
    assert sweep.seeded("x", {"select": {"gate": "random"}}, {}, 0) == (
        "x",
        {"select": {"gate": "random"}},
    )
    spec = {"preset": "paper", "select": {"gate": "random"}}
    default = as_given(build_run_config())
    for i in (1, 2, 3):  # in a loop, as the sweep calls it: the seeds must not pile up
        name, over = sweep.seeded("x", spec, {}, i)
        assert name == f"x@{i}"
        assert over["preset"] == "paper" and over["select"]["gate"] == "random"
        assert over["sample"]["seed"] == default["sample"]["seed"] + i
        assert over["select"]["seed"] == default["select"]["seed"] + i
        assert over["train"]["seed"] == default["train"]["seed"] + i
    assert spec == {"preset": "paper", "select": {"gate": "random"}}  # the spec is untouched


def _eval_dir(path: Path, correct: list[bool]) -> str:
    path.mkdir(parents=True)  # named relative to the sweep's OUT, the tmp_path here
    rows = [
        {"benchmark": "b", "id": str(i), "sample": "greedy", "correct": c}
        for i, c in enumerate(correct)
    ]
    rows.append({"benchmark": "b", "id": "0", "sample": 0, "correct": False})  # avg@k: ignored
    (path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path.name


def test_seeds_table_by_hand(sweep, tmp_path):
    base = _eval_dir(tmp_path / "base", [True, False, False, True])
    T, F = True, False
    runs = {
        "a": [T, T, F, T],  # 75%
        "a@1": [T, T, T, F],  # 75%: per-problem means 1, 1, .5, .5 vs base 1, 0, 0, 1
        "b": [F, F, T, F],  # 25%
        "b@1": [T, F, F, T],  # 50%
        "c": [T, T, T, T],  # one run: no spread
    }
    rows = [
        {"variant": n, "eval_dirs": {"base": base, "adapter": _eval_dir(tmp_path / n, c)}}
        for n, c in runs.items()
    ]
    lines = sweep.seeds_table(rows, tmp_path).splitlines()
    assert lines[2].startswith("| a | 2 | 4 | 50.0% | 75.0 ± 0.0% | +25.0 [")
    # b: mean 37.5, sd sqrt(2 * 0.125^2) = 17.7; per-problem means .5, 0, .5, .5 -> diff -12.5
    assert lines[3].startswith("| b | 2 | 4 | 50.0% | 37.5 ± 17.7% | -12.5 [")
    assert lines[4].startswith("| c | 1 | 4 | 50.0% | 100.0% (1 run) | +50.0 [")
    ps = [float(x.split("|")[7].replace("<", "")) for x in lines[2:5]]
    hs = [float(x.split("|")[8].replace("≤", "")) for x in lines[2:5]]
    assert hs == pytest.approx(holm(ps), abs=2e-3)


def _sample_cfg(model_dir, n: int, **kw):
    return sample_config(
        model_dir, train=f"arith:level=1,n={n},split=train", max_new_tokens=6, **kw
    )


def test_a_prefix_of_a_sampled_set_is_what_sampling_it_gives(
    sweep, tmp_path, tiny_model_dir, cache_dir
):
    """4 problems sampled in chunks of 2; a variant sampling their first 2 takes chunk 0 of
    them and samples nothing, and its rollouts are those of sampling the 2 problems afresh.
    A variant whose other settings differ (k), or whose problems do not fill whole chunks,
    takes nothing."""
    from reasonmaxxer.io import iter_jsonl
    from reasonmaxxer.method.sampling import sample

    shared = tmp_path / "shared"
    sample(shared / "rollouts-big", _sample_cfg(tiny_model_dir, 4))
    small = _sample_cfg(tiny_model_dir, 2)
    assert sweep.reuse_prefix(shared, shared / "rollouts-small", small)
    summary = sample(shared / "rollouts-small", small)
    assert summary["chunks"] == summary["chunks_resumed"] == 1
    fresh = sample(tmp_path / "fresh", small)
    assert fresh["chunks_resumed"] == 0

    def rows(d):
        return list(iter_jsonl(d / "rollouts.jsonl"))

    assert rows(shared / "rollouts-small") == rows(tmp_path / "fresh")
    assert len(rows(shared / "rollouts-big")) == 8 and len(rows(tmp_path / "fresh")) == 4
    assert not sweep.reuse_prefix(shared, tmp_path / "k3", _sample_cfg(tiny_model_dir, 2, k=3))
    assert not sweep.reuse_prefix(shared, tmp_path / "odd", _sample_cfg(tiny_model_dir, 3))


def test_main_runs_under_mimalloc_and_each_variant_at_its_threads(sweep, tmp_path, monkeypatch):
    """As `reasonmaxxer run` does: the sweep re-executes under mimalloc before torch loads,
    and a variant runs at ``model.threads`` (two sweeps at torch's default 2 threads each on
    2 cores sampled ~3x slower)."""
    import sys

    import torch

    from reasonmaxxer import allocator

    reexec, seen = [], []
    monkeypatch.setattr(allocator, "reexec", lambda argv: reexec.append(argv))

    def fake_run(name, cfg, out, shared):
        seen.append(torch.get_num_threads())
        return {"variant": name}

    monkeypatch.setattr(sweep, "run_variant", fake_run)
    monkeypatch.setattr(sweep, "table", lambda rows: "")
    spec = tmp_path / "spec.yaml"
    spec.write_text("base: {model: {threads: 1}}\nvariants:\n  a: {}\n")
    before = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", ["sweep.py", str(spec), "--out", str(tmp_path / "o")])
    try:
        torch.set_num_threads(2)
        sweep.main()
    finally:
        torch.set_num_threads(before)
    assert reexec and reexec[0][0] == sys.executable
    assert seen == [1]
