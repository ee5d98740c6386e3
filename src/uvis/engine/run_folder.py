"""A training's output folder: its checkpoints, loss curve and TensorBoard events.

Shared by every training that resumes (the VIS model's and the tag-based model's):

* ``checkpoint_<iteration>.pth``, of which the latest ``keep`` are kept;
* ``metrics.csv``, the loss curve, one row per logged window, written whole (atomically) after
  each window and read back up to the resumed iteration;
* ``superseded/``, where the checkpoints and logs of another run are set aside when a run with
  other settings or data starts in the folder;
* ``tensorboard/``, event files (on request).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from uvis.errors import ConfigError, DataError
from uvis.io import atomic_write_text

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.csv"
CONFIG_NAME = "config.json"
TENSORBOARD_DIR = "tensorboard"
SUPERSEDED_DIR = "superseded"
#: What a training does with a checkpoint of another run in its output folder.
STALE_POLICIES = ("error", "restart")
_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)\.pth$")


def metrics_csv(rows: list[dict[str, float]], columns: Sequence[str]) -> str:
    """The CSV text of a loss curve with the given column order."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def read_metrics(path: Path, up_to: int | None = None) -> list[dict[str, float]]:
    """Rows of a ``metrics.csv``-style loss curve, those up to iteration ``up_to`` when given
    (a resumed run keeps the rows of the steps it keeps).

    Raises:
        DataError: naming ``path`` when the file exists but cannot be read as a loss curve.
    """
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as f:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(path, f"cannot read it as a training curve: {exc}") from exc
    for row in rows:
        row["iteration"] = int(row["iteration"])
    return [row for row in rows if up_to is None or row["iteration"] <= up_to]


class RunFolder:
    """The output folder of one training run (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def checkpoint_path(self, iteration: int) -> Path:
        return self.path / f"checkpoint_{iteration:07d}.pth"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """``(iteration, path)`` of the intermediate checkpoints, oldest first."""
        if not self.path.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.path.iterdir() if (m := _CHECKPOINT_RE.match(p.name))
        ]
        return sorted(found)

    def save_checkpoint(self, iteration: int, checkpoint: Mapping[str, Any], keep: int) -> Path:
        """Write ``checkpoint`` as ``checkpoint_<iteration>.pth`` atomically, then keep the
        latest ``keep`` checkpoints (:meth:`prune`); returns its path."""
        from uvis.checkpoints import save_checkpoint  # torch: not for readers of loss curves

        path = self.checkpoint_path(iteration)
        save_checkpoint(path, checkpoint)
        self.prune(keep)
        return path

    def prune(self, keep: int) -> None:
        """Delete all but the latest ``keep`` checkpoints (``keep=0``: keep every one)."""
        if keep:
            for _, path in self.checkpoints()[:-keep]:
                path.unlink(missing_ok=True)

    def set_aside(self, logs: Sequence[str] = (METRICS_NAME, CONFIG_NAME)) -> Path:
        """Move the checkpoints and ``logs`` of another run to ``superseded/``, which keeps the
        last superseded run only; a final model stays (the workflow decides whether it is out
        of date). Returns the folder."""
        found = self.checkpoints()
        aside = self.path / SUPERSEDED_DIR
        if aside.exists():
            shutil.rmtree(aside)
        aside.mkdir(parents=True)
        for _, path in found:
            path.rename(aside / path.name)
        for name in logs:
            if (self.path / name).exists():
                (self.path / name).rename(aside / name)
        logger.warning("%d checkpoints of another run moved to %s", len(found), aside)
        return aside


class MetricsLog:
    """A loss curve being written: rows kept in memory and rewritten to ``path`` after each,
    with their scalars to a TensorBoard writer when one is given (tag ``prefix/column``)."""

    def __init__(
        self,
        path: Path,
        columns: Sequence[str],
        *,
        resume_from: int = 0,
        writer: Any = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.rows = read_metrics(path, resume_from) if resume_from else []
        self.writer = writer
        self.tags = dict(tags or {})

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        atomic_write_text(self.path, metrics_csv(self.rows, self.columns))
        if self.writer is not None:
            step = int(row["iteration"])
            for column, tag in self.tags.items():
                self.writer.add_scalar(tag, row[column], step)
            self.writer.flush()


class StaleCheckpointError(DataError):
    """The latest checkpoint in a run folder belongs to another run (settings or data)."""


def resume_problem(
    checkpoint: Mapping[str, Any],
    *,
    conflicts: Sequence[str],
    what: str,
    categories: list[dict[str, Any]],
    data_summary: Mapping[str, Any],
) -> str | None:
    """Why a training ``checkpoint`` cannot be resumed by this run, or ``None``.

    ``conflicts`` are the ``what`` settings that differ from the checkpoint's and must not;
    the checkpoint must also hold a training state and have been trained on the same
    ``categories`` and data (``training.data`` equal to ``data_summary``).
    """
    if conflicts:
        return f"{what} settings {list(conflicts)} differ from this run's"
    training = checkpoint.get("training")
    if not isinstance(training, dict):
        return "it has no training state to resume from"
    if checkpoint.get("categories") != categories or training.get("data") != data_summary:
        return "it was trained on other data or classes"
    return None


def checkpoint_to_resume(
    folder: RunFolder,
    read: Callable[[Path], dict[str, Any]],
    problem: Callable[[dict[str, Any]], str | None],
    stale: str,
    set_aside: Callable[[], object] | None = None,
) -> tuple[dict[str, Any], Path] | None:
    """The latest checkpoint in ``folder`` and its path when this run can resume from it.

    ``problem(checkpoint)`` says why it cannot (:func:`resume_problem`). Then, with ``stale``
    ``"restart"``, the other run is set aside (``set_aside``, by default
    :meth:`RunFolder.set_aside`) and ``None`` returned: training starts afresh.

    Raises:
        ConfigError: for a ``stale`` policy not in :data:`STALE_POLICIES`.
        StaleCheckpointError: naming the checkpoint, with ``stale="error"``.
    """
    if stale not in STALE_POLICIES:
        raise ConfigError(f"stale must be one of {STALE_POLICIES}, got {stale!r}")
    found = folder.checkpoints()
    if not found:
        return None
    path = found[-1][1]
    checkpoint = read(path)
    why = problem(checkpoint)
    if why is None:
        return checkpoint, path
    if stale == "restart":
        (set_aside or folder.set_aside)()
        return None
    raise StaleCheckpointError(
        path, f"cannot resume: {why} (use another output folder for another run)"
    )
