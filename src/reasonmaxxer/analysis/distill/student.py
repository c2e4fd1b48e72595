"""Training the student: a fresh LoRA on the base, fitted to the cached teacher top-k
log-probs by KL(teacher ‖ student), through the same optimisation loop as ``train``."""

from __future__ import annotations

import math
import random
from pathlib import Path

from ... import devices
from ...config import to_dict
from ...devices import resolve_device
from ...errors import UserError
from ...io import read_json
from .config import ADAPTER, CACHE, CHECKPOINT, META_FILE, NOT_TRAINING, DistillConfig


def teacher_targets(batch_rows: list[dict], ids, logprobs, t_max: int, k: int):
    """Teacher top-k tensors aligned with the targets of
    :func:`reasonmaxxer.method.training.build_batch`.

    Row i's completion token j sits at target index ``t_max - n_i + j``. Padding positions get
    the distinct ids ``0..k-1`` at uniform log-probs (finite, and masked out of the loss).

    Returns:
        ``(logprobs [B, T, k] float32, ids [B, T, k] long)``.
    """
    import torch

    b = len(batch_rows)
    out_ids = torch.arange(k, dtype=torch.long).expand(b, t_max, k).clone()
    out_lp = torch.full((b, t_max, k), -math.log(k), dtype=torch.float32)
    for r, row in enumerate(batch_rows):
        n, o = row["length"], row["offset"]
        out_ids[r, t_max - n :] = ids[o : o + n].long()
        out_lp[r, t_max - n :] = logprobs[o : o + n].float()
    return out_lp, out_ids


def distill_step(model, batch: dict, t_lp, t_ids, *, autocast: bool):
    """One micro-batch: ``(loss, stats)`` with loss = mean KL(teacher ‖ student) over the
    completion tokens (top-k + tail bucket)."""
    import torch

    from ...engine import completion_logits
    from ...method.losses import masked_mean, topk_tail_kl

    device = model.device
    with devices.autocast(model, enabled=autocast):
        logits = completion_logits(model, batch)
    logits = logits.float()  # [B, T, V]
    if int(t_ids.max()) >= logits.shape[-1]:
        raise UserError(
            f"the teacher's token ids reach {int(t_ids.max())} but the student has only "
            f"{logits.shape[-1]} logits: the models do not share a vocabulary"
        )
    completion = batch["completion"].to(device)
    kl = topk_tail_kl(t_lp.to(device), t_ids.to(device), logits)  # [B, T]
    loss = masked_mean(kl, completion)
    with torch.no_grad():
        agree = (logits.argmax(-1) == t_ids[..., 0].to(device))[completion]
        stats = {
            "kl": float(loss),
            "top1_agree": float(agree.float().mean()) if agree.numel() else 0.0,
            "tokens": int(completion.sum()),
        }
    return loss, stats


def student_model(cfg: DistillConfig):
    """The base with a fresh LoRA of ``cfg``'s shape, in train mode; returns (model, info)."""
    from ...method.training import lora_model
    from ...models import load_model

    model, _, info = load_model(
        cfg.model,
        dtype=cfg.dtype,
        trust_remote_code=cfg.trust_remote_code,
        device=resolve_device(cfg.device),
    )
    model = lora_model(model, cfg.lora)
    model.train()
    return model, info


def student_summary(cfg: DistillConfig, log: list[dict], counts: dict) -> dict:
    """The training summary: parameter counts, LoRA shape, KL and top-1 agreement at the
    first step and averaged over the last tenth of the steps."""
    trainable, total = counts["trainable"], counts["total"]
    base_params = total - trainable
    tail = log[-max(1, len(log) // 10) :]
    return {
        "trainable_params": trainable,
        "total_params": total,
        "trainable_frac": trainable / total,
        "trainable_frac_of_base": trainable / base_params if base_params else None,
        "lora_r": cfg.lora_r,
        "lora_alpha": cfg.lora.alpha,
        "lora_targets": cfg.lora_targets,
        "kl_first": log[0]["train/kl"],
        "kl_last": sum(r["train/kl"] for r in tail) / len(tail),
        "top1_agree_first": log[0]["train/top1_agree"],
        "top1_agree_last": sum(r["train/top1_agree"] for r in tail) / len(tail),
    }


def train_student(cfg: DistillConfig, rows: list[dict], ids, logprobs, out: Path) -> dict:
    """Train a fresh LoRA on the base against the cached teacher; saves ``out/adapter``."""
    import torch

    from ...engine import build_batch
    from ...method.training import optimize, remove_checkpoint, save_adapter
    from ...runinfo import Timer
    from ...tracking import open_tracker

    rows = [{**r, "decision": [], "advantage": 0.0} for r in rows if r["length"] > 0]
    if not rows:
        raise UserError("the teacher produced no completion tokens to distil")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model, info = student_model(cfg)
    counts = {
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total": sum(p.numel() for p in model.parameters()),
    }
    opt = cfg.optim.adamw(model)
    k = ids.shape[1]

    def micro_loss(micro: list[dict]):
        batch = build_batch(micro)
        t_lp, t_ids = teacher_targets(micro, ids, logprobs, batch["targets"].shape[1], k)
        bf16 = devices.bf16_autocast_on(cfg.autocast, model)
        return distill_step(model, batch, t_lp, t_ids, autocast=bf16)

    # a checkpoint is valid for the same teacher cache and training settings
    settings = {n: v for n, v in to_dict(cfg).items() if n not in NOT_TRAINING}
    scope = [read_json(out / CACHE / META_FILE)["key"], settings]
    tracker = open_tracker(cfg.report_to, out, name=f"distill {out.name}", config=to_dict(cfg))
    with Timer() as wall:
        steps, _, log = optimize(
            model,
            opt,
            rows,
            micro_loss=micro_loss,
            batch_size=cfg.train_batch_size,
            **cfg.optim.loop_kwargs(),
            rng=rng,
            log_path=out / "distill_log.jsonl",
            checkpoint=out / CHECKPOINT,
            checkpoint_every=cfg.checkpoint_every,
            checkpoint_scope=scope,
            desc="distill",
            postfix=lambda acc: {"kl": f"{acc['kl']:.4f}", "agree": f"{acc['top1_agree']:.3f}"},
            summed=("tokens",),
            tracker=tracker,
        )
    tracker.finish()
    model.eval()
    save_adapter(model, out / ADAPTER)
    remove_checkpoint(out / CHECKPOINT)
    return {
        "steps": steps,
        "rollouts": len(rows),
        **student_summary(cfg, log, counts),
        "wall_time_s": wall.seconds,
        "model": info.to_dict(),
        "log": log,
    }
