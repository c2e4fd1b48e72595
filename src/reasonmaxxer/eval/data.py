"""Benchmarks as data: every stage gets a ``list[Problem]`` whatever the source.

A benchmark *spec* is one of

* a bundled name (:data:`BUNDLED`, files in ``reasonmaxxer/data/benchmarks/``);
* a path to a ``.jsonl`` / ``.jsonl.gz`` file whose rows have ``problem`` and ``answer``
  (``id`` optional, default ``<stem>-<line>``; ``solution`` optional; other keys go to
  ``meta``); its benchmark name is the file stem;
* ``arith`` or ``arith:level=2,n=500,split=eval,seed=0,style=mixed`` (any subset of keys),
  the seeded synthetic benchmark of :mod:`reasonmaxxer.eval.arith`. Without ``n=`` it gives 500
  problems, or the whole split if that is smaller. Its name is e.g. ``arith-l2-eval``.

A bundled name or a file path may end in ``:key=value,...`` options that pick a subset:
``n=300`` (a seeded random subset, kept in file order), ``seed=0``, ``level=3-5`` (rows whose
``level`` field, e.g. ``"Level 4"`` as in the raw MATH files, is in that range) and
``n_per_level=100`` (that many per level, for the paper's 100 each of MATH levels 3, 4, 5).
``math_train:n=300,seed=0`` is 300 random MATH training problems.

A spec *list* (:func:`load_benchmarks`) separates specs with ``;`` or ``,``. Because an arith
spec has commas of its own, a comma piece that looks like ``key=value`` continues the arith
spec before it instead of starting a new one: ``gsm8k,arith:level=2,n=50,math500`` is three
specs. ``;`` always separates, so ``arith:level=1;arith:level=2`` needs no guessing.

Bad input of any kind is a :class:`UserError` with one line naming the file and line.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import re
from importlib import resources
from pathlib import Path

from ..errors import UserError
from ..io import iter_jsonl
from .problem import Problem

BUNDLED: dict[str, str] = {
    "gsm8k": "gsm8k_test.jsonl",
    "gsm8k_test": "gsm8k_test.jsonl",
    "gsm8k_train": "gsm8k_train.jsonl.gz",
    "math500": "math500.jsonl",
    "math_train": "math_train.jsonl.gz",
    "aime24": "aime24.jsonl",
    "aime25": "aime25.jsonl",
    "amc23": "amc23.jsonl",
    "minerva_math": "minerva_math.jsonl",
    "olympiadbench": "olympiadbench.jsonl",
}
"""Bundled benchmark name -> file in ``reasonmaxxer/data/benchmarks/`` (``gsm8k`` = test)."""

_KNOWN_KEYS = ("id", "problem", "answer", "solution")
_KV_PIECE = re.compile(r"^[A-Za-z_]\w*\s*=[^/\\]*$")


def benchmark_names() -> list[str]:
    """The bundled names, in :data:`BUNDLED` order."""
    return list(BUNDLED)


def _is_arith(spec: str) -> bool:
    return spec == "arith" or spec.startswith("arith:")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.endswith((".jsonl", ".gz", ".json")) or "~" in spec


def _unknown(spec: str) -> UserError:
    return UserError(
        f"unknown benchmark {spec!r}; valid names: {', '.join(BUNDLED)}; "
        "or a path to a .jsonl/.jsonl.gz file, or arith[:level=..,n=..,split=..,seed=..,style=..]"
    )


def _nonempty_line_numbers(path: Path) -> list[int]:
    """1-based line numbers of the non-empty lines: row k of ``iter_jsonl`` is on line [k]."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [i for i, line in enumerate(f, start=1) if line.strip()]


def _load_jsonl(path: Path, name: str, limit: int | None) -> list[Problem]:
    """Read and validate rows; line numbers are recomputed only when a message or id needs one."""
    linenos: list[int] | None = None

    def lineno(k: int) -> int:
        nonlocal linenos
        if linenos is None:
            linenos = _nonempty_line_numbers(path)
        return linenos[k]

    out: list[Problem] = []
    first_row: dict[str, int] = {}
    for k, row in enumerate(iter_jsonl(path)):
        if limit is not None and k >= limit:
            break
        problem = row.get("problem")
        if not isinstance(problem, str) or not problem.strip():
            raise UserError(f"{path}:{lineno(k)}: row has no `problem` (a non-empty string)")
        answer = row.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            what = "no `answer`" if answer is None else "an `answer` that is not a string/number"
            raise UserError(f"{path}:{lineno(k)}: row has {what}")
        if isinstance(answer, float) and not math.isfinite(answer):
            raise UserError(f"{path}:{lineno(k)}: row has a non-finite `answer` ({answer})")
        answer = str(answer).strip()
        if not answer:
            raise UserError(f"{path}:{lineno(k)}: row has an empty `answer`")
        raw_id = row.get("id")
        pid = f"{name}-{lineno(k)}" if raw_id is None or raw_id == "" else str(raw_id)
        if pid in first_row:
            raise UserError(
                f"{path}:{lineno(k)}: duplicate id {pid!r} (first on line {lineno(first_row[pid])})"
            )
        first_row[pid] = k
        solution = row.get("solution")
        out.append(
            Problem(
                id=pid,
                problem=problem,
                answer=answer,
                benchmark=name,
                solution=solution if isinstance(solution, str) else None,
                meta={key: v for key, v in row.items() if key not in _KNOWN_KEYS},
            )
        )
    if not out and limit != 0:
        # An empty benchmark would "score" 0.0% and exit 0: that is bad input, not a result.
        raise UserError(f"{path}: no problems in this file (it is empty)")
    return out


SUBSET_KEYS = ("n", "seed", "level", "n_per_level")


def _split_subset(spec: str) -> tuple[str, dict[str, str]]:
    """``"math_train:n=300,seed=0"`` -> ``("math_train", {"n": "300", "seed": "0"})``; a spec
    without ``:key=value`` options comes back unchanged with ``{}``."""
    base, sep, tail = spec.rpartition(":")
    pieces = [p.strip() for p in tail.split(",") if p.strip()]
    if not sep or not base or not pieces or not all(_KV_PIECE.match(p) for p in pieces):
        return spec, {}
    opts: dict[str, str] = {}
    for piece in pieces:
        key, _, value = (x.strip() for x in piece.partition("="))
        if key not in SUBSET_KEYS:
            raise UserError(
                f"bad option {piece!r} in {spec!r}: expected key=value with key in "
                f"{', '.join(SUBSET_KEYS)}"
            )
        if key in opts:
            raise UserError(f"option {key!r} given twice in {spec!r}")
        opts[key] = value
    return base, opts


def _row_level(p: Problem) -> int | None:
    """``level`` of a row as an integer (``"Level 3"``, ``"3"`` or ``3``), else None."""
    match = re.search(r"\d+", str(p.meta.get("level", "")))
    return int(match.group()) if match else None


def _subset(problems: list[Problem], opts: dict[str, str], spec: str) -> list[Problem]:
    """Apply ``level`` / ``n`` / ``n_per_level`` / ``seed`` (see the module docstring)."""
    import random

    def integer(key: str, lo: int) -> int | None:
        if key not in opts:
            return None
        try:
            value = int(opts[key])
        except ValueError:
            raise UserError(f"{key} must be an integer in {spec!r}, got {opts[key]!r}") from None
        if value < lo:
            raise UserError(f"{key} must be >= {lo} in {spec!r}, got {value}")
        return value

    seed = integer("seed", 0) or 0
    if "level" in opts:
        lo, _, hi = opts["level"].partition("-")
        if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
            raise UserError(f"level must be N or N-M in {spec!r}, got {opts['level']!r}")
        lo_i, hi_i = int(lo), int(hi or lo)
        if not any(_row_level(p) is not None for p in problems):
            raise UserError(f"{spec!r}: its rows have no `level` field to filter on")
        problems = [p for p in problems if (lv := _row_level(p)) is not None and lo_i <= lv <= hi_i]
    rng = random.Random(seed)
    if (per_level := integer("n_per_level", 1)) is not None:
        by_level: dict[int | None, list[int]] = {}
        for i, p in enumerate(problems):
            by_level.setdefault(_row_level(p), []).append(i)
        keep = sorted(
            i
            for lv in sorted(by_level, key=lambda v: (v is None, v))
            for i in (
                rng.sample(by_level[lv], per_level)
                if len(by_level[lv]) > per_level
                else by_level[lv]
            )
        )
        problems = [problems[i] for i in keep]
    if (n := integer("n", 1)) is not None and n < len(problems):
        problems = [problems[i] for i in sorted(rng.sample(range(len(problems)), n))]
    return problems


def _load(spec: str, limit: int | None) -> tuple[str, list[Problem]]:
    """Resolve one spec to (benchmark name, problems)."""
    spec = spec.strip()
    if not _is_arith(spec):
        base, opts = _split_subset(spec)
        if opts:
            name, problems = _load(base, None)
            problems = _subset(problems, opts, spec)
            return name, problems[:limit] if limit is not None else problems
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise UserError(f"limit must be a non-negative integer, got {limit!r}")
    spec = spec.strip()
    if not spec:
        raise UserError("empty benchmark spec")
    if spec in BUNDLED:
        ref = resources.files("reasonmaxxer") / "data" / "benchmarks" / BUNDLED[spec]
        with resources.as_file(ref) as path:
            return spec, _load_jsonl(Path(path), spec, limit)
    if _is_arith(spec):
        from . import arith

        p = arith.parse_spec(spec)
        n = p["n"]
        if n is None:
            n = min(arith.DEFAULT_N, arith.space_size(p["level"], p["split"]))
        if limit is not None:
            n = min(n, limit)  # generate() is prefix-stable in n
        problems = arith.generate(
            n, level=p["level"], split=p["split"], seed=p["seed"], style=p["style"]
        )
        return arith.benchmark_name(p["level"], p["split"], p["seed"], p["style"]), problems
    path = Path(spec).expanduser()
    if path.is_file():
        return _stem(path), _load_jsonl(path, _stem(path), limit)
    if path.is_dir():
        raise UserError(f"benchmark path is a directory, not a .jsonl file: {spec}")
    if _looks_like_path(spec):
        raise UserError(f"file not found: {spec}")
    raise _unknown(spec)


def load_benchmark(spec: str, *, limit: int | None = None) -> list[Problem]:
    """Problems of one spec (see the module docstring); ``limit`` keeps the first N."""
    return _load(spec, limit)[1]


def split_specs(specs: str) -> list[str]:
    """Split a spec list on ``;`` and on ``,``, keeping ``key=value`` pieces with their arith spec."""
    out: list[str] = []
    for chunk in specs.split(";"):
        current: str | None = None
        for piece in chunk.split(","):
            piece = piece.strip()
            if not piece:
                continue
            takes_options = current is not None and (_is_arith(current) or ":" in current)
            if takes_options and _KV_PIECE.match(piece):
                current += (":" if current == "arith" else ",") + piece
                out[-1] = current
            else:
                current = piece
                out.append(piece)
    return out


def load_benchmarks(
    specs: str | list[str], *, limit: int | None = None
) -> dict[str, list[Problem]]:
    """Name -> problems for a spec list, in the order given.

    A string is split by :func:`split_specs`; so is each item of a list (so a repeated CLI
    option may also carry comma lists). Two specs with the same name are a :class:`UserError`.
    """
    items = [specs] if isinstance(specs, str) else list(specs)
    parsed = [s for item in items for s in split_specs(item)]
    if not parsed:
        raise UserError("no benchmark given")
    out: dict[str, list[Problem]] = {}
    for spec in parsed:
        name, problems = _load(spec, limit)
        if name in out:
            raise UserError(f"benchmark {name!r} given twice (from {spec!r})")
        out[name] = problems
    return out


def _spec_fingerprint(spec: str) -> str:
    """sha256 prefix of the file a spec reads (its bytes, not its name); arith specs are
    generated by code from the spec alone, so the spec is their identity."""
    spec = spec.strip()
    if _is_arith(spec):
        return f"spec:{spec}"
    if spec in BUNDLED:
        ref = resources.files("reasonmaxxer") / "data" / "benchmarks" / BUNDLED[spec]
        data = ref.read_bytes()
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            _load(spec, None)  # the same error a load of this spec gives
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def benchmark_fingerprints(specs: str) -> dict[str, str]:
    """Spec -> fingerprint of its contents for a spec list (see :func:`split_specs`).

    A stage whose output depends on these problems keys on this, so editing a JSONL file in
    place makes its results stale instead of silently reusing them.
    """
    return {spec: _spec_fingerprint(spec) for spec in split_specs(specs)}
