"""Benchmarks as data: every stage gets a ``list[Problem]`` whatever the source.

A benchmark *spec* is one of

* a bundled name (:data:`BUNDLED`, files in ``reasonmaxxer/data/benchmarks/``);
* a path to a ``.jsonl`` / ``.jsonl.gz`` file whose rows have ``problem`` and ``answer``
  (``id`` optional, default ``<stem>-<line>``; ``solution`` optional; other keys go to
  ``meta``); its benchmark name is the file stem;
* ``arith`` or ``arith:level=2,n=500,split=eval,seed=0,style=mixed`` (any subset of keys),
  the seeded synthetic benchmark of :mod:`reasonmaxxer.arith`. Without ``n=`` it gives 500
  problems, or the whole split if that is smaller. Its name is e.g. ``arith-l2-eval``.

A spec *list* (:func:`load_benchmarks`) separates specs with ``;`` or ``,``. Because an arith
spec has commas of its own, a comma piece that looks like ``key=value`` continues the arith
spec before it instead of starting a new one: ``gsm8k,arith:level=2,n=50,math500`` is three
specs. ``;`` always separates, so ``arith:level=1;arith:level=2`` needs no guessing.

Bad input of any kind is a :class:`UserError` with one line naming the file and line.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import UserError
from .io import iter_jsonl


@dataclass(frozen=True)
class Problem:
    """One question with its reference answer; ``benchmark`` is the name it was loaded under."""

    id: str
    problem: str
    answer: str
    benchmark: str
    solution: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


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
    return out


def _load(spec: str, limit: int | None) -> tuple[str, list[Problem]]:
    """Resolve one spec to (benchmark name, problems)."""
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
        from . import arith  # arith imports Problem from here

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
            if current is not None and _is_arith(current) and _KV_PIECE.match(piece):
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
