"""``reasonmaxxer report RUN_DIR``: the run dir as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError


@click.argument("run_dir", type=click.Path())
@click.option(
    "--top5/--no-top5",
    default=True,
    help="show the base top-5 next tokens that select and run recorded [default: on]",
)
@click.option(
    "--max-examples",
    type=click.IntRange(min=1),
    default=4,
    help="newly solved / newly failed eval examples shown of each kind [default: 4]",
)
def report(run_dir: str, top5: bool, max_examples: int) -> None:
    """Write RUN_DIR/report.html (plots embedded, opens offline) and RUN_DIR/report/*.png."""
    from ..report import build_report

    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"run dir not found: {run_dir}")
    click.echo(str(build_report(path, top5=top5, max_examples=max_examples)))


report_cmd = click.command("report")(report)
