"""TRL's ``GRPOTrainer`` with timers and counters around a few of its methods, and the
optional rollout sampler that uses ReasonMaxxer's decode loop."""

from __future__ import annotations

import time

from ...errors import UserError
from .config import GRPORunConfig
from .measure import Meter

HOOKS = (
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
            """ReasonMaxxer's schedule (``optim.lr_at``): step k (0-based) runs at
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
    """Sample one completion per (already repeated) prompt with :func:`decoding.decode_stream`.

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

        from ...decoding import SamplingParams, decode_stream
        from ...devices import autocast, bf16_autocast_on

        cfg = self.cfg
        device = model.device
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + self.calls)
        self.calls += 1
        params = SamplingParams(cfg.max_completion_length, cfg.temperature, cfg.top_p)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), autocast(model, enabled=bf16_autocast_on(cfg.autocast, model)):
                # the whole call is one batch (TRL's rollout group), so nothing is refilled
                new = decode_stream(
                    model,
                    [list(p) for p in prompt_ids],
                    self.pad_id,
                    params,
                    self.eos_ids,
                    gen,
                    batch_size=len(prompt_ids),
                )
        finally:
            model.train(was_training)
        out = []
        for row in new:
            cut = next((i + 1 for i, t in enumerate(row) if t in self.eos_ids), len(row))
            out.append(list(row[:cut]))
        return out
