"""Resumable sampling: a run killed with SIGKILL and started again ends with exactly the
rollouts of an uninterrupted run; torn tails and partial chunks are dropped and re-sampled;
changed settings on an existing folder are refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import cli_env, run_cli, sample_config

from reasonmaxxer.errors import UserError
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method.sampling import ROLLOUTS, chunk_seed, sample

TRAIN = "arith:level=1,n=12,split=train"
K = 2
CHUNK = 2  # problems per chunk → 6 chunks of 4 rollouts


FLAGS = {
    "train": TRAIN,
    "k": K,
    "chunk_problems": CHUNK,
    "max_new_tokens": 32,
    "batch_size": 1,  # slow enough (~0.1 s a chunk) to be killed between chunks
    "seed": 7,
}


def _args(model_dir, out):
    args = ["sample", "--model", str(model_dir), "--gen-dtype", "float32", "--threads", "1"]
    for key, value in FLAGS.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return [*args, "--out", str(out)]


def _complete_lines(path) -> int:
    if not path.is_file():
        return 0
    data = path.read_bytes()
    return data.count(b"\n")


def _keys(rows):
    return [(r["problem_id"], r["rollout"]) for r in rows]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tiny_model_dir, cache_dir):
    total = 12 * K
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reasonmaxxer", *_args(tiny_model_dir, killed)],
        env=cli_env(cache_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = killed / ROLLOUTS
    try:
        deadline = time.monotonic() + 120
        while _complete_lines(path) < CHUNK * K:
            assert proc.poll() is None, "sampling ended before its first chunk was seen"
            assert time.monotonic() < deadline, "no chunk written within 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_partial = _complete_lines(path)
    assert CHUNK * K <= n_partial < total, "the run finished before it could be killed"

    resumed = run_cli(*_args(tiny_model_dir, killed), cache=cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    # The uninterrupted reference run, in this process (same settings, same single thread).
    fresh_dir = tmp_path / "fresh"
    sample(fresh_dir, _cfg(tiny_model_dir, **FLAGS))

    a = list(iter_jsonl(killed / ROLLOUTS))  # strict: no torn line left behind
    b = list(iter_jsonl(fresh_dir / ROLLOUTS))
    assert len(a) == len(b) == total
    assert len(set(_keys(a))) == total  # no duplicate (problem_id, rollout)

    def content(rows):
        return {(r["problem_id"], r["rollout"], tuple(r["completion_ids"])) for r in rows}

    assert content(a) == content(b)
    assert {r["seed"] for r in a} == {chunk_seed(7, c) for c in range(12 // CHUNK)}
    summary = json.loads((killed / "sample.json").read_text())
    assert summary["chunks"] == 6
    assert 1 <= summary["chunks_resumed"] < 6
    assert json.loads((fresh_dir / "sample.json").read_text())["chunks_resumed"] == 0
    assert summary["rollouts"] == total and summary["problems"] == 12


# --------------------------------------------------------------------------- in-process


_cfg = sample_config


@pytest.fixture
def sampled(tmp_path, tiny_model_dir, cache_dir):
    run = tmp_path / "run"
    summary = sample(run, _cfg(tiny_model_dir))
    assert summary["chunks"] == 2 and summary["chunks_resumed"] == 0
    path = run / ROLLOUTS
    return run, path, path.read_text().splitlines(keepends=True)


def test_torn_tail_is_dropped_on_resume(sampled, tiny_model_dir):
    run, path, lines = sampled
    assert len(lines) == 8  # 4 problems × 2 rollouts
    original = [json.loads(x) for x in lines]
    # A kill in the middle of the first line of a new write: half a JSON line, no newline.
    with open(path, "a") as f:
        f.write(lines[3][: len(lines[3]) // 2])
    summary = sample(run, _cfg(tiny_model_dir))
    assert summary["chunks_resumed"] == 2  # both chunks were complete
    assert summary["generation"]["sequences"] == 0  # nothing re-sampled
    assert path.read_text().splitlines(keepends=True) == lines  # torn tail gone
    assert list(iter_jsonl(path)) == original


def test_partial_chunk_is_resampled(sampled, tiny_model_dir):
    run, path, lines = sampled
    # Chunk 0 whole, chunk 1 cut after 2 of its 4 rows plus a torn third row.
    path.write_text("".join(lines[:6]) + lines[6][:20])
    summary = sample(run, _cfg(tiny_model_dir))
    assert summary["chunks_resumed"] == 1
    assert summary["generation"]["sequences"] == 4  # chunk 1 again: 2 problems × 2
    rows = list(iter_jsonl(path))
    assert rows == [json.loads(x) for x in lines]  # the same rollouts, each once


def test_malformed_line_inside_the_file_is_an_error(sampled, tiny_model_dir):
    run, path, lines = sampled
    path.write_text("".join(lines[:2]) + "{not json\n" + "".join(lines[2:]))
    with pytest.raises(UserError, match=r"rollouts.jsonl:3: malformed JSON line"):
        sample(run, _cfg(tiny_model_dir))


@pytest.mark.parametrize(
    "change", [{"k": 3}, {"seed": 4}, {"temperature": 0.3}, {"max_new_tokens": 5}]
)
def test_changed_settings_are_refused(sampled, tiny_model_dir, change):
    run, path, lines = sampled
    with pytest.raises(UserError, match="was sampled with different settings"):
        sample(run, _cfg(tiny_model_dir, **change))
    assert path.read_text().splitlines(keepends=True) == lines  # left untouched
