"""What the benchmark scripts share about their committed record: ``--out`` (the JSON, with a
``.md`` table beside it), ``--notes`` (the reading, kept in the record) and ``--redraw``
(re-render the table from the JSON without measuring again)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def add_record_args(ap: argparse.ArgumentParser, out: Path | None) -> None:
    ap.add_argument("--out", default=None if out is None else str(out))
    ap.add_argument("--notes", help="a markdown file: the reading, kept in the record")
    ap.add_argument("--redraw", action="store_true", help="only re-render --out (with --notes)")


def redraw(args: argparse.Namespace, markdown: Callable[[dict], str]) -> bool:
    """With ``--redraw``: re-render ``--out``'s table (taking ``--notes`` into the record) and
    return True; else False."""
    if not args.redraw:
        return False
    out = Path(args.out)
    record = json.loads(out.read_text())
    if args.notes:
        record["notes"] = Path(args.notes).read_text().strip()
    out.write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(record))
    return True
