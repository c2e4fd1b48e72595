"""The ReasonMaxxer method (METHOD.md): one module per stage, in the order data flows.

:mod:`.sampling` (K rollouts per training problem from the frozen base) →
:mod:`.selection` (edge-of-competence problems, base entropies, decision points) →
:mod:`.losses` (the pure token-level numerics and the bounded contrastive loss) →
:mod:`.training` (the entropy-gated contrastive LoRA update) → evaluation
(:mod:`reasonmaxxer.eval.evaluation`). :mod:`.pipeline` chains them for ``reasonmaxxer run``,
:mod:`.rounds` iterates them (semi-online), :mod:`.checkpoints` picks a checkpoint on a
dev split (the authors' recipe), :mod:`.examples` writes the token-level examples the report
shows, and :mod:`.memory` checks that a batch fits before the first forward pass. This
``__init__`` imports nothing, so importing one stage does not load the others.
"""
