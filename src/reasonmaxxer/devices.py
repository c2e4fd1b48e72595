"""Where tensors live: one device rule and one autocast rule for every stage.

``--device`` (``ModelConfig.device``) takes ``auto | cpu | cuda | cuda:N | mps``. ``auto`` is
CUDA when it is available and the CPU otherwise; an explicit device that this machine does not
have is one :class:`UserError` before any work starts. Every stage builds its tensors on the
model's device (:func:`to_device`) and runs mixed precision through :func:`autocast`, which
follows that device, so nothing in the code assumes a CPU.

Precision settings (``gen_dtype``, ``autocast``) take ``auto``: bfloat16 on a CUDA GPU that
supports it, float32 everywhere else, a CPU with native bf16 (AVX512-BF16 or AMX) included.
On such a CPU bf16 is about twice as fast, but its rounding depends on the CPU's kernels: on
one AVX512-BF16 host the default's bf16 rollouts trained adapters 4.7 points worse on average
than its float32 ones (3 sampling seeds each, ``benchmarks/results/cpu_precision/``), while
float32 rollouts came out the same on an AVX2 and an AVX-512 CPU. On a CPU without native bf16 torch
emulates it, and a bf16 matmul is ~170x slower than a float32 one (measured on 2 AVX2 cores:
0.9 vs 153 GFLOPS, 1024x1024). ``--gen-dtype bfloat16`` and ``autocast: bfloat16`` still ask
for bf16 on a CPU.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache
from typing import Any

from .errors import UserError

AUTOCAST_DEVICES = ("cpu", "cuda", "mps")


def resolve_device(spec: str | None = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"cpu"``; an explicit device is checked.

    Returns a string torch accepts (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    """
    import torch

    spec = (spec or "auto").strip()
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return spec
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: CUDA is not available on this machine")
        index = spec.partition(":")[2]
        if index:
            if not index.isdigit():
                raise UserError(f"--device {spec}: expected cuda or cuda:N")
            if int(index) >= torch.cuda.device_count():
                raise UserError(
                    f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)"
                )
        return spec
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserError("--device mps: MPS is not available on this machine")
        return spec
    raise UserError(f"--device must be auto, cpu, cuda, cuda:N or mps; got {spec!r}")


def device_of(model_or_device: Any):
    """The ``torch.device`` of a model (its ``.device``) or of a device string/object."""
    import torch

    device = getattr(model_or_device, "device", model_or_device)
    return device if isinstance(device, torch.device) else torch.device(device)


def autocast(model_or_device: Any, *, enabled: bool = True, dtype: Any = None):
    """bf16 (or ``dtype``) autocast on the device the model lives on; a no-op where torch has
    no autocast for that device type or when ``enabled`` is False."""
    import torch

    device = device_of(model_or_device)
    if not enabled or device.type not in AUTOCAST_DEVICES:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16)


def to_device(batch: dict, device: Any) -> dict:
    """Every tensor of ``batch`` moved to ``device`` (other values unchanged)."""
    import torch

    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@cache
def native_bf16(device: str = "auto") -> bool:
    """Whether bfloat16 matmuls are native (fast) on ``device``: a CUDA GPU that supports bf16,
    or a CPU whose oneDNN build has AVX512-BF16 / AMX. Never raises: a device this machine
    does not have counts as the CPU (loading the model reports that error)."""
    import torch

    spec = (device or "auto").strip()
    if spec.startswith("cuda") or spec == "auto":
        if torch.cuda.is_available():
            return bool(torch.cuda.is_bf16_supported())
        if spec != "auto":
            spec = "cpu"
    if spec == "mps":
        return False  # float32 on Apple GPUs: bf16 support depends on the OS version
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without that probe: assume emulated
        return False


def bf16_by_default(device: str = "auto") -> bool:
    """Whether ``auto`` precision means bfloat16 on ``device``: on a CUDA GPU that supports
    it. Never on a CPU, whether or not its bf16 is native (see the module docstring), nor on
    MPS."""
    import torch

    spec = (device or "auto").strip()
    if spec.startswith("cuda") or spec == "auto":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


def resolve_precision(spec: str, device: str = "auto", *, fallback: str) -> str:
    """``"auto"`` → ``"bfloat16"`` where :func:`bf16_by_default`, else ``fallback``
    (``"float32"`` for a weights dtype, ``"off"`` for autocast); anything else unchanged."""
    if spec != "auto":
        return spec
    return "bfloat16" if bf16_by_default(device) else fallback


def bf16_autocast_on(spec: str, model_or_device: Any) -> bool:
    """Whether an ``autocast`` setting (``auto | bfloat16 | off``) turns bf16 autocast on for a
    model on this device."""
    if spec == "auto":
        return bf16_by_default(str(device_of(model_or_device)))
    return spec == "bfloat16"


def busy_cores(before: list[int], after: list[int]) -> float:
    """The busy share of the machine between two samples of ``/proc/stat``'s ``cpu`` line
    (jiffies: user nice system idle iowait irq softirq steal ...), in [0, 1]: non-idle time
    over elapsed time, summed over cores (the caller multiplies by the core count)."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent[:8])
    idle = spent[3] + spent[4]  # idle + iowait
    return 0.0 if total <= 0 else min(1.0, max(0.0, 1 - idle / total))


def _cpu_jiffies() -> list[int]:
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def free_cores(sample_s: float = 0.25) -> int:
    """Cores this process may use that other work is not using right now (at least 1).

    Measured from ``/proc/stat`` over ``sample_s`` seconds before any work starts; without
    ``/proc`` (macOS, Windows) every usable core counts as free. Why it matters: with one of
    two cores busy, decoding with 2 threads ran at 52 tok/s and with 1 thread at 140 tok/s
    (SmolLM2-135M, batch 64, float32: ~50 vs ~135 tok/s; benchmarks/results/cpu_threads.md).
    """
    import os
    import time

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    usable = usable or 1
    try:
        before = _cpu_jiffies()
        time.sleep(sample_s)
        after = _cpu_jiffies()
    except (OSError, ValueError):
        return usable
    machine = os.cpu_count() or usable
    busy = busy_cores(before, after) * machine
    return max(1, min(usable, round(machine - busy)))
