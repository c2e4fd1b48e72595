"""Live experiment trackers for long training runs (``report_to``, as TRL has it).

The run folder (``train_log.jsonl``, ``train.json``) stays the record; a tracker only mirrors
each optimizer step's row so a run on a cluster can be watched live. ``none`` (the default)
imports nothing. Offline modes are the trackers' own: ``WANDB_MODE=offline``, trackio's local
store, TensorBoard event files (written under ``RUN/tensorboard``).
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

REPORT_TO = ("none", "trackio", "wandb", "tensorboard")
PROJECT = "reasonmaxxer"


class Tracker:
    """The no-op tracker: ``log(row)`` per optimizer step, ``finish()`` at the end."""

    def log(self, row: dict) -> None:
        pass

    def finish(self) -> None:
        pass


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path, config: dict) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "report_to tensorboard needs the tensorboard package: pip install tensorboard"
            ) from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", f"```\n{config}\n```")

    def log(self, row: dict) -> None:
        step = row["step"]
        for k, v in _scalars(row).items():
            self.writer.add_scalar(k, v, step)

    def finish(self) -> None:
        self.writer.close()


class ModuleTracker(Tracker):
    """wandb and trackio share ``init(project, name, config)`` / ``log(dict, step)`` /
    ``finish()``."""

    def __init__(self, kind: str, run_dir: Path, name: str, config: dict) -> None:
        import importlib

        try:
            self.mod = importlib.import_module(kind)
        except ImportError:
            raise UserError(
                f"report_to {kind} needs the {kind} package: pip install {kind}"
            ) from None
        kwargs = {"project": PROJECT, "name": name, "config": config}
        if kind == "wandb":
            kwargs["dir"] = str(run_dir)
        self.run = self.mod.init(**kwargs)

    def log(self, row: dict) -> None:
        self.mod.log(_scalars(row), step=row["step"])

    def finish(self) -> None:
        self.mod.finish()


def _scalars(row: dict) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
    }


def open_tracker(kind: str, run_dir: str | Path, *, name: str, config: dict) -> Tracker:
    """The tracker ``kind`` names (one of :data:`REPORT_TO`); a missing package is a
    :class:`UserError` before any training starts."""
    run_dir = Path(run_dir)
    if kind == "none":
        return Tracker()
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, config)
    if kind in ("wandb", "trackio"):
        return ModuleTracker(kind, run_dir, name, config)
    raise UserError(f"report_to must be one of {', '.join(REPORT_TO)}; got {kind!r}")
