"""reasonmaxxer: RL-free reasoning improvement by entropy-gated contrastive LoRA.

Where things live (each subpackage's ``__init__`` lists its modules):

- ``method/``: the method, one module per stage: ``sampling`` → ``selection`` → ``losses`` →
  ``training``; ``pipeline`` (``run``), ``rounds``, ``checkpoints``, ``examples``, ``memory``.
- ``eval/``: problems and scoring: ``data``, ``arith``, ``prompting``, ``grading`` (with
  ``answers`` and the math-verify worker), ``evaluation``, ``comparison``.
- ``analysis/``: the paper's §3 disagreement and intervention runs; ``analysis/distill/`` §4.
- ``baselines/grpo/``: TRL's GRPO on equal terms. ``scaleout/``: Ray shards, data parallel.
- ``report/``: reads a run folder and writes ``report.html``; it loads no model.
- ``cli/``: the ``reasonmaxxer`` command, flags generated from the config dataclasses;
  ``launcher`` is its console script (the CPU allocator switch, ``allocator``).
- The core, shared by all of them: ``config`` (``resolve``) with ``blocks`` and ``fields``,
  ``engine`` (padding, teacher-forced logits), ``decoding`` (the one decode loop),
  ``generation`` (HF and vLLM backends), ``models``, ``devices``, ``optim`` (the resumable
  optimisation loop), ``io`` (atomic writes), ``errors``, ``runinfo``, ``tracking``, ``stats``.

``tests/test_architecture.py`` keeps the import graph acyclic.
"""

__version__ = "0.1.0"
