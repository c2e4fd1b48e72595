"""Helpers every config dataclass uses: a field with a one-line help text, a check that
raises :class:`UserError`, the base type of an optional annotation, and the two that let a
config carry a shared block's fields (:func:`shared`, :func:`project`).

They live apart from :mod:`.config` so that each command's config module (analysis, GRPO,
distillation) and the CLI layer can build on them without reaching into another module's
private names.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field
from typing import Any

from .errors import UserError


def help_field(default: Any, help: str, choices: tuple[str, ...] | None = None, **kw) -> Any:
    """A dataclass field with ``help`` (and optional ``choices``) in its metadata; a list or
    dict default is copied per instance."""
    meta = {"help": help}
    if choices:
        meta["choices"] = choices
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def check(cond: bool, msg: str) -> None:
    """Raise ``UserError(msg)`` unless ``cond``."""
    if not cond:
        raise UserError(msg)


def base_type(tp: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def flag(name: str) -> str:
    """A field's command-line flag name without the dashes: ``max_new_tokens`` -> ``max-new-tokens``."""
    return name.replace("_", "-")


def check_fields(obj: Any) -> None:
    """Choices, and that every float field is a finite number (no nan, no inf).

    Every config class calls this first in ``__post_init__``; the per-field ranges follow.
    """
    for f in dataclasses.fields(obj):
        choices = f.metadata.get("choices")
        value = getattr(obj, f.name)
        if choices and value is not None and value not in choices:
            raise UserError(f"--{flag(f.name)} must be one of {', '.join(choices)}; got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{flag(f.name)} must be a finite number; got {value}")


def shared(block: type, name: str, default: Any = dataclasses.MISSING, help: str | None = None):
    """The field ``name`` of the shared config block ``block``, for a config that carries it
    flat (same YAML key, same flag): the block's help text and choices, and its default unless
    the command starts elsewhere (``default``) or says more (``help``).

    The config keeps its own field order (so its YAML and ``--help`` read as before); the
    block's checks run on it through :func:`project`.
    """
    f = {f.name: f for f in dataclasses.fields(block)}[name]
    value = f.default if default is dataclasses.MISSING else default
    return help_field(value, help or f.metadata["help"], f.metadata.get("choices"))


def project(obj: Any, block: type) -> Any:
    """``block`` built from the fields ``obj`` shares with it (the rest keep the block's
    defaults); building it runs the block's checks, so a config validates its shared fields by
    projecting itself onto each block it carries."""
    names = {f.name for f in dataclasses.fields(block)} & {f.name for f in dataclasses.fields(obj)}
    return block(**{n: getattr(obj, n) for n in names})
