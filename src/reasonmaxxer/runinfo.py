"""What every results file records about how it was made: versions, git hash, host, time."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, allocator

PACKAGES = ("torch", "transformers", "peft", "accelerate", "math-verify", "trl", "vllm", "gguf")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "reasonmaxxer": __version__}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info() -> dict[str, str | bool | None]:
    """Commit of the source tree this package runs from (None when installed from a wheel)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str | None:
    """The CPU's model name (Linux's ``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def host_info() -> dict:
    """The machine a result came from. CPU timings differ by machine kind far more than by
    load: a float32 run on 2 AVX2 cores takes several times as long as a bf16 one on cores
    with AVX512-BF16/AMX, so ``cpu``, ``cpu_isa`` and ``bf16_native`` say which it was."""
    import torch

    from .devices import native_bf16

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": native_bf16("cpu"),
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "allocator": allocator.active(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],  # no install path
    }


def provenance() -> dict:
    return {
        "versions": package_versions(),
        "git": git_info(),
        "host": host_info(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _status_mib(field: str) -> float | None:
    """A ``kB`` line of Linux's ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in MiB; None
    elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# The highest VmHWM of the windows that reset_peak_rss closed: clearing the window resets
# ru_maxrss too on Linux, so the process's own peak is kept here.
_CLOSED_WINDOWS_PEAK_MIB = 0.0


def peak_rss_mib() -> float:
    """This process's peak resident memory, in MiB: since the last :func:`reset_peak_rss`
    on Linux (``VmHWM``), else since the process started (``ru_maxrss``)."""
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    return _maxrss_mib()


def process_peak_rss_mib() -> float:
    """This process's peak resident memory since it started, in MiB, across the windows of
    :func:`reset_peak_rss` (which on Linux resets ``ru_maxrss`` as well, so ``getrusage`` and
    ``/usr/bin/time`` see only the last window's peak)."""
    return max(_CLOSED_WINDOWS_PEAK_MIB, peak_rss_mib(), _maxrss_mib())


def _maxrss_mib() -> float:
    import resource  # POSIX only

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS


def rss_mib() -> float | None:
    """This process's resident memory now, in MiB (Linux ``VmRSS``; None elsewhere)."""
    return _status_mib("VmRSS")


def memory_row() -> dict[str, float]:
    """``sys/...`` memory figures for a training log row: resident now, the stage's peak
    resident, and the peak CUDA memory allocated where there is CUDA (MiB, rounded)."""
    row = {"sys/peak_rss_mib": round(peak_rss_mib(), 1)}
    now = rss_mib()
    if now is not None:
        row["sys/rss_mib"] = round(now, 1)
    gpu = peak_gpu_mib()
    if gpu is not None:
        row["sys/gpu_peak_mib"] = round(gpu, 1)
    return row


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window (Linux: ``/proc/self/clear_refs``), so that one stage's
    :func:`peak_rss_mib` is its own, not the process's running maximum. False where the
    kernel does not allow it; the peak then stays the running maximum. The closed window's
    peak still counts in :func:`process_peak_rss_mib`."""
    global _CLOSED_WINDOWS_PEAK_MIB
    _CLOSED_WINDOWS_PEAK_MIB = process_peak_rss_mib()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def release_memory() -> None:
    """Hand freed memory back between stages: collect cycles (a model and its optimizer
    hold many), empty the CUDA cache, and ask glibc to return its free heap pages to the OS
    (without ``malloc_trim`` a 135M model's stages left ~300 MiB each behind in this process)."""
    import ctypes
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): no trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    allocator.collect()


def peak_gpu_mib() -> float | None:
    """Peak CUDA memory allocated by this process so far, in MiB; None without CUDA (and
    without importing torch when the process never did)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


class Timer:
    """``with Timer() as t: ...; t.seconds``"""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
