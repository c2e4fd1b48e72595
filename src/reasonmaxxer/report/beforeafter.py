"""Section 5: eval problems the adapter newly solves and newly fails (greedy), the two outputs
side by side with the first character where they diverge marked, and, where ``run`` recorded
it in ``eval/divergences.jsonl``, the base entropy and top-5 at that point."""

from __future__ import annotations

import json

from ..method.examples import choose_eval_examples, divergence, greedy_by_key
from .html import esc, note, prompt_block, template_stripper
from .rundir import RunDir

TITLES = {"gained": "Newly solved by {who}", "lost": "Newly failed by {who}"}


def section_examples(run: RunDir, max_examples: int, *, top5: bool = True) -> str:
    base, adapter = run.eval_samples("base"), run.eval_samples("adapter")
    if not base or not adapter:
        missing = [lab for lab, s in (("base", base), ("adapter", adapter)) if not s]
        return note(f"No greedy eval samples for {' and '.join(missing)}: skipped.")
    gb, ga = greedy_by_key(base), greedy_by_key(adapter)
    keys = [k for k in gb if k in ga]
    every = choose_eval_examples(gb, ga, len(keys))
    chosen = {kind: ks[:max_examples] for kind, ks in every.items()}
    recorded = run.divergences if top5 else {}
    strip = template_stripper([gb[k].get("prompt") or "" for k in keys])
    tau = (run.selection or {}).get("tau")
    final = run.final_round
    who = f"round {final['round']}'s adapter" if final else "the adapter"
    parts = [
        f'<p class="lead">{len(keys)} paired problems: {who} newly solves '
        f"<b>{len(every['gained'])}</b> and newly fails <b>{len(every['lost'])}</b> (greedy). "
        "The first character where the two outputs differ is marked; everything after it is "
        "tinted.</p>",
        divergence_note(run, chosen, recorded, top5),
    ]
    for kind, ks in chosen.items():
        parts.append(f"<h3>{TITLES[kind].format(who=who)} ({len(ks)} of {len(every[kind])})</h3>")
        if not ks:
            parts.append(note("None."))
        for k in ks:
            b, a = gb[k], ga[k]
            i = divergence(b["completion"], a["completion"])
            d = recorded.get(k)
            where = divergence_text(i, d if d and d.get("char") == i else None, tau)
            prompt = b.get("prompt") or ""
            parts.append(
                f'<div class="example {kind}"><div class="rhead">'
                f"<code>{esc(k[0])}/{esc(k[1])}</code>"
                f" · answer <b>{esc(b.get('answer'))}</b> · {esc(where)}</div>"
                f"{prompt_block((strip(prompt), prompt)) if prompt else ''}"
                '<div class="grid2">'
                + completion_box("base", b, i)
                + completion_box("adapter", a, i)
                + "</div></div>"
            )
    return "".join(parts)


def divergence_note(run: RunDir, chosen: dict, recorded: dict, top5: bool) -> str:
    """What the entropy and top-5 at a divergence are, or why they are not shown."""
    if not top5 or not any(chosen.values()):
        return ""
    if recorded:
        return note(
            "Entropy and top-5 at a divergence: the base model teacher-forced on its own "
            "output, re-tokenized, at the scoring dtype; generation may have run at another "
            "dtype, so near-ties can rank differently from what was generated."
        )
    return note(
        "No eval/divergences.jsonl (`reasonmaxxer run` writes it): the base entropy and top-5 "
        "at a divergence are not shown."
    )


def divergence_text(i: int, d: dict | None, tau: float | None) -> str:
    """``diverge at character i``, with the base token there, its entropy against τ and the
    base top-5 when recorded (``d``, a row of eval/divergences.jsonl)."""
    where = f"diverge at character {i}"
    if not d:
        return where
    where += f" (base token {d['token']}: {json.dumps(d['text'], ensure_ascii=False)}"
    where += f", base H = {d['entropy']:.2f} nats"
    if tau is not None:
        where += " > τ" if d["entropy"] > tau else " ≤ τ"
    where += ")"
    return (
        where
        + "; base top-5: "
        + ", ".join(f"{json.dumps(t, ensure_ascii=False)} {p:.0%}" for t, p in d["top5"])
    )


def completion_box(label: str, row: dict, i: int) -> str:
    """One greedy output with the divergence at character ``i`` marked."""
    ok = bool(row.get("correct"))
    verdict = "✓ correct" if ok else "✗ wrong"
    extra = f" · extracted {esc(row.get('extracted'))}" if row.get("extracted") is not None else ""
    if row.get("finish") == "length":
        extra += " · truncated"
    return (
        f'<div class="rollout {"correct" if ok else "wrong"}"><div class="rhead">{label}: '
        f'{verdict}{extra}</div><pre class="completion">'
        f"{marked(row.get('completion', ''), i)}</pre></div>"
    )


def marked(text: str, i: int, *, keep_prefix: int = 300, keep_tail: int = 1500) -> str:
    """``text`` with the common prefix plain, the character at ``i`` marked and the rest
    tinted; a long prefix or tail is cut with an ellipsis."""
    prefix, rest = text[:i], text[i:]
    cut = ""
    if len(prefix) > keep_prefix:
        cut = f'<span class="cut">… {len(prefix) - keep_prefix:,} identical characters …</span>'
        prefix = prefix[-keep_prefix:]
    tail = ""
    if len(rest) > keep_tail:
        tail = f'<span class="cut"> … ({len(rest) - keep_tail:,} more characters)</span>'
        rest = rest[:keep_tail]
    first = rest[:1] or "∅"
    shown_first = "↵\n" if first == "\n" else first
    return (
        f'{cut}{esc(prefix)}<mark class="div">{esc(shown_first)}</mark>'
        f'<span class="after">{esc(rest[1:])}</span>{tail}'
    )
