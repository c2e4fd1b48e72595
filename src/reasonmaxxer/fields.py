"""Helpers every config dataclass uses: a field with a one-line help text, a check that
raises :class:`UserError`, and the base type of an optional annotation.

They live apart from :mod:`.config` so that each command's config module (analysis, GRPO,
distillation) and the CLI layer can build on them without reaching into another module's
private names.
"""

from __future__ import annotations

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
