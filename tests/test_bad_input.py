"""Every bad input, on every command, is one ``error:`` line on stderr and exit status 2.

A matrix of bad inputs per command (issue 12, item 4): data files that are binary, not UTF-8,
hold a huge integer or deep nesting, or are named ``.gz`` without being gzip; YAML with
non-string keys, not UTF-8 or a scalar where a section belongs; ``--out`` on a file; bad
``--threads``; a garbage ``.gguf``; empty benchmarks; run folders that are missing, empty or
hold an empty ``config.yaml``; an entropy gate that marks no token. Each row asserts exit 2,
exactly one stderr line starting with ``error:`` and no traceback, and the rows are chosen so
that the error comes before any model loads (most take well under a second).

Most rows call :func:`reasonmaxxer.cli.main` in this process (``sys.argv`` patched,
``SystemExit`` captured): a traceback there is an uncaught exception and fails the test, a
silent success is a missing ``SystemExit``. The rows marked ``SUB`` run ``python -m
reasonmaxxer`` in a subprocess, the honest end-to-end form, with a time limit.
"""

from __future__ import annotations

import gzip
import os
import shlex
import sys

import pytest
from conftest import run_cli

from reasonmaxxer.cli import main
from reasonmaxxer.config import build_run_config, dump_yaml
from reasonmaxxer.method.selection import entropy_key

SUB = "subprocess"  # the row runs `python -m reasonmaxxer` in a subprocess
LEAD = "lead"  # passes once config.py's numeric validation is in; also runs in a subprocess


def _write_run_config(folder, model_dir, **overrides) -> None:
    cfg = build_run_config(overrides={"model": {"model": str(model_dir)}, **overrides})
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    return cfg


def _rollout(pid: str, j: int, reward: float) -> dict:
    return {
        "problem_id": pid,
        "rollout": j,
        "reward": reward,
        "prompt_ids": [5, 6, 7],
        "completion_ids": [8, 9, 10],
    }


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_model_dir):
    """A folder of bad inputs (and a few good ones to pair them with); returns its paths."""
    import json

    d = tmp_path_factory.mktemp("bad-input")
    row = '{"problem": "1+1", "answer": "2"}\n'
    (d / "good.jsonl").write_text(row)
    (d / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    (d / "latin1.jsonl").write_bytes('{"problem": "café", "answer": "1"}\n'.encode("latin-1"))
    (d / "bigint.jsonl").write_text('{"problem": "x", "answer": ' + "9" * 5000 + "}\n")
    (d / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (d / "nan.jsonl").write_text('{"problem": "x", "answer": NaN}\n')
    (d / "notgz.jsonl.gz").write_text(row)
    (d / "cut.jsonl.gz").write_bytes(gzip.compress(row.encode() * 100)[:40])
    (d / "gzbinary.jsonl.gz").write_bytes(gzip.compress(bytes(range(256))))
    (d / "empty.jsonl").write_text("")
    (d / "blank.jsonl").write_text("\n \n\n")
    (d / "noproblem.jsonl").write_text('{"answer": "1"}\n')
    (d / "noanswer.jsonl").write_text('{"problem": "x"}\n')
    (d / "nonobject.jsonl").write_text("[1, 2]\n")
    (d / "folder.jsonl").mkdir()
    (d / "unreadable.jsonl").write_text(row)
    (d / "unreadable.jsonl").chmod(0)
    (d / "afile").write_text("x")
    (d / "garbage.gguf").write_bytes(b"not a gguf file at all" * 10)
    (d / "nonstr.yaml").write_text("train:\n  1: 2\n")
    (d / "nonstrtop.yaml").write_text("1: 2\n")
    (d / "latin1.yaml").write_bytes('train:\n  loss: "café"\n'.encode("latin-1"))
    (d / "binary.yaml").write_bytes(bytes(range(256)))
    (d / "deep.yaml").write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    (d / "bigint.yaml").write_text("sample:\n  seed: " + "9" * 5000 + "\n")
    (d / "train0.yaml").write_text("train: 0\n")
    (d / "eval0.yaml").write_text("eval: 0\n")
    (d / "select_list.yaml").write_text("select: [1, 2]\n")
    (d / "report_map.yaml").write_text("report: {x: 1}\n")
    (d / "threads.yaml").write_text("model:\n  threads: -1\n")
    (d / "list.yaml").write_text("- 1\n")
    (d / "malformed.yaml").write_text("train: {\n")
    (d / "python_tag.yaml").write_text("train: !!python/object/apply:os.system [ls]\n")
    (d / "nonrun").mkdir()
    (d / "nonrun" / "notes.txt").write_text("x")
    (d / "emptycfg").mkdir()
    (d / "emptycfg" / "config.yaml").write_text("")
    # `run --out` on a folder that has rollouts but an empty config.yaml
    (d / "emptycfg_rollouts").mkdir()
    (d / "emptycfg_rollouts" / "config.yaml").write_text("")
    (d / "emptycfg_rollouts" / "rollouts.jsonl").write_text(json.dumps(_rollout("a", 0, 1)) + "\n")
    # a run folder whose rollouts.jsonl is binary
    (d / "binrun").mkdir()
    _write_run_config(d / "binrun", tiny_model_dir)
    (d / "binrun" / "rollouts.jsonl").write_bytes(bytes(range(256)))
    # a sampled run folder whose entropies are all cached, so `select` needs no model
    sampled = d / "sampled"
    sampled.mkdir()
    cfg = _write_run_config(sampled, tiny_model_dir, select={"gate": "entropy"})
    rows = [_rollout("a", 0, 1.0), _rollout("a", 1, 0.0), _rollout("b", 0, 0.0)]
    rows.append(_rollout("b", 1, 1.0))
    (sampled / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ent = [
        {
            "problem_id": r["problem_id"],
            "rollout": r["rollout"],
            "entropy": [0.5 + i, 1.0 + i, 2.0 + i],  # distinct: top 10% of 12 marks one token
            "key": entropy_key(cfg),
        }
        for i, r in enumerate(rows)
    ]
    (sampled / "entropies.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ent))
    # a selected run folder in which no token is a decision point
    nodec = d / "nodecision"
    nodec.mkdir()
    _write_run_config(nodec, tiny_model_dir)
    sel = [{**r, "advantage": 1.0 - 2 * (r["reward"] == 0), "decision": []} for r in rows]
    (nodec / "selection.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sel))
    # a selected run folder with decision points (for rows whose settings are bad)
    selected = d / "selected"
    selected.mkdir()
    _write_run_config(selected, tiny_model_dir)
    sel = [{**r, "decision": [1]} for r in sel]
    (selected / "selection.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sel))
    (d / "nonadapter").mkdir()
    foreign = d / "foreign"  # a run folder whose JSONL rows were not written by reasonmaxxer
    foreign.mkdir()
    _write_run_config(foreign, tiny_model_dir)
    (foreign / "rollouts.jsonl").write_text('{"foo": 1}\n')
    (foreign / "selection.jsonl").write_text('{"foo": 1}\n')
    yield {"d": d, "m": tiny_model_dir}
    (d / "unreadable.jsonl").chmod(0o644)


ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
NEEDS_NON_ROOT = pytest.mark.skipif(ROOT, reason="root reads a chmod 000 file")


def row(line: str, expected: str, id: str, *how: str, marks=()):
    """One matrix row; ``how`` holds SUB and/or LEAD (rows whose check is the numeric range
    validation in config.py's ``__post_init__``s, run in a subprocess with a time limit)."""
    return pytest.param(line, expected, SUB in how or LEAD in how, id=id, marks=marks)


E = "eval --model {m} --out {d}/out/eval"
S = "sample --model {m} --out {d}/out/sample"
R = "run --model {m} --out {d}/out/run"
G = "grpo --model {m} --out {d}/out/grpo"
DIS = "analyze disagree --model {m} --teacher {m} --out {d}/out/dis"
INT = "analyze intervene --model {m} --teacher {m} --out {d}/out/int"
DST = "distill --model {m} --teacher {m} --out {d}/out/dst"

ROWS = [
    # ---- eval: benchmark files -------------------------------------------------------------
    row(E + " --benchmarks {d}/binary.jsonl", "not UTF-8", "eval-binary", SUB),
    row(E + " --benchmarks {d}/latin1.jsonl", "latin1.jsonl:1: not UTF-8", "eval-latin1"),
    row(E + " --benchmarks {d}/bigint.jsonl", "integer", "eval-bigint"),
    row(E + " --benchmarks {d}/deep.jsonl", "nested too deeply", "eval-deep"),
    row(E + " --benchmarks {d}/nan.jsonl", "non-finite", "eval-nan-answer"),
    row(E + " --benchmarks {d}/notgz.jsonl.gz", "not a valid gzip", "eval-notgz"),
    row(E + " --benchmarks {d}/cut.jsonl.gz", "not a valid gzip", "eval-cut-gz"),
    row(E + " --benchmarks {d}/gzbinary.jsonl.gz", "not UTF-8", "eval-gz-binary"),
    row(E + " --benchmarks {d}/empty.jsonl", "no problems", "eval-empty", SUB),
    row(E + " --benchmarks {d}/blank.jsonl", "no problems", "eval-blank"),
    row(E + " --benchmarks {d}/noproblem.jsonl", "no `problem`", "eval-noproblem"),
    row(E + " --benchmarks {d}/noanswer.jsonl", "no `answer`", "eval-noanswer"),
    row(E + " --benchmarks {d}/nonobject.jsonl", "JSON object", "eval-nonobject"),
    row(E + " --benchmarks {d}/folder.jsonl", "directory", "eval-dir"),
    row(E + " --benchmarks {d}/missing.jsonl", "not found", "eval-missing"),
    row(E + " --benchmarks nosuchbench", "unknown benchmark", "eval-unknown"),
    row(E + " --benchmarks arith:level=9", "level", "eval-arith-level"),
    row(
        E + " --benchmarks {d}/unreadable.jsonl",
        "cannot read",
        "eval-unreadable",
        marks=NEEDS_NON_ROOT,
    ),
    row(E + " --benchmarks {d}/good.jsonl --limit 0", "--limit", "eval-limit0"),
    row(E + " --benchmarks {d}/good.jsonl --limit -1", "--limit", "eval-limit-neg"),
    # ---- eval: model, out folder, threads, YAML --------------------------------------------
    row(
        "eval --model {m} --benchmarks {d}/good.jsonl --out {d}/afile",
        "is a file",
        "eval-out-file",
        SUB,
    ),
    row(
        "eval --model {m} --benchmarks {d}/good.jsonl --out {d}/afile/sub",
        "is a file",
        "eval-out-under-file",
    ),
    row(E + " --benchmarks {d}/good.jsonl --threads -1", "--threads", "eval-threads-neg"),
    row(E + " --benchmarks {d}/good.jsonl --threads 0", "--threads", "eval-threads0"),
    row(
        "eval --model {d}/garbage.gguf --benchmarks {d}/good.jsonl --out {d}/out/e",
        "not a GGUF",
        "eval-garbage-gguf",
        SUB,
    ),
    row(
        "eval --model {d}/nonrun --benchmarks {d}/good.jsonl --out {d}/out/e",
        "not a model folder",
        "eval-model-not-folder",
    ),
    row(E + " --benchmarks {d}/good.jsonl --adapter {d}/missing", "adapter", "eval-no-adapter"),
    row(E + " --benchmarks {d}/good.jsonl --adapter {d}/nonadapter", "adapter", "eval-bad-adapter"),
    row(E + " --config {d}/nonstr.yaml", "keys must be strings", "eval-yaml-nonstr"),
    row(E + " --config {d}/nonstrtop.yaml", "keys must be strings", "eval-yaml-top"),
    row(E + " --config {d}/latin1.yaml", "not UTF-8", "eval-yaml-latin1"),
    row(E + " --config {d}/binary.yaml", "not UTF-8", "eval-yaml-binary"),
    row(E + " --config {d}/deep.yaml", "nested too deeply", "eval-yaml-deep"),
    row(E + " --config {d}/eval0.yaml", "expected a mapping", "eval-yaml-section0"),
    row(E + " --config {d}/train0.yaml", "expected a mapping", "eval-yaml-train0"),
    row(E + " --config {d}/list.yaml", "mapping", "eval-yaml-list"),
    row(E + " --config {d}/malformed.yaml", "malformed YAML", "eval-yaml-malformed"),
    row(E + " --config {d}/python_tag.yaml", "malformed YAML", "eval-yaml-pytag"),
    row(E + " --config {d}/folder.jsonl", "not found", "eval-yaml-dir"),
    row(E + " --temperature nan", "--temperature", "eval-temperature-nan"),
    # ---- sample ---------------------------------------------------------------------------
    row(S + " --train {d}/binary.jsonl", "not UTF-8", "sample-binary"),
    row(S + " --train {d}/notgz.jsonl.gz", "gzip", "sample-notgz", SUB),
    row(S + " --train {d}/deep.jsonl", "nested", "sample-deep"),
    row(S + " --train {d}/bigint.jsonl", "integer", "sample-bigint"),
    row(S + " --train {d}/empty.jsonl", "no problems", "sample-empty"),
    row(S + " --train {d}/good.jsonl --limit 0", "limit", "sample-limit0"),
    row(S + " --train {d}/good.jsonl --limit -1", "limit", "sample-limit-neg"),
    row(S + " --train {d}/good.jsonl --threads -1", "--threads", "sample-threads"),
    row(S + " --train {d}/good.jsonl --k 1", "--k", "sample-k1"),
    row(S + " --config {d}/train0.yaml", "expected a mapping", "sample-yaml-train0"),
    row(S + " --config {d}/bigint.yaml", "integer", "sample-yaml-bigint"),
    row(
        "sample --model {m} --train {d}/good.jsonl --out {d}/afile", "is a file", "sample-out-file"
    ),
    row(
        "sample --model {m} --train {d}/good.jsonl --out {d}/emptycfg",
        "empty",
        "sample-out-empty-config",
    ),
    row("sample --model {d}/garbage.gguf --out {d}/out/s", "not a GGUF", "sample-garbage-gguf"),
    # ---- select ---------------------------------------------------------------------------
    row("select {d}/missing", "not found", "select-missing"),
    row("select {d}/afile", "is a file", "select-file"),
    row("select {d}/nonrun", "rollouts.jsonl not found", "select-nonrun"),
    row("select {d}/emptycfg", "empty", "select-empty-config", SUB),
    row("select {d}/binrun", "not UTF-8", "select-binary-rollouts"),
    row("select {d}/foreign", "row 1 has no problem_id", "select-foreign-rows"),
    row("select ''", "empty", "select-empty-arg"),
    row("select {d}/sampled --tau 100", "lower --tau", "select-tau-marks-nothing"),
    row("select {d}/sampled --top-frac 0.01", "--top-frac", "select-frac-marks-nothing"),
    row("select {d}/sampled --config {d}/select_list.yaml", "mapping", "select-yaml"),
    row("select {d}/sampled --min-pass 0.9 --max-pass 0.1", "pass", "select-window"),
    row("select {d}/sampled --batch-size 0", "batch", "select-batch0", LEAD),
    row("select {d}/sampled --tau nan", "tau", "select-tau-nan", LEAD),
    # ---- train ----------------------------------------------------------------------------
    row("train {d}/missing", "not found", "train-missing"),
    row("train {d}/afile", "is a file", "train-file"),
    row("train {d}/nonrun", "selection.jsonl not found", "train-nonrun"),
    row("train {d}/emptycfg", "empty", "train-empty-config"),
    row("train {d}/foreign", "row 1 has no problem_id", "train-foreign-rows"),
    row("train {d}/nodecision", "no decision token", "train-no-decision"),
    row("train {d}/selected --config {d}/threads.yaml", "--threads", "train-threads"),
    row("train {d}/selected --config {d}/nonstr.yaml", "strings", "train-yaml-nonstr"),
    row("train {d}/selected --loss nosuch", "nosuch", "train-bad-choice"),
    row("train {d}/selected --epochs inf", "epochs", "train-epochs-inf", LEAD),
    row("train {d}/selected --lr nan", "lr", "train-lr-nan"),
    # ---- run ------------------------------------------------------------------------------
    row(R + " --config {d}/train0.yaml", "expected a mapping", "run-yaml-train0", SUB),
    row(R + " --config {d}/nonstr.yaml", "strings", "run-yaml-nonstr"),
    row(R + " --config {d}/latin1.yaml", "not UTF-8", "run-yaml-latin1"),
    row(R + " --config {d}/report_map.yaml", "report", "run-yaml-bool-map"),
    row(R + " --set train.lr", "--set", "run-set-no-equals"),
    row(R + " --set lr=3", "unknown key(s) lr", "run-set-no-section"),
    row(R + " --set train.nosuch=1", "unknown key", "run-set-unknown-key"),
    row(R + " --set nosuch.x=1", "unknown key", "run-set-unknown-section"),
    row(R + " --set train.lr=abc", "expected float", "run-set-bad-type"),
    row(R + " --set model.threads=0", "--threads", "run-threads0"),
    row(R + " --set sample.train={d}/binary.jsonl", "not UTF-8", "run-binary-train"),
    row(R + " --set eval.benchmarks={d}/empty.jsonl", "no problems", "run-empty-eval"),
    row("run --model {m} --out {d}/afile", "is a file", "run-out-file"),
    row("run --model {m} --out ''", "--out is empty", "run-out-empty-string"),
    row("run --model {m} --out {d}/emptycfg_rollouts", "empty", "run-out-empty-config"),
    row("run --model {d}/garbage.gguf --out {d}/out/r", "not a GGUF", "run-gguf"),
    # ---- report ---------------------------------------------------------------------------
    row("report {d}/nonrun", "none of the run files", "report-nonrun"),
    row("report {d}/missing", "not found", "report-missing"),
    row("report {d}/afile", "not found", "report-file"),
    row("report {d}/emptycfg", "empty", "report-empty-config", SUB),
    row("report {d}/nonrun --max-examples 0", "max-examples", "report-bad-flag"),
    # ---- grpo -----------------------------------------------------------------------------
    row(G + " --threads -1", "--threads", "grpo-threads", SUB),
    row("grpo --model {m} --out {d}/afile", "is a file", "grpo-out-file"),
    row(G + " --train {d}/binary.jsonl", "not UTF-8", "grpo-binary-train"),
    row(G + " --train {d}/empty.jsonl", "no problems", "grpo-empty-train"),
    row(G + " --eval-benchmarks {d}/notgz.jsonl.gz", "gzip", "grpo-notgz-eval"),
    row(G + " --config {d}/train0.yaml", "expected str", "grpo-yaml-train0"),
    row(G + " --config {d}/nonstrtop.yaml", "strings", "grpo-yaml-nonstr"),
    row("grpo --model {d}/garbage.gguf --out {d}/out/g", "not a GGUF", "grpo-gguf"),
    row(G + " --num-generations 1", "--num-generations", "grpo-num-generations"),
    row(G + " --lr 0", "--lr", "grpo-lr0"),
    row(G + " --limit 0", "--limit", "grpo-limit0"),
    # ---- analyze --------------------------------------------------------------------------
    row(
        "analyze disagree --model {m} --teacher-adapter {d}/missing --out {d}/out/a",
        "adapter not found",
        "disagree-no-adapter",
        SUB,
    ),
    row("analyze disagree --model {m} --out {d}/out/a", "give the teacher", "disagree-no-teacher"),
    row(DIS + " --benchmarks {d}/binary.jsonl", "not UTF-8", "disagree-binary"),
    row(
        "analyze disagree --model {m} --teacher {m} --out {d}/afile",
        "is a file",
        "disagree-out-file",
    ),
    row(DIS + " --threads -1", "--threads", "disagree-threads"),
    row(
        "analyze disagree --model {m} --teacher {d}/garbage.gguf --out {d}/out/a",
        "not a GGUF",
        "disagree-gguf",
    ),
    row(INT + " --benchmarks {d}/empty.jsonl", "no problems", "intervene-empty"),
    row(INT + " --config {d}/nonstrtop.yaml", "strings", "intervene-yaml-nonstr"),
    row(INT + " --config {d}/latin1.yaml", "not UTF-8", "intervene-yaml-latin1"),
    row(INT + " --policies nosuch", "--policies", "intervene-policy"),
    row(
        "analyze intervene --model {m} --teacher-adapter {d}/nonadapter --out {d}/out/i",
        "adapter not found",
        "intervene-bad-adapter",
    ),
    row("analyze nosuch", "No such command", "analyze-unknown"),
    # ---- distill --------------------------------------------------------------------------
    row(
        "distill --model {m} --teacher-adapter {d}/missing --out {d}/out/d",
        "adapter not found",
        "distill-no-adapter",
        SUB,
    ),
    row(DST + " --train {d}/binary.jsonl", "not UTF-8", "distill-binary"),
    row(DST + " --train {d}/deep.jsonl", "nested", "distill-deep"),
    row("distill --model {m} --teacher {m} --out {d}/afile", "is a file", "distill-out"),
    row(DST + " --config {d}/train0.yaml", "expected str", "distill-yaml-train0"),
    row(DST + " --config {d}/binary.yaml", "not UTF-8", "distill-yaml-binary"),
    row(DST + " --top-k 0", "--top-k", "distill-top-k0"),
    # ---- benchmarks -----------------------------------------------------------------------
    row("benchmarks extra", "unexpected extra argument", "benchmarks-extra"),
    row("benchmarks --nosuch", "No such option", "benchmarks-option"),
]


def _args(line: str, bad: dict) -> list[str]:
    return [a.format(**bad) for a in shlex.split(line)]


@pytest.mark.parametrize(("line", "expected", "subprocess"), ROWS)
def test_bad_input_is_one_error_line(
    line, expected, subprocess, bad, cache_dir, monkeypatch, capsys
):
    args = _args(line, bad)
    if subprocess:
        proc = run_cli(*args, cache=cache_dir, timeout=120)
        code, err = proc.returncode, proc.stderr
    else:
        monkeypatch.setattr(sys, "argv", ["reasonmaxxer", *args])
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.setenv(var, "1")
        with pytest.raises(SystemExit) as exit_info:  # no SystemExit: a silent success
            main()
        code, err = exit_info.value.code, capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.strip()]
    assert "Traceback" not in err
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert expected in lines[0]


def test_unreadable_file_is_one_error_line(tmp_path, monkeypatch):
    """What chmod 000 does to a non-root user (root reads anyway, so simulate the refusal)."""
    from reasonmaxxer import io
    from reasonmaxxer.config import load_yaml
    from reasonmaxxer.errors import UserError
    from reasonmaxxer.eval.data import load_benchmark

    path = tmp_path / "locked.jsonl"
    path.write_text('{"problem": "1+1", "answer": "2"}\n')

    def refuse(p, *a, **k):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(io, "_read_bytes", refuse)
    with pytest.raises(UserError, match=r"cannot read .*locked.jsonl: Permission denied"):
        load_benchmark(str(path))
    yml = tmp_path / "locked.yaml"
    yml.write_text("train: {}\n")
    monkeypatch.setattr(type(yml), "read_text", refuse)
    with pytest.raises(UserError, match=r"cannot read .*locked.yaml: Permission denied"):
        load_yaml(yml)


def test_unwritable_out_folder_is_refused(tmp_path, monkeypatch):
    from reasonmaxxer.cli.util import check_out_dir
    from reasonmaxxer.errors import UserError

    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(UserError, match="is not writable"):
        check_out_dir(tmp_path / "new" / "out")
