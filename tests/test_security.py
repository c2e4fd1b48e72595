"""Opening someone else's run folder or YAML file never runs code that came with it.

The payload is a model folder whose ``config.json`` maps the Auto classes to Python files in
the folder (how a Hub repo ships custom code); importing them writes a marker file. A run
folder and a YAML file then ask for ``trust_remote_code: true``. No command may import the
payload unless ``--trust-remote-code`` is on its own command line; the last test shows that
the payload does run when it is, so the others can fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

pytestmark = pytest.mark.slow

PAYLOAD = """
import pathlib
pathlib.Path({marker!r}).write_text("the payload ran")
from transformers import LlamaConfig, LlamaForCausalLM


class EvilConfig(LlamaConfig):
    model_type = "llama"


class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
"""


@pytest.fixture
def payload(tmp_path, tiny_model_dir) -> tuple[Path, Path]:
    """(model folder with remote code, marker path that the code writes)."""
    model = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dir, model)
    marker = tmp_path / "PWNED"
    (model / "evil.py").write_text(PAYLOAD.format(marker=str(marker)))
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "evil.EvilConfig",
        "AutoModelForCausalLM": "evil.EvilModel",
    }
    (model / "config.json").write_text(json.dumps(config))
    return model, marker


def _hostile_run_dir(root: Path, model: Path) -> Path:
    """A run folder whose config asks for remote code, with mixed-reward rollouts (so that
    ``select`` gets as far as loading the model)."""
    run = root / "run"
    run.mkdir()
    cfg = {
        "model": {"model": str(model), "trust_remote_code": True},
        "select": {"max_problems": None, "drop_longest": 0.0},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [
        {
            "problem_id": "p0",
            "rollout": j,
            "reward": float(j % 2),
            "prompt_ids": [5, 6, 7],
            "completion_ids": [20, 21, 22 + j],
            "answer": "1",
        }
        for j in range(4)
    ]
    (run / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def _run(*args, cache, modules):
    return run_cli(*args, cache=cache, env={"HF_MODULES_CACHE": str(modules)})


def test_run_folder_and_yaml_never_switch_on_remote_code(tmp_path, payload, cache_dir):
    model, marker = payload
    modules = tmp_path / "hf-modules"
    run = _hostile_run_dir(tmp_path, model)
    # select loads the model for the entropy pass, report reads the folder, train trains on it
    for args in (
        ("select", run),
        ("train", run, "--max-steps", "1", "--lora-r", "2"),
        ("report", run),
    ):
        proc = _run(*args, cache=cache_dir, modules=modules)
        assert proc.returncode == 0, proc.stderr
        assert not marker.exists(), f"{args[0]} ran the payload"
        if args[0] == "select":  # it then rewrites config.yaml with the flag off
            assert "trust_remote_code ignored" in proc.stderr
    assert (run / "adapter" / "adapter_model.safetensors").is_file()  # the stages did run

    evil_yaml = tmp_path / "evil.yaml"
    evil_yaml.write_text(
        yaml.safe_dump({"model": {"model": str(model), "trust_remote_code": True}})
    )
    proc = _run(
        "sample",
        "--config",
        evil_yaml,
        "--out",
        tmp_path / "s",
        "--train",
        "arith:level=1,n=2,split=train",
        "--k",
        "2",
        "--max-new-tokens",
        "2",
        cache=cache_dir,
        modules=modules,
    )
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), "sample --config ran the payload"


def test_payload_runs_only_with_the_flag(tmp_path, payload, cache_dir):
    """The control: ``--trust-remote-code`` on the command line does import the payload."""
    model, marker = payload
    run = _hostile_run_dir(tmp_path, model)
    proc = _run(
        "select",
        run,
        "--trust-remote-code",
        cache=cache_dir,
        modules=tmp_path / "hf-modules",
    )
    assert marker.exists(), proc.stderr
