"""The producers of what the report shows token by token: ``examples.jsonl`` written by
``select`` (token texts, base entropies, base top-5) and ``eval/divergences.jsonl``, checked
against a direct forward pass of the tiny model; the model is loaded once per stage."""

from __future__ import annotations

import json

import pytest
import torch

from reasonmaxxer import models
from reasonmaxxer.config import build_run_config
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method.examples import (
    DIVERGENCES,
    EXAMPLES,
    choose_eval_examples,
    choose_rollout_pairs,
    greedy_by_key,
    write_divergences,
)
from reasonmaxxer.method.selection import select
from reasonmaxxer.models import load_model

# problem -> (completion text, reward) of its rollouts: p0 and p1 are 1 of 2, p2 always wrong.
COMPLETIONS = {
    "p0": [("2", 1.0), ("3 apples", 0.0)],
    "p1": [("7", 1.0), ("six", 0.0)],
    "p2": [("no", 0.0), ("nope", 0.0)],
}


def _write_rollouts(run, tok) -> None:
    run.mkdir(parents=True, exist_ok=True)
    rows = []
    for pid, outs in COMPLETIONS.items():
        for j, (text, reward) in enumerate(outs):
            rows.append(
                {
                    "problem_id": pid,
                    "rollout": j,
                    "reward": reward,
                    "prompt": f"Q {pid}?",
                    "prompt_ids": tok(f"Q {pid}?")["input_ids"],
                    "completion_ids": tok(text)["input_ids"],
                }
            )
    (run / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _cfg(model: str, **select):
    return build_run_config(
        overrides={
            "model": {"model": model},
            "select": {
                "max_problems": "none",
                "drop_longest": 0.0,
                "gate": "entropy",
                "autocast": "off",
                **select,
            },
        }
    )


def _counting_loads(monkeypatch) -> list:
    calls = []
    real = models.load_model

    def load(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "load_model", load)
    return calls


def test_select_writes_examples_with_the_base_top5(tmp_path, tiny_model_dir, monkeypatch):
    model, tok, _ = load_model(str(tiny_model_dir))
    run = tmp_path / "run"
    _write_rollouts(run, tok)
    calls = _counting_loads(monkeypatch)
    select(run, _cfg(str(tiny_model_dir), top_frac=0.3))
    assert len(calls) == 1  # one copy for the entropies and the examples

    rows = list(iter_jsonl(run / EXAMPLES))
    selected = {(r["problem_id"], r["rollout"]): r for r in iter_jsonl(run / "selection.jsonl")}
    # p0 and p1 both pass 1 of 2; p1's pair (1 + 3 tokens) is shorter than p0's (1 + 8).
    assert [(r["pair"], r["problem_id"], r["reward"]) for r in rows] == [
        (0, "p1", 1.0),
        (0, "p1", 0.0),
        (1, "p0", 1.0),
        (1, "p0", 0.0),
    ]
    assert [(r["kept_correct"], r["kept_rollouts"]) for r in rows] == [(1, 2)] * 4
    for r in rows:
        sel = selected[(r["problem_id"], r["rollout"])]
        assert r["entropy"] == sel["entropy"] and r["decision"] == sel["decision"]
        assert r["tokens"] == [tok.decode([i]) for i in sel["completion_ids"]]
        assert r["prompt"] == f"Q {r['problem_id']}?"
        # top-5 at completion token j: the distribution of the logits at P + j - 1.
        with torch.inference_mode():
            seq = torch.tensor([sel["prompt_ids"] + sel["completion_ids"]])
            probs = model(input_ids=seq).logits[0].float().softmax(-1)
        p = len(sel["prompt_ids"])
        assert len(r["top5"]) == len(sel["completion_ids"])
        for j, alts in enumerate(r["top5"]):
            vals, idx = probs[p - 1 + j].topk(5)
            assert [t for t, _ in alts] == [tok.decode([i]) for i in idx.tolist()]
            assert [q for _, q in alts] == pytest.approx(vals.tolist(), abs=1e-4)
            assert alts[0][1] >= alts[-1][1]

    # Another τ on cached entropies: the examples are reused, and no model is loaded.
    monkeypatch.setattr(models, "load_model", _no_load)
    select(run, _cfg(str(tiny_model_dir), tau=0.0))
    again = list(iter_jsonl(run / EXAMPLES))
    assert [r["top5"] for r in again] == [r["top5"] for r in rows]
    assert all(len(r["decision"]) == len(r["tokens"]) for r in again)  # H > 0 everywhere


def test_select_without_the_model_writes_examples_with_a_note(tmp_path, tiny_model_dir):
    """A folder moved away from its weights: entropies cached, the model cannot be loaded; the
    selection still runs and the examples say why they have no token text."""
    _, tok, _ = load_model(str(tiny_model_dir))
    run = tmp_path / "run"
    _write_rollouts(run, tok)
    select(run, _cfg(str(tiny_model_dir), top_frac=0.3))
    (run / EXAMPLES).unlink()
    gone = _cfg(str(tmp_path / "gone"), top_frac=0.3)
    lines = (run / "entropies.jsonl").read_text().splitlines()
    from reasonmaxxer.method.selection import entropy_key

    rekeyed = [{**json.loads(x), "key": entropy_key(gone)} for x in lines]
    (run / "entropies.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rekeyed))
    select(run, gone)
    rows = list(iter_jsonl(run / EXAMPLES))
    assert len(rows) == 4
    assert all("tokens" not in r and "top5" not in r for r in rows)
    assert all("could not be loaded" in r["note"] for r in rows)


def test_choose_rollout_pairs_by_hand():
    def row(pid, j, reward, n, decision=(0,)):
        return {
            "problem_id": pid,
            "rollout": j,
            "reward": reward,
            "completion_ids": list(range(n)),
            "decision": list(decision),
        }

    rows = [
        row("a", 0, 1.0, 5),
        row("a", 1, 1.0, 3, decision=()),  # shorter, but no decision point
        row("a", 2, 0.0, 4),
        row("a", 3, 0.0, 2),
        row("b", 0, 1.0, 9),
        row("b", 1, 0.0, 9),
        row("c", 0, 0.0, 1),
    ]
    pairs = choose_rollout_pairs(rows, 5)
    # a and b are both at pass rate 0.5; a's pair (5 + 2 tokens) is shorter than b's (18).
    assert [(g["problem_id"], g["rollout"], b["rollout"]) for g, b in pairs] == [
        ("a", 0, 3),
        ("b", 0, 1),
    ]
    assert len(choose_rollout_pairs(rows, 1)) == 1


def _sample(bench, qid, prompt, text, correct):
    return {
        "benchmark": bench,
        "id": qid,
        "prompt": prompt,
        "sample": "greedy",
        "completion": text,
        "correct": correct,
    }


def test_divergences_match_a_direct_forward_pass(tmp_path, tiny_model_dir, monkeypatch):
    model, tok, _ = load_model(str(tiny_model_dir))
    run = tmp_path / "run"
    outs = {  # id -> (base output, base correct, adapter output, adapter correct)
        "q0": ("3 + 4 = 8", False, "3 + 4 = 7", True),
        "q1": ("2 + 2 = 4", True, "2 + 2 = 5!", False),
        "q2": ("1", True, "1", True),
    }
    for label, (text_i, ok_i) in (("base", (0, 1)), ("adapter", (2, 3))):
        rows = [_sample("toy", q, f"Q {q}?", o[text_i], o[ok_i]) for q, o in outs.items()]
        path = run / "eval" / label / "samples.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = _cfg(str(tiny_model_dir))
    calls = _counting_loads(monkeypatch)
    rows = write_divergences(run, cfg)
    assert len(calls) == 1
    assert [(r["id"], r["char"], r["token"], r["text"]) for r in rows] == [
        ("q0", 8, 8, "8"),  # gained first, then lost; one character per token here
        ("q1", 8, 8, "4"),
    ]
    for r in rows:
        base = outs[r["id"]][0]
        seq = tok(f"Q {r['id']}?")["input_ids"] + tok(base)["input_ids"][: r["token"]]
        with torch.inference_mode():
            logp = model(input_ids=torch.tensor([seq])).logits[0, -1].double().log_softmax(-1)
        assert r["entropy"] == pytest.approx(float(-(logp.exp() * logp).sum()), abs=1e-4)
        vals, idx = logp.exp().topk(5)
        assert [t for t, _ in r["top5"]] == [tok.decode([i]) for i in idx.tolist()]
        assert [p for _, p in r["top5"]] == pytest.approx(vals.tolist(), abs=1e-4)
    assert list(iter_jsonl(run / DIVERGENCES)) == rows
    # Unchanged outputs: the file is reused and no model is loaded.
    monkeypatch.setattr(models, "load_model", _no_load)
    assert write_divergences(run, cfg) == rows


def test_choose_eval_examples_shortest_first():
    base = greedy_by_key(
        [
            _sample("t", "a", "", "long wrong output", False),
            _sample("t", "b", "", "x", False),
            _sample("t", "c", "", "ok", True),
            _sample("t", "d", "", "same", True),
        ]
    )
    adapter = greedy_by_key(
        [
            _sample("t", "a", "", "long right output", True),
            _sample("t", "b", "", "y", True),
            _sample("t", "c", "", "no", False),
            _sample("t", "d", "", "same", True),
        ]
    )
    chosen = choose_eval_examples(base, adapter, 5)
    assert chosen == {"gained": [("t", "b"), ("t", "a")], "lost": [("t", "c")]}
    assert choose_eval_examples(base, adapter, 1)["gained"] == [("t", "b")]


def _no_load(*args, **kwargs):
    raise AssertionError("model loaded")
