"""One tiny step of every stage on CUDA (skipped without a GPU): the model and every batch
live on the GPU, autocast follows it, and the numbers agree with the CPU run.

Run them on a GPU machine with ``pytest -m gpu``; ``benchmarks/gpu_check.sh`` runs the default
job there end to end.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def _sets(tmp_path, device: str) -> dict:
    import json

    def write(name, template):
        path = tmp_path / name
        rows = [
            {"id": f"q{a}", "problem": template.format(a, 7 - a), "answer": "7"} for a in range(6)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    train = write("sevens_train.jsonl", "What is {} + {}?")
    held_out = write("sevens_eval.jsonl", "Add {} and {}.")
    return {
        "model": {"device": device, "gen_dtype": "float32"},
        "sample": {"train": str(train), "k": 4, "max_new_tokens": 8, "chunk_problems": 3},
        "select": {"top_frac": 0.5, "drop_longest": 0, "max_problems": None},
        "train": {"max_steps": 2, "batch_size": 4, "lora_r": 4, "lora_alpha": 8, "lr": 0.01},
        "eval": {"benchmarks": str(held_out), "k": 1, "max_new_tokens": 8},
        "report": False,
        "rounds": 1,
    }


def test_every_stage_runs_on_cuda(tmp_path, digit_model_dir, cache_dir):
    from reasonmaxxer.config import build_run_config
    from reasonmaxxer.io import iter_jsonl
    from reasonmaxxer.method.pipeline import run

    overrides = _sets(tmp_path, "cuda")
    overrides["model"]["model"] = str(digit_model_dir)
    cfg = build_run_config(overrides=overrides)
    manifest = run(cfg, tmp_path / "gpu")
    assert set(manifest["stages"]) == {"sample", "select", "train", "eval_base", "eval_adapter"}
    assert all(s.get("peak_gpu_mib", 0) > 0 for s in manifest["stages"].values())
    assert (tmp_path / "gpu" / "adapter" / "adapter_model.safetensors").is_file()
    assert len(list(iter_jsonl(tmp_path / "gpu" / "rollouts.jsonl"))) == 24


def test_two_rounds_run_on_cuda(tmp_path, digit_model_dir, cache_dir):
    """The default preset's shape: round 2 samples from round 1's merged policy and trains
    against it, all on the GPU."""
    from reasonmaxxer.config import build_run_config
    from reasonmaxxer.method.pipeline import run

    overrides = _sets(tmp_path, "cuda")
    overrides["model"]["model"] = str(digit_model_dir)
    overrides.update(rounds=2, round_anchor="previous")
    manifest = run(build_run_config(overrides=overrides), tmp_path / "gpu")
    round2 = {"round2/policy", "round2/sample", "round2/select", "round2/train"}
    assert round2 <= set(manifest["stages"])
    for name in ("round2/sample", "round2/select", "round2/train", "round2/eval_adapter"):
        assert manifest["stages"][name].get("peak_gpu_mib", 0) > 0, name
    assert [e["round"] for e in manifest["rounds"]] == [1, 2]
    assert (tmp_path / "gpu" / "round2" / "adapter" / "adapter_model.safetensors").is_file()


def test_entropies_and_step_loss_match_the_cpu(digit_model_dir):
    from reasonmaxxer.config import build_run_config
    from reasonmaxxer.engine import build_batch, completion_logits
    from reasonmaxxer.method.losses import entropy_from_logits
    from reasonmaxxer.method.training import lora_model, step_loss
    from reasonmaxxer.models import load_model

    rows = [
        {
            "prompt_ids": [5, 6, 7],
            "completion_ids": [20, 21, 22],
            "decision": [1],
            "advantage": 1.0,
        },
        {"prompt_ids": [5, 9], "completion_ids": [30, 31], "decision": [0], "advantage": -1.0},
    ]
    batch = build_batch(rows)
    out = {}
    for device in ("cpu", "cuda"):
        model, _, _ = load_model(str(digit_model_dir), device=device)
        assert model.device.type == device
        with torch.no_grad():
            h = entropy_from_logits(completion_logits(model, batch).float())
        cfg = build_run_config(overrides={"train": {"autocast": "off", "lora_r": 4}})
        torch.manual_seed(0)
        peft = lora_model(model, cfg)
        loss, _ = step_loss(peft, batch, cfg)  # the CPU batch is moved to the model's device
        out[device] = (h.cpu(), float(loss))
    assert torch.allclose(out["cpu"][0], out["cuda"][0], atol=1e-4)
    assert out["cpu"][1] == pytest.approx(out["cuda"][1], abs=1e-4)
