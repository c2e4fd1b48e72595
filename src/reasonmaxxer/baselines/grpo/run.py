"""One GRPO run: load the data and the model, hand TRL its arguments, train under the time
budget with evaluations, save the adapter, write the manifest last."""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from ...config import dump_yaml, to_dict
from ...errors import UserError
from .config import ADAPTER, CONFIG, EVAL_SAMPLES, MANIFEST, TRAIN_LOG, GRPORunConfig
from .measure import Clock, Meter, json_scalar
from .policy_eval import PolicyEval
from .reward import make_reward
from .trainer import HOOKS, RolloutDecoder, trainer_class


def trl_arguments(cfg: GRPORunConfig, output_dir: str, *, device: str, backend: str) -> dict:
    """The keyword arguments of TRL's ``GRPOConfig`` for ``cfg``: our names mapped to TRL's,
    one log row per step, no checkpoints or trackers of TRL's own, bf16 autocast on CPU via
    ``bf16`` + ``use_cpu``. ``device``: the resolved device; ``backend``: ``hf`` or ``vllm``."""
    return {
        "output_dir": output_dir,  # TRL's own outputs (none with save_strategy="no")
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "num_generations": cfg.num_generations,
        "max_completion_length": cfg.max_completion_length,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "learning_rate": cfg.lr,
        "warmup_steps": cfg.warmup_steps,  # used by MeasuredGRPOTrainer.create_scheduler
        "beta": cfg.beta,
        "loss_type": cfg.loss_type,
        "max_steps": cfg.max_steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": cfg.autocast == "bfloat16",
        "use_cpu": device == "cpu",
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "use_vllm": backend == "vllm",
        "vllm_mode": "colocate",
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }


def callbacks(run: RunState):
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


class RunState:
    """What a GRPO run keeps while TRL trains: the clock, the meter, the evaluations (each
    also appended to ``train_log.jsonl``) and why training stopped."""

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
        self.append(row)

    def on_log(self, step: int, logs: dict) -> None:
        if "train_runtime" in logs:  # the Trainer's end-of-training summary, not a step
            self.trainer_summary = {k: json_scalar(v) for k, v in logs.items()}
            return
        row: dict[str, Any] = {"step": step, "wall_time_s": round(self.clock.train_s(), 3)}
        if "epoch" in logs:
            row["epoch"] = json_scalar(logs["epoch"])
        row.update({f"train/{k}": json_scalar(v) for k, v in logs.items() if k != "epoch"})
        row["train/grader_timeouts"] = self.meter.grader_timeouts  # so far, cumulative
        self.append(row)

    def append(self, row: dict) -> None:
        from ...io import append_jsonl

        append_jsonl(self.out / TRAIN_LOG, [row])


def _setup(cfg: GRPORunConfig, out: Path, problems: list, eval_benches: dict):
    """Check the backend, load the model, build the prompt dataset and the run state."""
    from datasets import Dataset

    from ...devices import resolve_device
    from ...eval.prompting import build_prompt, stop_strings
    from ...generation import pick_backend
    from ...models import load_model

    backend = pick_backend(cfg.model.backend)
    if backend == "vllm" and cfg.rollout_generator == "reasonmaxxer":
        raise UserError("--rollout-generator reasonmaxxer runs on the HF backend only")
    device = resolve_device(cfg.model.device)
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
    run = RunState(cfg, out)
    run.policy_eval = PolicyEval(tok, cfg, stop, eval_benches)
    return run, model, tok, info, stop, dataset, device, backend


def make_trainer(trainer_cls, run: RunState, model, tok, stop, dataset, args):
    """The measured trainer with our reward, LoRA, rollout sampler and callbacks."""
    from transformers import ProgressCallback

    from ...method.training import lora_config

    cfg = run.cfg
    trainer = trainer_cls(
        model=model,
        reward_funcs=make_reward(stop, cfg.grader_timeout, run.meter),
        args=args,
        train_dataset=dataset,
        processing_class=tok,
        peft_config=lora_config(model, cfg.lora),
    )
    trainer.meter = run.meter
    if cfg.rollout_generator == "reasonmaxxer":
        eos = getattr(trainer, "eos_token_ids", None) or [tok.eos_token_id]
        trainer.rollout = RolloutDecoder(cfg, tok.pad_token_id, eos)
    run.meter.measured = {h: hasattr(trainer_cls.__mro__[1], h) for h in HOOKS}
    run.model = trainer.model
    progress, callback = callbacks(run)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(progress)
    trainer.add_callback(callback)
    return trainer


def timing(m: Meter, setup_s: float, train_s: float, eval_s: float, total_s: float) -> dict:
    """Seconds per phase: train = generation + reward + rollout_other + optimisation."""
    return {
        "setup": setup_s,
        "train": train_s,
        "generation": m.generation_s,
        "reward": m.reward_s,
        "rollout_other": max(m.rollout_s - m.generation_s - m.reward_s, 0.0),
        "optimisation": max(train_s - m.rollout_s, 0.0),
        "eval": eval_s,
        "total": total_s,
    }


TIMING_NOTE = (
    "train = training wall time with evals excluded = generation + reward + "
    "rollout_other (reference log-probs, advantages) + optimisation (policy "
    "forward+backward, optimizer step, data loading)"
)


def grpo_manifest(cfg: GRPORunConfig, run: RunState, facts: dict, final: dict | None) -> dict:
    """``manifest.json``: ``facts`` (model, backend, precision, steps, problems, parameter
    counts, timing) plus the run's measurements, evaluations, config and provenance."""
    from ...runinfo import package_versions, peak_rss_mib, provenance

    m = run.meter
    return {
        "kind": "grpo",
        "trainer": f"trl.GRPOTrainer {package_versions().get('trl')}",
        "model": facts["model"],
        "adapter": ADAPTER,
        "generation_backend": facts["backend"],
        "rollout_generator": "vllm" if facts["backend"] == "vllm" else cfg.rollout_generator,
        "precision": facts["precision"],
        "steps": facts["steps"],
        "stopped_by": run.stopped_by,
        "problems": facts["problems"],
        "prompts_per_step": cfg.prompts_per_step,
        "completions_per_step": cfg.batch_size * cfg.grad_accum,
        "reward_grading": {"graded": m.graded, "timeouts": m.grader_timeouts},
        "trainable_params": facts["trainable"],
        "total_params": facts["total_params"],
        "seeds": {"train": cfg.seed, "data": cfg.seed, "eval": cfg.seed},
        "timing_s": facts["timing"],
        "timing_note": TIMING_NOTE,
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


def _load_problems(cfg: GRPORunConfig) -> tuple[list, dict]:
    """Training problems and eval benchmarks; bad data is an error line before TRL and the
    model load (tens of seconds)."""
    from ...eval.data import load_benchmark, load_benchmarks

    problems = load_benchmark(cfg.train, limit=cfg.limit)
    eval_benches = load_benchmarks(cfg.eval_benchmarks, limit=cfg.eval_limit)
    if len(problems) < cfg.prompts_per_step:
        raise UserError(
            f"{len(problems)} training problems, but a step needs {cfg.prompts_per_step} "
            "(--batch-size x --grad-accum / --num-generations)"
        )
    return problems, eval_benches


def _train(trainer, run: RunState) -> bool:
    """Train; True when interrupted (Ctrl-C), after which no final evaluation runs."""
    try:
        trainer.train()
    except KeyboardInterrupt:
        run.stopped_by = "interrupted"
        return True
    return False


def run_grpo(cfg: GRPORunConfig, out: str | Path) -> dict:
    """Train the GRPO baseline into ``out``; returns the manifest (also written last)."""
    total_start = time.perf_counter()
    problems, eval_benches = _load_problems(cfg)
    trainer_cls = trainer_class()  # fails early, as one line, when TRL is missing
    from trl import GRPOConfig

    from ...io import atomic_write_json, atomic_write_jsonl, atomic_write_text
    from ...method.training import save_adapter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (TRAIN_LOG, MANIFEST, EVAL_SAMPLES):
        (out / name).unlink(missing_ok=True)
    atomic_write_text(out / CONFIG, dump_yaml(cfg))
    run, model, tok, info, stop, dataset, device, backend = _setup(cfg, out, problems, eval_benches)
    with (
        tempfile.TemporaryDirectory(prefix="reasonmaxxer-grpo-") as scratch,
        warnings.catch_warnings(),
    ):
        # transformers 5 renames gradient_checkpointing; TRL 1.16 still sets the old name
        warnings.filterwarnings(
            "ignore", message=r".*gradient_checkpointing` is deprecated", category=FutureWarning
        )
        try:
            args = GRPOConfig(**trl_arguments(cfg, scratch, device=device, backend=backend))
        except ValueError as e:
            raise UserError(f"TRL rejected the settings: {str(e).splitlines()[0]}") from None
        trainer = make_trainer(trainer_cls, run, model, tok, stop, dataset, args)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        total_params = sum(p.numel() for p in trainer.model.parameters())
        setup_s = time.perf_counter() - total_start
        interrupted = _train(trainer, run)
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
    final = None
    if run.last_eval is not None:
        step, results, samples = run.last_eval
        final = {"step": step, "benchmarks": results}
        atomic_write_jsonl(out / EVAL_SAMPLES, samples)
    facts = {
        "model": info.to_dict(),
        "backend": backend,
        "precision": precision,
        "steps": steps,
        "problems": len(problems),
        "trainable": trainable,
        "total_params": total_params,
    }
    total_s = time.perf_counter() - total_start
    facts["timing"] = timing(run.meter, setup_s, train_s, run.clock.eval_s, total_s)
    manifest = grpo_manifest(cfg, run, facts, final)
    atomic_write_json(out / MANIFEST, manifest)
    if interrupted:
        raise KeyboardInterrupt
    return manifest
