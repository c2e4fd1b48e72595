"""The ``reasonmaxxer`` console script. It decides whether to re-execute under mimalloc
(:mod:`reasonmaxxer.allocator`) before importing the command line, which imports torch, so a
re-executed command starts torch once."""

from __future__ import annotations

import contextlib
import os
import sys


def entry() -> None:
    """Re-execute once under mimalloc where that applies, then run :func:`cli.main`."""
    from . import allocator

    env = allocator.preload_env(dict(os.environ), allocator.library())
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        # When it cannot re-execute (an odd interpreter or mount), it runs as is, on glibc.
        with contextlib.suppress(OSError):
            os.execve(sys.executable, allocator.reexec_argv(sys.argv), env)
    from .cli import main

    main()
