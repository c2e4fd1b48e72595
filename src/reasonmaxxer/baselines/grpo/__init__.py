"""``reasonmaxxer grpo``: the full-RL baseline, TRL's ``GRPOTrainer`` on equal terms.

Same model (``models.load_model``), same training problems (``SampleConfig.train``), same
prompts (``prompting.build_prompt``, handed to TRL as plain text so it applies no template of
its own), same reward (``grading.grade(...).correct`` -> 1.0 / 0.0) and the same LoRA shape
(``TrainConfig`` defaults) as ReasonMaxxer. GRPO itself is TRL's; this module only wires it up
and measures it:

* a greedy pass@1 on a fixed eval subset at step 0, every ``eval_every`` steps and at the end,
  run on the current policy (the PEFT model in eval mode) with :class:`HFGenerator`, logged
  with the training wall time so an accuracy-vs-wall-time curve exists;
* a time budget (``max_minutes``) checked after every optimizer step;
* time split into generation / reward / the rest of the rollout phase / optimisation, tokens
  generated and tokens through forward+backward, peak RSS.

Rollouts are sampled by TRL (``model.generate``; vLLM when installed and a GPU is there), or,
with ``rollout_generator: reasonmaxxer``, by the decode loop ReasonMaxxer's own sample stage
uses, so a wall-clock comparison need not be a comparison of generation loops. On CPU the run
uses bf16 autocast over fp32 weights (TRL's ``bf16`` + ``use_cpu``), as ``train`` does.

Outputs (``out/``): ``adapter/`` (PEFT safetensors), ``train_log.jsonl`` (one row per
optimizer step with ``train/<TRL metric>`` keys, plus one row per eval with
``eval/<bench>/pass@1``), ``eval_samples.jsonl`` (the final eval's generations),
``config.yaml`` (resolved) and ``manifest.json`` (written last).

Clock: ``wall_time_s`` everywhere is *training* time: seconds since the trainer started,
minus the time spent in our evaluations (which are measurement, not method). The time budget
uses the same clock and is checked at step ends, so the last step may run past it.

Modules: :mod:`.config` (the run config, file names), :mod:`.measure` (meter and clock),
:mod:`.reward` (the grader as TRL's reward, the LoRA shape), :mod:`.trainer` (the measured
``GRPOTrainer``, ReasonMaxxer's rollout sampler), :mod:`.policy_eval` (greedy pass@1 of the
current policy) and :mod:`.run` (TRL's arguments, the run, the manifest).
"""

from .config import (
    ADAPTER,
    CONFIG,
    EVAL_SAMPLES,
    LOSS_TYPES,
    MANIFEST,
    TRAIN_LOG,
    GRPORunConfig,
    build_grpo_config,
    grpo_defaults,
)
from .measure import Clock, Meter
from .policy_eval import PolicyEval
from .reward import make_reward
from .run import RunState, grpo_manifest, run_grpo, trl_arguments
from .trainer import RolloutDecoder, trainer_class

__all__ = [
    "ADAPTER",
    "CONFIG",
    "EVAL_SAMPLES",
    "LOSS_TYPES",
    "MANIFEST",
    "TRAIN_LOG",
    "Clock",
    "GRPORunConfig",
    "Meter",
    "PolicyEval",
    "RolloutDecoder",
    "RunState",
    "build_grpo_config",
    "grpo_defaults",
    "grpo_manifest",
    "make_reward",
    "run_grpo",
    "trainer_class",
    "trl_arguments",
]
