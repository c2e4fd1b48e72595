"""``sample --ray`` on a local two-node Ray cluster (a head and one more node on 127.0.0.1,
one CPU each: two workers), started by the module fixture and torn down within 60 s.

Under HF the sharded run writes the same ``rollouts.jsonl``, byte for byte, as the single
process (each chunk has its own seed, a shard is a set of chunks); a worker killed with
SIGKILL mid-shard is retried without redoing or duplicating finished chunks; a shard whose
worker dies on every try is a one-line error naming it, the other shard's chunks are kept, and
a re-run resumes. About 1-2 minutes on 2 busy cores (cluster start ~15 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import cli_env

from reasonmaxxer.config import build_run_config
from reasonmaxxer.io import iter_jsonl
from reasonmaxxer.method.sampling import ROLLOUTS, sample

pytest.importorskip("ray")
pytestmark = [pytest.mark.distributed, pytest.mark.slow]

N_PROBLEMS, K, CHUNK = 24, 2, 2  # 12 chunks of 4 rollouts; shard 0 = even chunks, 1 = odd
FLAGS = {
    "train": f"arith:level=2,n={N_PROBLEMS},split=train",
    "k": K,
    "chunk_problems": CHUNK,
    "max_new_tokens": 32,
    "batch_size": 1,  # slow enough (~0.1 s a chunk) to be killed mid-shard
    "seed": 11,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_bin() -> str:
    return str(Path(sys.executable).parent / "ray")


def _descendants(pids: list[int]) -> list[int]:
    """Every live process below ``pids`` (read from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(pids)
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Cluster:
    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="rmx-ray-")  # short: Ray's socket paths are limited
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = cli_env()
        self.env.pop("RAY_ADDRESS", None)
        self.env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")  # loopback only
        common = ["--block", "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
        common += ["--node-ip-address", "127.0.0.1", "--object-store-memory", str(80 * 2**20)]
        self.procs = []
        try:
            self._start(
                ["start", "--head", "--port", str(self.port), "--temp-dir", self.tmp]
                + ["--include-dashboard", "false", *common]
            )
            self._wait_for(1)
            self._start(["start", "--address", self.address, *common])
            self._wait_for(2)
        except BaseException:
            self.stop()  # a cluster that did not come up is torn down all the same
            raise

    def _start(self, args: list[str]) -> None:
        log = open(Path(self.tmp) / f"node{len(self.procs)}.log", "w")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [_ray_bin(), *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def _wait_for(self, nodes: int, timeout: float = 90) -> None:
        code = (
            "import ray, sys, time\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
            f"deadline = time.time() + {timeout}\n"
            f"while len([n for n in ray.nodes() if n['Alive']]) < {nodes}:\n"
            "    assert time.time() < deadline, 'nodes did not join'\n"
            "    time.sleep(0.5)\n"
        )
        deadline = time.monotonic() + timeout
        while True:
            r = subprocess.run(
                [sys.executable, "-c", code], env=self.env, capture_output=True, timeout=timeout
            )
            if r.returncode == 0:
                return
            assert time.monotonic() < deadline, r.stderr.decode()[-2000:]
            time.sleep(1)

    def pids(self) -> list[int]:
        return _descendants([p.pid for p in self.procs])

    def task_pids(self, title: str) -> list[int]:
        return [p for p in self.pids() if _cmdline(p).startswith(f"ray::{title}")]

    def stop(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # whatever of this node is left
            p.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster():
    start = time.monotonic()
    c = Cluster()
    print(f"ray cluster up in {time.monotonic() - start:.1f}s at {c.address}")
    yield c
    start = time.monotonic()
    c.stop()
    elapsed = time.monotonic() - start
    print(f"ray cluster down in {elapsed:.1f}s")
    assert elapsed < 75, f"tear-down took {elapsed:.0f}s"
    assert not [p for p in c.pids() if _cmdline(p).startswith("ray::")], "Ray workers left"


def _args(model_dir, out, address):
    args = ["sample", "--model", str(model_dir), "--gen-dtype", "float32", "--threads", "1"]
    for key, value in FLAGS.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return [*args, "--ray", address, "--ray-workers", "2", "--out", str(out)]


def _popen(args, cache):
    env = cli_env(cache)
    env.pop("RAY_ADDRESS", None)
    env["RAY_AUTH_MODE"] = "disabled"  # as the test cluster
    return subprocess.Popen(
        [sys.executable, "-m", "reasonmaxxer", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    """The single-process run with the same settings (one thread, like the workers)."""
    out = tmp_path_factory.mktemp("single")
    cfg = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir), "gen_dtype": "float32"},
            "sample": FLAGS,
        }
    )
    sample(out, cfg)
    return (out / ROLLOUTS).read_bytes()


def test_two_workers_on_two_nodes_equal_the_single_process(
    cluster, reference, tmp_path, tiny_model_dir, cache_dir
):
    out = tmp_path / "ray"
    proc = _popen(_args(tiny_model_dir, out, cluster.address), cache_dir)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert (out / ROLLOUTS).read_bytes() == reference  # row for row, byte for byte
    summary = json.loads((out / "sample.json").read_text())
    shards = summary["ray"]["shards"]
    assert [s["chunks"] for s in shards] == [list(range(0, 12, 2)), list(range(1, 12, 2))]
    assert all(s["skipped"] == [] for s in shards)
    assert summary["generation"]["sequences"] == N_PROBLEMS * K
    assert summary["rollouts"] == N_PROBLEMS * K and summary["chunks_resumed"] == 0
    assert not (out / "parts").exists()  # merged, then removed


def test_worker_killed_mid_shard_is_retried_without_duplicates(
    cluster, reference, tmp_path, tiny_model_dir, cache_dir
):
    out = tmp_path / "ray"
    proc = _popen(_args(tiny_model_dir, out, cluster.address), cache_dir)
    first = out / "parts" / "sample" / "chunk-00000.jsonl"  # shard 0's first chunk
    killed = []
    try:
        deadline = time.monotonic() + 180
        while not first.is_file():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no part file within 180 s"
            time.sleep(0.005)
        for pid in cluster.task_pids("sample_shard_0"):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed, "shard 0 finished before it could be killed"
    assert proc.returncode == 0, stderr
    assert (out / ROLLOUTS).read_bytes() == reference
    rows = list(iter_jsonl(out / ROLLOUTS))
    assert len({(r["problem_id"], r["rollout"]) for r in rows}) == len(rows) == N_PROBLEMS * K
    shard0 = json.loads((out / "sample.json").read_text())["ray"]["shards"][0]
    assert shard0["pid"] not in killed  # the report is the retry's ...
    assert 0 in shard0["skipped"]  # ... which kept the chunk its killed predecessor wrote
    assert len(shard0["skipped"]) < 6


def test_shard_dying_on_every_try_is_named_and_the_rest_is_kept(
    cluster, reference, tmp_path, tiny_model_dir, cache_dir
):
    out = tmp_path / "ray"
    proc = _popen(_args(tiny_model_dir, out, cluster.address), cache_dir)
    kills = 0
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the driver did not give up within 240 s"
            for pid in cluster.task_pids("sample_shard_1"):
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert errors[0].startswith("error: shard 1 failed after 4 tries"), errors
    assert "6/12 chunks are kept" in errors[0] and "missing: 1, 3, 5, 7, 9, 11" in errors[0]
    assert kills >= 4
    kept = list(iter_jsonl(out / ROLLOUTS))
    assert sorted({r["chunk"] for r in kept}) == list(range(0, 12, 2))

    again = _popen(_args(tiny_model_dir, out, cluster.address), cache_dir)
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert (out / ROLLOUTS).read_bytes() == reference
    summary = json.loads((out / "sample.json").read_text())
    assert summary["chunks_resumed"] == 6
    assert [s["chunks"] for s in summary["ray"]["shards"]] == [[1, 5, 9], [3, 7, 11]]


def _eval_args(model_dir, out, *extra):
    args = ["eval", "--model", str(model_dir), "--gen-dtype", "float32", "--threads", "1"]
    args += ["--benchmarks", "arith:level=2,n=9,split=eval", "--k", "2"]
    return [*args, "--max-new-tokens", "12", "--batch-size", "4", *extra, "--out", str(out)]


def test_eval_over_ray_workers(cluster, tmp_path, tiny_model_dir, cache_dir):
    from conftest import run_cli

    single = tmp_path / "single"
    r = run_cli(*_eval_args(tiny_model_dir, single), cache=cache_dir)
    assert r.returncode == 0, r.stderr
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"ray{workers}"
        p = _popen(
            _eval_args(tiny_model_dir, out, "--ray", cluster.address)
            + ["--ray-workers", str(workers)],
            cache_dir,
        )
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        runs[workers] = list(iter_jsonl(out / "samples.jsonl"))
        assert not (out / "parts").exists()
    ref = list(iter_jsonl(single / "samples.jsonl"))
    assert runs[1] == ref  # one worker: the single process exactly (slice 0 keeps the seed)

    def greedy(rows):
        return [r for r in rows if r["sample"] == "greedy"]

    assert greedy(runs[2]) == greedy(ref)  # greedy: the same completions
    keys = [(r["id"], r["sample"]) for r in ref]
    assert [(r["id"], r["sample"]) for r in runs[2]] == keys  # sampled: same rows, order
    # sampled rows: each slice draws its own stream (another batch layout, and slice 1 its own
    # seed), so they follow the same distribution but are other draws than the single run's
    res = json.loads((tmp_path / "ray2" / "results.json").read_text())
    assert res["generation"]["ray"]["workers"] == 2
    assert res["benchmarks"] and res["tokens_generated"] > 0


def test_select_entropy_pass_over_ray_workers(
    cluster, reference, tmp_path, tiny_model_dir, cache_dir
):
    from conftest import run_cli

    from reasonmaxxer.config import dump_yaml

    cfg = build_run_config(
        overrides={
            "model": {"model": str(tiny_model_dir), "gen_dtype": "float32"},
            "sample": FLAGS,
            "select": {"batch_size": 4},
        }
    )
    rows = [json.loads(line) for line in reference.decode().splitlines()]
    for r in rows:  # every problem mixed (rollout 0 right, 1 wrong): all of them are scored
        r["reward"] = 1.0 if r["rollout"] == 0 else 0.0
    dirs = {}
    for name in ("single", "ray"):
        d = tmp_path / name
        d.mkdir()
        (d / ROLLOUTS).write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "config.yaml").write_text(dump_yaml(cfg))
        dirs[name] = d
    r = run_cli("select", dirs["single"], cache=cache_dir)
    assert r.returncode == 0, r.stderr
    p = _popen(["select", dirs["ray"], "--ray", cluster.address, "--ray-workers", "2"], cache_dir)
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    a, b = (dirs[n] / "entropies.jsonl" for n in ("single", "ray"))
    assert len(a.read_text().splitlines()) > 8  # several batches of 4, on both workers
    assert b.read_bytes() == a.read_bytes()  # the same batches give the same rows
    sel = (dirs["single"] / "selection.jsonl").read_bytes()
    assert (dirs["ray"] / "selection.jsonl").read_bytes() == sel
    assert not (dirs["ray"] / "parts").exists()
