"""Stage configs (dict/YAML/flag merging and validation) and the command line's error contract:
bad input is exactly one ``error: ...`` line on stderr and exit status 2."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import run_cli

from reasonmaxxer.cli import cli, parse_sets, stage_config
from reasonmaxxer.config import (
    EvalConfig,
    ModelConfig,
    RunConfig,
    SampleConfig,
    SelectConfig,
    TrainConfig,
    build_run_config,
    dump_yaml,
    from_dict,
    load_yaml,
    merge,
)
from reasonmaxxer.devices import resolve_precision
from reasonmaxxer.errors import UserError

# --------------------------------------------------------------------------- from_dict


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(UserError, match=r"unknown key\(s\) kk"):
        from_dict(EvalConfig, {"kk": 3})
    with pytest.raises(UserError, match=r"train: unknown key\(s\) learning_rate"):
        from_dict(RunConfig, {"train": {"learning_rate": 1e-3}})
    with pytest.raises(UserError, match="unknown key"):
        from_dict(RunConfig, {"trian": {}})


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (EvalConfig, {"k": "abc"}, "k: expected int, got 'abc'"),
        (EvalConfig, {"k": 1.5}, "k: expected int, got 1.5"),
        (EvalConfig, {"k": [1]}, "k: expected int"),
        (EvalConfig, {"temperature": "hot"}, "temperature: expected float"),
        (EvalConfig, {"benchmarks": 3}, "benchmarks: expected str, got 3"),
        (ModelConfig, {"trust_remote_code": "maybe"}, "trust_remote_code: expected bool"),
        (EvalConfig, {"k": None}, "k cannot be null"),
        (RunConfig, {"train": 3}, "train: expected a mapping, got int"),
    ],
)
def test_from_dict_rejects_bad_types(cls, data, message):
    with pytest.raises(UserError) as e:
        from_dict(cls, data)
    assert message in str(e.value)


def test_from_dict_coerces_strings_and_whole_floats():
    ev = from_dict(EvalConfig, {"k": "4", "temperature": "0.5", "max_new_tokens": 32.0})
    assert (ev.k, ev.temperature, ev.max_new_tokens) == (4, 0.5, 32)
    assert isinstance(ev.max_new_tokens, int)
    assert from_dict(EvalConfig, {"limit": None}).limit is None  # Optional accepts null
    for text, value in [("yes", True), ("on", True), ("1", True), ("off", False), ("FALSE", False)]:
        assert from_dict(ModelConfig, {"trust_remote_code": text}).trust_remote_code is value
    # A YAML int where a float is wanted (`epochs: 3`, `lr: 1`) is a float, not an error.
    tr = from_dict(TrainConfig, {"lr": 1, "epochs": 3})
    assert (tr.lr, tr.epochs) == (1.0, 3.0) and isinstance(tr.epochs, float)
    # A bool is not a number here, although Python's bool is an int.
    with pytest.raises(UserError, match="k: expected int, got True"):
        from_dict(EvalConfig, {"k": True})
    with pytest.raises(UserError, match="lr: expected float, got False"):
        from_dict(TrainConfig, {"lr": False})


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EvalConfig(top_p=0), "--top-p must be in (0, 1]"),
        (lambda: EvalConfig(top_p=1.01), "--top-p must be in (0, 1]"),
        (lambda: EvalConfig(temperature=0), "--temperature must be > 0"),
        (lambda: EvalConfig(limit=0), "--limit must be >= 1"),
        (lambda: SampleConfig(k=1), "--k must be >= 2"),
        (lambda: SampleConfig(chunk_problems=0), "--chunk-problems must be >= 1"),
        (lambda: SelectConfig(min_pass=0.5, max_pass=0.5), "need 0 <= --min-pass < --max-pass"),
        (lambda: SelectConfig(min_pass=-0.01), "need 0 <= --min-pass < --max-pass"),
        (lambda: SelectConfig(max_pass=1.01), "need 0 <= --min-pass < --max-pass"),
        (lambda: SelectConfig(top_frac=None), "give --tau or --top-frac"),
        (lambda: SelectConfig(top_frac=0.0), "--top-frac must be in (0, 1]"),
        (lambda: SelectConfig(drop_longest=1.0), "--drop-longest must be in [0, 1)"),
        (lambda: SelectConfig(gate="middle"), "--gate must be one of entropy, all, random, low"),
        (lambda: ModelConfig(dtype="int8"), "--dtype must be one of"),
        (lambda: TrainConfig(lr=0), "need --lr > 0"),
        (lambda: TrainConfig(lora_targets="  "), "--lora-targets must name"),
    ],
)
def test_post_init_validation(make, message):
    with pytest.raises(UserError) as e:
        make()
    assert message in str(e.value)


def test_explicit_tau_clears_top_frac():
    assert SelectConfig().top_frac == 0.1 and SelectConfig().tau is None
    s = SelectConfig(tau=1.0)
    assert (s.tau, s.top_frac) == (1.0, None)
    s = SelectConfig(tau=0.5, top_frac=0.3)  # both given: tau wins
    assert (s.tau, s.top_frac) == (0.5, None)
    s = SelectConfig(tau=None, top_frac=0.3)
    assert (s.tau, s.top_frac) == (None, 0.3)
    # Through the dict path too: a default top_frac does not survive an explicit tau.
    cfg = build_run_config(overrides={"select": {"tau": "2.0"}})
    assert (cfg.select.tau, cfg.select.top_frac) == (2.0, None)


# --------------------------------------------------------------------------- merging


def test_merge_none_keeps_base_and_recurses():
    base = {"a": 1, "s": {"x": 1, "y": 2}}
    assert merge(base, {"a": None, "s": {"y": 3, "z": None}}) == {"a": 1, "s": {"x": 1, "y": 3}}
    assert base == {"a": 1, "s": {"x": 1, "y": 2}}  # not modified in place


def test_yaml_then_overrides(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text(
        "sample:\n  k: 4\n  train: arith:level=1\ntrain:\n  lr: 0.001\n  epochs: 3\n"
        "select:\n  tau: 1.5\n"
    )
    cfg = build_run_config(str(user), {"train": {"lr": "0.002"}, "sample": {"seed": None}})
    assert cfg.train.lr == 0.002  # override beats YAML
    assert cfg.train.epochs == 3.0  # YAML beats default (2.0)
    assert (cfg.sample.k, cfg.sample.train) == (4, "arith:level=1")
    assert cfg.sample.seed == 42  # None override = not given
    assert (cfg.select.tau, cfg.select.top_frac) == (1.5, None)
    assert cfg.eval == build_run_config().eval  # untouched sections keep the packaged defaults
    # The recorded YAML reads back to the same config.
    assert from_dict(RunConfig, yaml.safe_load(dump_yaml(cfg))) == cfg


def test_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="malformed YAML"):
        load_yaml(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="expected a mapping at the top level"):
        load_yaml(lst)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  lrr: 1\n")
    with pytest.raises(UserError, match=r"train: unknown key\(s\) lrr"):
        build_run_config(str(unknown))


def test_stage_config_order(tmp_path):
    """Defaults ← run dir's config.yaml ← --config ← flags."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("sample:\n  k: 4\n  seed: 7\n  limit: 3\n")
    user = tmp_path / "user.yaml"
    user.write_text("sample:\n  k: 6\n  seed: 9\n")
    cfg = stage_config(run_dir, str(user), {"sample": {"k": 8}})
    assert (cfg.sample.k, cfg.sample.seed, cfg.sample.limit) == (8, 9, 3)
    cfg = stage_config(run_dir, None, {})
    assert (cfg.sample.k, cfg.sample.seed, cfg.sample.limit) == (4, 7, 3)
    cfg = stage_config(None, None, {})
    assert (cfg.sample.k, cfg.sample.seed, cfg.sample.limit) == (8, 42, None)


def test_parse_sets():
    assert parse_sets(
        ("train.lr=3e-4", "select.tau=none", "select.top_frac=NULL", "eval.benchmarks=arith:n=5")
    ) == {
        "train": {"lr": "3e-4"},
        "select": {"tau": "none", "top_frac": "NULL"},
        "eval": {"benchmarks": "arith:n=5"},
    }
    # "none" switches an optional field off, even one the packaged default sets.
    assert build_run_config().select.max_problems is not None
    off = build_run_config(overrides=parse_sets(("select.max_problems=none",)))
    assert off.select.max_problems is None
    assert parse_sets(()) == {}
    assert parse_sets(("train.lr=1", "train.lr=2")) == {"train": {"lr": "2"}}  # last one wins
    for bad in ("train.lr", "trainlr", "=1", ".lr=1", "train.=1"):
        with pytest.raises(UserError, match=r"--set expects \[section.\]key=value"):
            parse_sets((bad,))
    # A top-level field takes no section; the config names an unknown one.
    top = parse_sets(("rounds=3", "round_anchor=base", "train.lr=1"))
    assert top == {"rounds": "3", "round_anchor": "base", "train": {"lr": "1"}}
    cfg = build_run_config(overrides=top)
    assert (cfg.rounds, cfg.round_anchor, cfg.train.lr) == (3, "base", 1.0)
    with pytest.raises(UserError, match="unknown key.*lr"):
        build_run_config(overrides=parse_sets(("lr=3e-4",)))
    with pytest.raises(UserError, match="'train' is a section"):
        parse_sets(("train.lr=1", "train=2"))
    with pytest.raises(UserError, match="'rounds' is not a section"):
        parse_sets(("rounds=2", "rounds.x=1"))
    # Types are checked by the config, not by parse_sets.
    with pytest.raises(UserError, match="lr: expected float"):
        build_run_config(overrides=parse_sets(("train.lr=fast",)))


def test_default_preset_runs_three_rounds_anchored_to_the_previous_policy():
    # issue 13: two rounds anchored to round 1's policy beat one round over three seeds, and
    # three rounds beat two
    # (benchmarks/results/headline_fp32); the authors' recipes stay at one round.
    cfg = build_run_config()
    assert (cfg.rounds, cfg.round_from, cfg.round_anchor) == (3, "adapter", "previous")
    assert build_run_config(preset="paper").rounds == 1
    assert build_run_config(preset="qwen2.5-1.5b").rounds == 1
    assert build_run_config(overrides={"rounds": 1}).rounds == 1


def test_every_field_has_help():
    for section in (ModelConfig, EvalConfig, SampleConfig, SelectConfig, TrainConfig):
        for f in dataclasses.fields(section):
            assert f.metadata.get("help"), f"{section.__name__}.{f.name}"


# --------------------------------------------------------------------------- the CLI


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.mark.slow  # imports torch + transformers in a subprocess
def test_cli_unknown_hub_model(tmp_path, cache_dir):
    out = tmp_path / "out"
    proc = run_cli(
        "eval", "--model", "no/such-model-xyz", "--limit", "2", "--out", out, cache=cache_dir
    )
    line = _one_error_line(proc)
    assert "cannot load model 'no/such-model-xyz'" in line
    assert not out.exists()


@pytest.mark.slow  # imports torch + transformers in a subprocess
def test_cli_missing_model_folder(tmp_path, cache_dir):
    missing = tmp_path / "no-such-dir"
    proc = run_cli("eval", "--model", f"{missing}/", "--out", tmp_path / "out", cache=cache_dir)
    line = _one_error_line(proc)
    assert line == f"error: model path not found: {missing}/"


@pytest.mark.slow  # imports torch + transformers in a subprocess
def test_cli_folder_without_config(tmp_path, cache_dir):
    folder = tmp_path / "empty"
    folder.mkdir()
    proc = run_cli("eval", "--model", folder, "--out", tmp_path / "out", cache=cache_dir)
    assert _one_error_line(proc) == f"error: {folder} is not a model folder (no config.json)"


def test_cli_missing_benchmark_file(tmp_path, tiny_model_dir, cache_dir):
    proc = run_cli(
        "eval", "--model", tiny_model_dir, "--benchmarks", "missing.jsonl", "--out",
        tmp_path / "out", cache=cache_dir, cwd=tmp_path,
    )  # fmt: skip
    assert _one_error_line(proc) == "error: file not found: missing.jsonl"


def test_cli_malformed_jsonl_line(tmp_path, tiny_model_dir, cache_dir):
    bench = tmp_path / "bad.jsonl"
    bench.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "answer": \n')
    proc = run_cli(
        "eval", "--model", tiny_model_dir, "--benchmarks", bench, "--out", tmp_path / "out",
        cache=cache_dir,
    )  # fmt: skip
    line = _one_error_line(proc)
    assert line.startswith(f"error: {bench}:2: malformed JSON line")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("eval", "--top-p", "0"), "error: --top-p must be in (0, 1]"),
        (("eval", "--k", "abc"), "'abc' is not a valid integer"),
        (("eval", "--no-such-flag"), "--no-such-flag"),
        (("eval", "--dtype", "int8"), "'int8' is not one of"),
        (("sample", "--k", "1"), "error: --k must be >= 2"),
        (("run", "--set", "trainlr"), "error: --set expects [section.]key=value"),
        (("run", "--set", "trainlr=1"), "error: config: unknown key(s) trainlr"),
        (("run", "--round-anchor", "sideways"), "'sideways' is not one of 'base', 'previous'"),
        (("run", "--set", "round_anchor=sideways"), "error: --round-anchor must be one of"),
        (("run", "--set", "train.lrr=1"), "error: train: unknown key(s) lrr"),
        (("run", "--config", "nope.yaml"), "error: config file not found: nope.yaml"),
    ],
)
def test_cli_bad_values_one_line(tmp_path, cache_dir, args, needle):
    proc = run_cli(*args, "--out", tmp_path / "out", cache=cache_dir, cwd=tmp_path)
    line = _one_error_line(proc)
    assert needle in line
    assert not (tmp_path / "out").exists()


def test_cli_help_for_every_command():
    names = sorted(cli.commands)
    assert {"eval", "sample", "select", "train", "run", "benchmarks"} <= set(names)
    top = run_cli("--help")
    assert top.returncode == 0 and top.stderr == ""
    for name in names:
        assert name in top.stdout
        proc = run_cli(name, "--help")
        assert proc.returncode == 0, (name, proc.stderr)
        assert proc.stdout.startswith(f"Usage: python -m reasonmaxxer {name}"), proc.stdout[:80]
        assert proc.stderr == ""
    # Flags come from the dataclasses, with their help text and defaults.
    proc = run_cli("eval", "--help")
    assert "--top-p FLOAT" in proc.stdout and "nucleus sampling for the k samples" in proc.stdout
    assert "--trust-remote-code / --no-trust-remote-code" in proc.stdout


def test_qwen_preset_mirrors_the_authors_recipe():
    from reasonmaxxer.config import build_run_config, preset_names

    assert {"default", "qwen2.5-1.5b"} <= set(preset_names())
    cfg = build_run_config(preset="qwen2.5-1.5b")
    s, sel, t = cfg.sample, cfg.select, cfg.train
    assert (s.k, s.temperature, s.top_p, s.max_new_tokens) == (20, 0.6, 0.95, 8192)
    assert s.train == "math_train:n=300,seed=0"
    assert (sel.tau, sel.top_frac, sel.gate, sel.max_problems, sel.drop_longest) == (
        1.4,
        None,
        "entropy",
        50,
        0.2,
    )
    assert (t.loss, t.lam, t.lr, t.warmup_steps, t.max_steps) == ("contrastive", 0.2, 1e-4, 50, 149)
    assert (t.batch_size, t.grad_accum, t.lora_r, t.lora_alpha) == (1, 8, 32, 64)
    assert cfg.model.model == "Qwen/Qwen2.5-1.5B" and cfg.model.dtype == "bfloat16"
    assert (sel.advantages, sel.adv_eps, t.dec_mean, t.skip_zero_adv) == (
        "after_trim",
        1e-8,
        "rollout",
        True,
    )
    assert (t.kl_scope, t.order, t.schedule) == ("all", "curriculum", "linear")


def test_unknown_preset_is_one_error_line(tmp_path):
    proc = run_cli("run", "--preset", "nope", "--out", tmp_path / "r")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown preset 'nope'; choose one of default, paper, qwen2.5-1.5b"
    ]
    assert not (tmp_path / "r").exists()


def _help_defaults(command) -> dict[str, str]:
    """``{field name: the default its --help text shows}`` for every generated option."""
    import re

    out = {}
    for p in command.params:
        m = re.search(r"\[default: (.*)\]$", getattr(p, "help", None) or "", re.S)
        if m:
            out[p.name] = m.group(1)
    return out


class _Resolved(Exception):
    """Raised by the spy on ``config.resolve``: the command got as far as its config."""


def _commands(group, path=()):
    """``(path, command)`` for every command of the CLI, subcommands of groups included."""
    import click

    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _value_for(cfg, option):
    """The value ``option`` (a flag made from a config field) sets in the resolved ``cfg``:
    on ``cfg`` itself, or on the section of ``cfg`` of the option's config class."""
    if isinstance(cfg, option.config_class):
        return getattr(cfg, option.name)
    sections = [
        getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if isinstance(getattr(cfg, f.name), option.config_class)
    ]
    assert len(sections) == 1, (option.name, option.config_class)
    return getattr(sections[0], option.name)


def test_help_shows_the_defaults_each_command_really_uses(tmp_path, monkeypatch):
    """Every command and subcommand, run with no flag but the required ones: each flag made
    from a config field shows in --help the value the command then resolves."""
    import sys

    from click.testing import CliRunner

    import reasonmaxxer.config as config_module
    from reasonmaxxer.cli.util import ConfigOption

    real, resolved = config_module.resolve, []

    def spy(*args, **kwargs):
        resolved.append(real(*args, **kwargs))
        raise _Resolved

    callers = [  # every module that calls it; config's own helpers (the presets) are not spied
        module
        for name, module in list(sys.modules.items())
        if name.startswith("reasonmaxxer.") and name != "reasonmaxxer.config"
        if getattr(module, "resolve", None) is real
    ]
    for module in callers:
        monkeypatch.setattr(module, "resolve", spy)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    required = {  # what a command needs before it resolves its config
        "RUN_DIR": [str(run_dir)],
        "out": ["--out", str(tmp_path / "out")],
    }
    stand_in = ["--teacher-adapter", "TEACHER"]  # an analysis needs a teacher to be valid
    checked, commands = 0, 0
    for path, command in _commands(cli):
        options = [p for p in command.params if isinstance(p, ConfigOption)]
        if not options:
            continue
        args = [*path]
        for p in command.params:
            if p.required:
                args += required["RUN_DIR" if p.param_type_name == "argument" else p.name]
        if any(o.name == "teacher_adapter" for o in options):
            args += stand_in
        resolved.clear()
        result = CliRunner().invoke(cli, args)
        assert isinstance(result.exception, _Resolved), (path, result.output, result.exception)
        (cfg,) = resolved
        shown = _help_defaults(command)
        for option in options:
            if option.name == "teacher_adapter":
                continue
            value = _value_for(cfg, option)
            if shown[option.name] == "auto" and option.name in ("gen_dtype", "autocast"):
                # a precision shows `auto` (it depends on --device): what it resolved to here
                fallback = "float32" if option.name == "gen_dtype" else "off"
                assert str(value) == resolve_precision("auto", "auto", fallback=fallback)
                checked += 1
                continue
            assert shown[option.name] == str(value), f"{' '.join(path)} --{option.name}"
            checked += 1
        commands += 1
    assert commands == 9 and checked > 200
    # the case that was wrong: the packaged default gate is `all`, not the dataclass's `entropy`
    assert _help_defaults(cli.commands["select"])["gate"] == "all"


def test_optional_number_flags_take_none(tmp_path):
    bad = run_cli("select", tmp_path, "--max-problems", "abc")
    assert bad.returncode == 2 and "max_problems: expected int, got 'abc'" in bad.stderr
    off = run_cli("select", tmp_path, "--max-problems", "none", "--tau", "1.5")
    assert off.returncode == 2 and "rollouts.jsonl not found" in off.stderr  # flags accepted
