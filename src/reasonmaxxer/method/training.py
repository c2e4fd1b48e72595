"""``reasonmaxxer train``: the entropy-gated contrastive LoRA update.

π_ref is the same network with the adapter disabled, so one copy of the weights is in memory.
Each micro-batch runs π_ref (no grad) and π_θ on the stored token ids; the loss (``losses``)
applies the contrastive / bounded term at decision points and the KL anchor elsewhere. When no
position needs π_ref's full distribution (``gate: all``, the default, leaves no KL anchor) and
``select`` stored π_ref's log-prob of every token under the same forward (:func:`stored_reference`),
the reference forward is skipped: a step is one forward and backward instead of two forwards
and a backward (benchmarks/results/train_reference.md).
Writes ``train_log.jsonl`` (one row per optimizer step) and ``adapter/`` in PEFT format.

Every ``checkpoint_every`` steps the adapter, the AdamW moments, the RNG states and the
remaining batch order go to ``train_checkpoint/`` (safetensors + JSON, written atomically);
a killed run started again with the same selection and settings continues from there and
ends with the same adapter as an uninterrupted run. The loop and its checkpoint live in
:mod:`.optim`.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..blocks import LoraSpec
from ..config import RunConfig, identity, on_model, to_dict
from ..engine import base_model, build_batch, shares_prefixes
from ..errors import UserError
from ..io import atomic_dir, atomic_write_json
from ..optim import batch_order, optimize, remove_checkpoint
from ..runinfo import Timer
from . import checkpoints
from .checkpoints import ADAPTER
from .memory import check_batch_fits
from .selection import SELECTION, SELECTION_KEYS, read_rows

CHECKPOINT = "train_checkpoint"


def lora_config(model, spec: LoraSpec):
    """The PEFT ``LoraConfig`` of ``spec`` for ``model`` (train, the distill student and
    grpo all build theirs here); an unknown target module is one UserError."""
    from peft import LoraConfig

    names = spec.targets
    modules = {n.split(".")[-1] for n, _ in model.named_modules()}
    missing = [m for m in names if m not in modules]
    if missing:
        raise UserError(f"--lora-targets: no module named {', '.join(missing)} in this model")
    return LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=names,
        bias="none",
        task_type="CAUSAL_LM",
    )


def lora_model(model, spec: LoraSpec | RunConfig):
    """``model`` with a fresh LoRA of ``spec`` (a run's ``train`` section's shape when given
    a :class:`RunConfig`)."""
    from peft import get_peft_model

    if isinstance(spec, RunConfig):
        spec = spec.train.lora
    return get_peft_model(model, lora_config(model, spec))


def enable_gradient_checkpointing(model) -> None:
    """Activation checkpointing on a PEFT model (non-reentrant, so the frozen base needs no
    input grads); it acts in training mode only, so evaluation and decoding are unchanged."""
    base = base_model(model)
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.20
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def whole_sequence(batch: dict) -> dict:
    """A :func:`build_batch` batch widened to every position: ``targets``/``completion``/
    ``decision`` become ``[B, L - 1]`` (the decision and completion columns right-aligned, as
    before), ``anchored`` [B, L - 1] marks every position whose input and target are both real
    tokens (prompt included), and ``keep = L`` runs the LM head over the whole sequence."""
    import torch

    ids, attn = batch["input_ids"], batch["attention_mask"].bool()  # [B, L]
    width, t_max = ids.shape[1], batch["targets"].shape[1]
    pad = torch.zeros((ids.shape[0], width - 1 - t_max), dtype=torch.bool, device=ids.device)
    return {
        **batch,
        "targets": ids[:, 1:],
        "completion": torch.cat([pad, batch["completion"]], dim=1),
        "decision": torch.cat([pad, batch["decision"]], dim=1),
        "anchored": attn[:, :-1] & attn[:, 1:],
        "keep": width,
    }


def step_loss(model, batch: dict, cfg: RunConfig, ref_model=None):
    """One micro-batch: (loss, stats). The only place the model meets the pure loss.

    π_ref is ``model`` with its adapter disabled, or ``ref_model`` when given (a round that
    anchors to another policy than the one the adapter sits on)."""
    import torch

    from ..devices import autocast, bf16_autocast_on, to_device
    from ..engine import logit_source
    from .losses import policy_terms

    t = cfg.train
    batch = to_device(batch, model.device)
    if t.kl_scope == "all":
        batch = whole_sequence(batch)
    on = bf16_autocast_on(t.autocast, model)
    if "ref_logp" in batch:  # π_ref's log-probs stored by select, and no KL position
        return _stored_reference_loss(model, batch, cfg, on)
    # Hidden states and the LM head where the model allows it: logits are made a row at a
    # time inside the checkpointed loss, so no [B, T, V] tensor is ever held (engine.logit_source)
    if ref_model is None:
        with torch.no_grad(), model.disable_adapter(), autocast(model, enabled=on):
            ref_x, ref_head = logit_source(model, batch)
    else:
        with torch.no_grad(), autocast(ref_model, enabled=on):
            ref_x, ref_head = logit_source(ref_model, batch)
    with autocast(model, enabled=on):
        x, head = logit_source(model, batch)
    logp, ref_logp, kl = policy_terms(  # checkpointed, a row at a time
        x,
        ref_x,
        batch["targets"],
        head=_float_head(head, model, on),
        ref_head=_float_head(ref_head, ref_model or model, on),
    )
    completion = batch["completion"]
    decision = batch["decision"] & completion
    # kl_scope "all": every real position of the sequence is anchored, the prompt's too
    anchored = batch.get("anchored", completion)
    loss, stats = _loss(logp, ref_logp, kl, batch, decision, anchored & ~decision, t)
    with torch.no_grad():
        stats["kl_all"] = float(kl[completion].mean()) if completion.any() else 0.0
    return loss, stats


def _stored_reference_loss(model, batch: dict, cfg: RunConfig, autocast_on: bool):
    """:func:`step_loss` when ``batch["ref_logp"]`` holds π_ref's log-probs and no position is
    anchored: π_θ's forward only. No KL is computed, so the KL statistics are None."""
    import torch

    from ..devices import autocast
    from ..engine import logit_source
    from .losses import policy_logps

    with autocast(model, enabled=autocast_on):
        x, head = logit_source(model, batch)
    logp = policy_logps(x, batch["targets"], head=_float_head(head, model, autocast_on))
    decision = batch["decision"] & batch["completion"]
    none = torch.zeros_like(decision)
    loss, stats = _loss(
        logp, batch["ref_logp"], torch.zeros_like(logp), batch, decision, none, cfg.train
    )
    return loss, stats | {"kl_decision": None, "kl_all": None}


def _loss(logp, ref_logp, kl, batch: dict, decision, anchor, t):
    """:func:`~.losses.reasonmaxxer_loss` with the ``train`` settings ``t``, and the share of
    decision tokens that moved the way their advantage asks (``dec_up_frac_pos``,
    ``dec_down_frac_neg``)."""
    import torch

    from .losses import reasonmaxxer_loss

    loss, stats = reasonmaxxer_loss(
        logp,
        ref_logp,
        kl,
        batch["advantages"],
        decision,
        anchor,
        kind=t.loss,
        lam=t.lam,
        neg_weight=t.neg_weight,
        beta=t.beta,
        dec_mean=t.dec_mean,
        skip_zero_adv=t.skip_zero_adv,
    )
    with torch.no_grad():
        moved = (logp - ref_logp)[decision]
        adv = batch["advantages"][:, None].expand_as(decision)[decision]
        stats["dec_up_frac_pos"] = (
            float((moved[adv > 0] > 0).float().mean()) if (adv > 0).any() else None
        )
        stats["dec_down_frac_neg"] = (
            float((moved[adv < 0] < 0).float().mean()) if (adv < 0).any() else None
        )
    return loss, stats


def stored_reference(rows: list[dict], cfg: RunConfig, ref_model: str | None = None) -> bool:
    """Whether ``train`` may take π_ref's log-probs from ``rows`` (``ref_logp``, stored by
    ``select``) instead of running π_ref every step: every row was scored by π_ref (``cfg.model``
    with the adapter off, or the model folder ``ref_model``) under the forward ``train`` would
    run (same model, weights, dtype and precision: ``ref_key``), and no position is
    KL-anchored (``kl_scope: completion`` and every completion token a decision point), so
    π_ref's full distribution is never needed. A round anchored to the previous policy meets
    it: that policy sampled and scored the round's rollouts."""
    from .selection import reference_key

    t = cfg.train
    if t.kl_scope != "completion":
        return False
    if any(len(r["decision"]) < len(r["completion_ids"]) or "ref_logp" not in r for r in rows):
        return False
    if ref_model is not None:
        cfg = on_model(cfg, ref_model)
    key = reference_key(cfg, t.autocast)
    return all(r.get("ref_key") == key for r in rows)


def _float_head(head, model, autocast_on: bool):
    """``head`` run under the model's autocast, its logits cast to float32 (the loss's
    log-softmaxes run in float32)."""
    from ..devices import autocast

    def logits(x):
        with autocast(model, enabled=autocast_on):
            return head(x).float()

    return logits


def save_adapter(model, out: Path) -> None:
    """Save the PEFT adapter atomically (safetensors + adapter_config.json)."""
    atomic_dir(out, lambda tmp: model.save_pretrained(tmp, safe_serialization=True))


def checkpoint_scope(cfg: RunConfig, rows: list[dict]) -> list:
    """What a checkpoint is only valid for: model settings and weights, training settings and
    the selected rows."""
    from ..models import model_fingerprint

    train = {
        k: v for k, v in to_dict(cfg.train).items() if k not in ("checkpoint_every", "report_to")
    }
    rows_id = [(r["problem_id"], r["rollout"], r["decision"], r["advantage"]) for r in rows]
    return [identity(cfg)["model"], model_fingerprint(cfg.model.model), train, rows_id]


def train(
    run_dir: str | Path,
    cfg: RunConfig,
    *,
    init_adapter: str | None = None,
    ref_model: str | None = None,
) -> dict:
    """Train the adapter on ``run_dir/selection.jsonl``; returns the training summary.

    ``init_adapter`` continues training a saved adapter instead of a fresh LoRA; ``ref_model``
    (a model folder) is π_ref instead of ``cfg.model.model`` with the adapter off. Rounds use
    both (:mod:`reasonmaxxer.method.rounds`)."""
    run_dir = Path(run_dir)
    t = cfg.train
    rows = training_rows(run_dir, cfg)
    stored = stored_reference(rows, cfg, ref_model)
    if not stored:  # π_ref runs every step
        rows = [{k: v for k, v in r.items() if k != "ref_logp"} for r in rows]
    import torch

    from ..scaleout.dist import init_dist

    dist = init_dist(t.grad_accum)  # one process, or those of `accelerate launch`
    tracker = _open_tracker(run_dir, cfg) if dist.main else None
    if t.dev:
        checkpoints.check_dev_disjoint(cfg)
    torch.manual_seed(t.seed)
    rng = random.Random(t.seed)
    model, info = _policy_model(cfg, dist, init_adapter)
    ref = _reference_model(cfg, dist, ref_model) if ref_model and not stored else None
    _check_fits(model, rows, cfg)
    model.train()
    if t.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    opt = t.optim.adamw(model)

    scope = (
        checkpoint_scope(cfg, rows)
        + ([init_adapter, ref_model] if init_adapter or ref_model else [])
        + ([_stored_id(rows)] if stored else [])
    )
    per_step = t.batch_size * t.grad_accum
    snapshots, save_every, on_save = _snapshots(run_dir, cfg, scope, model, len(rows))
    # A run killed while scoring its checkpoints goes straight back to scoring them.
    trained = _trained_steps(snapshots)
    with Timer() as wall:
        if trained is not None:
            steps = start = trained
        else:
            hooks = {"save_every": save_every, "on_save": on_save, "dist": dist, "tracker": tracker}
            steps, start = _optimize_policy(run_dir, cfg, model, ref, opt, rows, rng, scope, hooks)
    if tracker is not None:
        tracker.finish()
    chosen = None
    if dist.main:
        chosen = _finish(
            run_dir, cfg, model, snapshots, on_save, trained, steps, len(rows) / per_step
        )
    summary = {
        "steps": steps,
        "rollouts": len(rows),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_frac": trainable / total,
        "tokens_processed": tokens_processed(rows, steps, t.batch_size, t.grad_accum),
        "wall_time_s": wall.seconds,
        "resumed_from_step": start,
        "reference": "stored" if stored else "forward",
        "model": info.to_dict(),
        **({"checkpoint_choice": chosen} if chosen else {}),
    }
    if dist.world > 1:
        summary["processes"] = dist.world
    if dist.main:
        atomic_write_json(run_dir / "train.json", summary)
    dist.close()
    return summary


def _stored_id(rows: list[dict]) -> str:
    """What a checkpoint of the stored-reference path depends on besides the rows' ids: the
    stored log-probs themselves (a selection made again in other batches moves them)."""
    from ..io import identity_hash

    return "stored reference " + identity_hash([r["ref_logp"] for r in rows])


def training_rows(run_dir: Path, cfg: RunConfig) -> list[dict]:
    """The rows of ``run_dir/selection.jsonl`` that ``train`` learns from (``positive_only``:
    those with a positive advantage); a missing selection, no rows or no decision token is a
    UserError."""
    if not (run_dir / SELECTION).is_file():
        raise UserError(
            f"{run_dir / SELECTION} not found: run `reasonmaxxer select {run_dir}` first"
        )
    rows = read_rows(run_dir / SELECTION, SELECTION_KEYS)
    if cfg.train.positive_only:
        rows = [r for r in rows if r["advantage"] > 0]
    if not rows:
        raise UserError("no rollouts to train on after selection")
    if not any(r["decision"] for r in rows):
        raise UserError(
            f"{run_dir / SELECTION} marks no decision token, so training would learn nothing: "
            f"re-run `reasonmaxxer select {run_dir}` with a lower --tau or a higher --top-frac"
        )
    return rows


def tokens_processed(rows: list[dict], steps: int, batch_size: int, grad_accum: int) -> int:
    """Prompt + completion tokens seen in ``steps`` optimizer steps of ``batch_size`` ×
    ``grad_accum`` rollouts each, at the mean length of ``rows`` (floored)."""
    lengths = sum(len(r["prompt_ids"]) + len(r["completion_ids"]) for r in rows)
    return lengths * steps * batch_size * grad_accum // len(rows)


def _open_tracker(run_dir: Path, cfg: RunConfig):
    """The live tracker of ``train.report_to`` (None for ``"none"``)."""
    if cfg.train.report_to == "none":
        return None
    from ..tracking import open_tracker

    return open_tracker(
        cfg.train.report_to, run_dir, name=f"train {run_dir.name}", config=to_dict(cfg)
    )


def _policy_model(cfg: RunConfig, dist, init_adapter: str | None):
    """π_θ: the model with a fresh LoRA, or with ``init_adapter`` made trainable, on the
    process's device; returns ``(model, model info)``."""
    from ..models import load_model

    model, _, info = load_model(
        cfg.model.model,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        device=cfg.model.device,
    )
    if dist.device is not None:
        model.to(dist.device)
    if init_adapter:
        from ..models import apply_adapter

        device = model.device
        model = apply_adapter(model, init_adapter, is_trainable=True).to(device)
    else:
        model = lora_model(model, cfg)
    return model, info


def _reference_model(cfg: RunConfig, dist, ref_model: str):
    """π_ref loaded from the model folder ``ref_model``, frozen, on the process's device."""
    from ..models import load_model

    ref, _, _ = load_model(
        ref_model,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        device=cfg.model.device,
    )
    ref.requires_grad_(False)
    if dist.device is not None:
        ref.to(dist.device)
    return ref


def _check_fits(model, rows: list[dict], cfg: RunConfig) -> None:
    """Stop with a UserError naming ``train.batch_size`` when the longest micro-batch cannot
    fit in memory (``kl_scope="all"``: the prompt counts too)."""
    t = cfg.train
    tokens = max(len(r["completion_ids"]) for r in rows)
    if t.kl_scope == "all":
        tokens += max(len(r["prompt_ids"]) for r in rows)
    check_batch_fits(
        "train" if t.gradient_checkpointing else "train_no_checkpointing",
        "train.batch_size",
        t.batch_size,
        tokens,
        model.config.vocab_size,
        device=str(model.device),
    )


def _snapshots(run_dir: Path, cfg: RunConfig, scope, model, n_rows: int):
    """``(snapshots folder, save_every, on_save)`` for ``train.save_every_frac``; without it
    ``(None, 0, None)``. ``on_save(step)`` saves the adapter of optimizer step ``step`` unless
    a resumed run already made it."""
    t = cfg.train
    if not t.save_every_frac:
        return None, 0, None
    snapshots = checkpoints.prepare(run_dir, cfg, scope)
    save_every = checkpoints.snapshot_every(t.save_every_frac, n_rows, t.batch_size * t.grad_accum)

    def on_save(step: int) -> None:
        out = checkpoints.step_dir(snapshots, step)
        if not (out / "adapter_model.safetensors").is_file():  # a resumed run made it
            save_adapter(model, out)

    return snapshots, save_every, on_save


def _trained_steps(snapshots: Path | None) -> int | None:
    """The step count a run that was killed while scoring its snapshots had trained to."""
    if not snapshots:
        return None
    return checkpoints.trained_steps(snapshots)


def _optimize_policy(run_dir: Path, cfg: RunConfig, model, ref, opt, rows, rng, scope, hooks):
    """:func:`optimize` with :func:`step_loss` and the ``train`` settings; ``hooks`` holds
    ``save_every``, ``on_save``, ``dist`` and ``tracker``. Returns ``(steps, resumed_from)``."""
    t = cfg.train
    # the prompt tokens a micro-batch's rows share run once (engine.build_batch); not with
    # kl_scope "all", whose KL covers the prompt positions too
    share = (
        t.share_prefix
        and t.kl_scope != "all"
        and all(shares_prefixes(m) for m in (model, ref) if m is not None)
    )
    steps, start, _ = optimize(
        model,
        opt,
        rows,
        micro_loss=lambda micro: step_loss(
            model, build_batch(micro, share_prefix=share), cfg, ref_model=ref
        ),
        batch_size=t.batch_size,
        **t.optim.loop_kwargs(),
        rng=rng,
        log_path=run_dir / "train_log.jsonl",
        checkpoint=run_dir / CHECKPOINT,
        checkpoint_every=t.checkpoint_every,
        checkpoint_scope=scope,
        batches=batch_order(t.order),
        schedule=t.schedule,
        desc="train",
        postfix=lambda acc: {
            "loss": f"{acc['loss']:.3f}",
            "dec": f"{acc['loss_dec']:.3f}",
            "kl": f"{acc['loss_anchor']:.4f}",
        },
        **hooks,
    )
    return steps, start


def _finish(run_dir, cfg, model, snapshots, on_save, trained, steps, steps_per_epoch):
    """The main process's end of ``train``: save the adapter (unless a killed run had),
    snapshot the final step, drop the checkpoint, and with snapshots score them and return
    the choice (None without)."""
    if trained is None:
        save_adapter(model, run_dir / ADAPTER)
    if snapshots is not None:
        on_save(steps)  # the final adapter is a candidate too
        checkpoints.mark_trained(snapshots, steps)
    remove_checkpoint(run_dir / CHECKPOINT)
    if snapshots is None:
        return None
    return checkpoints.score_and_choose(run_dir, cfg, snapshots, steps_per_epoch=steps_per_epoch)
