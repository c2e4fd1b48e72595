"""``reasonmaxxer distill``: KL-LoRA distillation of a teacher into a LoRA on the base (§4).

1. The teacher (``--teacher MODEL`` and/or ``--teacher-adapter DIR``, as in ``analyze``)
   generates its own rollouts on N training problems (default 100, drawn with a seed; greedy
   by default, ``--temperature`` > 0 samples).
2. Teacher-forcing those rollouts through the teacher, its top-k log-probabilities (k = 64 by
   default) at every completion position are cached in ``OUT/teacher_cache/``:
   ``topk.safetensors`` (``ids`` int32 ``[P, k]``, ``logprobs`` float32/float16 ``[P, k]``,
   P = all completion positions, concatenated), ``index.jsonl`` (one row per rollout: ids,
   text, verdict, ``offset``/``length`` into the tensors) and ``meta.json`` (the settings that
   made it; a re-run with the same settings reuses the cache). No pickle anywhere.
3. A fresh LoRA on the base (rank-32 QKVO by default; ``--lora-r 8 --lora-targets o_proj``
   for the small variant) is trained to minimise ``KL(teacher ‖ student)`` on the top-k ids
   plus one tail bucket (:func:`reasonmaxxer.method.losses.topk_tail_kl`), averaged over completion
   tokens, with bf16 autocast as in ``reasonmaxxer train``.
4. Greedy pass@1 of the student (base + new adapter), the teacher and the base on the eval
   benchmarks, each through :func:`reasonmaxxer.eval.evaluation.evaluate` (``OUT/eval_*``).

Writes ``distill.json`` (``table`` + ``summary``), ``distill_log.jsonl``, ``adapter/``,
``config.yaml`` and ``plots/distill_*.png``. The defaults for the learning rate and the number
of epochs are not the paper's (it gives none); measure them for a new pair.

Modules: :mod:`.config` (the config, file names), :mod:`.cache` (teacher rollouts and the
top-k cache), :mod:`.student` (the KL loss step and the student's training), :mod:`.run` (the
evaluations, tables and the record) and :mod:`.plots`.
"""

from .cache import build_cache, cache_key, choose_problems, ensure_cache, load_cache
from .config import (
    ADAPTER,
    CACHE,
    CHECKPOINT,
    INDEX_FILE,
    META_FILE,
    NOT_TRAINING,
    TOPK_FILE,
    DistillConfig,
)
from .plots import plot_distill
from .run import distill_table, eval_comparison, evaluate_model, greedy_correct, run_distill
from .student import distill_step, teacher_targets, train_student

__all__ = [
    "ADAPTER",
    "CACHE",
    "CHECKPOINT",
    "INDEX_FILE",
    "META_FILE",
    "NOT_TRAINING",
    "TOPK_FILE",
    "DistillConfig",
    "build_cache",
    "cache_key",
    "choose_problems",
    "distill_step",
    "distill_table",
    "ensure_cache",
    "eval_comparison",
    "evaluate_model",
    "greedy_correct",
    "load_cache",
    "plot_distill",
    "run_distill",
    "teacher_targets",
    "train_student",
]
