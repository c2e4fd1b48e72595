"""The optimisation loop ``train`` and ``distill`` share, and its resumable checkpoint.

One epoch's micro-batches come from a batcher (:func:`batch_order`); each optimizer step
accumulates ``grad_accum`` of them, clips the gradient norm and logs one row. Every
``checkpoint_every`` steps the adapter, the AdamW moments, the RNG states and the remaining
batch order are saved (safetensors + JSON, written atomically), so a killed run started again
with the same settings continues from there and ends with the same adapter.
"""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path

from .errors import UserError
from .io import (
    append_jsonl,
    atomic_dir,
    atomic_write_json,
    atomic_write_jsonl,
    identity_hash,
    iter_jsonl,
    read_json,
)
from .runinfo import memory_row


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
    from .method.selection import curriculum_order

    ordered = curriculum_order(rows)
    return [ordered[b : b + batch_size] for b in range(0, len(ordered), batch_size)]


def batch_order(order: str):
    """The batcher for ``train.order``: ``(rows, batch_size, rng) -> batches in use order``."""
    if order == "curriculum":
        return curriculum_batches
    # bucketed_batches' order is random: reversed, it is consumed exactly as it always was
    return lambda rows, batch_size, rng: bucketed_batches(rows, batch_size, rng)[::-1]


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
    from .scaleout.dist import SINGLE

    dist = dist or SINGLE
    params = [p for g in opt.param_groups for p in g["params"]]
    key = scope_key(checkpoint_scope)
    per_step = batch_size * grad_accum
    batches = batches or batch_order("shuffle")
    steps, scheduled = step_counts(epochs, len(rows), per_step, max_steps)
    ckpt_args = {"model": model, "opt": opt, "params": params, "rng": rng, "rows": rows}
    start, order = load_checkpoint(checkpoint, key=key, **ckpt_args)
    if dist.main:  # only the main process writes the log, checkpoints and the adapter
        _restart_log(log_path, start)
    bar = _progress_bar(steps, start, desc, enabled=dist.main)
    stack = _BatchStack(order, lambda: batches(rows, batch_size, rng)[::-1])
    for step in range(start, steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, warmup_steps, schedule, scheduled)
        acc = _accumulate(step, stack, micro_loss, grad_accum, dist, params, summed)
        grad_norm = _clip_and_step(opt, params, max_grad_norm, step)
        if dist.main:
            epoch = (step + 1) * per_step / len(rows)
            _write_row(log_path, tracker, step, epoch, opt.param_groups[0]["lr"], grad_norm, acc)
        bar.update(1)
        bar.set_postfix(postfix(acc))
        if dist.main and _every(step + 1, save_every):
            on_save(step + 1)
        if dist.main and _every(step + 1, checkpoint_every) and step + 1 < steps:
            save_checkpoint(checkpoint, step=step + 1, order=stack.order, key=key, **ckpt_args)
    bar.close()
    dist.barrier()
    return steps, start, list(iter_jsonl(log_path))


def step_counts(
    epochs: float, n_rows: int, per_step: int, max_steps: int | None
) -> tuple[int, int]:
    """``(steps, scheduled)``: the optimizer steps to run (``max_steps`` caps them) and the
    scheduled length, ⌈epochs × rows ÷ rows per step⌉, that a linear schedule decays over."""
    steps = scheduled = math.ceil(epochs * n_rows / per_step)
    if max_steps is not None:
        steps = min(steps, max_steps)
    return steps, scheduled


def _every(n: int, k: int) -> bool:
    """Whether step ``n`` (1-based) is a multiple of ``k``; ``k = 0``: never."""
    return bool(k) and n % k == 0


def _progress_bar(steps: int, start: int, desc: str, *, enabled: bool):
    """A tqdm bar over optimizer steps, resumed at ``start``; hidden off the main process."""
    from tqdm.auto import tqdm

    return tqdm(
        total=steps,
        initial=start,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        disable=not enabled,
    )


def _write_row(log_path: Path, tracker, step: int, epoch: float, lr: float, grad_norm, acc):
    """Append optimizer step ``step``'s (0-based) log row, namespaced ``train/...``, to
    ``log_path`` and mirror it to ``tracker`` (None: none). ``sys/...``: this process's
    memory after the step (:func:`runinfo.memory_row`), the one part that varies run to run."""
    record = {
        "step": step + 1,
        "epoch": epoch,
        "lr": lr,
        "grad_norm": grad_norm,
        **{f"train/{name}": v for name, v in acc.items()},
        **memory_row(),
    }
    append_jsonl(log_path, [record])
    if tracker is not None:
        tracker.log(record)


def scope_key(scope) -> str:
    """The 16-hex-digit key of a checkpoint scope (any JSON-able value; other values by
    ``str``): a checkpoint is resumed only under the same key."""
    return identity_hash(scope)


def _restart_log(log_path: Path, start: int) -> None:
    """Keep the log rows of the steps a resumed checkpoint holds, nothing after them; a run
    from scratch (``start == 0``) starts a new log."""
    if start:
        done = [r for r in iter_jsonl(log_path, tolerate_torn_tail=True) if r["step"] <= start]
        atomic_write_jsonl(log_path, done)
    else:
        log_path.unlink(missing_ok=True)


class _BatchStack:
    """The micro-batches still to come, as a stack (the next one is last); ``epoch()`` makes
    the next epoch's stack once this one is used up. ``order`` is what a checkpoint saves."""

    def __init__(self, order: list, epoch) -> None:
        self.order, self.epoch = order, epoch

    def pop(self) -> list[dict]:
        if not self.order:
            self.order = self.epoch()
        return self.order.pop()


def _accumulate(step, stack, micro_loss, grad_accum, dist, params, summed) -> dict:
    """Forward and backward ``grad_accum`` micro-batches of optimizer step ``step`` (0-based)
    and return the step's statistics: averaged over the micro-batches that defined them
    (``summed`` keys: summed), reduced over processes; the gradients too."""
    acc: dict[str, float] = {}
    seen: dict[str, int] = {}
    names: dict[str, None] = {}  # every statistic a micro-batch reports, in order
    for i in range(grad_accum):
        micro = stack.pop()
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
    return {k: v if k in summed else v / seen[k] for k, v in acc.items()}


def _clip_and_step(opt, params, max_grad_norm: float, step: int) -> float:
    """Clip the gradients, take the optimizer step, zero the gradients; returns the norm
    before clipping. A non-finite norm stops training with a UserError."""
    import torch

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
    return grad_norm


def remove_checkpoint(checkpoint: Path) -> None:
    """Drop a finished run's checkpoint; call only once the adapter it led to is saved."""
    shutil.rmtree(checkpoint, ignore_errors=True)
