"""reasonmaxxer: RL-free reasoning improvement by entropy-gated contrastive LoRA.

The pipeline, one module per stage in the order data flows:
``data`` → ``sampling`` → ``grading`` → ``selection`` (entropy, decision points) →
``losses`` → ``training`` (its optimisation loop and resumable checkpoint: ``optim``) →
``evaluation`` → ``report``.
Grading is ``answers`` (extraction, normalisation) + ``verify_worker`` (math-verify under a
deadline) behind ``grading``. Beside the method: ``analysis/`` (the paper's §3 disagreement
and intervention runs), ``distill/`` (§4 KL-LoRA), ``grpo/`` (the TRL GRPO baseline) and
``scaleout/`` (Ray shards per stage, data-parallel training); each subpackage's
``__init__`` lists its modules. ``tests/test_architecture.py`` keeps the import graph acyclic.
"""

__version__ = "0.1.0"
