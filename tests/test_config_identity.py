"""The resolved default configs are pinned: what they say (every key and value) is what every
stage key, resume check and checkpoint scope hashes, so a refactor of the config classes must
leave these hashes alone. The values were computed on main before the config blocks existed.

``auto`` precisions are pinned (they resolve per machine); everything else is the default.

The run hashes changed on purpose for issue 13 (2026-12-07): the default preset went to two
rounds anchored to the previous policy (``round_anchor`` defaults to ``previous``), then to
three rounds. Only those top-level fields moved; every section (what the stage
keys hash) kept its hash.
"""

import hashlib
import json

import pytest

from reasonmaxxer.analysis import DisagreeConfig, InterveneConfig
from reasonmaxxer.analysis.distill import DistillConfig
from reasonmaxxer.baselines.grpo import build_grpo_config
from reasonmaxxer.config import build_run_config, identity, to_dict

PIN = {
    "model": {"gen_dtype": "float32"},
    "select": {"autocast": "off"},
    "train": {"autocast": "off"},
}


def _hash(obj) -> str:
    """The serialisation the pipeline's stage keys use (sorted keys, ``str`` for the rest)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("default", "3de11d155f26c59917fbf993a0bc2fd974ce38547a5d109d139dafcbf6481def"),
        ("paper", "40f8b364a826cf7aa3125ec1a3c567269ed00b63bc7c6ba03fddbf5df73e9335"),
        ("qwen2.5-1.5b", "3293034c6c67e36b988b9ebde5541e6b9e997d26670ac1146966e1ead53626dc"),
    ],
)
def test_run_config_identity_is_pinned(preset, expected):
    ident = identity(build_run_config(overrides=PIN, preset=preset))
    assert _hash(ident) == expected
    rounds = 3 if preset == "default" else 1
    assert (ident["rounds"], ident["round_from"], ident["round_anchor"]) == (
        rounds,
        "adapter",
        "previous",
    )


def test_grpo_config_is_pinned():
    cfg = build_grpo_config(overrides={"autocast": "off", "model": {"gen_dtype": "float32"}})
    assert _hash(to_dict(cfg)) == "0bafbeb5ea06aad5d55b237e3ceab00a19dfd62e449a852493d2acde0d881ee6"


@pytest.mark.parametrize(
    "cls, extra, expected",
    [
        (
            DistillConfig,
            {"autocast": "off"},
            "4695230eb56de1318c91c3db03480355ad06e27283686a87a5a8cc14d3101625",
        ),
        (DisagreeConfig, {}, "173c140fde68c7da40e0d7799a371b3ec96155e6cc0bb0e35ae2002f2e97229b"),
        (InterveneConfig, {}, "47b4a44a30c2d6ba97e590f5bae4787ec593b530841869ea74caaff28332cebb"),
    ],
)
def test_analysis_configs_are_pinned(cls, extra, expected):
    assert _hash(to_dict(cls(teacher_adapter="t", **extra))) == expected
