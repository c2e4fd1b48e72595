"""The heap allocator of a CPU run: mimalloc in place of glibc's malloc, on Linux.

On a CPU, glibc's heap fragments: the KV cache grows by one ``torch.cat`` per decode step
(every layer's key and value freed and reallocated a token longer), and activation
checkpointing keeps layer inputs alive between other short-lived tensors. Freed space is
then too broken up to reuse or to return, and the process's memory grows with the work
done, not with what is live: a 256-problem eval of the 135M model peaked at 1.48 GiB under
glibc and 1.17 GiB under mimalloc, at the same CPU time (``benchmarks/results/allocator.md``
has the table, with glibc's own knobs: ``malloc_trim`` and a fixed mmap threshold cost
time or kernel work for less).

The ``reasonmaxxer`` command (:mod:`reasonmaxxer.launcher`) therefore re-executes itself once with ``LD_PRELOAD`` naming
the ``libmimalloc.so`` of the ``cmeel-mimalloc`` wheel (a dependency on Linux x86-64), when

- this is Linux and the library is installed;
- no GPU device node is present (CUDA and ROCm keep their own caching allocators, and
  nothing here was measured on a GPU machine);
- ``REASONMAXXER_MALLOC`` is not ``system`` (the opt-out) and ``LD_PRELOAD`` is empty (a
  user who preloads tcmalloc, jemalloc or anything else keeps exactly that).

The re-executed process takes the preload back out of its environment, so the processes it
starts (Ray, vLLM, grading workers) start with the user's own environment. ``cli.main()``
itself never re-executes: the Python API and in-process tests run under whatever allocator
their interpreter has. :func:`active` says which one that is; run manifests record it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

ENV = "REASONMAXXER_MALLOC"  # "system": keep the C library's malloc
_RESTORE = "_REASONMAXXER_LD_PRELOAD"  # set only in the re-executed process: the user's value
GPU_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")  # CUDA, ROCm, WSL2's GPU


def library() -> str | None:
    """Path of the installed ``libmimalloc.so``, or None."""
    from importlib import metadata

    try:
        files = metadata.files("cmeel-mimalloc") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "libmimalloc.so":
            path = Path(str(f.locate()))
            return str(path) if path.is_file() else None
    return None


def reexec_argv(argv: list[str]) -> list[str]:
    """The command line that runs this same command again: this interpreter on the console
    script when ``argv[0]`` is a file, else ``python -m reasonmaxxer``; then the arguments."""
    script = Path(argv[0])
    return [
        sys.executable,
        *([str(script)] if script.is_file() else ["-m", "reasonmaxxer"]),
        *argv[1:],
    ]


def preload_env(
    environ: dict[str, str],
    lib: str | None,
    platform: str = sys.platform,
    gpu_nodes: tuple[str, ...] = GPU_NODES,
) -> dict[str, str] | None:
    """The environment to re-execute under, or None to run as is."""
    if platform != "linux" or lib is None or _RESTORE in environ:
        return None
    if environ.get(ENV, "mimalloc") == "system" or any(os.path.exists(n) for n in gpu_nodes):
        return None
    if environ.get("LD_PRELOAD", "").strip():  # the user preloads something: their choice
        return None
    if any(c in lib for c in " :\t\n"):  # ld.so would split the path
        return None
    env = dict(environ)
    env[_RESTORE] = environ.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = lib
    return env


def reexec(argv: list[str]) -> None:
    """Re-execute ``argv`` (an interpreter first) under mimalloc where :func:`preload_env`
    says so; return (and go on, on the C library's malloc) where it does not or cannot."""
    env = preload_env(dict(os.environ), library())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    # When it cannot re-execute (an odd interpreter or mount), it runs as is, on glibc.
    with contextlib.suppress(OSError):
        os.execve(argv[0], argv, env)


def restore_environ(environ=os.environ) -> None:
    """In the re-executed process: give the children the user's ``LD_PRELOAD`` back."""
    if _RESTORE not in environ:
        return
    preload = environ.pop(_RESTORE)
    if preload:
        environ["LD_PRELOAD"] = preload
    else:
        environ.pop("LD_PRELOAD", None)


def active() -> str:
    """``mimalloc`` when this process runs on it, else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "mimalloc" if "libmimalloc" in maps else "system"


def collect() -> None:
    """Ask mimalloc to return its free pages to the OS now (no-op under another allocator)."""
    if active() != "mimalloc":
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mi_collect(ctypes.c_bool(True))
