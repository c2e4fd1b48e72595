"""Selection (pass-rate window, advantages, entropy-gated decision points) on a hand-made run
folder, and the training batch layout (left padding, target alignment, loss masks)."""

from __future__ import annotations

import json
import math
import shutil
import sys

import pytest
import torch
from conftest import completion_log_softmax

from reasonmaxxer import models
from reasonmaxxer.config import build_run_config
from reasonmaxxer.engine import build_batch
from reasonmaxxer.errors import UserError
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method.losses import selective_log_softmax
from reasonmaxxer.method.selection import (
    ENTROPIES,
    SELECTION,
    choose_problems,
    compute_entropies,
    entropy_key,
    pass_rates,
    select,
)
from reasonmaxxer.models import load_model

# --------------------------------------------------------------------------- build_batch

ROW_A = {"prompt_ids": [10, 11, 12], "completion_ids": [20, 21], "decision": [1], "advantage": 1.0}
ROW_B = {
    "prompt_ids": [30, 31],
    "completion_ids": [40, 41, 42, 43],
    "decision": [0, 3],
    "advantage": -0.5,
}


def test_build_batch_layout():
    b = build_batch([ROW_A, ROW_B])
    # Sequences: A = 10 11 12 20 21 (5 tokens), B = 30 31 40 41 42 43 (6): width 6, left pad.
    assert b["input_ids"].tolist() == [[0, 10, 11, 12, 20, 21], [30, 31, 40, 41, 42, 43]]
    assert b["attention_mask"].tolist() == [[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    assert b["position_ids"].tolist() == [[0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]
    # T = 4 (longest completion): targets are the last 4 tokens of each row.
    assert b["targets"].tolist() == [[11, 12, 20, 21], [40, 41, 42, 43]]
    assert b["completion"].tolist() == [[False, False, True, True], [True] * 4]
    assert b["decision"].tolist() == [[False, False, False, True], [True, False, False, True]]
    assert b["advantages"].tolist() == [1.0, -0.5]
    assert b["keep"] == 5
    # The loss masks cover exactly the completion tokens, and decision points are inside them.
    for i, r in enumerate([ROW_A, ROW_B]):
        assert b["targets"][i][b["completion"][i]].tolist() == r["completion_ids"]
        start = 4 - len(r["completion_ids"])
        for j in r["decision"]:
            assert b["targets"][i, start + j].item() == r["completion_ids"][j]
        assert int(b["decision"][i].sum()) == len(r["decision"])
    assert not (b["decision"] & ~b["completion"]).any()


def test_build_batch_logits_line_up_with_unpadded_rows(tiny_model_dir):
    """logits_to_keep = T + 1 and left padding score each completion token exactly as an
    unpadded forward pass of that row alone does."""
    model, tok, _ = load_model(str(tiny_model_dir))
    rows = [
        {
            "prompt_ids": tok("What is 1+1?")["input_ids"],
            "completion_ids": tok("2<|im_end|>")["input_ids"],
        },
        {"prompt_ids": tok("Hi")["input_ids"], "completion_ids": tok("Hello there")["input_ids"]},
        {
            "prompt_ids": tok("Count: 1 2 3")["input_ids"],
            "completion_ids": tok(" 4 5")["input_ids"],
        },
    ]
    for r in rows:
        r["decision"], r["advantage"] = [0], 1.0
    b = build_batch(rows)
    with torch.inference_mode():
        logits = model(
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            position_ids=b["position_ids"],
            logits_to_keep=b["keep"],
        ).logits[:, :-1]
        logp = selective_log_softmax(logits.float(), b["targets"])
        for i, r in enumerate(rows):
            seq = torch.tensor([r["prompt_ids"] + r["completion_ids"]])
            full = model(input_ids=seq).logits[0].float().log_softmax(-1)
            p = len(r["prompt_ids"])
            expected = [full[p - 1 + j, t].item() for j, t in enumerate(r["completion_ids"])]
            assert logp[i][b["completion"][i]].tolist() == pytest.approx(expected, abs=1e-4)


# --------------------------------------------------------------------------- choose_problems


def test_choose_problems():
    rates = {"a": 0.0, "b": 0.25, "c": 0.5, "d": 0.75, "e": 1.0, "f": 0.625}
    assert choose_problems(rates, 0.0, 1.0, None) == ["b", "c", "d", "f"]
    # Closest to 0.5: c (0), f (0.125); then b and d tie at 0.25, b comes first.
    assert choose_problems(rates, 0.0, 1.0, 2) == ["c", "f"]
    assert choose_problems(rates, 0.0, 1.0, 3) == ["b", "c", "f"]  # original order kept
    assert choose_problems(rates, 0.0, 1.0, 10) == ["b", "c", "d", "f"]
    assert choose_problems(rates, 0.3, 0.8, None) == ["c", "d", "f"]
    assert choose_problems({"a": 0.0, "e": 1.0}, 0.0, 1.0, None) == []


def test_pass_rates():
    rows = [{"problem_id": p, "reward": r} for p, r in [("x", 1.0), ("y", 0.0), ("x", 0.0)]]
    assert pass_rates(rows) == {"x": 0.5, "y": 0.0}


# --------------------------------------------------------------------------- select


# problem -> rewards of its 4 rollouts; p1 is 2-of-4, p2 0-of-4 (dropped), p3 1-of-4.
REWARDS = {"p1": [1, 1, 0, 0], "p2": [0, 0, 0, 0], "p3": [1, 0, 0, 0]}
# Hand entropies (nats) per rollout; the completion has as many tokens as entries.
ENT = {
    ("p1", 0): [0.5, 1.2, 0.9, 2.0],
    ("p1", 1): [1.0, 1.0001, 0.2],
    ("p1", 2): [3.0, 0.1],
    ("p1", 3): [0.0, 0.3, 0.7, 0.99, 1.5],
    ("p2", 0): [5.0],
    ("p2", 1): [5.0],
    ("p2", 2): [5.0],
    ("p2", 3): [5.0],
    ("p3", 0): [1.1, 1.1, 0.2],
    ("p3", 1): [0.4],
    ("p3", 2): [0.4, 2.2, 0.1, 1.7, 0.2, 1.01],
    ("p3", 3): [0.9, 0.8],
}


def _write_run(run_dir, *, with_p2_entropies: bool = True):
    run_dir.mkdir(parents=True, exist_ok=True)
    rollouts, ents = [], []
    for pid, rewards in REWARDS.items():
        for j, r in enumerate(rewards):
            n = len(ENT[(pid, j)])
            rollouts.append(
                {
                    "problem_id": pid,
                    "rollout": j,
                    "reward": float(r),
                    "prompt_ids": [5, 6, 7],
                    "completion_ids": list(range(20, 20 + n)),
                }
            )
            if pid != "p2" or with_p2_entropies:
                ents.append(
                    {
                        "problem_id": pid,
                        "rollout": j,
                        "entropy": ENT[(pid, j)],
                        "key": entropy_key(_cfg(run_dir.parent)),  # the model _cfg names
                    }
                )
    (run_dir / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rollouts))
    (run_dir / ENTROPIES).write_text("".join(json.dumps(r) + "\n" for r in ents))


def _cfg(tmp_path, **select):
    # A model that cannot be loaded: the entropy cache must cover every rollout. The packaged
    # default's problem cap and length filter are switched off: these hand cases test the rest.
    return build_run_config(
        overrides={
            "model": {"model": str(tmp_path / "no-model-here")},
            "select": {"max_problems": "none", "drop_longest": 0.0, "gate": "entropy", **select},
        }
    )


def test_select_with_tau_on_cached_entropies(tmp_path):
    run = tmp_path / "run"
    _write_run(run, with_p2_entropies=False)  # p2 is never kept, so it needs no entropies
    cfg = _cfg(tmp_path, tau=1.0)
    assert cfg.select.top_frac is None
    stats = select(run, cfg)

    rows = list(iter_jsonl(run / SELECTION))
    assert [(r["problem_id"], r["rollout"]) for r in rows] == [
        (p, j) for p in ("p1", "p3") for j in range(4)
    ]
    expected_decisions = {
        ("p1", 0): [1, 3],
        ("p1", 1): [1],  # 1.0 itself is not > 1.0
        ("p1", 2): [0],
        ("p1", 3): [4],
        ("p3", 0): [0, 1],
        ("p3", 1): [],
        ("p3", 2): [1, 3, 5],
        ("p3", 3): [],
    }
    for r in rows:
        key = (r["problem_id"], r["rollout"])
        assert r["decision"] == expected_decisions[key], key
        assert r["entropy"] == ENT[key]
        assert r["reward"] == REWARDS[key[0]][key[1]]
    # 2-of-4: mean 0.5, population std 0.5 → ±1. 1-of-4: std sqrt(3/16) = 0.4330 →
    # +0.75/0.4330 = +1.7321 and −0.25/0.4330 = −0.5774.
    adv = {(r["problem_id"], r["rollout"]): r["advantage"] for r in rows}
    assert [adv[("p1", j)] for j in range(4)] == pytest.approx([1, 1, -1, -1], abs=1e-5)
    assert [adv[("p3", j)] for j in range(4)] == pytest.approx(
        [math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)], abs=1e-5
    )

    n_tokens = sum(len(ENT[k]) for k in expected_decisions)  # 14 + 12 = 26
    n_marked = sum(len(v) for v in expected_decisions.values())  # 5 + 5 = 10
    assert (n_tokens, n_marked) == (26, 10)
    assert stats["problems_total"] == 3
    assert stats["problems_kept"] == 2
    assert stats["rollouts_kept"] == 8
    assert stats["rollouts_dropped_long"] == 0
    assert stats["positive_rollouts"] == 3 and stats["negative_rollouts"] == 5
    assert stats["tokens"] == n_tokens
    assert stats["decision_tokens"] == n_marked
    assert stats["frac_marked"] == pytest.approx(10 / 26)
    assert stats["tau"] == 1.0
    assert stats["gate"] == "entropy"
    assert stats["k"] == 4
    assert stats["pass_count_hist"] == [1, 1, 1, 0, 0]  # p2: 0, p3: 1, p1: 2 correct
    assert stats["window"] == [0.0, 1.0]
    on_disk = json.loads((run / "selection.json").read_text())
    assert on_disk["decision_tokens"] == n_marked and on_disk["problems_kept"] == 2


def test_select_top_frac_drop_longest_and_windows(tmp_path):
    run = tmp_path / "run"
    _write_run(run)
    # top_frac 0.2 of 26 tokens: m = round(5.2) = 5; tau = 21st smallest entropy = 1.2, so the
    # marked tokens are those above 1.2: 2.0, 3.0, 1.5, 2.2, 1.7.
    stats = select(run, _cfg(tmp_path, top_frac=0.2))
    assert stats["tau"] == pytest.approx(1.2)
    assert stats["decision_tokens"] == 5
    # drop_longest 0.25 of 8 kept rollouts: the 2 longest (p3/2 with 6, p1/3 with 5 tokens).
    # Advantages come from the full groups, before the drop.
    stats = select(run, _cfg(tmp_path, tau=1.0, drop_longest=0.25))
    rows = {(r["problem_id"], r["rollout"]): r for r in iter_jsonl(run / SELECTION)}
    assert set(rows) == {("p1", 0), ("p1", 1), ("p1", 2), ("p3", 0), ("p3", 1), ("p3", 3)}
    assert stats["rollouts_dropped_long"] == 2
    assert rows[("p1", 2)]["advantage"] == pytest.approx(-1, abs=1e-5)
    assert rows[("p3", 0)]["advantage"] == pytest.approx(math.sqrt(3), abs=1e-5)
    # gate=all marks every completion token.
    stats = select(run, _cfg(tmp_path, tau=1.0, gate="all"))
    assert stats["decision_tokens"] == stats["tokens"] == 26
    # A window that keeps only p3 (pass 0.25), and one that keeps nothing.
    stats = select(run, _cfg(tmp_path, tau=1.0, max_pass=0.4))
    assert stats["problems_kept"] == 1 and stats["rollouts_kept"] == 4
    with pytest.raises(UserError, match="no problem has a pass rate in"):
        select(run, _cfg(tmp_path, tau=1.0, min_pass=0.6))


def test_select_needs_rollouts(tmp_path):
    with pytest.raises(UserError, match="rollouts.jsonl not found"):
        select(tmp_path, _cfg(tmp_path, tau=1.0))


def test_select_missing_entropies_loads_the_model(tmp_path):
    """Without a cached entropy the model is needed: the unloadable one is a clear error."""
    run = tmp_path / "run"
    _write_run(run)
    lines = (run / ENTROPIES).read_text().splitlines(keepends=True)
    (run / ENTROPIES).write_text("".join(lines[:-1]))  # drop (p3, 3)
    with pytest.raises(UserError, match="model path not found"):
        select(run, _cfg(tmp_path, tau=1.0))


def test_compute_entropies_teacher_forced_and_cached(tmp_path, tiny_model_dir, monkeypatch):
    model, tok, _ = load_model(str(tiny_model_dir))
    rows = [
        {
            "problem_id": "a",
            "rollout": 0,
            "prompt_ids": tok("What is 1+1?")["input_ids"],
            "completion_ids": tok("2 apples")["input_ids"],
        },
        {
            "problem_id": "a",
            "rollout": 1,
            "prompt_ids": tok("What is 1+1?")["input_ids"],
            "completion_ids": tok("3")["input_ids"],
        },
        {
            "problem_id": "b",
            "rollout": 0,
            "prompt_ids": tok("Hi")["input_ids"],
            "completion_ids": tok("Hello, how are you")["input_ids"],
        },
    ]
    cfg = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir)},
            "select": {"batch_size": 2, "autocast": "off"},
        }
    )
    ent = compute_entropies(tmp_path, rows, cfg)
    for r in rows:
        # the entropy of completion token j is that of the distribution that sampled it
        logp = completion_log_softmax(model, r)  # [n, V]
        expected = (-(logp.exp() * logp).sum(-1)).tolist()
        assert ent[(r["problem_id"], r["rollout"])] == pytest.approx(expected, abs=2e-4)
    cached = list(iter_jsonl(tmp_path / ENTROPIES))
    assert {(c["problem_id"], c["rollout"]) for c in cached} == {("a", 0), ("a", 1), ("b", 0)}
    # A second call with the same model is served from the cache: no model is loaded.
    monkeypatch.setattr(models, "load_model", _no_load)
    assert compute_entropies(tmp_path, rows, cfg) == ent
    # Another model (other weights fingerprint) does not reuse them: it needs its model.
    gone = build_run_config(
        overrides={"model": {"model": str(tmp_path / "gone")}, "select": {"autocast": "off"}}
    )
    with pytest.raises(AssertionError, match="model loaded"):
        compute_entropies(tmp_path, rows, gone)
    # The same weights in a copied folder share the fingerprint, so the cache is reused.
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    same = build_run_config(
        overrides={"model": {"model": str(copy)}, "select": {"batch_size": 2, "autocast": "off"}}
    )
    assert compute_entropies(tmp_path, rows, same) == ent
    # ... until the weights change.
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes() + b" ")
    with pytest.raises(AssertionError, match="model loaded"):
        compute_entropies(tmp_path, rows, same)
    # Entries made at another precision or dtype are not reused either.
    for select_cfg, dtype in (
        ({"autocast": "bfloat16"}, "float32"),
        ({"autocast": "off"}, "bfloat16"),
    ):
        other = build_run_config(
            overrides={
                "model": {"model": str(tiny_model_dir), "dtype": dtype},
                "select": select_cfg,
            }
        )
        assert entropy_key(other) != entropy_key(cfg)
        with pytest.raises(AssertionError, match="model loaded"):
            compute_entropies(tmp_path, rows, other)
    monkeypatch.undo()
    cfg3 = build_run_config(
        overrides={"model": {"model": str(tiny_model_dir)}, "select": {"autocast": "bfloat16"}}
    )
    ent_bf16 = compute_entropies(tmp_path, rows, cfg3)  # bf16 recomputes, close to fp32
    for key, h in ent.items():
        assert ent_bf16[key] == pytest.approx(h, abs=0.05)
    keys = [c["key"] for c in iter_jsonl(tmp_path / ENTROPIES)]
    assert keys == [entropy_key(cfg)] * 3 + [entropy_key(cfg3)] * 3  # both kept, each once


def _no_load(*args, **kwargs):
    raise AssertionError("model loaded")


# --------------------------------------------------------------------------- train


def _hand_selection(run_dir, tok, advantages=(1.0, 1.0, 1.0)) -> list[dict]:
    texts = [("What is 1+1?", "2 is the answer"), ("Hi", "Hello there"), ("3*3=", "9, nine")]
    rows = []
    for i, ((p, c), a) in enumerate(zip(texts, advantages, strict=True)):
        ids = tok(c)["input_ids"]
        rows.append(
            {
                "problem_id": f"q{i}",
                "rollout": 0,
                "reward": 1.0,
                "advantage": a,
                "prompt_ids": tok(p)["input_ids"],
                "completion_ids": ids,
                "entropy": [1.0] * len(ids),
                "decision": [0, 2],
            }
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SELECTION).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _train_cfg(model_dir, **train):
    base = {"max_steps": 3, "batch_size": 2, "lora_r": 4, "lr": 0.01, "warmup_steps": 1}
    return build_run_config(
        overrides={"model": {"model": str(model_dir)}, "train": {**base, **train}}
    )


def test_train_on_hand_made_selection(tmp_path, tiny_model_dir):
    from peft import PeftModel

    from reasonmaxxer.method.training import train

    model, tok, _ = load_model(str(tiny_model_dir))
    rows = _hand_selection(tmp_path, tok)
    cfg = _train_cfg(tiny_model_dir)
    s = train(tmp_path, cfg)
    assert s["steps"] == 3 and s["rollouts"] == 3
    assert 0 < s["trainable_frac"] < 1
    log = list(iter_jsonl(tmp_path / "train_log.jsonl"))
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(math.isfinite(r["train/loss"]) for r in log)
    # each row says what memory the process held: the model is loaded, so well above 0
    assert all(r["sys/peak_rss_mib"] > 50 for r in log)
    if sys.platform == "linux":  # VmRSS: resident now, at most the peak
        assert all(r["sys/peak_rss_mib"] >= r["sys/rss_mib"] > 50 for r in log)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 4
    # Positive advantages everywhere: the adapter raises the log-prob of the decision tokens.
    tuned = PeftModel.from_pretrained(model, str(tmp_path / "adapter"))
    b = build_batch(rows)
    kwargs = {k: b[k] for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.inference_mode():
        new = selective_log_softmax(
            tuned(**kwargs, logits_to_keep=b["keep"]).logits[:, :-1], b["targets"]
        )
        with tuned.disable_adapter():
            old = selective_log_softmax(
                tuned(**kwargs, logits_to_keep=b["keep"]).logits[:, :-1], b["targets"]
            )
    moved = (new - old)[b["decision"]]
    assert moved.mean() > 0, moved
    # No selection file: a clear error.
    with pytest.raises(UserError, match="selection.jsonl not found"):
        train(tmp_path / "empty", cfg)


@pytest.mark.parametrize("kill_at", [2, 3])  # resume mid-epoch (batches left) / at an epoch end
def test_train_killed_and_resumed_matches_an_uninterrupted_run(
    tmp_path, tiny_model_dir, monkeypatch, kill_at
):
    from safetensors.torch import load_file

    from reasonmaxxer import optim
    from reasonmaxxer.method import training

    _, tok, _ = load_model(str(tiny_model_dir))
    cfg = _train_cfg(tiny_model_dir, max_steps=5, epochs=4, checkpoint_every=1)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for d in (straight, resumed):
        _hand_selection(d, tok, advantages=(1.0, -0.5, 0.5))
    training.train(straight, cfg)
    assert not (straight / training.CHECKPOINT).exists()  # removed once the adapter is saved

    real_append = optim.append_jsonl

    def dies_at_step(path, rows):  # the process dies while step `kill_at` is being logged
        if rows[0]["step"] == kill_at:
            raise KeyboardInterrupt
        real_append(path, rows)

    monkeypatch.setattr(optim, "append_jsonl", dies_at_step)
    with pytest.raises(KeyboardInterrupt):
        training.train(resumed, cfg)
    assert not (resumed / training.ADAPTER).exists()
    assert (resumed / training.CHECKPOINT / "meta.json").is_file()
    monkeypatch.setattr(optim, "append_jsonl", real_append)
    s = training.train(resumed, cfg)
    assert s["resumed_from_step"] == kill_at - 1

    a = load_file(str(straight / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(resumed / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    log_a = list(iter_jsonl(straight / "train_log.jsonl"))
    log_b = list(iter_jsonl(resumed / "train_log.jsonl"))
    assert [r["step"] for r in log_b] == [1, 2, 3, 4, 5]
    assert [r["train/loss"] for r in log_b] == pytest.approx([r["train/loss"] for r in log_a])

    # A checkpoint made for other settings is ignored: training starts from step 0.
    other = tmp_path / "other"
    _hand_selection(other, tok, advantages=(1.0, -0.5, 0.5))
    monkeypatch.setattr(optim, "append_jsonl", dies_at_step)
    with pytest.raises(KeyboardInterrupt):
        training.train(other, cfg)
    monkeypatch.setattr(optim, "append_jsonl", real_append)
    assert (
        training.train(other, _train_cfg(tiny_model_dir, max_steps=5, epochs=4, lr=0.02))[
            "resumed_from_step"
        ]
        == 0
    )


def test_train_killed_while_saving_the_adapter_keeps_its_checkpoint(
    tmp_path, tiny_model_dir, monkeypatch
):
    """The checkpoint goes only after the adapter is saved: a kill during the save resumes
    from the last checkpoint (step 4 of 5) instead of training from step 0 again."""
    from safetensors.torch import load_file

    from reasonmaxxer.method import training

    _, tok, _ = load_model(str(tiny_model_dir))
    cfg = _train_cfg(tiny_model_dir, max_steps=5, epochs=4, checkpoint_every=1)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for d in (straight, killed):
        _hand_selection(d, tok, advantages=(1.0, -0.5, 0.5))
    training.train(straight, cfg)

    def dies_while_saving(model, out):
        raise KeyboardInterrupt

    real_save = training.save_adapter
    monkeypatch.setattr(training, "save_adapter", dies_while_saving)
    with pytest.raises(KeyboardInterrupt):
        training.train(killed, cfg)
    assert (killed / training.CHECKPOINT / "meta.json").is_file()
    assert json.loads((killed / training.CHECKPOINT / "meta.json").read_text())["step"] == 4
    monkeypatch.setattr(training, "save_adapter", real_save)
    assert training.train(killed, cfg)["resumed_from_step"] == 4
    assert not (killed / training.CHECKPOINT).exists()  # removed once the adapter is saved
    a = load_file(str(straight / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(killed / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
