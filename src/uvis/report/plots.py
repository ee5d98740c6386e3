"""Figures for the report: per-category AP bar charts and training loss curves.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display needed) and
written atomically as PNG at a fixed size, so a rule's output does not depend on the machine.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from uvis.engine.run_folder import read_metrics as read_curve
from uvis.errors import DataError
from uvis.evaluation.compare import read_metrics
from uvis.io import atomic_path

DPI = 100
WIDTH_IN = 9.0
"""Figures are ``WIDTH_IN * DPI`` pixels wide."""

STEP_COLUMNS = ("iteration", "step", "epoch")
"""Candidate x-axis columns of a training ``metrics.csv``, in order of preference."""


def _save(fig: Figure, out: str | os.PathLike[str]) -> None:
    FigureCanvasAgg(fig)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


# ---------------------------------------------------------------------------------------------
# Per-category AP


def per_category_ap(path: str | os.PathLike[str]) -> dict[str, float | None]:
    """The ``per_category`` AP of a YouTube-VIS metrics JSON (``uvis eval ytvis``)."""
    metrics = read_metrics(path)
    per_category = metrics.get("per_category")
    if not isinstance(per_category, dict) or not per_category:
        raise DataError(path, "metrics JSON has no 'per_category' AP")
    if not all(v is None or isinstance(v, int | float) for v in per_category.values()):
        raise DataError(path, "'per_category' values must be numbers or null")
    return {str(k): None if v is None else float(v) for k, v in per_category.items()}


def per_category_ap_figure(
    runs: Sequence[tuple[str, Mapping[str, float | None]]], title: str
) -> Figure:
    """Horizontal grouped bars: one group per category (first run's order), one bar per run.

    A category whose AP is undefined for a run (no ground truth) gets no bar and an "n/a"
    mark, so it is never mistaken for an AP of 0.
    """
    if not runs:
        raise ValueError("no runs to plot")
    categories = list(dict.fromkeys(c for _, ap in runs for c in ap))
    n_runs = len(runs)
    height = 1.2 + 0.22 * len(categories) * max(1.0, 0.6 * n_runs)
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    bar = 0.8 / n_runs
    y = np.arange(len(categories), dtype=float)
    for k, (label, ap) in enumerate(runs):
        values = [ap.get(c) for c in categories]
        pos = y - 0.4 + bar * (k + 0.5)
        defined = [i for i, v in enumerate(values) if v is not None]
        ax.barh(pos[defined], [values[i] for i in defined], height=bar, label=label)
        for i, v in enumerate(values):
            if v is None:
                ax.text(0.5, pos[i], "n/a", va="center", fontsize=7, color="0.4")
    ax.set_yticks(y, categories)
    ax.invert_yaxis()
    top = max((v for _, ap in runs for v in ap.values() if v is not None), default=0.0)
    ax.set_xlim(0, min(100.0, max(10.0, 1.1 * top)))
    ax.set_xlabel("AP (IoU 0.50:0.95)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def write_per_category_ap(
    runs: Sequence[tuple[str, str | os.PathLike[str]]], out: str | os.PathLike[str], title: str
) -> None:
    """Per-category AP of each ``(label, metrics JSON)`` as one grouped bar chart PNG."""
    _save(per_category_ap_figure([(label, per_category_ap(p)) for label, p in runs], title), out)


# ---------------------------------------------------------------------------------------------
# Training loss curves


@dataclass(frozen=True)
class LossCurves:
    """Loss columns of a training ``metrics.csv`` against its step column, and the periodic
    validation's AP / AP50 (``validation.csv`` beside it) when the training logged one."""

    step_name: str
    steps: np.ndarray
    losses: dict[str, np.ndarray]
    validation: dict[str, np.ndarray] | None = None


#: The periodic validation's log, beside a VIS training's ``metrics.csv``.
VALIDATION_FILE = "validation.csv"


def read_validation(path: str | os.PathLike[str]) -> dict[str, np.ndarray] | None:
    """``iteration``, ``AP`` and ``AP50`` of a periodic validation log, or None without one."""
    rows = read_curve(Path(path))
    if not rows:
        return None
    missing = {"iteration", "AP", "AP50"} - rows[0].keys()
    if missing:
        raise DataError(path, f"cannot read the validation log: no column {sorted(missing)}")
    return {k: np.array([r[k] for r in rows], dtype=float) for k in ("iteration", "AP", "AP50")}


def read_loss_curves(path: str | os.PathLike[str]) -> LossCurves:
    """The step column (the first of :data:`STEP_COLUMNS` present) and every column whose name
    contains ``loss``; empty cells are NaN (a loss not logged at that step)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(path, "training metrics CSV does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"cannot read training metrics CSV: {exc}") from None
    if not rows:
        raise DataError(path, "training metrics CSV has no rows")
    names = list(rows[0])
    step = next((c for c in STEP_COLUMNS if c in names), None)
    if step is None:
        raise DataError(path, f"no step column (one of {', '.join(STEP_COLUMNS)}) in {names}")
    loss_names = [c for c in names if "loss" in c.lower()]
    if not loss_names:
        raise DataError(path, f"no loss column in {names}")

    def column(name: str) -> np.ndarray:
        try:
            return np.array([float(r[name]) if r[name] else math.nan for r in rows])
        except (TypeError, ValueError):
            raise DataError(path, f"column {name!r} has a value that is not a number") from None

    validation = read_validation(os.path.join(os.path.dirname(os.fspath(path)), VALIDATION_FILE))
    return LossCurves(
        step_name=step,
        steps=column(step),
        losses={c: column(c) for c in loss_names},
        validation=validation,
    )


#: Mask2Former's logged terms (``uvis.train``): the last decoder layer's weighted losses.
MASK2FORMER_TERMS = frozenset({"loss_cross_entropy", "loss_mask", "loss_dice"})

DEEP_SUPERVISION_NOTE = (
    "loss: what is minimised, the weighted terms of every decoder layer (deep supervision), "
    "so it sits far above the last layer's terms (loss_cross_entropy, loss_mask, loss_dice)"
)


def loss_note(curves: LossCurves) -> str | None:
    """What the figure must say for its curves to be read right: for a Mask2Former training,
    why the total is far above the plotted terms."""
    if "loss" in curves.losses and MASK2FORMER_TERMS <= curves.losses.keys():
        return DEEP_SUPERVISION_NOTE
    return None


def loss_figure(curves: LossCurves, title: str) -> Figure:
    """Every loss against the step, on a log scale when all logged values are positive, with
    :func:`loss_note` under the axes where it applies."""
    fig = Figure(figsize=(WIDTH_IN, 4.5), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for name, values in curves.losses.items():
        ax.plot(curves.steps, values, label=name, lw=2.0 if name == "loss" else 1.2)
    logged = np.concatenate([v[~np.isnan(v)] for v in curves.losses.values()])
    if logged.size and (logged > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel(curves.step_name)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if curves.validation is not None:
        val = ax.twinx()
        for key, style in (("AP", "-"), ("AP50", "--")):
            val.plot(
                curves.validation["iteration"],
                curves.validation[key],
                style,
                color="black",
                marker="o",
                ms=3,
                lw=1.2,
                label=f"validation {key}",
            )
        val.set_ylabel("validation AP (held-out videos)")
        val.set_ylim(0, 100)
        more_handles, more_labels = val.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, fontsize=8)
    note = loss_note(curves)
    if note:
        fig.supxlabel(note, fontsize=7, wrap=True)
    return fig


def write_loss_curves(
    csv_path: str | os.PathLike[str], out: str | os.PathLike[str], title: str
) -> LossCurves:
    """Plot a training ``metrics.csv`` to a PNG; returns the curves read."""
    curves = read_loss_curves(csv_path)
    _save(loss_figure(curves, title), out)
    return curves
