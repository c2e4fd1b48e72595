"""Resume under any kill and run-folder identity (issue 12, items 5-6).

Torn tails are dropped at the byte level (a kill can cut a row inside a multi-byte UTF-8
character); stage keys hash the benchmark files' contents and the model's weights, not their
names; a refused resume leaves config.yaml alone; one command at a time writes a run folder;
two processes converting the same GGUF take turns.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from conftest import run_cli

from reasonmaxxer import models
from reasonmaxxer.cli import parse_sets, stage_config
from reasonmaxxer.config import build_run_config, dump_yaml, identity
from reasonmaxxer.errors import UserError
from reasonmaxxer.io import LOCK, append_jsonl, iter_jsonl, run_lock
from reasonmaxxer.method.pipeline import run, stage_keys
from reasonmaxxer.method.sampling import ROLLOUTS, sample

# --------------------------------------------------------------------------- torn tails

ROWS = [{"id": 1, "text": "π ≈ 3.14"}, {"id": 2, "text": "naïve — ünïcödé"}]


def _lines(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def test_torn_tail_inside_a_multibyte_character_is_dropped(tmp_path):
    path = tmp_path / "rows.jsonl"
    third = json.dumps({"id": 3, "text": "€uro"}, ensure_ascii=False).encode()
    cut = third.index("€".encode()) + 1  # one byte into the three bytes of "€"
    path.write_bytes(_lines(ROWS) + third[:cut])
    with pytest.raises(UnicodeDecodeError):
        third[:cut].decode("utf-8")  # the tail really is cut inside the character
    assert list(iter_jsonl(path, tolerate_torn_tail=True)) == ROWS
    # Strict readers still see the torn row, as one line naming the file and line 3.
    with pytest.raises(UserError, match=r"rows.jsonl:3: not UTF-8 text"):
        list(iter_jsonl(path))


def test_a_tail_without_newline_is_dropped_even_if_it_parses(tmp_path):
    """Every row is written with its newline, so a tail without one was cut short."""
    path = tmp_path / "rows.jsonl"
    path.write_bytes(_lines(ROWS) + b'{"id": 3}')
    assert list(iter_jsonl(path, tolerate_torn_tail=True)) == ROWS
    assert list(iter_jsonl(path)) == [*ROWS, {"id": 3}]  # a user's file may lack it


def test_a_bad_complete_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    bad = "é".encode("latin-1")  # a lone 0xE9: not UTF-8
    path.write_bytes(_lines(ROWS[:1]) + b'{"x": "' + bad + b'"}\n' + _lines(ROWS[1:]))
    with pytest.raises(UserError, match=r"rows.jsonl:2: not UTF-8 text \(byte 7\)"):
        list(iter_jsonl(path, tolerate_torn_tail=True))


def test_sampling_resumes_after_a_tail_torn_inside_a_character(tmp_path, tiny_model_dir):
    """A kill inside a multi-byte character of a rollout row: the next run drops the tail,
    keeps the finished chunks and samples nothing again."""
    cfg = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir), "gen_dtype": "float32"},
            "sample": {
                "train": "arith:level=1,n=4,split=train",
                "k": 2,
                "chunk_problems": 2,
                "max_new_tokens": 4,
                "seed": 3,
            },
        }
    )
    run_dir = tmp_path / "run"
    sample(run_dir, cfg)
    path = run_dir / ROLLOUTS
    whole = path.read_bytes()
    row = json.loads(whole.splitlines()[0])
    row["completion"] = "∑ of the digits"  # the torn write: one more row, cut inside "∑"
    torn = json.dumps(row, ensure_ascii=False).encode()
    path.write_bytes(whole + torn[: torn.index("∑".encode()) + 2])
    again = sample(run_dir, cfg)
    assert again["chunks_resumed"] == 2 and again["generation"]["sequences"] == 0
    assert path.read_bytes() == whole


# --------------------------------------------------------------------------- identity


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sets(tmp_path) -> tuple[str, ...]:
    train = _jsonl(
        tmp_path / "train.jsonl",
        [{"id": f"t{a}", "problem": f"What is {a} + 1?", "answer": str(a + 1)} for a in range(3)],
    )
    evalset = _jsonl(
        tmp_path / "eval.jsonl",
        [{"id": f"e{a}", "problem": f"Add {a} and 2.", "answer": str(a + 2)} for a in range(3)],
    )
    return (f"sample.train={train}", f"eval.benchmarks={evalset}", "sample.k=2")


def _cfg(model, sets):
    overrides = parse_sets(sets)
    overrides.setdefault("model", {})["model"] = str(model)
    return stage_config(None, None, overrides)


def test_identity_leaves_out_execution_settings_only(tmp_path):
    cfg = build_run_config(overrides={"model": {"threads": 3, "backend": "hf"}})
    ident = identity(cfg)
    assert {"threads", "backend", "merge_adapter", "device"}.isdisjoint(ident["model"])
    assert ident["model"]["dtype"] == "float32" and ident["model"]["model"] == "default"
    assert ident["sample"] == json.loads(json.dumps(ident["sample"]))  # plain data


def test_stage_keys_follow_file_contents_and_weights_not_names(tmp_path, tiny_model_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    sets = _sets(tmp_path)
    before = stage_keys(_cfg(model, sets))
    # Execution settings change nothing.
    fast = stage_keys(_cfg(model, (*sets, "model.threads=2", "model.backend=hf")))
    assert fast == before
    # Editing the training file in place (same path, same spec string) changes every key
    # downstream of it and no eval-base key.
    train = tmp_path / "train.jsonl"
    train.write_text(train.read_text().replace('"answer": "2"', '"answer": "3"'))
    edited = stage_keys(_cfg(model, sets))
    for name in ("sample", "select", "train", "eval_adapter"):
        assert edited[name] != before[name], name
    assert edited["eval_base"] == before["eval_base"]
    # Editing the eval file changes the eval keys only.
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text(evalset.read_text() + json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    both = stage_keys(_cfg(model, sets))
    assert both["sample"] == edited["sample"] and both["train"] == edited["train"]
    assert both["eval_base"] != edited["eval_base"]
    # New weights in the same model folder change everything.
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    moved = stage_keys(_cfg(model, sets))
    assert all(moved[name] != both[name] for name in both)


def test_the_fingerprint_reads_every_byte_of_every_shard(tmp_path, cache_dir):
    """A merged adapter changes attention weights far from the start of the file, where the
    embeddings sit unchanged; a sharded checkpoint's later shards matter as much as its
    first. Both changed the old fingerprint (size + first 16 MiB of the first shard) not."""
    folder = tmp_path / "ckpt"
    folder.mkdir()
    first = folder / "model-00001-of-00002.safetensors"
    first.write_bytes(bytes(17 << 20))  # 17 MiB of zeros
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"shard two")
    before = models.model_fingerprint(str(folder))
    with open(first, "r+b") as f:  # the last byte, same size
        f.seek((17 << 20) - 1)
        f.write(b"\x01")
    after_first = models.model_fingerprint(str(folder))
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"shard 2!!")  # same size
    after_second = models.model_fingerprint(str(folder))
    assert len({before, after_first, after_second}) == 3
    # a copy elsewhere holds the same weights: the same fingerprint
    single = tmp_path / "single"
    single.mkdir()
    weights = single / "model.safetensors"
    weights.write_bytes(b"weights")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes(b"weights")
    true = models.model_fingerprint(str(single))
    assert true == models.model_fingerprint(str(copy))
    # remembered: an unchanged file's fingerprint comes from the store, not from its bytes
    store_path = cache_dir / models.FINGERPRINTS
    store = json.loads(store_path.read_text())
    (key,) = [k for k in store if k.startswith(str(weights.resolve()) + "|")]
    store_path.write_text(json.dumps({**store, key: "from-the-store"}))
    assert models.model_fingerprint(str(single)) == "from-the-store"
    # rewritten with the same size and its old mtime put back (as cp -p or rsync -a do): the
    # change time still moves, so the file is hashed again
    st = weights.stat()
    weights.write_bytes(b"WEIGHTS")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = models.model_fingerprint(str(single))
    assert changed not in ("from-the-store", true)


def test_an_edited_training_file_does_not_reuse_its_rollouts(tmp_path, tiny_model_dir):
    sets = (*_sets(tmp_path), "sample.max_new_tokens=2", "model.gen_dtype=float32")
    run_dir = tmp_path / "run"
    sample(run_dir, _cfg(tiny_model_dir, sets))
    train = tmp_path / "train.jsonl"
    train.write_text(train.read_text().replace("What is 0 + 1?", "What is 0 + 2?"))
    # the message names what differs, from the settings sample.json recorded
    with pytest.raises(UserError, match=r"different settings \(differs in train_data\)"):
        sample(run_dir, _cfg(tiny_model_dir, sets))
    # ... and `run` refuses the folder before writing anything into it.
    config = run_dir / "config.yaml"
    config.write_text(dump_yaml(_cfg(tiny_model_dir, sets)))
    before = config.read_bytes()
    with pytest.raises(UserError, match="was sampled with different settings"):
        run(_cfg(tiny_model_dir, sets), run_dir)
    assert config.read_bytes() == before


def test_a_refusal_for_the_model_fingerprint_alone_says_why(tmp_path):
    """A folder sampled before the whole-file fingerprint differs in that key only."""
    from reasonmaxxer.method.sampling import _what_differs

    settings = {"model": "m", "model_fingerprint": "new", "k": 8, "prompt": {"chat": "auto"}}
    (tmp_path / "sample.json").write_text(
        json.dumps({"settings": {**settings, "model_fingerprint": "old"}})
    )
    said = _what_differs(tmp_path, settings)
    assert said.startswith("differs in model_fingerprint: ") and "before 2026-12-07" in said
    (tmp_path / "sample.json").write_text(json.dumps({"settings": {**settings, "k": 4}}))
    assert _what_differs(tmp_path, settings) == "differs in k"
    assert _what_differs(tmp_path / "none", settings).startswith("model, data, k")


def test_a_refused_resume_keeps_config_yaml(tmp_path):
    """`run` on a folder sampled with other settings: refused before anything is written."""
    sets = _sets(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    first = _cfg(tmp_path / "no-model", sets)
    (out / "config.yaml").write_text(dump_yaml(first))
    append_jsonl(out / ROLLOUTS, [{"chunk": 0, "settings_hash": "x"}])
    before = (out / "config.yaml").read_bytes()
    with pytest.raises(UserError, match="holds a run with other sample/model settings"):
        run(_cfg(tmp_path / "no-model", (*sets, "sample.k=3")), out)
    assert (out / "config.yaml").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", ROLLOUTS]


@pytest.mark.slow  # CLI subprocesses with a model
def test_sample_cli_refused_keeps_config_yaml(tmp_path, tiny_model_dir, cache_dir):
    out = tmp_path / "run"
    args = [
        "sample",
        "--model",
        tiny_model_dir,
        "--train",
        "arith:level=1,n=2,split=train",
        "--k",
        "2",
        "--max-new-tokens",
        "2",
        "--gen-dtype",
        "float32",
        "--out",
        out,
    ]
    first = run_cli(*args, cache=cache_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    before = (out / "config.yaml").read_bytes()
    refused = run_cli(*args[:-2], "--seed", "5", "--out", out, cache=cache_dir)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "sampled with different settings" in (
        refused.stderr
    )
    assert (out / "config.yaml").read_bytes() == before


# --------------------------------------------------------------------------- locks


def test_run_lock_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    folder = tmp_path / "run"
    with run_lock(folder):
        assert (folder / LOCK).read_text().strip() == str(os.getpid())
        busy = rf"{folder} is in use .* \(pid {os.getpid()}\)"
        with pytest.raises(UserError, match=busy), run_lock(folder):
            pass
    with run_lock(folder):  # released: free again
        (folder / "result.json").write_text("{}")
    assert sorted(p.name for p in folder.iterdir()) == [LOCK, "result.json"]
    empty = tmp_path / "empty"
    with run_lock(empty):
        assert empty.is_dir()
    assert not empty.exists()  # made here and nothing written into it: removed again
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="exists and is not a folder"), run_lock(tmp_path / "file"):
        pass
    with run_lock(tmp_path / "absent", create=False):
        pass
    assert not (tmp_path / "absent").exists()


NO_MODEL = "{m}"  # a real model folder that passes the checks; never loaded: the lock refuses
WRITERS = {
    "sample": ["sample", "--model", NO_MODEL, "--out", "{d}"],
    "select": ["select", "{d}"],
    "train": ["train", "{d}"],
    "run": ["run", "--model", NO_MODEL, "--out", "{d}"],
    "eval": ["eval", "--model", NO_MODEL, "--out", "{d}"],
    "grpo": ["grpo", "--model", NO_MODEL, "--out", "{d}"],
    "distill": ["distill", "--model", NO_MODEL, "--teacher-adapter", "{a}", "--out", "{d}"],
}
for _name in ("disagree", "intervene"):
    WRITERS[_name] = ["analyze", *WRITERS["distill"]]
    WRITERS[_name][1] = _name


@pytest.mark.slow  # one CLI subprocess per command
@pytest.mark.parametrize("command", list(WRITERS))
def test_a_second_writer_of_a_run_folder_exits_2(tmp_path, cache_dir, tiny_model_dir, command):
    folder = tmp_path / "run"
    adapter = tmp_path / "a"  # passes the pre-flight check of the analysis commands
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with run_lock(folder):
        args = [a.format(d=folder, m=tiny_model_dir, a=adapter) for a in WRITERS[command]]
        r = run_cli(*args, cache=cache_dir, timeout=120)
        assert sorted(p.name for p in folder.iterdir()) == [LOCK]  # nothing written
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert lines == [
        f"error: {folder} is in use by another reasonmaxxer command (pid {os.getpid()}); "
        "wait for it to finish or use another folder"
    ]


def test_gguf_conversion_is_done_once_by_concurrent_loaders(tmp_path, cache_dir, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(100))
    calls = []

    def slow_convert(src, out):
        calls.append(src)
        time.sleep(0.5)  # long enough for the other thread to arrive while this one converts
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", slow_convert)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(models.gguf_cache(gguf))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results[0] == results[1] and (results[0] / "config.json").is_file()
    assert results[0].parent == cache_dir / "models"
