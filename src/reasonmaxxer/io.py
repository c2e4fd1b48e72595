"""File helpers: atomic writes and strict JSONL reading.

Every file a stage finishes is written atomically (temp file in the same folder, fsync,
rename), so a killed run never leaves a half-written result behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import shutil
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


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped for ``.gz`` (errors: see :func:`_read_error`)."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def iter_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield one dict per non-empty line; a malformed line is a :class:`UserError` naming it.

    The file is split into lines as bytes, so a write cut inside a multi-byte UTF-8 character
    is still one recognisable torn tail. With ``tolerate_torn_tail`` a last segment without a
    newline (a write cut short by a kill: every row is written with its newline) is dropped:
    that is how resumable stages read their own output. Every complete line is decoded
    strictly; one that is not UTF-8 or not a JSON object is a :class:`UserError` ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        data = _read_bytes(path)
    except _READ_ERRORS as e:
        raise _read_error(path, e) from None
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail and not tolerate_torn_tail:
        lines.append(tail)
    texts = []
    for lineno, raw in enumerate(lines, start=1):  # all of it first: a binary file says so
        try:
            texts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{lineno}: not UTF-8 text (byte {e.start})") from None
    for lineno, line in enumerate(texts, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise UserError(f"{path}:{lineno}: malformed JSON line ({_json_reason(e)})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        yield row


def identity_hash(obj: Any, *, sort_keys: bool = True) -> str:
    """The 16-hex-digit identity of a JSON-able value (other values by ``str``): the first 16
    hex digits of the sha256 of its ``json.dumps``. Every stage key, cache key and checkpoint
    scope in a run folder is one of these, so their values must never change: keys written
    with unsorted dicts pass ``sort_keys=False`` (theirs hash lists only, where it is moot).
    """
    import hashlib

    text = json.dumps(obj, sort_keys=sort_keys, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_dir(out: str | os.PathLike, fill) -> None:
    """Build a folder with ``fill(tmp)`` next to ``out``, then swap it in: readers see the old
    folder or the whole new one."""
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        fill(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


LOCK = ".lock"


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, *, create: bool = True) -> Iterator[Path]:
    """Hold ``folder/.lock`` (``flock``, non-blocking) for the whole ``with`` block.

    A second command writing the same run folder gets a :class:`UserError` naming the
    folder and the holder's pid instead of interleaving its writes with the first one's. The
    lock goes with the process, so a killed command never leaves a stale lock behind.

    Makes ``folder`` (and its parents) if needed, and removes it again if the block wrote
    nothing into it; with ``create=False`` a missing folder is left missing and nothing is
    locked (the command then reports what it lacks).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder")
    if not create and not folder.exists():
        yield folder
        return
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise UserError(f"cannot use {folder} as a run folder: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise UserError(
                f"{folder} is in use by another reasonmaxxer command{by}; "
                "wait for it to finish or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield folder
        finally:
            if made and [p.name for p in folder.iterdir()] == [LOCK]:
                # a command that failed before writing anything leaves no folder behind
                (folder / LOCK).unlink()
                folder.rmdir()
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Wait for an exclusive ``flock`` on ``path`` (created if missing) and hold it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
