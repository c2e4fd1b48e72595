"""HTML building blocks: escaping, number formats, tables, JSON as tables, CSS, the page.

Everything here returns strings; nothing reads files or draws plots. Cell strings passed to
:func:`table` are already escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Callable, Iterable
from typing import Any


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fmt_num(x: Any) -> str:
    """A scalar for a table cell: 4 significant digits for floats, thousands separators."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.3g}"
        return f"{x:.4g}"
    return str(x)


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def table(header: list[str], rows: Iterable[list[str]], *, cls: str = "") -> str:
    """An HTML table from already-escaped cell strings."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def metric_table(
    items: Iterable[tuple[str, Any]], *, per: int = 8, header=("metric", "value")
) -> str:
    """Namespaced metric → value tables, side by side in blocks of ``per`` rows."""
    rows = [
        [f"<code>{esc(k)}</code>", esc(v if isinstance(v, str) else fmt_num(v))] for k, v in items
    ]
    if len(rows) <= per:
        return table(list(header), rows, cls="kv")
    n_blocks = math.ceil(len(rows) / per)
    size = math.ceil(len(rows) / n_blocks)
    blocks = [table(list(header), rows[i : i + size], cls="kv") for i in range(0, len(rows), size)]
    return f'<div class="kvwrap">{"".join(blocks)}</div>'


def img_tag(data: bytes, mime: str, alt: str) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img src="data:{mime};base64,{b64}" alt="{esc(alt)}">'


# --------------------------------------------------------------------------- prompts


def template_stripper(prompts: list[str]) -> Callable[[str], str]:
    """Returns a function that cuts the chat template off a prompt: the longest common prefix
    and suffix of all ``prompts``, each backed off to a line boundary so that a shared opening
    word of the problems ("What is") is kept."""
    if len(set(prompts)) < 2:
        return lambda p: p
    prefix = os.path.commonprefix(prompts)
    prefix = prefix[: prefix.rfind("\n") + 1]
    suffix = os.path.commonprefix([p[::-1] for p in prompts])[::-1]
    cut = suffix.find("\n")
    suffix = suffix[cut:] if cut >= 0 else ""

    def strip(p: str) -> str:
        if p.startswith(prefix) and p.endswith(suffix) and len(p) > len(prefix) + len(suffix):
            return p[len(prefix) : len(p) - len(suffix)]
        return p

    return strip


def prompt_block(texts: tuple[str, str] | None) -> str:
    """The problem text, with the full prompt (chat template included) folded under it."""
    if not texts:
        return ""
    problem, full = texts
    out = f'<pre class="problemtext">{esc(problem.strip())}</pre>'
    if problem != full:
        out += (
            "<details><summary>full prompt</summary>"
            f'<pre class="prompt">{esc(full)}</pre></details>'
        )
    return out


# --------------------------------------------------------------------------- JSON as tables


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, str | int | float | bool)


def _cell(v: Any) -> str:
    if _scalar(v):
        return esc(fmt_num(v))
    return f"<code>{esc(json.dumps(v, ensure_ascii=False)[:200])}</code>"


def json_to_html(obj: Any, depth: int = 0) -> str:
    """Any JSON as tables: a dict of scalars → metric/value; a list of dicts → one row each;
    a dict of flat dicts → one row per key; other nesting → a sub-heading per key."""
    if _scalar(obj):
        return f"<p>{esc(fmt_num(obj))}</p>"
    if isinstance(obj, list):
        if obj and all(isinstance(r, dict) for r in obj):
            cols: list[str] = []
            for r in obj:
                cols += [c for c in r if c not in cols]
            rows = [[_cell(r.get(c)) for c in cols] for r in obj[:500]]
            more = note(f"({len(obj) - 500} more rows)") if len(obj) > 500 else ""
            return table([esc(c) for c in cols], rows) + more
        if all(_scalar(v) for v in obj):
            return f"<p>{esc(', '.join(fmt_num(v) for v in obj[:200]))}</p>"
        return f"<pre>{esc(json.dumps(obj, indent=1, ensure_ascii=False)[:5000])}</pre>"
    if not isinstance(obj, dict):
        return f"<pre>{esc(obj)}</pre>"
    scalars = [(k, v) for k, v in obj.items() if _scalar(v)]
    nested = [(k, v) for k, v in obj.items() if not _scalar(v)]
    out = [metric_table(scalars)] if scalars else []
    flat_dicts = [
        (k, v)
        for k, v in nested
        if isinstance(v, dict) and v and all(_scalar(x) for x in v.values())
    ]
    if len(flat_dicts) >= 2:
        cols: list[str] = []
        for _, v in flat_dicts:
            cols += [c for c in v if c not in cols]
        rows = [[f"<code>{esc(k)}</code>"] + [_cell(v.get(c)) for c in cols] for k, v in flat_dicts]
        out.append(table([""] + [esc(c) for c in cols], rows))
        nested = [(k, v) for k, v in nested if (k, v) not in flat_dicts]
    for k, v in nested:
        if depth >= 3:
            out.append(f"<h5>{esc(k)}</h5><pre>{esc(json.dumps(v, indent=1)[:3000])}</pre>")
        else:
            out.append(f"<h{min(6, 4 + depth)}>{esc(k)}</h{min(6, 4 + depth)}>")
            out.append(json_to_html(v, depth + 1))
    return "".join(out)


# --------------------------------------------------------------------------- the page

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#ffffff; --soft:#f8fafc;
  --blue:#2563eb; --green:#15803d; --red:#b91c1c; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 15px/1.55 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 80px; }
h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 20px; margin: 44px 0 12px; padding-bottom: 6px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
h4, h5, h6 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); }
code, pre, .tokens { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
  "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 13px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; overflow: auto; max-height: 420px; white-space: pre-wrap;
  word-break: break-word; }
.sub { color: var(--muted); margin: 0 0 14px; }
nav a { margin-right: 14px; color: var(--blue); text-decoration: none; font-size: 14px; }
.lead { color: #374151; }
.note { color: var(--muted); font-style: italic; margin: 6px 0; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px 5px 0; text-align: left;
  vertical-align: top; }
th { font-weight: 600; color: #374151; border-bottom: 2px solid #d1d5db; }
td { font-variant-numeric: tabular-nums; }
table.headline td, table.headline th { padding-right: 18px; }
table.headline { font-size: 15px; }
.kvwrap { display: flex; flex-wrap: wrap; gap: 0 36px; align-items: flex-start; }
.ci { color: var(--muted); font-size: 13px; }
.pos { color: var(--green); font-weight: 600; } .neg { color: var(--red); font-weight: 600; }
.grid2 { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px 22px; }
figure { margin: 6px 0; }
figure img { max-width: 100%; height: auto; display: block; }
figure.small img { max-width: 640px; }
figure.wide { grid-column: 1 / -1; }
figcaption { color: var(--muted); font-size: 13px; }
details { margin: 8px 0; } summary { cursor: pointer; color: #374151; font-weight: 600; }
.problem { margin: 18px 0 26px; }
.problem h3 { font-weight: 500; }
pre.problemtext { background: #fff; font-size: 14px; max-height: 160px; }
.rollout { border: 1px solid var(--line); border-radius: 8px; overflow: visible;
  border-top: 4px solid var(--line); background: #fff; }
.rollout.correct { border-top-color: var(--green); }
.rollout.wrong { border-top-color: var(--red); }
.rhead { font-size: 13px; color: #374151; padding: 6px 10px; background: var(--soft);
  border-bottom: 1px solid var(--line); }
.tokens { padding: 10px; line-height: 1.9; white-space: pre-wrap; word-break: break-word; }
.tok { position: relative; border-radius: 2px; padding: 1px 0; }
.tok.dp { outline: 2px solid var(--blue); outline-offset: -1px; font-weight: 700; }
.tok[data-tip]:hover { outline: 2px solid #111827; z-index: 5; }
.tok[data-tip]:hover::after { content: attr(data-tip); position: absolute; left: 0; top: 1.9em;
  z-index: 10; white-space: pre; background: #111827; color: #f9fafb; font-size: 12px;
  line-height: 1.45; font-weight: 400; padding: 6px 9px; border-radius: 6px;
  box-shadow: 0 4px 14px rgba(0,0,0,.25); pointer-events: none; }
.legend { display: flex; align-items: center; gap: 10px; font-size: 13px; color: var(--muted);
  margin: 8px 0 4px; }
.legend .bar { position: relative; display: inline-block; width: 240px; height: 14px;
  border-radius: 3px; border: 1px solid var(--line); }
.legend .taumark { position: absolute; top: -3px; height: 20px; border-left: 2px dashed #111827;
  padding-left: 3px; font-size: 11px; color: #111827; line-height: 20px; }
.legend .tok.dp { padding: 1px 4px; color: var(--fg); }
.example { margin: 14px 0 24px; border-left: 3px solid var(--line); padding-left: 12px; }
.example.gained { border-left-color: var(--green); }
.example.lost { border-left-color: var(--red); }
.example > .rhead { background: none; border: 0; padding: 0 0 6px; }
pre.completion { border: 0; margin: 0; border-radius: 0 0 8px 8px; max-height: 320px; }
mark.div { background: #fde047; outline: 2px solid #ca8a04; border-radius: 2px; }
.after { color: #9a3412; background: #fff7ed; }
.cut { color: var(--muted); font-style: italic; }
kbd { font-size: 12px; }
@media (max-width: 860px) { .grid2 { grid-template-columns: 1fr; } }
"""


def page(
    title: str, subtitle: list[str], nav: list[tuple[str, str]], notes: list[str], body: str
) -> str:
    """The whole self-contained page: inline CSS, no script, no external resource.

    ``subtitle`` items are already escaped HTML; ``nav`` is ``(anchor, label)`` pairs.
    """
    links = "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>report · {esc(title)}</title><style>{CSS}</style></head><body><main>"
        f'<header><h1>Run report: {esc(title)}</h1><p class="sub">{" · ".join(subtitle)}</p>'
        f"<nav>{links}</nav>{''.join(note(n) for n in notes)}</header>{body}"
        "</main></body></html>\n"
    )
