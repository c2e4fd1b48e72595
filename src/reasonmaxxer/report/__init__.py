"""``reasonmaxxer report``: one self-contained HTML page per run dir, by reading files only.

Reads whatever the run dir holds (every stage writes its own files, so any subset may be
there) and writes ``RUN_DIR/report.html`` plus the plots as ``RUN_DIR/report/*.png``. The page
embeds every plot as a base64 data URI and uses only inline CSS and system fonts, so it opens
offline and makes no network request. The report imports no torch and loads no model or
tokenizer: what it shows token by token, the producers wrote (``examples.jsonl`` at
``select``, ``eval/divergences.jsonl`` at ``run``; see :mod:`reasonmaxxer.method.examples`).
Sections, each replaced by a one-line note when its files are missing:

1. Headline (:mod:`.headline`): base vs adapter greedy pass@1 per benchmark (95% CI, paired
   McNemar p), cost, and accuracy per round. With several rounds (``run --rounds N``) the
   adapter here and in section 5 is the last round's (``round{N}/eval/adapter``).
2. Entropy and selection (:mod:`.entropy`): base entropy histogram (nats, log y) with τ and
   the gated fraction; the training problems' pass-count histogram with the kept window shaded.
3. Rollouts (:mod:`.rollouts`): a correct and a wrong rollout of the same problem, each token
   shaded by its base entropy, decision points outlined; hovering a token shows its entropy
   and the base model's top-5 next tokens.
4. Training curves (:mod:`.curves`) from ``train_log.jsonl`` (loss terms, KL to base, decision
   tokens moved up or down, and any periodic ``eval/*`` rows, as GRPO runs write them), each
   round's under its own heading.
5. Before/after (:mod:`.beforeafter`): eval problems the adapter newly solves and newly fails
   (greedy), with the first character where the two outputs diverge marked.
6. Analysis files (``disagree.json``, ``intervene.json``, ``distill.json``) rendered as tables,
   and any images in ``plots/`` (:mod:`.pages`).
7. The manifest: config, versions, git hash, seeds (:mod:`.pages`).

:mod:`.rundir` reads the run dir, :mod:`.plots` draws, :mod:`.html` formats and assembles.
Metric names are the namespaced ones of the logs (``eval/<bench>/pass@1``, ``train/loss``).
"""

from ..method.examples import (
    FRAGMENT,
    choose_eval_examples,
    choose_rollout_pairs,
    divergence,
    greedy_by_key,
    token_strings,
)
from .beforeafter import section_examples
from .build import SECTIONS, build_report
from .curves import CURVE_GROUPS, CURVE_SKIP, curve_series, section_training
from .entropy import SELECT_COUNTS, section_entropy
from .headline import rounds_and_checkpoints, section_headline, stage_times
from .html import (
    CSS,
    esc,
    fmt_num,
    fmt_pct,
    fmt_seconds,
    img_tag,
    json_to_html,
    metric_table,
    note,
    table,
    template_stripper,
)
from .pages import section_analysis, section_manifest
from .plots import (
    ADAPTER_COLOR,
    BASE_COLOR,
    ENTROPY_CMAP,
    GATED_COLOR,
    PLOT_STYLE,
    Figures,
    gated_bins,
    shade,
    token_style,
)
from .rollouts import render_tokens, section_rollouts
from .rundir import ANALYSIS_FILES, REPORT_DIR, REPORT_HTML, RUN_FILES, RunDir

__all__ = [
    "ADAPTER_COLOR",
    "ANALYSIS_FILES",
    "BASE_COLOR",
    "CSS",
    "CURVE_GROUPS",
    "CURVE_SKIP",
    "ENTROPY_CMAP",
    "FRAGMENT",
    "GATED_COLOR",
    "PLOT_STYLE",
    "REPORT_DIR",
    "REPORT_HTML",
    "RUN_FILES",
    "SECTIONS",
    "SELECT_COUNTS",
    "Figures",
    "RunDir",
    "build_report",
    "choose_eval_examples",
    "choose_rollout_pairs",
    "curve_series",
    "divergence",
    "esc",
    "fmt_num",
    "fmt_pct",
    "fmt_seconds",
    "gated_bins",
    "greedy_by_key",
    "img_tag",
    "json_to_html",
    "metric_table",
    "note",
    "render_tokens",
    "rounds_and_checkpoints",
    "section_analysis",
    "section_entropy",
    "section_examples",
    "section_headline",
    "section_manifest",
    "section_rollouts",
    "section_training",
    "shade",
    "stage_times",
    "table",
    "template_stripper",
    "token_strings",
    "token_style",
]
