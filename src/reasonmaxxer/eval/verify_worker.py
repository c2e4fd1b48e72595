"""math-verify (sympy) in a persistent worker process, under a deadline.

The worker (:mod:`reasonmaxxer.eval._mv_worker`) is started on the first comparison that needs
it, with ``subprocess`` + exec so it is safe in a process with torch threads and never
re-imports the caller's ``__main__``. Each comparison gets a deadline of ``timeout_s``
seconds; when it passes (or the worker dies) the worker is killed with SIGKILL, the pair is
reported ``timed_out`` (never counted equal), and the next comparison starts a fresh worker.
No signals are used, so this works the same on any thread. :data:`WORKER` is the process's
one worker; a forked child gets its own.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import numbers
import os
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["MAX_TIMEOUT_S", "WORKER", "MathVerifyWorker", "check_timeout", "math_verify_bounded"]

logger = logging.getLogger("reasonmaxxer.eval.grading")


MAX_TIMEOUT_S = 600.0  # larger finite time-outs are clamped to this (no comparison needs more)
_START_TIMEOUT_S = 300.0  # importing sympy + math-verify in a fresh worker (slow, busy machines)
_BOOT = (
    "import json, sys\n"
    "sys.path[:] = json.loads(sys.argv[1])\n"
    "import importlib.util as u\n"
    "spec = u.spec_from_file_location('_reasonmaxxer_mv_worker', sys.argv[2])\n"
    "mod = u.module_from_spec(spec)\n"
    "spec.loader.exec_module(mod)\n"
    "mod.main()\n"
)


def check_timeout(timeout_s: float) -> float:
    """``timeout_s`` as a float in ``(0, MAX_TIMEOUT_S]``; UserError if not finite and > 0."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real):
        raise UserError(f"grader time-out must be a number of seconds, got {timeout_s!r}")
    try:
        t = float(timeout_s)
    except OverflowError:  # an int too large for a float: finite, so clamped below
        t = MAX_TIMEOUT_S if timeout_s > 0 else -math.inf
    if not math.isfinite(t) or t <= 0:
        raise UserError(f"grader time-out must be a finite number of seconds > 0, got {t}")
    return min(t, MAX_TIMEOUT_S)


_TIMED_OUT = object()  # what MathVerifyWorker._read_line returns when the deadline passes


class MathVerifyWorker:
    """One persistent math-verify process, used by one comparison at a time (a lock).

    :meth:`compare` sends a pair and waits for the verdict until a deadline; on the deadline,
    or if the process died, it kills the process, reports the comparison as not done and at
    once starts a replacement, which imports sympy while the caller goes on. A comparison waits
    for its worker to be ready *before* its deadline starts. A process that is found dead
    between comparisons is replaced silently. Replies are read by the calling thread itself
    (a selector with the deadline as its time-out): no helper thread, no signals.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._selector: selectors.BaseSelector | None = None
        self._buf = bytearray()
        self._ready = False
        self._next_id = 0
        self.starts = 0  # processes started so far (tests and the benchmark read it)
        self.last_worker_s = 0.0  # seconds the last verdict took inside the worker

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the current process to exit (e.g. after it was killed from outside);
        its exit status, or None when there is no process."""
        return None if self._proc is None else self._proc.wait(timeout_s)

    def compare(self, pred: str, reference: str, timeout_s: float) -> tuple[bool, bool]:
        """(equal, not_done) for one pair, within ``timeout_s`` seconds of sending it."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is not None:
                self._kill()  # died while idle
            if self._proc is None:
                self._spawn()
            if not self._wait_ready():
                return False, True
            assert self._proc is not None
            self._next_id += 1
            rid = self._next_id
            msg = json.dumps({"id": rid, "pred": pred, "ref": reference}) + "\n"
            deadline = time.monotonic() + timeout_s
            try:
                self._proc.stdin.write(msg.encode("utf-8"))
                self._proc.stdin.flush()
            except OSError:  # it died between the check and the write
                self._restart()
                return False, True
            try:
                while True:
                    line = self._read_line(deadline)
                    if line is _TIMED_OUT or line is None:  # the deadline, or it died mid-way
                        self._restart()
                        return False, True
                    reply = json.loads(line)
                    if reply.get("id") == rid:
                        break
            except BaseException:  # e.g. Ctrl-C: don't leave the next caller a busy worker
                self._restart()
                raise
            self.last_worker_s = float(reply.get("s", 0.0))
            if reply.get("error"):
                logger.debug("math-verify raised %s; counted as not equal", reply["error"])
            return bool(reply["equal"]), False

    def _read_line(self, deadline: float) -> Any:
        """The worker's next line (bytes), None at end of file, _TIMED_OUT after ``deadline``."""
        assert self._proc is not None and self._selector is not None
        fd = self._proc.stdout.fileno()
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                return _TIMED_OUT
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk

    def _spawn(self) -> None:
        """Start a worker process without waiting for it (it reports when it is ready)."""
        self.starts += 1
        worker_file = str(Path(__file__).with_name("_mv_worker.py"))
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, json.dumps(sys.path), worker_file],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except (OSError, ValueError) as e:
            logger.warning("cannot start the math-verify worker: %s", e)
            return
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout.fileno(), selectors.EVENT_READ)
        self._proc, self._selector, self._buf, self._ready = proc, selector, bytearray(), False

    def _wait_ready(self) -> bool:
        """Wait for the worker's start-up message; False (logged, worker gone) if it fails."""
        if self._ready:
            return True
        if self._proc is None:
            return False
        line = self._read_line(time.monotonic() + _START_TIMEOUT_S)
        if line is _TIMED_OUT:
            hello = {"error": f"not ready after {_START_TIMEOUT_S:g} s"}
        else:
            hello = json.loads(line) if line else {"error": "exited during start-up"}
        if not hello.get("ready"):
            logger.warning("math-verify worker failed to start: %s", hello.get("error"))
            self._kill()
            return False
        self._ready = True
        return True

    def _restart(self) -> None:
        self._kill()
        self._spawn()

    def _kill(self) -> None:
        """Kill the worker (if any), reap it and close our ends of its pipes."""
        proc, selector = self._proc, self._selector
        self._proc, self._selector, self._buf, self._ready = None, None, bytearray(), False
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover (an unkillable process)
            logger.warning("math-verify worker %d did not exit after SIGKILL", proc.pid)
        if selector is not None:
            selector.close()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def close(self) -> None:
        """Stop the worker: close its stdin (it exits), then kill it if it lingers."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    proc.stdin.close()
                    proc.wait(timeout=2)
            self._kill()

    def forget(self) -> None:
        """In a forked child: drop the parent's worker without touching it.

        Its pipes are kept referenced, never closed or finalised here: the fork may have
        caught the parent in the middle of a write, holding the pipe's buffer lock.
        """
        self._lock = threading.Lock()
        if self._proc is not None:
            _INHERITED.append((self._proc, self._selector))
        self._proc, self._selector, self._buf, self._ready = None, None, bytearray(), False


_INHERITED: list[tuple] = []  # a forked child's copies of its parent's worker


WORKER = MathVerifyWorker()
atexit.register(WORKER.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=WORKER.forget)


def math_verify_bounded(pred: str, reference: str, timeout_s: float) -> tuple[bool, bool]:
    """(equal, timed_out): math-verify on the worker, within ``timeout_s`` seconds."""
    return WORKER.compare(pred, reference, timeout_s)
