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
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (
    EvalConfig,
    ModelConfig,
    PromptConfig,
    SampleConfig,
    TrainConfig,
    build_run_config,
    check_fields,
    dump_yaml,
    from_dict,
    load_yaml,
    merge,
    to_dict,
)
from .errors import UserError
from .fields import check as _check
from .fields import help_field as _f

ADAPTER = "adapter"
TRAIN_LOG = "train_log.jsonl"
EVAL_SAMPLES = "eval_samples.jsonl"
MANIFEST = "manifest.json"
CONFIG = "config.yaml"

_SAMPLE, _TRAIN, _EVAL = SampleConfig(), TrainConfig(), EvalConfig()
LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")


@dataclass
class GRPORunConfig:
    """One GRPO baseline run. ``model`` and ``prompt`` default to the pipeline's own config
    (packaged ``default.yaml``); the rest mirrors ReasonMaxxer's defaults where one exists."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: str = _f(_SAMPLE.train, "training problems: benchmark name, JSONL path or arith spec")
    limit: int | None = _f(None, "use only the first N training problems")
    num_generations: int = _f(8, "completions per prompt (the GRPO group size)")
    batch_size: int = _f(
        16,
        "completions per forward/backward micro-batch (TRL per_device_train_batch_size); "
        "batch-size x grad-accum completions, a multiple of num-generations, make one step",
    )
    grad_accum: int = _f(1, "micro-batches per optimizer step (one generation round per step)")
    max_steps: int = _f(200, "optimizer steps (the time budget may stop earlier)")
    max_minutes: float | None = _f(
        None, "training time budget in minutes (evals excluded); stop cleanly at the next step end"
    )
    lr: float = _f(
        5e-5,
        "AdamW learning rate for the LoRA weights (constant after warm-up; LoRA needs ~10-50x "
        "the 1e-6 full-fine-tuning GRPO default)",
    )
    warmup_steps: int = _f(_TRAIN.warmup_steps, "linear learning-rate warm-up steps")
    beta: float = _f(
        0.04, "KL coefficient to the base model (DeepSeekMath GRPO; TRL's default 0 skips the KL)"
    )
    loss_type: str = _f("dapo", "TRL loss aggregation (TRL default: dapo)", LOSS_TYPES)
    max_completion_length: int = _f(_SAMPLE.max_new_tokens, "rollout length limit in tokens")
    temperature: float = _f(_SAMPLE.temperature, "rollout sampling temperature (> 0)")
    top_p: float = _f(_SAMPLE.top_p, "rollout nucleus sampling")
    rollout_generator: str = _f(
        "trl",
        "who samples the rollouts on the HF backend: TRL's model.generate (the stock baseline) or "
        "ReasonMaxxer's decode loop (the one its sample stage uses; same distribution, drops "
        "finished rows), for a like-for-like wall-clock comparison",
        ("trl", "reasonmaxxer"),
    )
    autocast: str = _f(
        _TRAIN.autocast,
        "mixed precision for training and eval (bf16 autocast, fp32 weights; auto: where native)",
        ("auto", "bfloat16", "off"),
    )
    gradient_checkpointing: bool = _f(
        False, "trade compute for memory (TRL turns it on by default; off is faster)"
    )
    eval_benchmarks: str = _f(_EVAL.benchmarks, "benchmarks for the periodic greedy pass@1")
    eval_limit: int | None = _f(100, "evaluate on the first N problems of each benchmark")
    eval_every: int = _f(10, "evaluate every N optimizer steps (0: only at step 0 and the end)")
    eval_max_new_tokens: int = _f(_EVAL.max_new_tokens, "eval generation length limit")
    eval_batch_size: int = _f(_EVAL.batch_size, "eval sequences generated together")
    grader_timeout: float = _f(_SAMPLE.grader_timeout, "seconds per answer comparison")
    lora_r: int = _f(_TRAIN.lora_r, "LoRA rank")
    lora_alpha: int = _f(_TRAIN.lora_alpha, "LoRA alpha")
    lora_dropout: float = _f(_TRAIN.lora_dropout, "LoRA dropout")
    lora_targets: str = _f(_TRAIN.lora_targets, "comma list of module names to adapt")
    seed: int = _f(_TRAIN.seed, "seed (adapter init, prompt order, sampling)")

    def __post_init__(self) -> None:
        check_fields(self)
        from .devices import resolve_precision

        self.autocast = resolve_precision(self.autocast, self.model.device, fallback="off")
        self.model.gen_dtype = resolve_precision(
            self.model.gen_dtype, self.model.device, fallback="float32"
        )
        _check(self.limit is None or self.limit >= 1, "--limit must be >= 1")
        _check(self.num_generations >= 2, "--num-generations must be >= 2 (GRPO compares a group)")
        _check(
            self.batch_size >= 1 and self.grad_accum >= 1,
            "--batch-size and --grad-accum must be >= 1",
        )
        _check(
            (self.batch_size * self.grad_accum) % self.num_generations == 0,
            f"--batch-size x --grad-accum ({self.batch_size} x {self.grad_accum}) must be a multiple "
            f"of --num-generations ({self.num_generations}): a step holds whole groups",
        )
        _check(self.max_steps >= 1, "--max-steps must be >= 1")
        _check(self.max_minutes is None or self.max_minutes > 0, "--max-minutes must be > 0")
        _check(self.lr > 0, "--lr must be > 0")
        _check(self.warmup_steps >= 0, "--warmup-steps must be >= 0")
        _check(self.beta >= 0, "--beta must be >= 0")
        _check(self.max_completion_length >= 1, "--max-completion-length must be >= 1")
        _check(self.temperature > 0, "--temperature must be > 0")
        _check(0 < self.top_p <= 1, "--top-p must be in (0, 1]")
        _check(self.eval_limit is None or self.eval_limit >= 1, "--eval-limit must be >= 1")
        _check(self.eval_every >= 0, "--eval-every must be >= 0")
        _check(self.eval_max_new_tokens >= 1, "--eval-max-new-tokens must be >= 1")
        _check(self.eval_batch_size >= 1, "--eval-batch-size must be >= 1")
        _check(self.grader_timeout > 0, "--grader-timeout must be > 0")
        _check(self.lora_r >= 1, "--lora-r must be >= 1")
        _check(0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)")
        _check(bool(self.lora_targets.strip()), "--lora-targets must name at least one module")

    @property
    def prompts_per_step(self) -> int:
        return self.batch_size * self.grad_accum // self.num_generations


def build_grpo_config(user_yaml: str | None = None, overrides: dict | None = None) -> GRPORunConfig:
    """Defaults <- YAML <- flags. The defaults take the model, prompt, training problems and
    the rollout sampling (temperature, top-p, length, group size K) from the packaged pipeline
    config, so GRPO and ReasonMaxxer sample the same way unless a flag says otherwise."""
    run = build_run_config()
    s = run.sample
    data = to_dict(
        GRPORunConfig(
            model=run.model,
            prompt=run.prompt,
            train=s.train,
            num_generations=s.k,
            temperature=s.temperature,
            top_p=s.top_p,
            max_completion_length=s.max_new_tokens,
        )
    )
    if user_yaml:
        data = merge(data, load_yaml(user_yaml))
    data = merge(data, overrides or {})
    return from_dict(GRPORunConfig, data)


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass
class Meter:
    """What the trainer subclass measures. Seconds are wall clock, summed over calls."""

    generation_s: float = 0.0  # sampling the completions (TRL's _generate_single_turn)
    reward_s: float = 0.0  # grading them (TRL's _calculate_rewards)
    rollout_s: float = 0.0  # the whole rollout phase (_generate_and_score_completions):
    # generation + reward + reference/old log-prob forward passes + advantages
    generation_calls: int = 0
    sequences_generated: int = 0
    tokens_generated: int = 0
    prompt_tokens_generated_from: int = 0
    fb_tokens: int = 0  # prompt + completion tokens through the policy forward+backward
    fb_tokens_padded: int = 0  # the same with padding (what the kernels actually ran)
    graded: int = 0  # completions graded by the reward function
    grader_timeouts: int = 0  # of those, comparisons the grader could not finish (reward 0.0)
    measured: dict = field(default_factory=dict)  # hook name -> whether TRL still has it


class Clock:
    """Training wall time: since ``begin()``, minus the seconds spent in evaluations."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.eval_s = 0.0

    def begin(self) -> None:
        if self.start is None:
            self.start = time.perf_counter()

    def train_s(self) -> float:
        return 0.0 if self.start is None else time.perf_counter() - self.start - self.eval_s


def _clean(v: Any) -> Any:
    """JSON-safe scalar: NaN/inf -> None, tensors/numpy -> Python numbers."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# --------------------------------------------------------------------------------------------
# Reward and data
# --------------------------------------------------------------------------------------------


def make_reward(stop: list[str], timeout_s: float, meter: Meter | None = None):
    """TRL reward function: 1.0 when our grader accepts the completion, else 0.0.

    Plain-format prompts cut the text at the stop strings first, as :class:`HFGenerator` does
    (TRL's HF generation has no stop strings). The name shows up in TRL's metrics as
    ``rewards/correct/mean``. A grader time-out gives 0.0 and is counted in ``meter``
    (``grader_timeouts``, next to ``graded``), which the train log and the manifest report.
    """
    from .grading import grade

    def correct(completions: list[str], answer: list[str], **_: Any) -> list[float]:
        out = []
        for text, ref in zip(completions, answer, strict=True):
            for s in stop:
                if s in text:
                    text = text[: text.index(s)]
            g = grade(text, ref, timeout_s=timeout_s)
            out.append(1.0 if g.correct else 0.0)
            if meter is not None:
                meter.graded += 1
                meter.grader_timeouts += int(g.timed_out)
        return out

    return correct


def lora_config(model, cfg: GRPORunConfig):
    """The same LoRA shape as ReasonMaxxer's (``training.lora_config``)."""
    from .training import lora_config as make

    return make(
        model,
        r=cfg.lora_r,
        alpha=cfg.lora_alpha,
        dropout=cfg.lora_dropout,
        targets=cfg.lora_targets,
    )


_HOOKS = (
    "_tokenize_prompts",
    "_generate_single_turn",
    "_calculate_rewards",
    "_generate_and_score_completions",
    "compute_loss",
    "create_scheduler",
)


def trainer_class():
    """``GRPOTrainer`` plus timers and token counters around a few of its (private) methods.

    Nothing of GRPO is changed except two things: plain-text prompts are tokenized with
    ``add_special_tokens=False`` (TRL adds them, which would put a second BOS in front of a
    chat-templated prompt on tokenizers that add one; our generator does not add them either),
    and the learning-rate schedule is ReasonMaxxer's (see ``create_scheduler``).
    A hook TRL no longer has is simply never called; ``Meter.measured`` records which exist.
    """
    try:
        from trl import GRPOTrainer
    except ImportError:
        raise UserError("`reasonmaxxer grpo` needs TRL: pip install 'reasonmaxxer[grpo]'") from None

    class MeasuredGRPOTrainer(GRPOTrainer):
        meter: Meter

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            """ReasonMaxxer's schedule (``training.lr_at``): step k (0-based) runs at
            ``lr * min(1, (k + 1) / warmup)``. HF's ``constant_with_warmup`` would run step 0 at
            lr 0, wasting the first rollout."""
            import torch

            if self.lr_scheduler is None:
                warmup = max(int(self.args.warmup_steps), 1)
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer if optimizer is not None else self.optimizer,
                    lambda step: min(1.0, (step + 1) / warmup),
                )
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def _tokenize_prompts(self, prompts):
            if prompts and isinstance(prompts[0], str):
                ids = self.processing_class(text=prompts, add_special_tokens=False)["input_ids"]
                return ids, None, {}
            return super()._tokenize_prompts(prompts)

        rollout = None  # set to a RolloutDecoder to sample with ReasonMaxxer's decode loop

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            start = time.perf_counter()
            if self.rollout is not None and not self.use_vllm:
                out = (self.rollout(self.model, prompt_ids), None)  # (completion ids, logprobs)
            else:
                out = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            m = self.meter
            m.generation_s += time.perf_counter() - start
            m.generation_calls += 1
            m.sequences_generated += len(out[0])
            m.tokens_generated += sum(len(c) for c in out[0])
            m.prompt_tokens_generated_from += sum(len(p) for p in prompt_ids)
            return out

        def _calculate_rewards(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return super()._calculate_rewards(*args, **kwargs)
            finally:
                self.meter.reward_s += time.perf_counter() - start

        def _generate_and_score_completions(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return super()._generate_and_score_completions(*args, **kwargs)
            finally:
                self.meter.rollout_s += time.perf_counter() - start

        def compute_loss(self, model, inputs, *args, **kwargs):
            if "prompt_mask" in inputs and "completion_mask" in inputs:
                m = self.meter
                m.fb_tokens += int(inputs["prompt_mask"].sum()) + int(
                    inputs["completion_mask"].sum()
                )
                m.fb_tokens_padded += (
                    inputs["prompt_mask"].numel() + inputs["completion_mask"].numel()
                )
            return super().compute_loss(model, inputs, *args, **kwargs)

    return MeasuredGRPOTrainer


class RolloutDecoder:
    """Sample one completion per (already repeated) prompt with :func:`generation.decode`.

    Returns token ids up to and including the first end-of-sequence token, as TRL's own HF path
    does after masking. The model runs in eval mode (no dropout, no checkpointing) under the
    run's autocast; each call draws from its own seeded generator.
    """

    def __init__(self, cfg: GRPORunConfig, pad_id: int, eos_ids: list[int]):
        self.cfg = cfg
        self.pad_id = pad_id
        self.eos_ids = list(eos_ids)
        self.calls = 0

    def __call__(self, model, prompt_ids: list[list[int]]) -> list[list[int]]:
        import torch

        from .devices import autocast
        from .generation import SamplingParams, decode

        cfg = self.cfg
        device = model.device
        width = max(len(p) for p in prompt_ids)
        ids = torch.full((len(prompt_ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for r, p in enumerate(prompt_ids):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + self.calls)
        self.calls += 1
        params = SamplingParams(cfg.max_completion_length, cfg.temperature, cfg.top_p)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), autocast(model, enabled=cfg.autocast == "bfloat16"):
                new = decode(model, ids.to(device), mask.to(device), params, self.eos_ids, gen)
        finally:
            model.train(was_training)
        out = []
        for row in new:
            cut = next((i + 1 for i, t in enumerate(row) if t in self.eos_ids), len(row))
            out.append(list(row[:cut]))
        return out


# --------------------------------------------------------------------------------------------
# Evaluation of the current policy
# --------------------------------------------------------------------------------------------


class PolicyEval:
    """Greedy pass@1 of the current policy on a fixed subset, with the eval stage's machinery."""

    def __init__(self, tokenizer, cfg: GRPORunConfig, stop: list[str], benches=None):
        from .data import load_benchmarks
        from .prompting import build_prompt

        self.cfg = cfg
        self.tokenizer = tokenizer
        self.stop = stop
        if benches is None:
            benches = load_benchmarks(cfg.eval_benchmarks, limit=cfg.eval_limit)
        self.benches = benches
        self.prompts = {
            name: [build_prompt(tokenizer, p.problem, cfg.prompt) for p in problems]
            for name, problems in self.benches.items()
        }
        self.tokens = 0
        self.seconds = 0.0

    def __call__(self, model, step: int) -> tuple[dict, dict, list[dict]]:
        """(flat metrics, per-benchmark summaries, sample rows); restores the train/eval mode."""
        import torch

        from .devices import autocast
        from .evaluation import score_completions, summarize
        from .generation import HFGenerator, SamplingParams

        start = time.perf_counter()
        was_training = model.training
        model.eval()
        gen = HFGenerator(
            model, self.tokenizer, batch_size=self.cfg.eval_batch_size, stop=self.stop
        )
        metrics: dict[str, Any] = {}
        results: dict[str, dict] = {}
        samples: list[dict] = []
        try:
            with torch.no_grad(), autocast(model, enabled=self.cfg.autocast == "bfloat16"):
                for name, problems in self.benches.items():
                    comps = gen.generate(
                        self.prompts[name],
                        SamplingParams(self.cfg.eval_max_new_tokens, temperature=0.0),
                        seed=self.cfg.seed,
                        desc=f"eval@{step} {name}",
                    )
                    rows = [
                        r[0]
                        for r in score_completions(
                            problems, comps, timeout_s=self.cfg.grader_timeout
                        )
                    ]
                    results[name] = summarize(rows, None, 1)
                    metrics[f"eval/{name}/pass@1"] = results[name]["pass@1"]
                    metrics[f"eval/{name}/mean_tokens"] = results[name]["mean_tokens"]
                    for p, prompt, r in zip(problems, self.prompts[name], rows, strict=True):
                        samples.append(
                            {
                                "benchmark": name,
                                "id": p.id,
                                "answer": p.answer,
                                "prompt": prompt,
                                **r,
                            }
                        )
        finally:
            model.train(was_training)
        self.tokens += gen.stats.tokens
        self.seconds += time.perf_counter() - start
        return metrics, results, samples


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _callbacks(run: _Run):
    from transformers import ProgressCallback, TrainerCallback

    class QuietProgress(ProgressCallback):
        """TRL's progress bar, with the step metrics as a postfix instead of a printed dict."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "reward" in logs:
                post = {
                    "reward": logs.get("reward"),
                    "kl": logs.get("kl"),
                    "loss": logs.get("loss"),
                }
                self.training_bar.set_postfix(
                    {k: f"{v:.3f}" for k, v in post.items() if isinstance(v, int | float)}
                )

    class RunCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            run.clock.begin()
            run.evaluate(0)

        def on_step_end(self, args, state, control, **kwargs):
            cfg = run.cfg
            over = cfg.max_minutes is not None and run.clock.train_s() >= 60 * cfg.max_minutes
            if over and state.global_step < state.max_steps:
                control.should_training_stop = True
                run.stopped_by = "time_budget"
            elif cfg.eval_every and state.global_step % cfg.eval_every == 0:
                run.evaluate(state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            run.on_log(state.global_step, logs or {})

    return QuietProgress, RunCallback()


class _Run:
    def __init__(self, cfg: GRPORunConfig, out: Path):
        self.cfg = cfg
        self.out = out
        self.clock = Clock()
        self.meter = Meter()
        self.stopped_by = "max_steps"
        self.evals: list[dict] = []
        self.last_eval: tuple[int, dict, list[dict]] | None = None
        self.trainer_summary: dict = {}
        self.model = None
        self.policy_eval: PolicyEval | None = None

    def evaluate(self, step: int) -> None:
        if self.last_eval is not None and self.last_eval[0] == step:
            return
        start = time.perf_counter()
        metrics, results, samples = self.policy_eval(self.model, step)
        self.clock.eval_s += time.perf_counter() - start
        row = {
            "step": step,
            "wall_time_s": round(self.clock.train_s(), 3),
            **metrics,
            "eval_s": round(time.perf_counter() - start, 3),
        }
        self.evals.append(row)
        self.last_eval = (step, results, samples)
        self._append(row)

    def on_log(self, step: int, logs: dict) -> None:
        if "train_runtime" in logs:  # the Trainer's end-of-training summary, not a step
            self.trainer_summary = {k: _clean(v) for k, v in logs.items()}
            return
        row: dict[str, Any] = {"step": step, "wall_time_s": round(self.clock.train_s(), 3)}
        if "epoch" in logs:
            row["epoch"] = _clean(logs["epoch"])
        row.update({f"train/{k}": _clean(v) for k, v in logs.items() if k != "epoch"})
        row["train/grader_timeouts"] = self.meter.grader_timeouts  # so far, cumulative
        self._append(row)

    def _append(self, row: dict) -> None:
        from .io import append_jsonl

        append_jsonl(self.out / TRAIN_LOG, [row])


def run_grpo(cfg: GRPORunConfig, out: str | Path) -> dict:
    """Train the GRPO baseline into ``out``; returns the manifest (also written last)."""
    total_start = time.perf_counter()
    from .data import load_benchmark, load_benchmarks

    # Bad data is an error line before TRL and the model load (tens of seconds).
    problems = load_benchmark(cfg.train, limit=cfg.limit)
    eval_benches = load_benchmarks(cfg.eval_benchmarks, limit=cfg.eval_limit)
    if len(problems) < cfg.prompts_per_step:
        raise UserError(
            f"{len(problems)} training problems, but a step needs {cfg.prompts_per_step} "
            "(--batch-size x --grad-accum / --num-generations)"
        )

    trainer_cls = trainer_class()  # fails early, as one line, when TRL is missing
    from datasets import Dataset
    from transformers import ProgressCallback
    from trl import GRPOConfig

    from .devices import resolve_device
    from .generation import pick_backend
    from .io import atomic_write_json, atomic_write_jsonl, atomic_write_text
    from .models import load_model
    from .prompting import build_prompt, stop_strings
    from .runinfo import package_versions, peak_rss_mib, provenance
    from .training import save_adapter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (TRAIN_LOG, MANIFEST, EVAL_SAMPLES):
        (out / name).unlink(missing_ok=True)
    atomic_write_text(out / CONFIG, dump_yaml(cfg))

    backend = pick_backend(cfg.model.backend)
    if backend == "vllm" and cfg.rollout_generator == "reasonmaxxer":
        raise UserError("--rollout-generator reasonmaxxer runs on the HF backend only")
    device = resolve_device(cfg.model.device)
    bf16 = cfg.autocast == "bfloat16"

    model, tok, info = load_model(
        cfg.model.model,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        device=device,
    )
    stop = stop_strings(tok, cfg.prompt)
    dataset = Dataset.from_list(
        [
            {"prompt": build_prompt(tok, p.problem, cfg.prompt), "answer": p.answer, "id": p.id}
            for p in problems
        ]
    )
    run = _Run(cfg, out)
    run.policy_eval = PolicyEval(tok, cfg, stop, eval_benches)

    with (
        tempfile.TemporaryDirectory(prefix="reasonmaxxer-grpo-") as scratch,
        warnings.catch_warnings(),
    ):
        # transformers 5 renames gradient_checkpointing; TRL 1.16 still sets the old name
        warnings.filterwarnings(
            "ignore", message=r".*gradient_checkpointing` is deprecated", category=FutureWarning
        )
        try:
            args = GRPOConfig(
                output_dir=scratch,  # TRL's own outputs (none with save_strategy="no")
                per_device_train_batch_size=cfg.batch_size,
                gradient_accumulation_steps=cfg.grad_accum,
                num_generations=cfg.num_generations,
                max_completion_length=cfg.max_completion_length,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                learning_rate=cfg.lr,
                warmup_steps=cfg.warmup_steps,  # used by create_scheduler above
                beta=cfg.beta,
                loss_type=cfg.loss_type,
                max_steps=cfg.max_steps,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                bf16=bf16,
                use_cpu=device == "cpu",
                seed=cfg.seed,
                data_seed=cfg.seed,
                gradient_checkpointing=cfg.gradient_checkpointing,
                use_vllm=backend == "vllm",
                vllm_mode="colocate",
                remove_unused_columns=False,
                dataloader_num_workers=0,
                disable_tqdm=False,
            )
        except ValueError as e:
            raise UserError(f"TRL rejected the settings: {str(e).splitlines()[0]}") from None
        trainer = trainer_cls(
            model=model,
            reward_funcs=make_reward(stop, cfg.grader_timeout, run.meter),
            args=args,
            train_dataset=dataset,
            processing_class=tok,
            peft_config=lora_config(model, cfg),
        )
        trainer.meter = run.meter
        if cfg.rollout_generator == "reasonmaxxer":
            eos = getattr(trainer, "eos_token_ids", None) or [tok.eos_token_id]
            trainer.rollout = RolloutDecoder(cfg, tok.pad_token_id, eos)
        run.meter.measured = {h: hasattr(trainer_cls.__mro__[1], h) for h in _HOOKS}
        run.model = trainer.model
        progress, callback = _callbacks(run)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(progress)
        trainer.add_callback(callback)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        total_params = sum(p.numel() for p in trainer.model.parameters())
        setup_s = time.perf_counter() - total_start

        interrupted = False
        try:
            trainer.train()
        except KeyboardInterrupt:
            interrupted = True
            run.stopped_by = "interrupted"
        train_s = run.clock.train_s()
        steps = trainer.state.global_step
        if not interrupted:
            run.evaluate(steps)  # a no-op when the last step was just evaluated
        save_adapter(trainer.model, out / ADAPTER)
        accel = trainer.accelerator
        precision = {
            "weights": cfg.model.dtype,
            "mixed_precision": str(accel.mixed_precision),
            "autocast_active": bool(getattr(accel, "native_amp", False)),
        }

    m = run.meter
    other_rollout = max(m.rollout_s - m.generation_s - m.reward_s, 0.0)
    final = None
    if run.last_eval is not None:
        step, results, samples = run.last_eval
        final = {"step": step, "benchmarks": results}
        atomic_write_jsonl(out / EVAL_SAMPLES, samples)
    manifest = {
        "kind": "grpo",
        "trainer": f"trl.GRPOTrainer {package_versions().get('trl')}",
        "model": info.to_dict(),
        "adapter": ADAPTER,
        "generation_backend": backend,
        "rollout_generator": "vllm" if backend == "vllm" else cfg.rollout_generator,
        "precision": precision,
        "steps": steps,
        "stopped_by": run.stopped_by,
        "problems": len(problems),
        "prompts_per_step": cfg.prompts_per_step,
        "completions_per_step": cfg.batch_size * cfg.grad_accum,
        "reward_grading": {"graded": m.graded, "timeouts": m.grader_timeouts},
        "trainable_params": trainable,
        "total_params": total_params,
        "seeds": {"train": cfg.seed, "data": cfg.seed, "eval": cfg.seed},
        "timing_s": {
            "setup": setup_s,
            "train": train_s,
            "generation": m.generation_s,
            "reward": m.reward_s,
            "rollout_other": other_rollout,
            "optimisation": max(train_s - m.rollout_s, 0.0),
            "eval": run.clock.eval_s,
            "total": time.perf_counter() - total_start,
        },
        "timing_note": (
            "train = training wall time with evals excluded = generation + reward + "
            "rollout_other (reference log-probs, advantages) + optimisation (policy "
            "forward+backward, optimizer step, data loading)"
        ),
        "timing_hooks": m.measured,
        "tokens": {
            "generated": m.tokens_generated,
            "sequences_generated": m.sequences_generated,
            "prompt_tokens_at_generation": m.prompt_tokens_generated_from,
            "forward_backward": m.fb_tokens,
            "forward_backward_padded": m.fb_tokens_padded,
            "eval_generated": run.policy_eval.tokens,
        },
        "peak_rss_mib": peak_rss_mib(),
        "evals": run.evals,
        "final_eval": final,
        "trainer_summary": run.trainer_summary,
        "config": to_dict(cfg),
        "provenance": provenance(),
    }
    atomic_write_json(out / MANIFEST, manifest)
    if interrupted:
        raise KeyboardInterrupt
    return manifest


__all__ = [
    "GRPORunConfig",
    "Meter",
    "build_grpo_config",
    "make_reward",
    "run_grpo",
    "trainer_class",
]
