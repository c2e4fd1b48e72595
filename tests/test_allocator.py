"""The console script's switch to mimalloc (reasonmaxxer.allocator)."""

import os
import subprocess
import sys

import pytest

from reasonmaxxer import allocator

LIB = "venv/lib/libmimalloc.so"  # any path: preload_env only passes it on


def env_for(environ, **kw):
    return allocator.preload_env(
        environ, kw.pop("lib", LIB), **{"platform": "linux", "gpu_nodes": (), **kw}
    )


def test_preload_env_sets_the_library_and_remembers_the_users_empty_preload():
    env = env_for({"PATH": "bin", "LD_PRELOAD": " "})
    assert env["LD_PRELOAD"] == LIB
    assert env["_REASONMAXXER_LD_PRELOAD"] == " "
    assert env["PATH"] == "bin"
    env = env_for({})
    assert env["LD_PRELOAD"] == LIB and env["_REASONMAXXER_LD_PRELOAD"] == ""


@pytest.mark.parametrize(
    "environ, kw",
    [
        ({"REASONMAXXER_MALLOC": "system"}, {}),  # the opt-out
        ({"LD_PRELOAD": "elsewhere/libmimalloc.so.2"}, {}),  # the user preloads it already
        ({"LD_PRELOAD": "lib/libtcmalloc.so"}, {}),  # or another allocator: theirs
        ({}, {"lib": "my venvs/lib/libmimalloc.so"}),  # ld.so would split this path
        ({"_REASONMAXXER_LD_PRELOAD": ""}, {}),  # this process is the re-executed one: no loop
        ({}, {"lib": None}),  # not installed
        ({}, {"platform": "darwin"}),
    ],
)
def test_preload_env_leaves_the_process_alone(environ, kw):
    assert env_for(environ, **kw) is None


def test_no_preload_on_a_gpu_machine(tmp_path):
    node = tmp_path / "nvidiactl"
    node.touch()
    assert env_for({}, gpu_nodes=(str(node),)) is None
    assert env_for({}, gpu_nodes=(str(tmp_path / "absent"),)) is not None


def test_restore_environ_gives_children_the_users_preload():
    environ = {"LD_PRELOAD": f"{LIB} x/libfoo.so", "_REASONMAXXER_LD_PRELOAD": "x/libfoo.so"}
    allocator.restore_environ(environ)
    assert environ == {"LD_PRELOAD": "x/libfoo.so"}
    environ = {"LD_PRELOAD": LIB, "_REASONMAXXER_LD_PRELOAD": ""}
    allocator.restore_environ(environ)
    assert environ == {}
    environ = {"LD_PRELOAD": "x/libfoo.so"}  # not re-executed: untouched
    allocator.restore_environ(environ)
    assert environ == {"LD_PRELOAD": "x/libfoo.so"}


SCRIPT = """
import os
import reasonmaxxer.cli as cli
from reasonmaxxer import allocator

def fake_main():
    allocator.restore_environ()
    print(allocator.active(), os.environ.get("LD_PRELOAD"), os.getpid(), flush=True)

cli.main = fake_main
from reasonmaxxer import launcher
launcher.entry()
"""


@pytest.mark.skipif(
    sys.platform != "linux"
    or allocator.library() is None
    or any(os.path.exists(n) for n in allocator.GPU_NODES),
    reason="mimalloc is preloaded on CPU Linux machines with cmeel-mimalloc installed",
)
@pytest.mark.parametrize("setting, expected", [(None, "mimalloc"), ("system", "system")])
def test_entry_reexecutes_once_under_mimalloc(tmp_path, setting, expected):
    script = tmp_path / "cli.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENV)}
    if setting:
        env[allocator.ENV] = setting
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1  # one run of the command: exec replaced the process, no loop
    name, preload, _pid = lines[0].split()
    assert name == expected
    assert preload == "None"  # the children's environment is the user's again


def test_reexec_argv_runs_the_same_script_with_the_same_arguments(tmp_path):
    script = tmp_path / "reasonmaxxer"
    script.write_text("")
    assert allocator.reexec_argv([str(script), "run", "--rounds", "2"]) == [
        sys.executable,
        str(script),
        "run",
        "--rounds",
        "2",
    ]
    assert allocator.reexec_argv(["reasonmaxxer", "eval"]) == [
        sys.executable,
        "-m",
        "reasonmaxxer",
        "eval",
    ]
