"""Sections 6 and 7: the analysis files (``disagree.json``, ``intervene.json``,
``distill.json``) as tables with any images in ``plots/``, and the manifest: config, versions,
git hash, seeds."""

from __future__ import annotations

import json

from .html import esc, img_tag, json_to_html, metric_table, note
from .rundir import ANALYSIS_FILES, RunDir


def section_analysis(run: RunDir) -> str:
    parts = []
    for name in ANALYSIS_FILES:
        if run.has(name):
            parts.append(f"<h3><code>{esc(name)}</code></h3>{json_to_html(run.json(name))}")
    plots = run.path / "plots"
    images = []
    if plots.is_dir():
        mimes = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}
        for p in sorted(plots.iterdir()):
            if p.suffix.lower() in mimes and p.is_file():
                img = img_tag(p.read_bytes(), mimes[p.suffix.lower()], p.name)
                images.append(
                    f'<figure class="plot">{img}'
                    f"<figcaption><code>plots/{esc(p.name)}</code></figcaption></figure>"
                )
    if images:
        parts.append(f'<h3>Plots</h3><div class="grid2">{"".join(images)}</div>')
    if not parts:
        return note(
            "No analysis files (" + ", ".join(ANALYSIS_FILES) + ", plots/) in this run dir."
        )
    return "".join(parts)


def section_manifest(run: RunDir) -> str:
    m = run.manifest or {}
    prov = m.get("provenance") or {}
    parts = []
    git = prov.get("git") or {}
    if git:
        commit = git.get("commit") or "unknown (not a git checkout)"
        dirty = " (dirty)" if git.get("dirty") else ""
        parts.append(f"<p>git <code>{esc(commit)}</code>{esc(dirty)}")
        if prov.get("time"):
            parts.append(f" · finished {esc(prov['time'])}")
        parts.append("</p>")
    seeds = m.get("seeds") or {
        k: v.get("seed") for k, v in run.config.items() if isinstance(v, dict) and "seed" in v
    }
    if seeds:
        parts.append(
            "<details open><summary>seeds</summary>"
            + metric_table((f"{k}/seed", v) for k, v in seeds.items())
            + "</details>"
        )
    if prov.get("versions"):
        parts.append(
            "<details><summary>versions</summary>"
            + metric_table(prov["versions"].items())
            + "</details>"
        )
    if prov.get("host"):
        parts.append("<details><summary>host</summary>" + json_to_html(prov["host"]) + "</details>")
    if run.config:
        import yaml

        text = yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True, width=100)
        parts.append(f"<details><summary>config</summary><pre>{esc(text)}</pre></details>")
    if m:
        text = json.dumps(m, indent=2, ensure_ascii=False)
        parts.append(f"<details><summary>manifest.json</summary><pre>{esc(text)}</pre></details>")
    else:
        parts.insert(0, note("No manifest.json (the run did not finish, or is a sweep variant)."))
    return "".join(parts)
