"""The ``reasonmaxxer`` console script. It decides whether to re-execute under mimalloc
(:mod:`reasonmaxxer.allocator`) before importing the command line, which imports torch, so a
re-executed command starts torch once."""

from __future__ import annotations

import sys


def entry() -> None:
    """Re-execute once under mimalloc where that applies, then run :func:`cli.main`."""
    from . import allocator

    allocator.reexec(allocator.reexec_argv(sys.argv))
    from .cli import main

    main()
