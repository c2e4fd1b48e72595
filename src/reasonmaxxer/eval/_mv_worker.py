"""math-verify in a separate process: the worker side of :mod:`reasonmaxxer.eval.grading`.

This file imports only the standard library and math-verify, never the rest of the package,
because :mod:`reasonmaxxer.eval.grading` runs it by file path in a fresh interpreter
(``python -c BOOT SYS_PATH_JSON THIS_FILE``). The protocol is one JSON object per line:

* worker -> parent, once at start: ``{"ready": true}`` after math-verify is imported and has
  run one comparison (so its lazy set-up is not charged to the first deadline), or
  ``{"ready": false, "error": "..."}``.
* parent -> worker: ``{"id": 7, "pred": "...", "ref": "..."}``
* worker -> parent: ``{"id": 7, "equal": true, "s": 0.012}`` (``s``: seconds spent in
  math-verify, so that the parent can measure its own overhead); an exception inside math-verify is answered
  ``{"id": 7, "equal": false, "error": "RecursionError"}`` (counted as "not equal", as before).

The worker has no time bound of its own: the parent kills it when a deadline passes. It exits
when its stdin closes (the parent exited or closed it), and it ignores SIGINT so that Ctrl-C in
a terminal reaches only the parent.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

_mv: tuple[Callable[..., Any], Callable[..., Any]] | None = None


class _DropTimeoutDisabledWarning(logging.Filter):
    """math-verify warns once that its own time-out is off; the bound is the parent's, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in str(record.msg)


def _load_math_verify() -> tuple[Callable[..., Any], Callable[..., Any]]:
    global _mv
    if _mv is None:
        for name in ("math_verify.parser", "math_verify.grader"):
            logging.getLogger(name).addFilter(_DropTimeoutDisabledWarning())
        from math_verify import parse, verify

        _mv = (parse, verify)
    return _mv


def math_verify_equal(pred: str, reference: str) -> bool:
    """math-verify's verdict, unbounded and with its own (signal-based) time-outs off.

    Each side is parsed as ``\\boxed{s}`` first, then as ``$s$``. May raise (sympy errors).
    """
    parse, verify = _load_math_verify()

    def _parse(s: str) -> list:
        out = parse(f"\\boxed{{{s}}}", parsing_timeout=None)
        return out or parse(f"${s}$", parsing_timeout=None)

    gold = _parse(reference)
    target = _parse(pred)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=None))


def main() -> None:
    """Serve comparisons on stdin/stdout until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol gets a private copy of stdout; fd 1 itself goes to /dev/null so that a
    # stray print from sympy or math-verify can never corrupt a reply.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    logging.disable(logging.WARNING)
    requests = open(sys.stdin.fileno(), encoding="utf-8", newline="\n", closefd=False)  # noqa: SIM115

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    try:
        math_verify_equal("1", "1")
    except BaseException as e:  # noqa: BLE001 (reported to the parent, which decides)
        send({"ready": False, "error": f"{type(e).__name__}: {e}"})
        return
    send({"ready": True})
    for line in requests:
        req = json.loads(line)
        start = time.perf_counter()
        try:
            equal, error = math_verify_equal(req["pred"], req["ref"]), None
        except Exception as e:  # noqa: BLE001 (errors inside math-verify mean "not equal")
            equal, error = False, type(e).__name__
        reply = {"id": req["id"], "equal": equal, "s": time.perf_counter() - start}
        send(reply if error is None else {**reply, "error": error})
