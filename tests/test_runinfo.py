"""Per-stage memory accounting: the peak-RSS window and handing memory back; what a result
records about its machine."""

import os
import sys

import pytest

from reasonmaxxer.runinfo import (
    peak_rss_mib,
    process_peak_rss_mib,
    release_memory,
    reset_peak_rss,
)

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux only")


@linux
def test_reset_starts_a_new_peak_window():
    """A 400 MiB buffer raises the peak; once it is freed and the window reset, the peak is
    back below it, so a later stage does not inherit an earlier stage's peak."""
    if not reset_peak_rss():
        pytest.skip("this kernel does not allow clear_refs")
    before = peak_rss_mib()
    buf = b"\x01" * (400 * 2**20)  # written: every page is resident
    assert peak_rss_mib() >= before + 350
    held = peak_rss_mib()
    del buf
    release_memory()
    assert reset_peak_rss()
    assert peak_rss_mib() < before + 200
    # the process's own peak survives the reset (ru_maxrss does not: the kernel clears both)
    assert process_peak_rss_mib() >= held - 1  # RSS counters lag by up to 64 pages a thread


def test_release_memory_runs_anywhere():
    release_memory()  # no torch import needed, no error without glibc
    assert peak_rss_mib() > 0


def test_host_info_names_the_cpu_kind(monkeypatch, tmp_path):
    """Results say which kind of CPU made them: its model name, the ISA torch dispatches to,
    whether bf16 is native, and the CPUs this process may use."""
    import torch

    from reasonmaxxer import runinfo

    host = runinfo.host_info()
    assert host["cpu_isa"] == torch.backends.cpu.get_cpu_capability()
    assert host["bf16_native"] in (True, False)
    assert 1 <= host["cpus"] <= (os.cpu_count() or 1)
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU 9000 @ 3.0GHz\n")
    real = runinfo.Path

    def fake_path(p, *a):
        return real(fake) if str(p) == "/proc/cpuinfo" else real(p, *a)

    monkeypatch.setattr(runinfo, "Path", fake_path)
    assert runinfo.cpu_model() == "Example CPU 9000 @ 3.0GHz"
