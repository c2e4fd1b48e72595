"""Section 3: a correct and a wrong rollout of the same problem, each token shaded by its base
entropy, decision points outlined; hovering a token shows its entropy and the base model's
top-5 next tokens.

The rollouts, their token texts and the top-5 are what ``select`` wrote to ``examples.jsonl``.
An older run dir has no such file: the rollouts are then chosen here from ``selection.jsonl``
(or rollouts + entropies) the same way, shown without the top-5, and their token texts come
from a ``tokenizer`` the caller passes (else ``⟨id⟩``); nothing is loaded.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable

from ..method.examples import FRAGMENT, choose_rollout_pairs, kept_counts, token_strings
from .html import esc, note, prompt_block, template_stripper
from .plots import shade, token_style
from .rundir import RunDir


def section_rollouts(run: RunDir, max_examples: int, *, top5: bool = True, tokenizer=None) -> str:
    pairs, notes = shown_pairs(run, max(1, max_examples // 2))
    if not pairs:
        return note(notes[0] if notes else "No rollouts to show.")
    flat = [r for pair in pairs for r in pair]
    views = [token_view(r, tokenizer, top5) for r in flat]
    if any(r.get("tokens") is None for r in flat) and tokenizer is None:
        notes.append("Token text not recorded for these rollouts: tokens are shown as ⟨id⟩.")
    hmax = max((h for r in flat for h in r.get("entropy") or []), default=1.0)
    with_top5 = any(alts is not None for _, alts in views)
    parts = [
        '<p class="lead">Each token is shaded by the base model\'s entropy before it was '
        "sampled; decision points (where the loss acts) are outlined. Hover a token for its "
        + ("entropy and the base model's top-5 next tokens." if with_top5 else "entropy.")
        + "</p>",
        legend(hmax, (run.selection or {}).get("tau")),
        *(note(n) for n in dict.fromkeys(notes)),
    ]
    info = rollout_info(run)
    prompts = prompt_texts(info, pairs, tokenizer)
    for i, (good, bad) in enumerate(pairs):
        pid = good["problem_id"]
        head = f"<code>{esc(pid)}</code> · {good['kept_correct']}/{good['kept_rollouts']}"
        head += " kept rollouts correct"
        if (info.get(pid) or {}).get("answer") is not None:
            head += f" · answer <b>{esc(info[pid]['answer'])}</b>"
        boxes = [rollout_box(r, views[2 * i + j], hmax, info) for j, r in enumerate((good, bad))]
        parts.append(
            f'<div class="problem"><h3>{head}</h3>{prompt_block(prompts.get(pid))}'
            f'<div class="grid2">{"".join(boxes)}</div></div>'
        )
    return "".join(parts)


def shown_pairs(run: RunDir, n: int) -> tuple[list[tuple[dict, dict]], list[str]]:
    """Up to ``n`` (correct, wrong) pairs and the notes to show above them: the pairs of
    ``examples.jsonl`` in its order, else chosen here from the selection's rows (each row
    then gets its problem's ``kept_correct``/``kept_rollouts`` counts)."""
    if run.examples:
        by_pair: dict = defaultdict(list)
        for r in run.examples:
            by_pair[r.get("pair")].append(r)
        pairs = [tuple(v) for _, v in sorted(by_pair.items()) if len(v) == 2]
        notes = [r["note"] for r in run.examples if r.get("note")]
        return pairs[:n], notes
    rows, source = rollout_rows(run)
    if not rows:
        return [], ["No rollouts with entropies (selection.jsonl, or rollouts + entropies)."]
    pairs = choose_rollout_pairs(rows, n)
    if not pairs:
        return [], [f"No problem in {source} has both a correct and a wrong rollout."]
    counts = kept_counts(rows)
    out = []
    for pair in pairs:
        c = counts[pair[0]["problem_id"]]
        out.append(tuple({**r, "kept_correct": c[0], "kept_rollouts": c[1]} for r in pair))
    why = (
        f"No examples.jsonl (select writes it; re-run select on this folder to record it): "
        f"rollouts chosen from {source}, without the base top-5."
    )
    return out, [why]


def rollout_rows(run: RunDir) -> tuple[list[dict], str]:
    """Rows with prompt_ids, completion_ids, entropy and decision: selection.jsonl, else
    rollouts.jsonl joined with entropies.jsonl (decision points then from τ, if known)."""
    if run.selected:
        return run.selected, "selection.jsonl"
    if not (run.has("rollouts.jsonl") and run.has("entropies.jsonl")):
        return [], ""
    ent = {(r["problem_id"], r["rollout"]): r["entropy"] for r in run.jsonl("entropies.jsonl")}
    tau = (run.selection or {}).get("tau")
    out = []
    for r in run.rollouts or []:
        h = ent.get((r["problem_id"], r["rollout"]))
        if h is None:
            continue
        dec = [i for i, x in enumerate(h) if tau is not None and x > tau]
        out.append({**r, "entropy": h, "decision": dec})
    return out, "rollouts.jsonl + entropies.jsonl"


def token_view(row: dict, tokenizer, top5: bool) -> tuple[list[str], list | None]:
    """``(token texts, top-5 per token or None)`` of a shown rollout: as recorded in
    examples.jsonl, else decoded with ``tokenizer`` (``⟨id⟩`` without one) and no top-5."""
    texts = row.get("tokens")
    if texts is None:
        texts = token_strings(tokenizer, row.get("completion_ids") or [])
    return texts, (row.get("top5") if top5 else None)


def rollout_box(row: dict, view: tuple[list[str], list | None], hmax: float, info: dict) -> str:
    """One rollout: a header (verdict, extracted answer, advantage, sizes) over its tokens."""
    texts, alts = view
    extracted = info.get((row["problem_id"], row["rollout"]), {}).get("extracted")
    verdict = "correct" if (row.get("reward") or 0) > 0.5 else "wrong"
    sub = f"rollout {row['rollout']} · {verdict}"
    if extracted is not None:
        sub += f" · extracted {esc(extracted)}"
    if row.get("advantage") is not None:
        sub += f" · advantage {row['advantage']:+.2f}"
    sub += f" · {len(texts)} tokens, {len(row.get('decision') or [])} decision points"
    body = render_tokens(texts, row.get("entropy") or [], row.get("decision") or [], hmax, alts)
    return (
        f'<div class="rollout {verdict}"><div class="rhead">{sub}</div>'
        f'<div class="tokens">{body}</div></div>'
    )


def render_tokens(
    texts: list[str],
    entropy: list[float],
    decision: Iterable[int],
    hmax: float,
    top5: list[list[tuple[str, float]]] | None = None,
) -> str:
    """One ``<span class="tok">`` per token, shaded by entropy, decision points with class
    ``dp``; ``data-h`` holds the entropy (nats) and ``data-tip`` the hover text."""
    dec = set(decision)
    spans = []
    for j, text in enumerate(texts):
        h = entropy[j] if j < len(entropy) else None
        alts = top5[j] if top5 is not None and j < len(top5) else None
        shown = text.replace("\n", "↵\n") if text else "∅"
        style = f' style="{token_style(h, hmax)}"' if h is not None else ""
        cls = "tok dp" if j in dec else "tok"
        hattr = f' data-h="{h:.4f}"' if h is not None else ""
        tip = esc(token_tip(j, text, h, j in dec, alts))
        spans.append(f'<span class="{cls}"{style}{hattr} data-tip="{tip}">{esc(shown)}</span>')
    return "".join(spans)


def token_tip(j: int, text: str, h: float | None, decision: bool, alts) -> str:
    """The hover text of token ``j``: its text, entropy (nats) and the base top-5."""
    tip = f"#{j}  {json.dumps(text, ensure_ascii=False)}\n"
    tip += "H = –" if h is None else f"H = {h:.3f} nats"
    if decision:
        tip += "  · decision point"
    if alts is not None:
        tip += "\nbase top-5:" + "".join(
            f"\n  {p:6.1%}  {json.dumps(t, ensure_ascii=False)}" for t, p in alts
        )
    if text == FRAGMENT:
        tip += "\n(byte fragment of a multi-byte character)"
    return tip


def legend(hmax: float, tau: float | None) -> str:
    """The entropy colour bar (0 to ``hmax`` nats) with τ marked."""
    stops = ", ".join(shade(hmax * i / 8, hmax) for i in range(9))
    tau_mark = ""
    if tau is not None and 0 <= tau <= hmax:
        tau_mark = f'<span class="taumark" style="left:{100 * tau / hmax:.1f}%">τ</span>'
    return (
        '<div class="legend"><span>0 nats</span>'
        f'<span class="bar" style="background:linear-gradient(to right, {stops})">{tau_mark}</span>'
        f'<span>{hmax:.1f} nats</span><span class="tok dp">decision point</span></div>'
    )


def rollout_info(run: RunDir) -> dict:
    """problem_id → {answer, prompt}, (problem_id, rollout) → {extracted} from rollouts.jsonl."""
    info: dict = {}
    for r in run.rollouts or []:
        info[r["problem_id"]] = {"answer": r.get("answer"), "prompt": r.get("prompt")}
        info[(r["problem_id"], r.get("rollout"))] = {"extracted": r.get("extracted")}
    return info


def prompt_texts(info: dict, pairs, tokenizer=None) -> dict[str, tuple[str, str]]:
    """problem_id → (problem text without the chat template, full prompt): from
    rollouts.jsonl, else as examples.jsonl recorded it, else decoded with ``tokenizer``."""
    texts = {}
    for good, _ in pairs:
        pid = good["problem_id"]
        text = (info.get(pid) or {}).get("prompt") or good.get("prompt")
        if text is None and tokenizer is not None and good.get("prompt_ids"):
            text = tokenizer.decode(good["prompt_ids"])
        if text is not None:
            texts[pid] = text
    all_prompts = [v.get("prompt") for k, v in info.items() if isinstance(k, str)]
    strip = template_stripper([p for p in all_prompts if p] or list(texts.values()))
    return {pid: (strip(t), t) for pid, t in texts.items()}
