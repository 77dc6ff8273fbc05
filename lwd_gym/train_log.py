"""What a ``learn`` call records: per stage, the training loss of every gradient step, a
validation loss on held-out episodes, and in-training evaluation results.

``agent.training_log`` (a :class:`TrainingLog`) holds it in memory after ``learn``; with
``learn(..., log_dir=DIR)`` every stage also writes ``DIR/<stage>.csv`` (one row per gradient
step, always) and TensorBoard scalars under ``DIR/tensorboard`` when ``tensorboard`` is
installed (``pip install tensorboard``).  Rows are written as training goes, so a run can be
watched while it trains; a resumed run rewrites its file from the restored history.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: columns every stage's CSV starts with; a stage's own loss terms (e.g. ``bc``, ``kl``) follow.
BASE_COLUMNS = ("step", "loss", "lr", "val_loss", "eval_success", "seconds")


@dataclass
class StageLog:
    """The record of one training stage (``"vae"``, ``"latent-diffusion"``, ``"dp"``, ...).

    ``rows[i]`` is gradient step ``i``: ``step`` (1-based), ``loss``, ``lr``, ``val_loss`` (NaN
    except at validation steps), ``eval_success`` (NaN except at evaluation steps), ``seconds``
    (the stage's wall-clock at the end of the gradient step, earlier validations and evaluations included, summed
    over resumed runs) and the stage's own loss terms.

    ``kept_step`` is the step whose weights the stage ended with when it kept its best ones (by
    in-training success, or by validation loss with ``learn(..., keep_best_validation=True)``);
    ``None`` when it ended with its last step's.
    """

    stage: str
    rows: list[dict[str, float]] = field(default_factory=list)
    kept_step: int | None = None

    def column(self, name: str) -> np.ndarray:
        """One column over all steps (NaN where a row lacks it)."""
        return np.array([row.get(name, math.nan) for row in self.rows], dtype=np.float64)

    @property
    def steps(self) -> np.ndarray:
        return self.column("step").astype(np.int64)

    @property
    def loss(self) -> np.ndarray:
        return self.column("loss")

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, val_loss)`` at the steps where the validation loss was measured."""
        val = self.column("val_loss")
        keep = ~np.isnan(val)
        return self.steps[keep], val[keep]

    @property
    def seconds(self) -> np.ndarray:
        """Wall-clock of the stage at each step (NaN in logs written before it was recorded)."""
        return self.column("seconds")

    def evaluations(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, success rate)`` of the in-training evaluations."""
        success = self.column("eval_success")
        keep = ~np.isnan(success)
        return self.steps[keep], success[keep]

    def columns(self) -> list[str]:
        extra = sorted({k for row in self.rows for k in row} - set(BASE_COLUMNS))
        return [*BASE_COLUMNS, *extra]

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write every row (one per gradient step) to ``path``."""
        path = Path(path)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns(), restval="")
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        return path

    @classmethod
    def from_csv(cls, path: str | os.PathLike, stage: str | None = None) -> StageLog:
        """Read a file written by :meth:`to_csv` (or by a running ``learn``)."""
        path = Path(path)
        with open(path, newline="") as f:
            rows = [{k: (math.nan if v == "" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]
        return cls(stage or path.stem, rows)


@dataclass
class TrainingLog:
    """Every stage of one ``learn`` call, in training order: ``log["vae"]``, ``log.stages``."""

    stages: dict[str, StageLog] = field(default_factory=dict)

    def __getitem__(self, stage: str) -> StageLog:
        return self.stages[stage]

    def __contains__(self, stage: str) -> bool:
        return stage in self.stages

    def __iter__(self):
        return iter(self.stages.values())

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: steps, first/last training loss (mean of 1 % of steps), the last and best
        validation loss, and the step whose weights it kept (NaN: its last)."""
        out = {}
        for log in self:
            loss = log.loss
            k = max(1, len(loss) // 100)
            _, val = log.validation()
            out[log.stage] = {
                "steps": len(loss),
                "first_loss": float(np.mean(loss[:k])) if len(loss) else math.nan,
                "last_loss": float(np.mean(loss[-k:])) if len(loss) else math.nan,
                "last_val_loss": float(val[-1]) if len(val) else math.nan,
                "best_val_loss": float(val.min()) if len(val) else math.nan,
                "kept_step": log.kept_step if log.kept_step is not None else math.nan,
            }
        return out


class StageWriter:
    """Streams one stage's rows to its CSV (and TensorBoard) while :func:`~lwd_gym.training.fit` runs."""

    def __init__(self, log: StageLog, log_dir: str | os.PathLike | None, flush_every: int = 50) -> None:
        self.log, self.flush_every = log, flush_every
        self.path = None if log_dir is None else Path(log_dir) / f"{log.stage}.csv"
        self._file = self._writer = self._tb = None
        self._columns: list[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tb = _tensorboard_writer(Path(log_dir) / "tensorboard")

    def start(self) -> None:
        """(Re)write the file from the rows already in the log (a resumed run's history)."""
        if self.path is None:
            return
        self._close_file()
        self._file = open(self.path, "w", newline="")
        if self.log.rows:
            self._open_writer(self.log.columns())
            for row in self.log.rows:
                self._write(row)

    def append(self, row: dict[str, float]) -> None:
        """Record a gradient step (``row["step"]``); its validation / evaluation cells may be filled later with :meth:`update`."""
        self.log.rows.append(row)

    def update(self, **values: float) -> None:
        self.log.rows[-1].update(values)

    def commit(self) -> None:
        """The last row is complete: write it out."""
        row = self.log.rows[-1]
        if self.path is None:
            return
        if self._writer is None:
            self._open_writer([*BASE_COLUMNS, *sorted(set(row) - set(BASE_COLUMNS))])
        self._write(row)
        if int(row["step"]) % self.flush_every == 0:
            self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, float) and not math.isnan(value):
                    self._tb.add_scalar(f"{self.log.stage}/{key}", value, int(row["step"]))

    def close(self) -> None:
        self._close_file()
        if self._tb is not None:
            self._tb.flush()

    def _open_writer(self, columns: list[str]) -> None:
        self._columns = columns
        self._writer = csv.DictWriter(self._file, fieldnames=columns, restval="", extrasaction="ignore")
        self._writer.writeheader()

    def _write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


def _tensorboard_writer(path: Path):
    """TensorBoard's ``SummaryWriter`` when tensorboard is installed, else ``None`` (CSV only)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(path))
