"""``auto`` precision: bfloat16 only where the hardware runs it natively."""

import pytest

from reasonmaxxer import devices
from reasonmaxxer.config import build_run_config
from reasonmaxxer.grpo import GRPORunConfig


@pytest.fixture
def native(monkeypatch):
    def set_native(value: bool):
        monkeypatch.setattr(devices, "native_bf16", lambda device="auto": value)

    return set_native


@pytest.mark.parametrize(
    ("is_native", "dtype", "cast"), [(True, "bfloat16", "bfloat16"), (False, "float32", "off")]
)
def test_auto_resolves_by_hardware(native, is_native, dtype, cast):
    native(is_native)
    cfg = build_run_config()  # the packaged default says gen_dtype: auto
    assert (cfg.model.gen_dtype, cfg.select.autocast, cfg.train.autocast) == (dtype, cast, cast)
    grpo = GRPORunConfig()
    assert (grpo.model.gen_dtype, grpo.autocast) == (dtype, cast)


def test_explicit_precision_is_kept(native):
    native(False)
    cfg = build_run_config(
        overrides={
            "model": {"gen_dtype": "bfloat16"},
            "select": {"autocast": "bfloat16"},
            "train": {"autocast": "bfloat16"},
        }
    )
    assert (cfg.model.gen_dtype, cfg.select.autocast, cfg.train.autocast) == ("bfloat16",) * 3


def test_resolved_config_names_the_dtype(native, tmp_path):
    """What a run folder records is the concrete dtype, never ``auto``."""
    from reasonmaxxer.config import dump_yaml

    native(False)
    text = dump_yaml(build_run_config())
    assert "gen_dtype: float32" in text and "auto" not in text.split("gen_dtype:")[1].split("\n")[0]


def test_autocast_switch():
    assert devices.bf16_autocast_on("bfloat16", "cpu") is True
    assert devices.bf16_autocast_on("off", "cpu") is False
    assert devices.bf16_autocast_on("auto", "cpu") is devices.native_bf16("cpu")
    assert devices.resolve_precision("float16", "cpu", fallback="float32") == "float16"


def test_native_bf16_never_raises_for_a_missing_device():
    assert devices.native_bf16("cuda:7") in (True, False)
    assert devices.native_bf16("mps") is False
