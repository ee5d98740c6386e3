"""Side-by-side tables of evaluation runs (the metrics JSONs written by ``uvis eval``).

A row per run, a column per metric, in the order given: how the default run shows the
DeepSORT baseline, UVIS without and with the tracking memory and the supervised upper bound
next to each other. Missing metrics (``null`` in the JSON, e.g. AP of an empty size range) show
as an en dash, never as zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uvis.errors import DataError

#: The YouTube-VIS columns shown by default (UVIS Tables 1-4 report these).
YTVIS_COLUMNS = ("AP", "AP50", "AP75", "AR1", "AR10")


def read_metrics(path: str | Path) -> dict[str, Any]:
    """One metrics JSON written by ``uvis eval``; a DataError naming the file otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DataError(path, "metrics file does not exist") from exc
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read metrics JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(path, "metrics JSON must be an object")
    return data


def comparison_rows(
    runs: Sequence[tuple[str, dict[str, Any]]], columns: Sequence[str] = YTVIS_COLUMNS
) -> list[dict[str, Any]]:
    """``{"run": name, column: value or None, ...}`` per run; an absent column is an error."""
    rows = []
    for name, metrics in runs:
        missing = [c for c in columns if c not in metrics]
        if missing:
            raise ValueError(f"run {name!r} has no metric {missing[0]!r}")
        rows.append({"run": name, **{c: metrics[c] for c in columns}})
    return rows


def comparison_markdown(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] = YTVIS_COLUMNS, *, title: str = ""
) -> str:
    """A Markdown table of :func:`comparison_rows` (one decimal, en dash for undefined)."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        return f"{v:.1f}"

    lines = [f"# {title}", ""] if title else []
    lines.append("| run | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))
    for r in rows:
        lines.append(f"| {r['run']} | " + " | ".join(cell(r[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"
