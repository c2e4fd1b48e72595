"""Data parallelism for training under ``accelerate launch`` / ``torchrun``."""

from __future__ import annotations

import os

from ..errors import UserError


class Dist:
    """Data parallelism for :func:`.optim.optimize` under ``accelerate launch`` / ``torchrun``.

    ``grad_accum`` keeps its meaning: micro-batches per optimizer step, over *all* processes.
    Every process draws the same shuffled micro-batch order (same seed); process ``rank``
    runs micro-batches ``rank, rank + world, ...`` of each step, the gradients are summed
    over processes (an all-reduce of the LoRA gradients, which is what DDP does), and every
    process takes the same optimizer step. The adapter is therefore the single-process
    adapter with the same config, up to float summation order. Only the main process writes
    the log, checkpoints and the adapter. The single-process instance changes nothing.
    """

    def __init__(self, rank: int = 0, world: int = 1, device=None) -> None:
        self.rank, self.world, self.device = rank, world, device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, i: int) -> bool:
        """Whether micro-batch ``i`` of a step runs in this process."""
        return i % self.world == self.rank

    def reduce_grads(self, params) -> None:
        """Sum every parameter's gradient over processes (in place)."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as td

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        td.all_reduce(flat, op=td.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n

    def reduce_stats(
        self, acc: dict[str, float], seen: dict[str, int], names: list[str]
    ) -> tuple[dict[str, float], dict[str, int]]:
        """Sum each step statistic, and how many micro-batches defined it, over processes;
        ``names`` lists every statistic (the same in every process)."""
        if self.world == 1:
            return acc, seen
        import torch
        import torch.distributed as td

        values = [acc.get(k, 0.0) for k in names] + [float(seen.get(k, 0)) for k in names]
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        td.all_reduce(t, op=td.ReduceOp.SUM)
        total, counts = t[: len(names)].tolist(), t[len(names) :].tolist()
        acc = {k: v for k, v, c in zip(names, total, counts, strict=True) if c > 0}
        seen = {k: int(c) for k, c in zip(names, counts, strict=True) if c > 0}
        return acc, seen

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def close(self) -> None:
        """Wait for every process, then leave the process group."""
        if self.world > 1:
            import torch.distributed as td

            td.barrier()
            td.destroy_process_group()


SINGLE = Dist()


def launched_world() -> int:
    """Processes started by ``accelerate launch`` / ``torchrun`` (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_dist(grad_accum: int) -> Dist:
    """:data:`SINGLE`, or the process group of a launched run (``accelerate launch
    --multi_gpu`` and ``torchrun`` set ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR``): NCCL with
    one GPU per process, gloo on CPU. Checks that ``grad_accum`` splits over the processes."""
    world = launched_world()
    if world == 1:
        return SINGLE
    if grad_accum % world:
        raise UserError(
            f"--grad-accum is the micro-batches per optimizer step over all processes; "
            f"with {world} processes it must be a multiple of {world} (got {grad_accum})"
        )
    import torch
    import torch.distributed as td

    cuda = torch.cuda.is_available()
    device = None
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(td.get_rank(), td.get_world_size(), device)


def is_main_process() -> bool:
    """True unless this is a non-main process of a launched multi-process run."""
    return int(os.environ.get("RANK", "0")) == 0
