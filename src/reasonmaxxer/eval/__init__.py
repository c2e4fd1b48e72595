"""Problems, grading and evaluation: what every stage reads and how an answer is scored.

:mod:`.problem` (one question with its reference answer) and :mod:`.data` (benchmark specs to
``list[Problem]``: bundled files in ``reasonmaxxer/data/benchmarks/``, JSONL, HF datasets, and
the seeded synthetic :mod:`.arith`); :mod:`.prompting` (a problem to the exact text the model
sees); :mod:`.answers` (extraction, normalisation) and :mod:`.verify_worker` /
:mod:`._mv_worker` (math-verify in a worker process under a deadline) behind :mod:`.grading`;
:mod:`.evaluation` (``reasonmaxxer eval``: pass@1 with CIs) and :mod:`.comparison` (paired
base-vs-adapter tests). This ``__init__`` imports nothing.
"""
