"""Tests for reasonmaxxer.report on a small hand-written run dir (no model, no network)."""

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from reasonmaxxer.cli.report import report_cmd
from reasonmaxxer.errors import UserError
from reasonmaxxer.report import (
    build_report,
    divergence,
    gated_bins,
    json_to_html,
    render_tokens,
    template_stripper,
    token_strings,
)

# A toy vocabulary: id -> text. Id 6 carries markup that must come out escaped.
VOCAB = ["3", " +", " 4", " =", " 7", " 8", " <b>&", "\n", "<|end|>", " so"]
CHAT = "<|user|>\n{q}\nPut your final answer within \\boxed{{}}.<|end|>\n<|assistant|>\n"
SECTION_HEADINGS = [
    "Headline: base vs adapter",
    "Entropy and problem selection",
    "Rollouts: token entropy and decision points",
    "Training curves",
    "Before / after: greedy examples",
    "Analysis",
    "Manifest",
]


class ToyTokenizer:
    def decode(self, ids):
        return "".join(VOCAB[i] for i in ids)

    def convert_ids_to_tokens(self, i):
        return VOCAB[i]


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def make_run(root: Path) -> Path:
    """A complete run dir: 2 training problems x 4 rollouts, 3 eval problems."""
    run = root / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        "model: {model: default, dtype: float32}\n"
        "select: {min_pass: 0.0, max_pass: 1.0, gate: entropy}\n"
        "train: {loss: bounded, lam: 1.0}\n"
        "eval: {seed: 0}\nprimary_metric: pass@1\n"
    )
    prompt_ids = [9, 9]
    rollouts, entropies, selected = [], [], []
    completions = {  # (problem, rollout) -> (ids, reward)
        ("p0", 0): ([0, 1, 2, 3, 4, 8], 1.0),
        ("p0", 1): ([0, 1, 2, 3, 5, 6, 7, 9, 5, 8], 0.0),
        ("p0", 2): ([0, 1, 2, 3, 4, 8], 1.0),
        ("p0", 3): ([0, 1, 2, 3, 5, 8], 0.0),
        ("p1", 0): ([0, 1, 2, 3, 4, 8], 1.0),
        ("p1", 1): ([0, 1, 2, 3, 4, 8], 1.0),
        ("p1", 2): ([0, 1, 2, 3, 4, 8], 1.0),
        ("p1", 3): ([0, 1, 2, 3, 4, 8], 1.0),
    }
    for (pid, j), (ids, reward) in completions.items():
        h = [round(0.1 + 0.5 * ((t * 7 + j) % 5), 3) for t in range(len(ids))]
        prompt = CHAT.format(q=f"What is 3 + 4? ({pid})")
        rollouts.append(
            {
                "chunk": 0,
                "problem_id": pid,
                "benchmark": "toy",
                "rollout": j,
                "answer": "7",
                "prompt": prompt,
                "prompt_ids": prompt_ids,
                "completion": "".join(VOCAB[i] for i in ids),
                "completion_ids": ids,
                "finish": "stop",
                "extracted": "7" if reward else "8",
                "rule": "last_number",
                "timed_out": False,
                "reward": reward,
                "seed": 42,
                "settings_hash": "x",
            }
        )
        entropies.append({"problem_id": pid, "rollout": j, "entropy": h})
        if pid == "p0":
            selected.append(
                {
                    "problem_id": pid,
                    "rollout": j,
                    "reward": reward,
                    "advantage": 0.87 if reward else -0.87,
                    "prompt_ids": prompt_ids,
                    "completion_ids": ids,
                    "entropy": h,
                    "decision": [t for t, x in enumerate(h) if x > 1.5],
                }
            )
    _jsonl(run / "rollouts.jsonl", rollouts)
    _jsonl(run / "entropies.jsonl", entropies)
    _jsonl(run / "selection.jsonl", selected)
    _json(
        run / "sample.json",
        {
            "problems": 2,
            "rollouts": 8,
            "mean_reward": 0.75,
            "pass_count_hist": [0, 0, 1, 0, 1],
            "tokens": 56,
            "generation": {"sequences": 8, "tokens": 56, "seconds": 2.0},
            "wall_time_s": 2.5,
        },
    )
    edges = [0.25 * i for i in range(9)]
    _json(
        run / "selection.json",
        {
            "problems_total": 2,
            "problems_kept": 1,
            "rollouts_kept": 4,
            "tokens": 28,
            "decision_tokens": 6,
            "frac_marked": 6 / 28,
            "tau": 1.5,
            "gate": "entropy",
            "entropy_quantiles": {"p50": 1.1, "p90": 2.1},
            "entropy_mean": 1.0,
            "entropy_hist": {"edges": edges, "counts": [5, 0, 6, 4, 0, 7, 0, 6]},
            "pass_count_hist": [0, 0, 1, 0, 1],
            "k": 4,
            "window": [0.0, 1.0],
        },
    )
    log = []
    for step in range(1, 6):
        log.append(
            {
                "step": step,
                "epoch": step / 5,
                "lr": 1e-4 * step / 5,
                "grad_norm": 0.5 + 0.1 * step,
                "train/loss": 0.7 - 0.05 * step,
                "train/loss_dec": 0.69 - 0.05 * step,
                "train/loss_anchor": 0.001 * step,
                "train/frac_decision": 0.2,
                "train/n_decision": 6.0,
                "train/n_anchor": 22.0,
                "train/dec_logratio_pos": 0.01 * step,
                "train/dec_logratio_neg": -0.01 * step,
                "train/kl_decision": 1e-4 * step,
                "train/dec_up_frac_pos": float("nan") if step == 1 else 0.6,
                "train/dec_down_frac_neg": 0.55,
                "train/kl_all": 5e-5 * step,
            }
        )
    (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))  # NaN
    _json(
        run / "train.json",
        {
            "steps": 5,
            "rollouts": 4,
            "trainable_params": 1000,
            "total_params": 100000,
            "trainable_frac": 0.01,
            "tokens_processed": 120,
            "wall_time_s": 3.0,
        },
    )
    # Eval: q0 gained, q1 lost, q2 both right.
    outs = {
        "base": {"q0": ("3 + 4 = 8", False), "q1": ("2 + 2 = 4", True), "q2": ("1", True)},
        "adapter": {"q0": ("3 + 4 = 7", True), "q1": ("2 + 2 = 5", False), "q2": ("1", True)},
    }
    for label, rows in outs.items():
        samples = [
            {
                "benchmark": "toy-eval",
                "id": qid,
                "answer": {"q0": "7", "q1": "4", "q2": "1"}[qid],
                "prompt": CHAT.format(q=f"Question {qid} <&>"),
                "sample": "greedy",
                "temperature": 0.0,
                "completion": text,
                "extracted": text[-1],
                "rule": "last_number",
                "correct": ok,
                "timed_out": False,
                "n_tokens": 5,
                "finish": "stop",
            }
            for qid, (text, ok) in rows.items()
        ]
        _jsonl(run / "eval" / label / "samples.jsonl", samples)
        _json(
            run / "eval" / label / "results.json",
            {
                "metrics": {"eval/toy-eval/pass@1": 2 / 3},
                "benchmarks": {"toy-eval": {"n": 3, "pass@1": 2 / 3, "pass@1_ci95": [0.21, 0.94]}},
                "tokens_generated": 15,
                "wall_time_s": 1.0,
            },
        )
    _json(
        run / "manifest.json",
        {
            "config": {"model": {"model": "default"}},
            "primary_metric": "pass@1",
            "comparison": {
                "toy-eval": {
                    "n": 3,
                    "base_pass@1": 2 / 3,
                    "adapter_pass@1": 2 / 3,
                    "pass@1_mcnemar": {"gained": 1, "lost": 1, "n": 3, "p_value": 1.0},
                }
            },
            "stages": {"sample": {"wall_time_s": 2.5}, "train": {"wall_time_s": 3.0}},
            "counts": {"rollout_tokens": 56, "rollouts": 8, "trainable_frac": 0.01},
            "seeds": {"sample": 42, "train": 0},
            "provenance": {
                "versions": {"python": "3.11", "torch": "2.x"},
                "git": {"commit": "abc123", "dirty": False},
                "time": "2026-01-01T00:00:00+00:00",
            },
        },
    )
    _json(run / "disagree.json", {"frac_unchanged": 0.95, "frac_reranked": 0.05, "n": 100})
    _json(
        run / "intervene.json", [{"arm": "oracle", "pass@1": 0.4}, {"arm": "random", "pass@1": 0.2}]
    )
    _png(run / "plots" / "classes.png")
    return run


@pytest.fixture
def full_run(tmp_path):
    return make_run(tmp_path)


@pytest.fixture(scope="module")
def full_page(tmp_path_factory) -> tuple[Path, str]:
    """The full run dir and its page, built once for the read-only checks."""
    run = make_run(tmp_path_factory.mktemp("full"))
    page = build_report(run, top5=False, tokenizer=ToyTokenizer())
    assert page == run / "report.html"
    return run, page.read_text()


def test_full_page_is_self_contained(full_page):
    full_run, text = full_page
    for heading in SECTION_HEADINGS:
        assert f">{heading}</h2>" in text, heading
    # No network: no remote src/href, no external stylesheet or script.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "<script src" not in text and "<link" not in text and "@import" not in text
    # Plots embedded as data URIs, and also written next to the page.
    assert text.count('src="data:image/png;base64,') >= 6
    pngs = {p.name for p in (full_run / "report").glob("*.png")}
    assert {"headline.png", "entropy_hist.png", "pass_rate_hist.png", "train_loss.png"} <= pngs
    # The analysis JSON and plots/ are rendered.
    assert "frac_reranked" in text and "oracle" in text and "plots/classes.png" in text
    # Headline numbers carry the log's metric names and the McNemar p.
    assert "eval/toy-eval/pass@1" in text and "+1 / −1" in text
    assert "git <code>abc123</code>" in text and "<details" in text


def test_tokens_are_shaded_escaped_and_decision_points_outlined(full_page):
    _, text = full_page
    spans = re.findall(
        r'<span class="(tok(?: dp)?)" style="background:rgb\([^"]+" data-h="([0-9.]+)"', text
    )
    # p0's shortest correct rollout (6 tokens) and shortest wrong one (6 tokens).
    assert len(spans) == 12
    dp = [float(h) for cls, h in spans if cls == "tok dp"]
    assert dp and all(h > 1.5 for h in dp)
    assert all(float(h) <= 1.5 for cls, h in spans if cls == "tok")
    # The token text " <b>&" never reaches the page as markup.
    assert "<b>&" not in text.replace("<b>&amp;", "")


def test_before_after_marks_the_divergence(full_page):
    _, text = full_page
    assert "Newly solved by the adapter (1 of 1)" in text
    assert "Newly failed by the adapter (1 of 1)" in text
    assert "diverge at character 8" in text
    assert '3 + 4 = <mark class="div">8</mark>' in text
    assert '3 + 4 = <mark class="div">7</mark>' in text
    # The chat template is cut off the problem text (and escaped).
    assert '<pre class="problemtext">Question q0 &lt;&amp;&gt;</pre>' in text


def test_partial_run_dir_skips_missing_sections(tmp_path):
    run = tmp_path / "partial"
    run.mkdir()
    (run / "config.yaml").write_text("select: {min_pass: 0.0, max_pass: 1.0}\n")
    _jsonl(
        run / "train_log.jsonl",
        [
            {"step": 1, "train/loss": 1.0, "train/reward": 0.1},
            {"step": 10, "eval/toy/pass@1": 0.25},
            {"step": 20, "train/loss": 0.5, "train/reward": 0.3},
            {"step": 20, "eval/toy/pass@1": 0.5},
        ],
    )
    text = build_report(run, top5=False).read_text()
    for heading in SECTION_HEADINGS:
        assert f">{heading}</h2>" in text
    assert "No eval results" in text and "No manifest.json" in text
    assert "No rollouts with entropies" in text and "No analysis files" in text
    # GRPO-style periodic eval rows: plotted, and the last one headlines the page.
    assert (run / "report" / "train_eval.png").is_file()
    assert "eval/toy/pass@1" in text and "0.5" in text
    # A rebuilt report drops plots of sections that are gone.
    (run / "report" / "entropy_hist.png").write_bytes(b"stale")
    build_report(run, top5=False)
    assert not (run / "report" / "entropy_hist.png").exists()


def test_grpo_run_dir(tmp_path):
    run = tmp_path / "grpo"
    run.mkdir()
    (run / "config.yaml").write_text("model: {model: default}\ntrain: arith:level=2\nseed: 0\n")
    _jsonl(
        run / "train_log.jsonl",
        [
            {"step": 1, "loss": 0.1, "reward": 0.2, "kl": 0.0, "learning_rate": 1e-6},
            {"step": 2, "loss": 0.05, "reward": 0.4, "kl": 0.01, "learning_rate": 2e-6},
            {"step": 2, "eval/toy/pass@1": 0.3, "eval/toy/mean_tokens": 12.0},
        ],
    )
    final = {"step": 2, "benchmarks": {"toy": {"n": 10, "pass@1": 0.3, "pass@1_ci95": [0.1, 0.6]}}}
    _json(
        run / "manifest.json",
        {
            "kind": "grpo",
            "steps": 2,
            "trainable_params": 10,
            "total_params": 1000,
            "timing_s": {"train": 30.0, "eval": 5.0, "total": 40.0},
            "tokens": {"generated": 500, "eval_generated": 100},
            "final_eval": final,
            "seeds": {"train": 0},
            "config": {"train": "arith:level=2"},
        },
    )
    text = build_report(run, top5=False).read_text()
    assert "step 2" in text and "30.0%" in text  # final eval as the adapter column
    assert "time/train" in text and "tokens/generated" in text and "1.00%" in text
    pngs = {p.name for p in (run / "report").glob("*.png")}
    assert {"train_loss.png", "train_kl.png", "train_eval.png", "train_optim.png"} <= pngs


def test_sweep_variant_uses_the_sibling_base_eval(full_run):
    sweep = full_run.parent
    base = sweep / "eval-base-0123"
    (full_run / "eval" / "base").rename(base)
    (full_run / "manifest.json").unlink()
    cfg = {"model": {"model": "default"}, "prompt": {}, "eval": {"seed": 0}}
    for d in (base, full_run / "eval" / "adapter"):
        r = json.loads((d / "results.json").read_text())
        (d / "results.json").write_text(json.dumps({**r, "config": cfg}))
    text = build_report(full_run, top5=False, tokenizer=ToyTokenizer()).read_text()
    assert "eval-base-0123" in text
    assert "+1 / −1" in text  # recomputed from the two samples.jsonl files


def test_missing_run_dir_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="run dir not found"):
        build_report(tmp_path / "nope", top5=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="none of the run files"):
        build_report(tmp_path / "empty", top5=False)
    result = CliRunner().invoke(report_cmd, [str(tmp_path / "nope"), "--no-top5"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError)


def test_cli_prints_the_page_path(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    _json(run / "disagree.json", {"frac_unchanged": 0.9})
    result = CliRunner().invoke(report_cmd, [str(run), "--no-top5"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(run / "report.html")


def test_helpers():
    assert divergence("3 + 4 = 8", "3 + 4 = 7") == 8
    assert divergence("abc", "abc") == 3
    strip = template_stripper([CHAT.format(q="What is 1?"), CHAT.format(q="What is 22?")])
    assert strip(CHAT.format(q="What is 1?")) == "What is 1?"
    assert token_strings(None, [5, 6]) == ["⟨5⟩", "⟨6⟩"]
    html_ = render_tokens(["a", "\n"], [0.5, 2.0], [1], hmax=2.0, top5=[[("a", 0.9)], [("b", 0.5)]])
    assert html_.count('class="tok"') == 1 and html_.count('class="tok dp"') == 1
    assert 'data-h="2.0000"' in html_ and "base top-5" in html_ and "↵" in html_
    table = json_to_html(
        {"a": 1, "rows": [{"x": 1, "y": "z"}], "by": {"m": {"p": 1}, "n": {"p": 2}}}
    )
    assert table.count("<table") == 3


def test_gated_bins_follow_the_gate():
    edges = [0.0, 0.5, 1.0, 1.5, 2.0]
    # entropy gate: bins starting at or above τ = 1.0
    assert gated_bins(edges, 1.0, "entropy") == [False, False, True, True]
    assert gated_bins(edges, 1.0, None) == [False, False, True, True]
    # gate all marks every token whatever τ the top-frac setting produced
    assert gated_bins(edges, 1.0, "all") == [True] * 4
    # random / low pick tokens across bins: no threshold to shade
    assert gated_bins(edges, 1.0, "random") == [False] * 4
    assert gated_bins(edges, 1.0, "low") == [False] * 4
    assert gated_bins(edges, None, "entropy") == [False] * 4


def _write_examples(run: Path) -> None:
    """examples.jsonl and eval/divergences.jsonl as select and run write them for make_run."""
    rows = []
    for pair, (good, bad) in enumerate([(0, 1)]):
        for j in (good, bad):
            ids = [0, 1, 2, 3, 4, 8] if j == 0 else [0, 1, 2, 3, 5, 6, 7, 9, 5, 8]
            rows.append(
                {
                    "pair": pair,
                    "problem_id": "p0",
                    "rollout": j,
                    "reward": 1.0 if j == 0 else 0.0,
                    "advantage": 0.87 if j == 0 else -0.87,
                    "kept_correct": 2,
                    "kept_rollouts": 4,
                    "completion_ids": ids,
                    "entropy": [0.25 * (t + 1) for t in range(len(ids))],
                    "decision": [len(ids) - 1],
                    "prompt": CHAT.format(q="What is 3 + 4? (p0)"),
                    "tokens": [VOCAB[i] for i in ids],
                    "top5": [[[" 7", 0.875], [" 8", 0.0625]] for _ in ids],
                }
            )
    _jsonl(run / "examples.jsonl", rows)
    div = {
        "key": "k",
        "benchmark": "toy-eval",
        "id": "q0",
        "char": 8,
        "token": 8,
        "text": "8",
        "entropy": 1.75,
        "top5": [["8", 0.5], ["7", 0.25]],
    }
    _jsonl(run / "eval" / "divergences.jsonl", [div])


def test_rollouts_and_divergences_come_from_the_producers_files(full_run):
    _write_examples(full_run)
    text = build_report(full_run).read_text()  # no tokenizer: the token texts are recorded
    rollouts = text[text.index('<section id="rollouts">') : text.index('<section id="training">')]
    assert "No examples.jsonl" not in rollouts and "⟨" not in rollouts
    assert "top-5 next tokens." in rollouts
    spans = re.findall(r'<span class="(tok(?: dp)?)"[^>]* data-h="([0-9.]+)"', rollouts)
    assert len(spans) == 6 + 10  # the two rollouts examples.jsonl holds, every token
    assert [h for cls, h in spans if cls == "tok dp"] == ["1.5000", "2.5000"]  # the last ones
    assert "base top-5:\n   87.5%  &quot; 7&quot;\n    6.2%  &quot; 8&quot;" in rollouts
    assert "2/4 kept rollouts correct" in rollouts and "advantage -0.87" in rollouts
    examples = text[text.index('<section id="examples">') : text.index('<section id="analysis">')]
    assert "base H = 1.75 nats &gt; τ" in examples  # τ = 1.5 in selection.json
    assert "base top-5: &quot;8&quot; 50%, &quot;7&quot; 25%" in examples
    # --no-top5: the same rollouts, no top-5 anywhere.
    text = build_report(full_run, top5=False).read_text()
    assert "base top-5:" not in text and "top-5 next tokens." not in text


def test_a_two_round_page_shows_the_final_rounds_adapter(full_run):
    """With ``rounds`` in the manifest, the headline and the before/after examples are the last
    round's adapter (``round2/eval/adapter``, its divergences), against round 1's base eval."""
    _write_examples(full_run)  # round 1's divergences: q0 at character 8
    base = [json.loads(x) for x in (full_run / "eval/base/samples.jsonl").read_text().splitlines()]
    # Round 2 solves q0 and q1 (q1 as the base did), so nothing is newly failed: 3/3.
    r2 = [
        {**b, "completion": c, "extracted": c[-1], "correct": True}
        for b, c in zip(base, ["3 + 4 =  7", "2 + 2 = 4", "1"], strict=True)
    ]
    _jsonl(full_run / "round2/eval/adapter/samples.jsonl", r2)
    _json(
        full_run / "round2/eval/adapter/results.json",
        {"benchmarks": {"toy-eval": {"n": 3, "pass@1": 1.0, "pass@1_ci95": [0.44, 1.0]}}},
    )
    div = {"key": "k2", "benchmark": "toy-eval", "id": "q0", "char": 8, "token": 8,
           "text": "8", "entropy": 0.625, "top5": [["8", 0.75], [" ", 0.125]]}  # fmt: skip
    _jsonl(full_run / "round2/eval/divergences.jsonl", [div])
    manifest = json.loads((full_run / "manifest.json").read_text())
    one = manifest["comparison"]
    mc = {"gained": 1, "lost": 0, "n": 3, "p_value": 1.0}
    two = {"toy-eval": {**one["toy-eval"], "adapter_pass@1": 1.0, "pass@1_mcnemar": mc}}
    manifest["rounds"] = [
        {"round": 1, "dir": ".", "comparison": one},
        {"round": 2, "dir": "round2", "comparison": two},
    ]
    _json(full_run / "manifest.json", manifest)
    # Round 2 trained on stored π_ref log-probs: no KL in its log.
    _jsonl(full_run / "round2/train_log.jsonl",
           [{"step": s, "train/loss": 0.5 / s, "train/dec_logratio_pos": 0.02 * s,
             "train/kl_all": None} for s in (1, 2, 3)])  # fmt: skip
    _json(full_run / "round2/train.json", {"steps": 3, "reference": "stored"})

    text = build_report(full_run).read_text()
    train = text[text.index('<section id="training">') : text.index('<section id="examples">')]
    r1, r2 = train.split("<h3>Round 2</h3>")
    assert "<h3>Round 1</h3>" in r1 and "5 logged steps" in r1 and "stored reference" not in r1
    assert "3 logged steps" in r2 and "(stored reference): no position is KL-anchored" in r2
    pngs = {p.name for p in (full_run / "report").glob("train_*.png")}
    assert {"train_loss.png", "train_kl.png", "train_loss_round2.png"} <= pngs
    assert "train_logratio_round2.png" in pngs and "train_kl_round2.png" not in pngs
    head = text[text.index('<section id="headline">') : text.index('<section id="entropy">')]
    assert "round 2&#x27;s adapter (round2/adapter), the run&#x27;s final one" in head
    assert "+1 / −0" in head and "+1 / −1" not in head  # round 2's McNemar, not round 1's
    examples = text[text.index('<section id="examples">') : text.index('<section id="analysis">')]
    assert "round 2's adapter newly solves <b>1</b> and newly fails <b>0</b>" in examples
    assert "Newly solved by round 2's adapter (1 of 1)" in examples
    assert '3 + 4 = <mark class="div"> </mark><span class="after">7</span>' in examples
    assert "base H = 0.62 nats" in examples  # round 2's divergence row, not round 1's 1.75
    assert "1.75 nats" not in examples
    # A round whose eval is missing (a run stopped in round 2): round 1 stays on the page.
    (full_run / "round2/eval/adapter/results.json").unlink()
    text = build_report(full_run).read_text()
    assert "the run&#x27;s final one" not in text and "+1 / −1" in text


def test_old_run_dir_without_examples_says_so(full_run):
    text = build_report(full_run, tokenizer=ToyTokenizer()).read_text()
    rollouts = text[text.index('<section id="rollouts">') : text.index('<section id="training">')]
    assert "No examples.jsonl (select writes it;" in rollouts
    assert "base top-5:" not in text  # no hover top-5
    assert "No eval/divergences.jsonl" in text


def test_report_imports_no_torch_and_loads_no_model(full_run):
    """The report reads files only: building a full page leaves torch and transformers
    unimported (a fresh interpreter, so no other test's imports count)."""
    _write_examples(full_run)
    code = (
        "import sys\n"
        "import reasonmaxxer.report as r\n"
        f"r.build_report({str(full_run)!r})\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules)\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
    assert "base top-5:" in (full_run / "report.html").read_text()


def test_pass_counts_from_rollouts_alone(tmp_path):
    """Without sample.json or selection.json the report counts rollouts.jsonl itself: a row
    with no reward counts as wrong."""
    from reasonmaxxer.report.entropy import pass_counts
    from reasonmaxxer.report.rundir import RunDir

    rewards = {"a": [1, 0, 1, None], "b": [0, 0, 0, 0], "c": [1, 1, 1, 1]}
    rows = [
        {"problem_id": pid, **({} if r is None else {"reward": r})}
        for pid, rs in rewards.items()
        for r in rs
    ]
    _jsonl(tmp_path / "rollouts.jsonl", rows)
    assert pass_counts(RunDir(tmp_path)) == ([1, 0, 1, 0, 1], 4)  # b: 0, a: 2, c: 4 of 4
    assert pass_counts(RunDir(tmp_path / "empty")) == (None, None)
