"""Will a batch fit? A measured estimate, checked before a stage's first forward pass.

Teacher-forced stages hold full-vocabulary logits: ``rows × tokens × vocab`` floats, several
times over while training. Measured on SmolLM2-135M (vocab 49,152, 128 completion tokens,
float32, this project's chunked loss and activation checkpointing), as peak RSS above the
loaded model:

- ``select`` (entropies), 16 rows: 1.07 GiB measured, of which ~0.54 GiB is the weights
  paged in on first use, so ~0.53 GiB, i.e. ~1.4 logits-sized buffers a row;
- ``train``, 8 rows: ~1.85 GiB, i.e. ~9.5; without activation checkpointing ~3.1 GiB, i.e.
  ~16 (every layer's activations kept for the backward pass).

Training and selection no longer hold whole-batch logits (``engine.logit_source``: the LM
head runs a row at a time inside the checkpointed loss), so the *live* tensors of a default
train step are ~0.25 GiB above the model. RSS stays near the figures above because glibc's
heap fragments around the tensors activation checkpointing keeps: with
``MALLOC_MMAP_THRESHOLD_=2097152`` the same 3 steps peaked at 1.26-1.28 GiB instead of 2.03-2.10 GiB,
but took 1.4-2.1x the step time (every large allocation page-faults fresh memory;
benchmarks/results/train_memory.md). The estimate stays the RSS one: it is what the kernel
counts when it decides to kill.

So the line on a machine with 20 GiB free is near 80 training rows and 550 selection rows of
128 tokens. Past it the kernel would kill the process mid-stage; instead the stage stops with
one ``error:`` line naming the setting.
"""

from __future__ import annotations

from ..errors import UserError

# logits-sized float32 buffers alive per row at a stage's peak (measured; see above)
BUFFERS_PER_ROW = {"select": 1.4, "train": 9.5, "train_no_checkpointing": 16.4}


def stage_bytes(stage: str, rows: int, tokens: int, vocab: int) -> int:
    """Estimated peak bytes a stage adds on top of the loaded model."""
    return int(BUFFERS_PER_ROW[stage] * rows * tokens * vocab * 4)


def available_bytes(device: str = "cpu") -> int | None:
    """Memory free for this process now: CUDA's free memory on a GPU, ``MemAvailable`` on
    Linux; None where neither is known (then nothing is checked)."""
    if str(device).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_batch_fits(
    stage: str,
    setting: str,
    rows: int,
    tokens: int,
    vocab: int,
    *,
    device: str = "cpu",
    available: int | None = None,
) -> None:
    """A :class:`UserError` naming ``setting`` when ``rows`` rows of ``tokens`` tokens would
    need more memory than is free (``available``, default: :func:`available_bytes`)."""
    free = available if available is not None else available_bytes(device)
    need = stage_bytes(stage, rows, tokens, vocab)
    if free is None or need <= free:
        return
    per_row = stage_bytes(stage, 1, tokens, vocab)
    fits = max(free // per_row, 0)
    raise UserError(
        f"{setting} {rows} needs ~{need / 2**30:.1f} GiB for {setting.split('.')[0]}'s full-vocabulary logits "
        f"({rows} rows x {tokens} tokens x {vocab:,} vocab), more than the "
        f"{free / 2**30:.1f} GiB free on {device}; at most ~{fits} rows fit: lower {setting}"
    )
