"""The loss curve of a training run, ``metrics.csv``: written whole, read back on resume.

Shared by the VIS model's and the tag-based model's training. Each row is one logged window:
``iteration`` (the step it ends at) and the run's own loss and rate columns.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from uvis.errors import DataError


def metrics_csv(rows: list[dict[str, float]], columns: Sequence[str]) -> str:
    """The CSV text of a loss curve with the given column order."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def read_metrics(path: Path, up_to: int) -> list[dict[str, float]]:
    """Rows of an earlier run's ``metrics.csv`` up to iteration ``up_to`` (resumed runs).

    Raises:
        DataError: naming ``path`` when the file exists but cannot be read as a loss curve.
    """
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as f:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(
            path, f"cannot read the loss curve of the run being resumed: {exc}"
        ) from exc
    for row in rows:
        row["iteration"] = int(row["iteration"])
    return [row for row in rows if row["iteration"] <= up_to]
