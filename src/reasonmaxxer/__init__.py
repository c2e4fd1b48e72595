"""reasonmaxxer: RL-free reasoning improvement by entropy-gated contrastive LoRA.

The pipeline, one module per stage in the order data flows:
``data`` → ``sampling`` → ``grading`` → ``selection`` (entropy, decision points) →
``losses`` → ``training`` → ``evaluation`` → ``report``.
"""

__version__ = "0.1.0"
