"""``reasonmaxxer train``: the entropy-gated contrastive LoRA update.

π_ref is the same network with the adapter disabled, so one copy of the weights is in memory.
Each micro-batch runs π_ref (no grad) and π_θ on the stored token ids; the loss (``losses``)
applies the contrastive / bounded term at decision points and the KL anchor elsewhere.
Writes ``train_log.jsonl`` (one row per optimizer step) and ``adapter/`` in PEFT format.

Every ``checkpoint_every`` steps the adapter, the AdamW moments, the RNG states and the
remaining batch order go to ``train_checkpoint/`` (safetensors + JSON, written atomically);
a killed run started again with the same selection and settings continues from there and
ends with the same adapter as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
from pathlib import Path

from .checkpoints import ADAPTER
from .config import RunConfig, identity, to_dict
from .engine import build_batch, completion_logits
from .errors import UserError
from .io import (
    append_jsonl,
    atomic_dir,
    atomic_write_json,
    atomic_write_jsonl,
    iter_jsonl,
    read_json,
)
from .memory import check_batch_fits
from .runinfo import Timer
from .selection import SELECTION, SELECTION_KEYS, read_rows

CHECKPOINT = "train_checkpoint"


def bucketed_batches(
    rows: list[dict], batch_size: int, rng: random.Random, window: int = 8
) -> list[list[dict]]:
    """One epoch of micro-batches: shuffled, then length-sorted within windows of
    ``window`` batches so a micro-batch wastes little padding; batch order shuffled again."""
    rows = rows[:]
    rng.shuffle(rows)
    batches = []
    span = batch_size * window
    for w in range(0, len(rows), span):
        chunk = sorted(
            rows[w : w + span], key=lambda r: len(r["prompt_ids"]) + len(r["completion_ids"])
        )
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def curriculum_batches(rows: list[dict], batch_size: int, rng: random.Random) -> list[list[dict]]:
    """One epoch in the authors' curriculum order (:func:`selection.curriculum_order`), cut
    into consecutive micro-batches, highest score first; ``rng`` is not used (no shuffling)."""
    from .selection import curriculum_order

    ordered = curriculum_order(rows)
    return [ordered[b : b + batch_size] for b in range(0, len(ordered), batch_size)]


def batch_order(order: str):
    """The batcher for ``train.order``: ``(rows, batch_size, rng) -> batches in use order``."""
    if order == "curriculum":
        return curriculum_batches
    # bucketed_batches' order is random: reversed, it is consumed exactly as it always was
    return lambda rows, batch_size, rng: bucketed_batches(rows, batch_size, rng)[::-1]


def lora_config(model, *, r: int, alpha: int, dropout: float, targets: str):
    """A PEFT ``LoraConfig`` for ``model``; an unknown target module is one UserError."""
    from peft import LoraConfig

    names = [m.strip() for m in targets.split(",") if m.strip()]
    modules = {n.split(".")[-1] for n, _ in model.named_modules()}
    missing = [m for m in names if m not in modules]
    if missing:
        raise UserError(f"--lora-targets: no module named {', '.join(missing)} in this model")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=names,
        bias="none",
        task_type="CAUSAL_LM",
    )


def lora_model(model, cfg: RunConfig):
    from peft import get_peft_model

    t = cfg.train
    config = lora_config(
        model, r=t.lora_r, alpha=t.lora_alpha, dropout=t.lora_dropout, targets=t.lora_targets
    )
    return get_peft_model(model, config)


def enable_gradient_checkpointing(model) -> None:
    """Activation checkpointing on a PEFT model (non-reentrant, so the frozen base needs no
    input grads); it acts in training mode only, so evaluation and decoding are unchanged."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
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

    from .devices import autocast, bf16_autocast_on, to_device
    from .losses import policy_terms, reasonmaxxer_loss, selective_log_softmax

    t = cfg.train
    batch = to_device(batch, model.device)
    if t.kl_scope == "all":
        batch = whole_sequence(batch)
    on = bf16_autocast_on(t.autocast, model)
    if ref_model is None:
        with torch.no_grad(), model.disable_adapter(), autocast(model, enabled=on):
            ref_logits = completion_logits(model, batch).float()  # [B, T, V]
    else:
        with torch.no_grad(), autocast(ref_model, enabled=on):
            ref_logits = completion_logits(ref_model, batch).float()  # [B, T, V]
    with autocast(model, enabled=on):
        logits = completion_logits(model, batch).float()  # [B, T, V]
    targets = batch["targets"]
    completion = batch["completion"]
    decision = batch["decision"] & completion
    # kl_scope "all": every real position of the sequence is anchored, the prompt's too
    anchored = batch.get("anchored", completion)
    logp, kl = policy_terms(logits, ref_logits, targets)  # checkpointed, a row at a time
    ref_logp = selective_log_softmax(ref_logits, targets)
    loss, stats = reasonmaxxer_loss(
        logp,
        ref_logp,
        kl,
        batch["advantages"],
        decision,
        anchored & ~decision,
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
        stats["kl_all"] = float(kl[completion].mean()) if completion.any() else 0.0
    return loss, stats


def lr_at(
    step: int, base_lr: float, warmup: int, schedule: str = "constant", total: int = 0
) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up to ``base_lr`` over
    ``warmup`` steps, then constant, or (``schedule="linear"``) decaying linearly to reach 0
    at step ``total``, the scheduled length (epochs × rollouts ÷ rollouts per step, before
    any ``max_steps`` cap, as the authors' HF linear schedule does)."""
    if step < warmup or schedule == "constant":
        return base_lr * min(1.0, (step + 1) / max(warmup, 1))
    return base_lr * max(0.0, (total - step) / max(total - warmup, 1))


def save_adapter(model, out: Path) -> None:
    """Save the PEFT adapter atomically (safetensors + adapter_config.json)."""
    atomic_dir(out, lambda tmp: model.save_pretrained(tmp, safe_serialization=True))


def _checkpoint_scope(cfg: RunConfig, rows: list[dict]) -> list:
    """What a checkpoint is only valid for: model settings and weights, training settings and
    the selected rows."""
    from .models import model_fingerprint

    train = {
        k: v for k, v in to_dict(cfg.train).items() if k not in ("checkpoint_every", "report_to")
    }
    rows_id = [(r["problem_id"], r["rollout"], r["decision"], r["advantage"]) for r in rows]
    return [identity(cfg)["model"], model_fingerprint(cfg.model.model), train, rows_id]


def save_checkpoint(out: Path, *, model, opt, params, step, rng, order, rows, key) -> None:
    """Adapter, AdamW state, torch and shuffling RNG, and the batches still to come."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    tensors = {f"adapter.{k}": v for k, v in get_peft_model_state_dict(model).items()}
    for i, p in enumerate(params):
        for name, v in opt.state.get(p, {}).items():
            tensors[f"opt.{i}.{name}"] = torch.as_tensor(v)
    tensors["torch_rng"] = torch.get_rng_state()
    index = {id(r): i for i, r in enumerate(rows)}
    version, state, gauss = rng.getstate()
    meta = {
        "step": step,
        "key": key,
        "rng": [version, list(state), gauss],
        "order": [[index[id(r)] for r in batch] for batch in order],
    }

    def fill(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
        atomic_write_json(tmp / "meta.json", meta)

    atomic_dir(out, fill)


def load_checkpoint(path: Path, *, model, opt, params, rng, rows, key) -> tuple[int, list]:
    """Restore a checkpoint made by :func:`save_checkpoint`; returns (step, order).

    A missing checkpoint, or one made for other settings or another selection, gives
    ``(0, [])``: training starts from scratch.
    """
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if not (path / "meta.json").is_file() or not (path / "state.safetensors").is_file():
        return 0, []
    meta = read_json(path / "meta.json")
    if meta.get("key") != key:
        return 0, []
    tensors = load_file(str(path / "state.safetensors"))
    adapter = {k[len("adapter.") :]: v for k, v in tensors.items() if k.startswith("adapter.")}
    set_peft_model_state_dict(model, adapter)
    for i, p in enumerate(params):
        state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{i}.")}
        if state:
            opt.state[p] = state
    torch.set_rng_state(tensors["torch_rng"])
    version, state, gauss = meta["rng"]
    rng.setstate((version, tuple(state), gauss))
    return meta["step"], [[rows[i] for i in batch] for batch in meta["order"]]


def optimize(
    model,
    opt,
    rows: list[dict],
    *,
    micro_loss,
    epochs: float,
    max_steps: int | None,
    batch_size: int,
    grad_accum: int,
    lr: float,
    warmup_steps: int,
    max_grad_norm: float,
    rng: random.Random,
    log_path: Path,
    checkpoint: Path,
    checkpoint_every: int,
    checkpoint_scope,
    desc: str,
    postfix,
    summed: tuple[str, ...] = (),
    dist=None,
    tracker=None,
    batches=None,
    schedule: str = "constant",
    save_every: int = 0,
    on_save=None,
) -> tuple[int, int, list[dict]]:
    """The optimisation loop ``train`` and ``distill`` share: shuffled length-bucketed
    micro-batches, linear warm-up, gradient accumulation and clipping, one ``log_path`` row
    per optimizer step, and a resumable checkpoint every ``checkpoint_every`` steps. The
    checkpoint is left in place: the caller saves the adapter first and then calls
    :func:`remove_checkpoint`, so a kill in between resumes instead of losing the run.

    ``micro_loss(rows) -> (loss, stats)``; the stats of a step are averaged over its
    micro-batches, except the ``summed`` keys. ``checkpoint_scope`` (JSON-able: the settings
    and data the run depends on) decides whether an existing checkpoint may be resumed.
    ``batches(rows, batch_size, rng)`` makes one epoch's micro-batches in the order they are
    used (default: :func:`batch_order` ``("shuffle")``); ``schedule`` is :func:`lr_at`'s.
    ``on_save(step)`` runs after every ``save_every``-th optimizer step (0: never).
    ``dist`` (:class:`.scaleout.Dist`) splits each step's micro-batches over ``accelerate
    launch`` processes; None: one process. ``tracker`` (:class:`.tracking.Tracker`) mirrors
    each logged row to a live tracker. Returns ``(steps, resumed_from, log rows)``.
    """
    import torch
    from tqdm.auto import tqdm

    from .scaleout.dist import SINGLE

    dist = dist or SINGLE

    params = [p for g in opt.param_groups for p in g["params"]]
    scope = json.dumps(checkpoint_scope, sort_keys=True, default=str)
    checkpoint_key = hashlib.sha256(scope.encode()).hexdigest()[:16]
    per_step = batch_size * grad_accum
    batches = batches or batch_order("shuffle")
    steps = scheduled = math.ceil(epochs * len(rows) / per_step)
    if max_steps is not None:
        steps = min(steps, max_steps)
    ckpt_args = {"model": model, "opt": opt, "params": params, "rng": rng, "rows": rows}
    start, order = load_checkpoint(checkpoint, key=checkpoint_key, **ckpt_args)
    # only the main process writes the log, checkpoints and the adapter
    if dist.main and start:  # the log keeps the steps the checkpoint holds, nothing after them
        done = [r for r in iter_jsonl(log_path, tolerate_torn_tail=True) if r["step"] <= start]
        atomic_write_jsonl(log_path, done)
    elif dist.main:
        log_path.unlink(missing_ok=True)
    bar = tqdm(
        total=steps,
        initial=start,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        disable=not dist.main,
    )
    for step in range(start, steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, warmup_steps, schedule, scheduled)
        acc: dict[str, float] = {}
        seen: dict[str, int] = {}
        names: dict[str, None] = {}  # every statistic a micro-batch reports, in order
        for i in range(grad_accum):
            if not order:  # a stack: the next micro-batch is the last one
                order = batches(rows, batch_size, rng)[::-1]
            micro = order.pop()
            if not dist.mine(i):  # another process's micro-batch (accelerate launch)
                continue
            loss, stats = micro_loss(micro)
            if not math.isfinite(float(loss.detach())):
                raise UserError(
                    f"non-finite loss ({float(loss.detach())}) at step {step + 1}: training stopped, "
                    "nothing saved from this run (lower --lr, check the data)"
                )
            (loss / grad_accum).backward()
            for name, v in stats.items():
                names[name] = None
                if v is None or not math.isfinite(v):  # undefined for this micro-batch
                    continue
                acc[name] = acc.get(name, 0.0) + v
                seen[name] = seen.get(name, 0) + 1
        dist.reduce_grads(params)
        acc, seen = dist.reduce_stats(acc, seen, list(names))
        acc = {k: v if k in summed else v / seen[k] for k, v in acc.items()}
        try:
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm, error_if_nonfinite=True)
            )
        except RuntimeError:
            raise UserError(
                f"non-finite gradient norm at step {step + 1}: training stopped, nothing saved "
                "from this run (lower --lr, check the data)"
            ) from None
        opt.step()
        opt.zero_grad(set_to_none=True)
        record = {
            "step": step + 1,
            "epoch": (step + 1) * per_step / len(rows),
            "lr": opt.param_groups[0]["lr"],
            "grad_norm": grad_norm,
            **{f"train/{name}": v for name, v in acc.items()},
        }
        if dist.main:
            append_jsonl(log_path, [record])
            if tracker is not None:
                tracker.log(record)
        bar.update(1)
        bar.set_postfix(postfix(acc))
        if dist.main and save_every and (step + 1) % save_every == 0:
            on_save(step + 1)
        if (
            dist.main
            and checkpoint_every
            and (step + 1) % checkpoint_every == 0
            and step + 1 < steps
        ):
            save_checkpoint(checkpoint, step=step + 1, order=order, key=checkpoint_key, **ckpt_args)
    bar.close()
    dist.barrier()
    return steps, start, list(iter_jsonl(log_path))


def remove_checkpoint(checkpoint: Path) -> None:
    """Drop a finished run's checkpoint; call only once the adapter it led to is saved."""
    shutil.rmtree(checkpoint, ignore_errors=True)


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
    both (:mod:`reasonmaxxer.rounds`)."""
    run_dir = Path(run_dir)
    t = cfg.train
    if not (run_dir / SELECTION).is_file():
        raise UserError(
            f"{run_dir / SELECTION} not found: run `reasonmaxxer select {run_dir}` first"
        )
    import torch

    from .models import load_model

    rows = read_rows(run_dir / SELECTION, SELECTION_KEYS)
    if t.positive_only:
        rows = [r for r in rows if r["advantage"] > 0]
    if not rows:
        raise UserError("no rollouts to train on after selection")
    if not any(r["decision"] for r in rows):
        raise UserError(
            f"{run_dir / SELECTION} marks no decision token, so training would learn nothing: "
            f"re-run `reasonmaxxer select {run_dir}` with a lower --tau or a higher --top-frac"
        )

    from .scaleout.dist import init_dist

    dist = init_dist(t.grad_accum)  # one process, or those of `accelerate launch`
    tracker = None
    if dist.main and t.report_to != "none":
        from .tracking import open_tracker

        tracker = open_tracker(
            t.report_to, run_dir, name=f"train {run_dir.name}", config=to_dict(cfg)
        )
    if t.dev:
        from .checkpoints import check_dev_disjoint

        check_dev_disjoint(cfg)
    torch.manual_seed(t.seed)
    rng = random.Random(t.seed)
    model, _, info = load_model(
        cfg.model.model,
        dtype=cfg.model.dtype,
        trust_remote_code=cfg.model.trust_remote_code,
        device=cfg.model.device,
    )
    if dist.device is not None:
        model.to(dist.device)
    if init_adapter:
        from .models import apply_adapter

        device = model.device
        model = apply_adapter(model, init_adapter, is_trainable=True).to(device)
    else:
        model = lora_model(model, cfg)
    ref = None
    if ref_model:
        ref, _, _ = load_model(
            ref_model,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
            device=cfg.model.device,
        )
        ref.requires_grad_(False)
        if dist.device is not None:
            ref.to(dist.device)
    tokens = max(len(r["completion_ids"]) for r in rows)
    if t.kl_scope == "all":
        tokens += max(len(r["prompt_ids"]) for r in rows)
    check_batch_fits(
        "train",
        "train.batch_size",
        t.batch_size,
        tokens,
        model.config.vocab_size,
        device=str(model.device),
    )
    model.train()
    if t.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=t.lr, weight_decay=t.weight_decay
    )

    scope = _checkpoint_scope(cfg, rows) + (
        [init_adapter, ref_model] if init_adapter or ref_model else []
    )
    per_step = t.batch_size * t.grad_accum
    save_every, on_save, snapshots = 0, None, None
    if t.save_every_frac:
        from . import checkpoints

        snapshots = checkpoints.prepare(run_dir, cfg, scope)
        save_every = checkpoints.snapshot_every(t.save_every_frac, len(rows), per_step)

        def on_save(step: int) -> None:
            out = checkpoints.step_dir(snapshots, step)
            if not (out / "adapter_model.safetensors").is_file():  # a resumed run made it
                save_adapter(model, out)

    # A run killed while scoring its checkpoints goes straight back to scoring them.
    trained = checkpoints.trained_steps(snapshots) if snapshots else None
    with Timer() as wall:
        if trained is not None:
            steps = start = trained
        else:
            steps, start, _ = optimize(
                model,
                opt,
                rows,
                micro_loss=lambda micro: step_loss(model, build_batch(micro), cfg, ref_model=ref),
                epochs=t.epochs,
                max_steps=t.max_steps,
                batch_size=t.batch_size,
                grad_accum=t.grad_accum,
                lr=t.lr,
                warmup_steps=t.warmup_steps,
                max_grad_norm=t.max_grad_norm,
                rng=rng,
                log_path=run_dir / "train_log.jsonl",
                checkpoint=run_dir / CHECKPOINT,
                checkpoint_every=t.checkpoint_every,
                checkpoint_scope=scope,
                save_every=save_every,
                on_save=on_save,
                batches=batch_order(t.order),
                schedule=t.schedule,
                desc="train",
                postfix=lambda acc: {
                    "loss": f"{acc['loss']:.3f}",
                    "dec": f"{acc['loss_dec']:.3f}",
                    "kl": f"{acc['loss_anchor']:.4f}",
                },
                dist=dist,
                tracker=tracker,
            )
    if tracker is not None:
        tracker.finish()
    chosen = None
    if dist.main:
        if trained is None:
            save_adapter(model, run_dir / ADAPTER)
        if snapshots is not None:
            on_save(steps)  # the final adapter is a candidate too
            checkpoints.mark_trained(snapshots, steps)
        remove_checkpoint(run_dir / CHECKPOINT)
        if snapshots is not None:
            chosen = checkpoints.score_and_choose(
                run_dir, cfg, snapshots, steps_per_epoch=len(rows) / per_step
            )
    summary = {
        "steps": steps,
        "rollouts": len(rows),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_frac": trainable / total,
        "tokens_processed": sum(len(r["prompt_ids"]) + len(r["completion_ids"]) for r in rows)
        * steps
        * t.batch_size
        * t.grad_accum
        // len(rows),
        "wall_time_s": wall.seconds,
        "resumed_from_step": start,
        "model": info.to_dict(),
        **({"checkpoint_choice": chosen} if chosen else {}),
    }
    if dist.world > 1:
        summary["processes"] = dist.world
    if dist.main:
        atomic_write_json(run_dir / "train.json", summary)
    dist.close()
    return summary
