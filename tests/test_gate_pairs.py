"""benchmarks/gate_pairs.py: each entropy gate against its random twin, by hand on four
problems."""

import json
import subprocess
import sys

from conftest import BENCHMARKS


def _arm(folder, frac, correct, gate="entropy", tau=1.4):
    (folder / "eval" / "adapter").mkdir(parents=True)
    (folder / "selection.json").write_text(
        json.dumps({"gate": gate, "frac_marked": frac, "tau": tau})
    )
    rows = [
        {"benchmark": "b", "id": str(i), "sample": "greedy", "correct": c}
        for i, c in enumerate(correct)
    ]
    (folder / "eval" / "adapter" / "samples.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    return str(folder)


def _run(*args):
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "gate_pairs.py"), *map(str, args)],
        capture_output=True,
        text=True,
    )


def test_pairs_by_hand(tmp_path):
    e = _arm(tmp_path / "e", 0.408, [1, 1, 1, 0])
    r = _arm(tmp_path / "r", 0.41, [1, 0, 0, 1], gate="random", tau=None)
    everything = _arm(tmp_path / "all", 1.0, [1, 1, 1, 1], gate="all", tau=3.0)
    out = tmp_path / "pairs.json"
    proc = _run("--out", out, "--single", "all tokens", everything, "--pair", "τ 1.4", e, r)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["label"] for row in rows] == ["τ 1.4", "all tokens"]  # by marked share
    test = rows[0]["entropy_vs_random"]
    # against the random arm, the entropy arm gains problems 1 and 2 and loses problem 3:
    # p = P(Bin(3, 1/2) <= 1) * 2 = 1
    assert (test["gained"], test["lost"], test["p_value"]) == (2, 1, 1.0)
    assert (rows[0]["entropy"]["pass@1"], rows[0]["random"]["pass@1"]) == (0.75, 0.5)
    md = out.with_suffix(".md").read_text()
    assert "| τ 1.4 | 1.40 | 40.8% | 75.0% | 50.0% (41.0%) | +2/−1, p 1 |" in md
    assert "| all tokens | - | 100.0% | 100.0% | - | - |" in md  # no τ for gate all


def test_arms_on_other_problems_are_one_error_line(tmp_path):
    e = _arm(tmp_path / "e", 0.4, [1, 0, 1])
    r = _arm(tmp_path / "r", 0.4, [1, 0], gate="random")
    proc = _run("--out", tmp_path / "p.json", "--pair", "x", e, r)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {e} and {r} were evaluated on other problems"
    ]
    proc = _run("--out", tmp_path / "p.json", "--single", "x", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path} has no selection.json (not a run folder)"
    ]
    assert not (tmp_path / "p.json").exists()
