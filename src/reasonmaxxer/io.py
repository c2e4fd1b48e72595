"""File helpers: atomic writes and strict JSONL reading.

Every file a stage finishes is written atomically (temp file in the same folder, fsync,
rename), so a killed run never leaves a half-written result behind.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import UserError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(
        path,
        json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
        + "\n",
    )


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(_line(r) for r in rows))


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Append rows with one write and an fsync: a crash loses at most this batch's tail."""
    data = "".join(_line(r) for r in rows).encode()
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _line(row: dict) -> str:
    """One JSONL line. NaN and Infinity are refused (``allow_nan=False``): they are not JSON,
    and a result file must never carry them silently."""
    return json.dumps(row, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n"


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield one dict per non-empty line; a malformed line is a :class:`UserError` naming it.

    With ``tolerate_torn_tail`` a malformed *last* line without a newline (a write cut short
    by a kill) is skipped instead: that is how resumable stages read their own output.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        with _open_text(path) as f:
            lines = f.readlines()
    except _READ_ERRORS as e:
        raise _read_error(path, e) from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            if tolerate_torn_tail and lineno == len(lines) and not line.endswith("\n"):
                return
            raise UserError(f"{path}:{lineno}: malformed JSON line ({_json_reason(e)})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        yield row


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except _READ_ERRORS as e:
        raise _read_error(path, e) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None
    except (ValueError, RecursionError) as e:
        raise UserError(f"{path}: malformed JSON ({_json_reason(e)})") from None


# What reading a data file can raise besides a parse error: not UTF-8, unreadable, not really
# gzip (BadGzipFile is an OSError), a gzip stream cut short (EOFError) or corrupt (zlib.error).
_READ_ERRORS = (UnicodeDecodeError, OSError, EOFError, zlib.error)


def _read_error(path: Path, e: BaseException) -> UserError:
    if isinstance(e, UnicodeDecodeError):
        line = _first_non_utf8_line(path)
        return UserError(f"{path}{f':{line}' if line else ''}: not UTF-8 text ({e.reason})")
    if isinstance(e, gzip.BadGzipFile | EOFError | zlib.error):
        return UserError(f"{path}: not a valid gzip file ({e})")
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return UserError(f"cannot read {path}: {reason}")


def _first_non_utf8_line(path: Path) -> int | None:
    """1-based number of the first line that is not valid UTF-8 (for the error message)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return lineno
    except _READ_ERRORS:
        pass
    return None


def _json_reason(e: BaseException) -> str:
    """One line for json.loads' failures: a syntax error, nesting too deep, a huge integer."""
    if isinstance(e, json.JSONDecodeError):
        return e.msg
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e).split(":")[0]  # "Exceeds the limit (4300 digits) for integer string conversion"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
