"""benchmarks/sweep.py: how a variant's config resolves (preset, then base, then overrides)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from reasonmaxxer.config import build_run_config, to_dict

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep.py"


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("sweep", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_variant_without_a_preset_is_the_default_plus_base_plus_overrides(sweep):
    d = sweep.variant_dict({"select": {"gate": "random"}}, {"train": {"lr": 3e-4}})
    want = to_dict(build_run_config())
    want["select"]["gate"] = "random"
    want["train"]["lr"] = 3e-4
    assert d == want


def test_a_preset_variant_is_that_preset_and_shares_the_default_rollouts(sweep):
    d = sweep.variant_dict({"preset": "paper"}, {})
    assert d == to_dict(build_run_config(preset="paper"))
    assert d["select"]["tau"] == 1.4 and d["train"]["loss"] == "contrastive"
    default = to_dict(build_run_config())
    # the sweep keys its shared rollouts and base eval on these sections
    assert all(d[s] == default[s] for s in ("model", "prompt", "sample", "eval"))


def test_base_applies_over_the_preset_and_overrides_over_base(sweep):
    d = sweep.variant_dict({"preset": "paper", "train": {"lam": 0.5}}, {"train": {"lam": 0.1}})
    assert d["train"]["lam"] == 0.5 and d["train"]["loss"] == "contrastive"
    assert sweep.variant_dict({"preset": "paper"}, {"train": {"lam": 0.1}})["train"]["lam"] == 0.1


def test_an_unknown_preset_is_one_error_line(sweep):
    with pytest.raises(SystemExit, match=r"^error: unknown preset 'nope'"):
        sweep.variant_dict({"preset": "nope"}, {})
