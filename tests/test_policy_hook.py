"""The intervention decoder as a hook on the project's one decode loop.

``policy_decode`` runs :func:`reasonmaxxer.decoding.decode_stream` with a
:class:`~reasonmaxxer.analysis.PolicyStep` hook that decodes the teacher beside the base. These
tests pin what it produced before the two loops became one (so a change to the loop that moves
any token or entropy fails here), check stop strings against the loop without them, and check
that a companion network is stepped, dropped and refilled exactly like the model.
"""

from __future__ import annotations

import pytest
import torch
from conftest import build_model, build_tokenizer

from reasonmaxxer.analysis import ModelPair, Policy, policy_decode
from reasonmaxxer.decoding import SamplingParams, StepHook, decode_stream

PROMPTS = ["3 + 4 =", "Hi", "Tom has 2 apples."]

# Recorded with the analysis' own decode loop (commit e167a43, before it became a hook):
# policy -> per prompt (token ids, touched steps, base entropies in nats to 6 decimals).
PINNED = {
    "base": [
        ([33, 76, 42, 33, 76, 97, 42, 82], [],
         [3.793438, 3.426235, 3.83482, 3.956677, 3.782769, 3.894211, 3.924561, 4.178158]),
        ([43, 80, 80, 80, 80, 80, 80, 80], [],
         [3.944145, 3.966122, 3.639872, 3.82691, 3.877304, 3.870759, 3.815308, 3.818834]),
        ([30, 96, 56, 0, 68, 26, 30, 96], [],
         [3.688073, 4.00292, 3.962017, 3.885384, 3.932435, 3.855943, 3.766974, 4.062957]),
    ],
    "oracle": [
        ([39, 26, 1, 15, 19, 60, 34, 39], list(range(8)),
         [3.793438, 3.901174, 3.903976, 3.697691, 3.952648, 3.299245, 3.581239, 3.619853]),
        ([20, 54, 36, 15, 25, 17, 94, 17], list(range(8)),
         [3.944145, 4.109842, 3.639462, 3.981684, 4.041014, 4.051525, 4.011561, 4.101564]),
        ([86, 90, 24, 1, 53, 35, 24, 1], list(range(8)),
         [3.688073, 4.1079, 3.86892, 4.106756, 4.019662, 4.077592, 4.075381, 4.098049]),
    ],
    "entropy": [  # tau = 3.5: row 0's step 5 (3.30 nats) keeps the base token
        ([39, 26, 1, 15, 19, 76, 39, 26], [0, 1, 2, 3, 4, 6, 7],
         [3.793438, 3.901174, 3.903976, 3.697691, 3.952648, 3.299245, 3.962054, 3.947517]),
        ([20, 54, 36, 15, 25, 17, 94, 17], list(range(8)),
         [3.944145, 4.109842, 3.639462, 3.981684, 4.041014, 4.051525, 4.011561, 4.101564]),
        ([86, 90, 24, 1, 53, 35, 24, 1], list(range(8)),
         [3.688073, 4.1079, 3.86892, 4.106756, 4.019662, 4.077592, 4.075381, 4.098049]),
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def pair():
    tok = build_tokenizer()
    return ModelPair(build_model(tok, seed=0).eval(), build_model(tok, seed=5).eval(), tok)


def _ids(pair, prompts=PROMPTS):
    return [pair.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


@pytest.mark.parametrize("kind", ["base", "oracle", "entropy"])
def test_policy_decode_reproduces_the_pinned_rows(pair, kind):
    policy = Policy(kind, tau=3.5 if kind == "entropy" else None)
    rows = policy_decode(pair, _ids(pair), policy, max_new_tokens=8, batch_size=2)
    for row, (tokens, touched, entropy) in zip(rows, PINNED[kind], strict=True):
        assert row["token_ids"] == tokens
        assert row["touched"] == touched
        assert row["entropy"] == pytest.approx(entropy, abs=2e-6)


def test_stop_strings_end_rows_where_their_text_first_holds_one(pair):
    ids = _ids(pair)
    free = policy_decode(pair, ids, Policy("oracle"), max_new_tokens=12, eos_ids=[])
    # a stop string taken from the middle of row 1's text, so at least that row stops early
    decode = lambda ids: pair.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    stop = decode(free[1]["token_ids"])[3:5]
    stopped = policy_decode(pair, ids, Policy("oracle"), max_new_tokens=12, eos_ids=[], stop=[stop])
    for f, s in zip(free, stopped, strict=True):
        cut = next(
            (t + 1 for t in range(12) if stop in decode(f["token_ids"][: t + 1])),
            12,
        )
        assert s["token_ids"] == f["token_ids"][:cut]
        assert s["touched"] == [t for t in f["touched"] if t < cut]
        # rows leave the batch at other steps, so with 2 threads a matmul may round differently
        assert s["entropy"] == pytest.approx(f["entropy"][:cut], rel=1e-6, abs=1e-6)
    assert len(stopped[1]["token_ids"]) < 12


class Twin(StepHook):
    """Decodes greedily with the model as its own companion, recording both logits."""

    def __init__(self, model):
        self.companions = (model,)
        self.max_gap = 0.0
        self.seen = 0

    def pick(self, logits, rows, steps):
        self.max_gap = max(self.max_gap, float((logits[0] - logits[1]).abs().max()))
        self.seen += len(rows)
        return logits[1].argmax(-1)


def test_a_companion_is_stepped_dropped_and_refilled_like_the_model(pair):
    model, tok = pair.base, pair.tokenizer
    prompts = sorted(_ids(pair, [*PROMPTS, "12 - 5 =", "Compute 7*8 please.", "a"]), key=len)
    prompts.reverse()

    def run(eos, hook=None):
        with torch.inference_mode():
            return decode_stream(
                model, prompts, tok.pad_token_id, SamplingParams(10), eos, None,
                batch_size=2, hook=hook,
            )  # fmt: skip

    end = run([-1])[0][2]  # the first row ends at its third token, and its slot is refilled
    plain, twin = run([end]), Twin(model)
    assert run([end], twin) == plain
    assert twin.max_gap == 0.0 and twin.seen == sum(len(r) for r in plain)
    assert len(plain[0]) <= 3
