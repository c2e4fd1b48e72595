"""Kill soak: ``sample``, ``train`` and ``run`` (one round and two) killed with SIGKILL at 10
seeded random points each on tiny models, then resumed, end with exactly what an uninterrupted
run makes.

Each command runs in a child forked from this (already warm) process and calling the real
CLI entry point, so a kill can land anywhere in the work, not in interpreter start-up (a fresh
``python -m reasonmaxxer`` spends seconds importing torch; 30+ of them would not fit in CI).
The kills of an episode accumulate on one run folder; when a run finishes before its kill
lands, its result is checked and the next kill starts a fresh folder. The last episode is
then finished without a kill and checked too.

Checked: rollouts identical row for row, adapter tensors bit-identical, the run's base vs
adapter comparison identical, and no leftover checkpoint or torn line.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from reasonmaxxer.io import iter_jsonl

KILLS = 10
SEED = 20261201  # the kill points (fractions of an uninterrupted run's wall time)
BUDGET_S = 240  # per command: past it, the remaining kills are skipped (and reported)

pytestmark = pytest.mark.slow


def _fresh_tqdm_lock() -> None:
    """Give this forked child tqdm write locks of its own.

    Inherited, they can hang it: a thread of the parent (tqdm's monitor, a bar) may have held
    the thread lock at the moment of the fork, and the multiprocessing lock is a semaphore
    shared by every child forked from this process, so a sibling killed by the soak while
    drawing a bar leaves it held forever (seen: a child stuck in ``TqdmDefaultWriteLock``
    under transformers' weight-loading bar). tqdm keeps the lock per class: a subclass whose
    ``get_lock`` ran before the fork (``tqdm.auto``'s, which transformers uses) holds its own,
    so every class that has one gets the fresh lock, which has no multiprocessing part.
    """
    import threading

    from tqdm.std import TqdmDefaultWriteLock, tqdm

    TqdmDefaultWriteLock.th_lock = threading.RLock()
    TqdmDefaultWriteLock.mp_lock = None
    lock = TqdmDefaultWriteLock()
    classes = [tqdm]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if cls is tqdm or "_lock" in vars(cls):
            cls._lock = lock


def _child(argv: list[str], log: str, env: dict[str, str]) -> None:
    """Run the CLI as ``reasonmaxxer ARGV`` in this forked process and exit with its code."""
    _fresh_tqdm_lock()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.argv = ["reasonmaxxer", *argv]
    code = 0
    try:
        from reasonmaxxer.cli import main

        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit handlers of the parent (pytest) in the child


class Runner:
    def __init__(self, tmp: Path, cache: Path):
        from tqdm import tqdm

        # No tqdm monitor thread in this process: it takes tqdm's lock now and then, and a
        # fork at that moment would copy the lock held (see _fresh_tqdm_lock).
        tqdm.monitor_interval = 0
        if tqdm.monitor is not None:
            tqdm.monitor.exit()
            tqdm.monitor = None
        self.ctx = multiprocessing.get_context("fork")
        self.log = tmp / "soak.log"
        self.env = {
            "REASONMAXXER_CACHE": str(cache),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "TQDM_DISABLE": "1",
        }

    def start(self, argv: list[str]):
        p = self.ctx.Process(target=_child, args=(argv, str(self.log), self.env))
        p.start()
        return p

    def finish(self, argv: list[str]) -> float:
        t = time.monotonic()
        p = self.start(argv)
        p.join(600)
        if p.exitcode is None:  # hung: kill it, or multiprocessing's exit hook waits forever
            p.kill()
            p.join()
            raise AssertionError(f"{argv[0]} did not finish in 600 s:\n{self.tail()}")
        assert p.exitcode == 0, self.tail()
        return time.monotonic() - t

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.is_file() else ""


def soak(runner: Runner, argv_for, fresh, check, *, label: str) -> dict:
    """Kill ``argv_for(folder)`` KILLS times at seeded random points, resuming in between.

    ``fresh(folder)`` prepares an empty episode folder; ``check(folder)`` compares a finished
    folder with the uninterrupted reference. Returns counts for the test's report.
    """
    ref_s = runner.finish(argv_for(fresh(0)))  # episode 0 is the uninterrupted reference
    check(Path(argv_for.folder(0)), reference=True)
    rng = random.Random(SEED)
    stats = {"killed": 0, "finished_first": 0, "episodes": 1, "skipped": 0, "ref_s": ref_s}
    episode = 1
    fresh(episode)
    start = time.monotonic()
    for _ in range(KILLS):
        if time.monotonic() - start > BUDGET_S:
            stats["skipped"] += 1
            continue
        delay = rng.uniform(0.02, 1.0) * ref_s
        p = runner.start(argv_for(episode))
        p.join(delay)
        if p.exitcode is None:
            os.kill(p.pid, signal.SIGKILL)
            p.join()
        if p.exitcode == -signal.SIGKILL:
            stats["killed"] += 1
            continue
        assert p.exitcode == 0, runner.tail()  # it finished before the kill: check, start over
        stats["finished_first"] += 1
        check(Path(argv_for.folder(episode)))
        episode += 1
        stats["episodes"] += 1
        fresh(episode)
    runner.finish(argv_for(episode))
    check(Path(argv_for.folder(episode)))
    print(f"{label}: {stats}")
    return stats


class Argv:
    """``argv_for(episode)``: the command line for the episode's folder."""

    def __init__(self, root: Path, build):
        self.root, self.build = root, build

    def folder(self, episode: int) -> Path:
        return self.root / f"ep{episode}"

    def __call__(self, episode_or_folder) -> list[str]:
        folder = episode_or_folder
        if isinstance(folder, int):
            folder = self.folder(folder)
        return self.build(folder)


def _assert_soaked(stats: dict) -> None:
    assert stats["skipped"] == 0, f"time budget exceeded: {stats}"
    # Most kills land in a running process (a resumed run has less left to do, so some may
    # finish first); were none to land, the test would be checking nothing.
    assert stats["killed"] >= KILLS // 2, stats


# --------------------------------------------------------------------------- sample


def test_sample_soak(tmp_path, tiny_model_dir, cache_dir):
    runner = Runner(tmp_path, cache_dir)
    argv = Argv(
        tmp_path,
        lambda d: [
            "sample",
            "--model",
            str(tiny_model_dir),
            "--gen-dtype",
            "float32",
            "--threads",
            "1",
            "--train",
            "arith:level=1,n=16,split=train",
            "--k",
            "2",
            "--chunk-problems",
            "2",
            "--max-new-tokens",
            "24",
            "--batch-size",
            "2",
            "--seed",
            "5",
            "--out",
            str(d),
        ],
    )
    expected: list[dict] = []

    def fresh(episode: int) -> Path:
        return argv.folder(episode)

    def check(folder: Path, reference: bool = False) -> None:
        rows = list(iter_jsonl(folder / "rollouts.jsonl"))  # strict: no torn line left
        if reference:
            assert len(rows) == 16 * 2
            expected[:] = rows
        assert rows == expected

    _assert_soaked(soak(runner, argv, fresh, check, label="sample"))


# --------------------------------------------------------------------------- train


def _selection(tok) -> list[dict]:
    """Twelve hand-made rollouts: three groups of four with ±1 advantages."""
    texts = [("What is 1+1?", "2"), ("Hi", "Hello there"), ("3*3=", "9, nine")]
    rows = []
    for i, (p, c) in enumerate(texts):
        for j in range(4):
            ids = tok(c + " " * j + "x" * (3 - j))["input_ids"]
            rows.append(
                {
                    "problem_id": f"q{i}",
                    "rollout": j,
                    "reward": float(j % 2),
                    "advantage": 1.0 if j % 2 else -1.0,
                    "prompt_ids": tok(p)["input_ids"],
                    "completion_ids": ids,
                    "entropy": [1.0] * len(ids),
                    "decision": list(range(0, len(ids), 2)),
                }
            )
    return rows


def test_train_soak(tmp_path, tiny_model_dir, cache_dir):
    from safetensors.torch import load_file

    from reasonmaxxer.config import build_run_config, dump_yaml
    from reasonmaxxer.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    selection = "".join(json.dumps(r) + "\n" for r in _selection(tok))
    cfg = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir), "threads": 1},
            "train": {
                "max_steps": 16,
                "epochs": 100,
                "batch_size": 2,
                "grad_accum": 2,
                "lora_r": 4,
                "lora_alpha": 8,
                "lr": 0.01,
                "warmup_steps": 2,
                "checkpoint_every": 3,  # a kill between checkpoints loses (and redoes) steps
            },
        }
    )
    argv = Argv(tmp_path, lambda d: ["train", str(d)])
    expected: dict = {}

    def fresh(episode: int) -> Path:
        folder = argv.folder(episode)
        folder.mkdir()
        (folder / "selection.jsonl").write_text(selection)
        (folder / "config.yaml").write_text(dump_yaml(cfg))
        return folder

    def check(folder: Path, reference: bool = False) -> None:
        adapter = load_file(str(folder / "adapter" / "adapter_model.safetensors"))
        # the sys/ (memory) figures are the machine's, not the training's: left out
        log = [
            {k: v for k, v in r.items() if not k.startswith("sys/")}
            for r in iter_jsonl(folder / "train_log.jsonl")
        ]
        assert not (folder / "train_checkpoint").exists()
        if reference:
            assert [r["step"] for r in log] == list(range(1, 17))
            expected.update(adapter=adapter, log=log)
        assert adapter.keys() == expected["adapter"].keys()
        for k, v in adapter.items():
            assert v.dtype == expected["adapter"][k].dtype
            assert v.equal(expected["adapter"][k]), k  # bit for bit
        assert log == expected["log"]

    _assert_soaked(soak(Runner(tmp_path, cache_dir), argv, fresh, check, label="train"))


# --------------------------------------------------------------------------- run


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("rounds", [1, 2])
def test_run_soak(tmp_path, digit_model_dir, cache_dir, rounds):
    """``rounds: 2`` (a later round's shape): kills also land in round 2's policy merge,
    sampling, selection, training and eval."""
    from safetensors.torch import load_file

    train = _jsonl(
        tmp_path / "sevens_train.jsonl",
        [{"id": f"t{a}", "problem": f"What is {a} + {7 - a}?", "answer": "7"} for a in range(6)],
    )
    evalset = _jsonl(
        tmp_path / "sevens_eval.jsonl",
        [{"id": f"e{a}", "problem": f"Add {a} and {7 - a}.", "answer": "7"} for a in range(4)],
    )
    sets = [
        "model.gen_dtype=float32",
        "model.threads=1",
        f"sample.train={train}",
        "sample.k=4",
        "sample.max_new_tokens=8",
        "sample.chunk_problems=2",
        "select.top_frac=0.5",
        "select.drop_longest=0",
        "select.batch_size=4",
        "train.max_steps=6",
        "train.batch_size=4",
        "train.lora_r=4",
        "train.lora_alpha=8",
        "train.lr=0.01",
        "train.warmup_steps=1",
        "train.checkpoint_every=2",
        f"eval.benchmarks={evalset}",
        "eval.k=2",
        "eval.max_new_tokens=8",
    ]
    config = tmp_path / "no-report.yaml"
    config.write_text(f"report: false\nrounds: {rounds}\n")

    def build(folder: Path) -> list[str]:
        args = ["run", "--config", str(config), "--model", str(digit_model_dir)]
        args += ["--out", str(folder)]
        for s in sets:
            args += ["--set", s]
        return args

    argv = Argv(tmp_path, build)
    expected: dict = {}

    def fresh(episode: int) -> Path:
        return argv.folder(episode)

    def check(folder: Path, reference: bool = False) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        got = {
            "comparison": manifest["comparison"],
            "counts": manifest["counts"],
            "rollouts": list(iter_jsonl(folder / "rollouts.jsonl")),
            "selection": list(iter_jsonl(folder / "selection.jsonl")),
            "adapter": load_file(str(folder / "adapter" / "adapter_model.safetensors")),
            "samples": {
                label: list(iter_jsonl(folder / "eval" / label / "samples.jsonl"))
                for label in ("base", "adapter")
            },
            "config": yaml.safe_load((folder / "config.yaml").read_text()),
        }
        assert not (folder / "train_checkpoint").exists()
        if rounds == 2:
            r2 = folder / "round2"

            def rows(path: Path) -> list[dict]:
                # Round 2 samples from and is scored by `round2/policy` of this folder, so
                # the hashes of its settings (the model's path among them) differ by episode.
                drop = ("settings_hash", "ref_key")
                return [{k: v for k, v in r.items() if k not in drop} for r in iter_jsonl(path)]

            got |= {
                "round2": [e["comparison"] for e in manifest["rounds"]],
                "round2_rollouts": rows(r2 / "rollouts.jsonl"),
                "round2_selection": rows(r2 / "selection.jsonl"),
                "round2_samples": list(iter_jsonl(r2 / "eval" / "adapter" / "samples.jsonl")),
                "round2_adapter": load_file(str(r2 / "adapter" / "adapter_model.safetensors")),
            }
            assert not (r2 / "train_checkpoint").exists()
        if reference:
            assert manifest["counts"]["train_steps"] == 6 and manifest["counts"]["rollouts"] == 24
            expected.update(got)
        for name in ("adapter", "round2_adapter")[:rounds]:
            adapter, ref_adapter = got.pop(name), expected[name]
            assert adapter.keys() == ref_adapter.keys()
            for k, v in adapter.items():
                assert v.equal(ref_adapter[k]), (name, k)
        for key, value in got.items():
            assert value == expected[key], key

    _assert_soaked(soak(Runner(tmp_path, cache_dir), argv, fresh, check, label="run"))
