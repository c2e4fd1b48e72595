"""The paper's §3 analysis on any base/teacher pair: where the teacher disagrees, and whether
those few disagreements carry its whole accuracy gain.

The *teacher* is an RL-trained model (``--teacher MODEL``), or the base plus a trained adapter
(``--teacher-adapter DIR``, e.g. from ``reasonmaxxer train``/``run``), or both (a teacher
model plus an adapter on it). When the teacher is the base plus an adapter, one copy of the
weights is loaded and the base is the same network inside PEFT's ``disable_adapter()``.

``analyze disagree`` (§3.1, Table 2, Fig. 1)
    Teacher-force the base model's greedy rollouts through both models and classify every
    generated position: *unchanged* (teacher top-1 == base top-1), *reranked* (teacher top-1
    within the base top-5) or *shifted* (outside it). Reports per-class fractions, the mean
    base rank of the teacher's token, the mean base entropy per class, and how well the
    top-x% base-entropy positions find the reranked ones (precision/recall of the gate).

``analyze intervene`` (§3.2–3.3, Fig. 2)
    Greedy decoding from the base under token-substitution policies, on the project's decode
    loop with a per-step hook that runs the teacher beside the base (each with its own KV
    cache), batched over problems with per-row decisions: ``base`` (no substitution), ``teacher`` (the teacher's own greedy decoding),
    ``oracle`` (the teacher's top-1 wherever the two top-1s differ), ``random`` (at as many
    steps as the oracle changed on that problem, a token drawn uniformly from the base top-20
    without the base top-1; several seeds) and ``entropy`` (the teacher's top-1 wherever the
    base entropy exceeds τ; τ in nats, or a quantile of the base's own entropies).

Everything here is deterministic given the settings. Outputs go to ``OUT/``: ``disagree.json``
/ ``intervene.json`` (a ``table`` of row dicts, a ``summary`` dict, the resolved config, the
model identities and provenance), per-problem JSONL, ``config.yaml`` and ``plots/*.png``.

Modules, in the order data flows: :mod:`.config` (the three configs), :mod:`.pair` (the model
pair, problems, prompts, teacher-forced logits), :mod:`.metrics` (pure statistics and
tables), :mod:`.policy` (the substitution policies and their decode hook), :mod:`.disagree` and
:mod:`.intervene` (the two runners), :mod:`.outputs` (records and plots). :mod:`.distill` is
the paper's §4 (KL-LoRA distillation of a teacher into a LoRA on the base; ``reasonmaxxer
distill``); it reuses the pair and outputs modules and is not imported here.
"""

from .config import AnalysisConfig, DisagreeConfig, InterveneConfig, parse_floats
from .disagree import run_disagree
from .intervene import run_intervene
from .metrics import (
    CLASSES,
    RERANKED,
    SHIFTED,
    UNCHANGED,
    auroc,
    base_rank,
    classify_positions,
    disagreement_summary,
    entropy_gate_overlap,
)
from .outputs import plot_disagree, plot_intervene, save_figure, write_record
from .pair import ModelPair, forced_logits, load_pair, pair_logits
from .policy import Policy, PolicyStep, policy_decode, random_plan

__all__ = [
    "CLASSES",
    "RERANKED",
    "SHIFTED",
    "UNCHANGED",
    "AnalysisConfig",
    "DisagreeConfig",
    "InterveneConfig",
    "ModelPair",
    "Policy",
    "PolicyStep",
    "auroc",
    "base_rank",
    "classify_positions",
    "disagreement_summary",
    "entropy_gate_overlap",
    "forced_logits",
    "load_pair",
    "pair_logits",
    "parse_floats",
    "plot_disagree",
    "plot_intervene",
    "policy_decode",
    "random_plan",
    "run_disagree",
    "run_intervene",
    "save_figure",
    "write_record",
]
