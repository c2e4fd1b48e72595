"""Machine-dependent defaults: ``auto`` precision (bfloat16 only on a CUDA GPU that supports
it, float32 on every CPU) and the thread count (the cores other work leaves free)."""

import pytest

from reasonmaxxer import devices
from reasonmaxxer.baselines.grpo import GRPORunConfig
from reasonmaxxer.config import build_run_config


@pytest.fixture
def native(monkeypatch):
    def set_native(value: bool):
        monkeypatch.setattr(devices, "native_bf16", lambda device="auto": value)

    return set_native


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA GPU that does (or does not) support bf16, as far as ``devices`` can tell."""

    def set_gpu(present: bool, bf16: bool = True):
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: present)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)

    return set_gpu


@pytest.mark.parametrize(
    ("has_gpu", "gpu_bf16", "cpu_bf16", "dtype", "cast"),
    [
        (True, True, False, "bfloat16", "bfloat16"),  # a bf16 GPU
        (True, False, True, "float32", "off"),  # a GPU without bf16 (say a T4)
        (False, False, True, "float32", "off"),  # a CPU with AVX512-BF16 or AMX: float32
        (False, False, False, "float32", "off"),  # an AVX2 CPU
    ],
)
def test_auto_resolves_by_hardware(gpu, native, has_gpu, gpu_bf16, cpu_bf16, dtype, cast):
    gpu(has_gpu, gpu_bf16)
    native(cpu_bf16)
    cfg = build_run_config()  # the packaged default says gen_dtype: auto
    assert (cfg.model.gen_dtype, cfg.select.autocast, cfg.train.autocast) == (dtype, cast, cast)
    grpo = GRPORunConfig()
    assert (grpo.model.gen_dtype, grpo.autocast) == (dtype, cast)
    assert devices.bf16_autocast_on("auto", "cpu") is False  # never bf16 by default on a CPU


def test_an_explicit_cpu_device_is_float32_beside_a_bf16_gpu(gpu):
    """The defaults dicts keep ``auto`` until the user's device is known, so ``--device cpu``
    on a GPU machine is float32, as from the API, the command line and a sweep."""
    from reasonmaxxer.config import RunConfig, resolve, run_defaults

    gpu(True)
    assert run_defaults()["model"]["gen_dtype"] == "auto"
    assert build_run_config().model.gen_dtype == "bfloat16"  # the GPU itself
    on_cpu = {"model": {"device": "cpu"}}
    for cfg in (
        build_run_config(overrides=on_cpu),
        resolve(RunConfig, defaults=run_defaults(), overrides=on_cpu),
    ):
        assert (cfg.model.gen_dtype, cfg.select.autocast, cfg.train.autocast) == (
            "float32",
            "off",
            "off",
        )
    # GRPO and distill too: from the defaults dicts their commands resolve
    from reasonmaxxer.analysis.distill import DistillConfig
    from reasonmaxxer.baselines.grpo import build_grpo_config
    from reasonmaxxer.config import field_defaults

    assert build_grpo_config().model.gen_dtype == "bfloat16"
    grpo = build_grpo_config(overrides=on_cpu)
    assert (grpo.model.gen_dtype, grpo.autocast) == ("float32", "off")
    distill = resolve(
        DistillConfig,
        defaults=field_defaults(DistillConfig),
        overrides={"device": "cpu", "teacher_adapter": "t"},
    )
    assert distill.autocast == "off"


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
    assert devices.bf16_autocast_on("auto", "cpu") is False
    assert devices.resolve_precision("float16", "cpu", fallback="float32") == "float16"


def test_native_bf16_never_raises_for_a_missing_device():
    assert devices.native_bf16("cuda:7") in (True, False)
    assert devices.native_bf16("mps") is False


def test_busy_cores_by_hand():
    # user nice system idle iowait irq softirq steal: 300 of 400 jiffies busy (iowait is idle)
    before = [100, 0, 50, 1000, 10, 0, 0, 0, 0, 0]
    after = [300, 0, 100, 1080, 30, 0, 0, 0, 0, 0]
    assert devices.busy_cores(before, after) == pytest.approx(250 / 350)
    assert devices.busy_cores(before, before) == 0.0  # no time passed: nothing known busy


def test_free_cores_is_between_one_and_the_usable_cores():
    import os

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= devices.free_cores(0.05) <= usable


def test_free_cores_with_a_busy_machine(monkeypatch):
    """Every core busy: one thread, never zero."""
    samples = iter([[0, 0, 0, 100, 0, 0, 0, 0], [400, 0, 0, 100, 0, 0, 0, 0]])
    monkeypatch.setattr(devices, "_cpu_jiffies", lambda: next(samples))
    assert devices.free_cores(0.0) == 1
