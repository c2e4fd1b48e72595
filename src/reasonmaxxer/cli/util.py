"""Click options generated from config dataclasses, shared by every command module.

Each dataclass field becomes one ``--flag`` with its type, choices and help text, so flags, YAML
keys and the recorded ``config.yaml`` cannot drift apart. Unset flags arrive as ``None``.
The checks every command runs before loading a model (output folder, run folder, threads)
live here too, so a bad one is an error line in a second rather than after minutes of work.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import click

from ..errors import UserError
from ..fields import base_type

CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


class ConfigOption(click.Option):
    """A ``--flag`` made from a config field; ``config_class`` is the dataclass that declares
    it (so a test can find the value the flag sets in a resolved config)."""

    def __init__(self, *args, config_class: type, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config_class = config_class


def config_options(
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    multi: frozenset[str] = frozenset(),
    defaults: dict | None = None,
):
    """Decorator adding one ``--flag`` per dataclass field (all but ``skip``, or ``only``
    those); unset flags arrive as None.

    Fields named in ``multi`` may be repeated (``--tau 1 --tau 2``); they arrive as a tuple.
    ``defaults`` are the values the command really uses when a flag is not given (what it
    passes to :func:`~reasonmaxxer.config.resolve`); ``--help`` shows those, else the
    dataclass default.
    """

    def decorate(fn):
        hints = typing.get_type_hints(cls)
        for f in reversed(dataclasses.fields(cls)):
            if f.name in skip or dataclasses.is_dataclass(hints[f.name]):
                continue
            if only is not None and f.name not in only:
                continue
            tp, optional = base_type(hints[f.name])
            flag = f.name.replace("_", "-")
            default = f.default if f.default is not dataclasses.MISSING else "…"
            if defaults is not None and f.name in defaults:
                default = defaults[f.name]
            help_text = f"{f.metadata.get('help', '')} [default: {default}]"
            kw = {"cls": ConfigOption, "config_class": cls, "default": None}
            if tp is bool:
                opt = click.option(f"--{flag}/--no-{flag}", f.name, help=help_text, **kw)
            elif f.name in multi:
                kw.pop("default")
                opt = click.option(f"--{flag}", f.name, multiple=True, help=help_text, **kw)
            elif optional and tp in (int, float):
                # a string, so that `none` can switch the setting off; the config checks the type
                help_text = help_text.replace(" [default:", "; 'none' switches it off [default:")
                opt = click.option(
                    f"--{flag}",
                    f.name,
                    type=click.STRING,
                    metavar=tp.__name__.upper(),
                    help=help_text,
                    **kw,
                )
            else:
                choices = f.metadata.get("choices")
                ctype = click.Choice(choices) if choices else CLICK_TYPES[tp]
                opt = click.option(f"--{flag}", f.name, type=ctype, help=help_text, **kw)
            fn = opt(fn)
        return fn

    return decorate


def pick(cls: type, kwargs: dict) -> dict:
    """The subset of CLI kwargs that belong to ``cls`` and were given."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in kwargs.items() if k in names and v is not None}


def check_out_dir(path: str | os.PathLike, *, flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be one, before any model is loaded.

    ``path`` must be a folder or not exist yet; the nearest existing folder above it must be a
    writable folder. Nothing is created here (a refused command leaves no empty folder).
    """
    if not str(path).strip():
        raise UserError(f"{flag} is empty: give a folder")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {parent} is not writable")
    return path


def check_run_dir(path: str | os.PathLike) -> Path:
    """A RUN_DIR argument: an existing folder (the stage then checks for the files it needs)."""
    if not str(path).strip():
        raise UserError("RUN_DIR is empty: give a run folder")
    path = Path(path)
    if not path.exists():
        raise UserError(f"run folder not found: {path}")
    if not path.is_dir():
        raise UserError(f"run folder {path} is a file, not a folder")
    return path


def set_threads(threads: int | None) -> int:
    """``torch.set_num_threads`` for ``--threads``; None: the cores other work leaves free
    right now (:func:`~reasonmaxxer.devices.free_cores`). Returns the number set."""
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise UserError(f"--threads must be >= 1 (omit it to use the free cores); got {threads!r}")
    import torch

    from ..devices import free_cores

    threads = threads or free_cores()
    torch.set_num_threads(threads)
    return threads
