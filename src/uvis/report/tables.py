"""The papers' result tables, filled in from the pipeline's metrics files.

A :class:`TableSpec` is one paper table's layout: its columns, and per row the text cells
(method names, check marks) and the numbers, each a :class:`Value` (one metric of one run) or a
:class:`Delta` (one run's gain over another). :func:`build_table` reads every run's metrics
file once and :func:`table_markdown` / :func:`table_csv` render the result. A run whose metrics
file is missing, unreadable, records an ``error`` or lacks a metric the table needs is *failed*:
its cells say so and a note names the log to read, so a row is never silently dropped or
filled with a wrong number.

The specs follow the papers (row names, columns, which tracker each row uses):

* UVIS Table 1 (:func:`uvis_table1`): the supervised upper bound (MinVIS trained on ground truth,
  MinVIS matching: the paper's "MinVIS w/o COCO" row), the DeepSORT baseline and UVIS (with the
  tracking memory), with the supervision columns COCO / I-Sup. / V-Sup.
* UVIS Table 2 (:func:`uvis_table2`): the component ablation A1-A6 and the upper bound. A1 is
  DeepSORT; A2-A5 are trained on pseudo-labels at the filter levels none / objectness / CLIP /
  PMF and tracked *without* the tracking memory; A6 is A5 with it (in the paper only A6 ticks
  "Tracking Memory", and A5 -> A6 is the memory's gain). Δ is the AP gain over A1.
* UVIS Table 3 (:func:`uvis_table3`): AP per PMF threshold τ, without the tracking memory (the
  paper's τ = 0.7 entry is Table 2's A5), transposed as in the paper.
* UVIS Table 4 (:func:`uvis_table4`): AP without and with the tracking memory for the
  unsupervised and the supervised model; the paper writes the gain in parentheses, here it is
  its own Δ column so the CSV keeps it as a number.
* Tag-based Table I (:func:`tag_table1`): YouTube-VIS metrics of the full tag-based model, with
  the DeepSORT baseline as in the paper. Table II (:func:`tag_table2`): DAVIS J&F, J, F and
  fps. Table III (:func:`tag_table3`): J&F, J, F per ablation variant, the full model last.
  The papers' "Pre-training Data" column is left out: it describes the weights a user
  configures, not anything a run records.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from uvis.errors import ConfigError
from uvis.io import atomic_write_text
from uvis.report.html import markdown_html

YTVIS_METRICS = ("AP", "AP50", "AP75", "AR1", "AR10")
"""The YouTube-VIS columns of UVIS Table 1 (and, renamed, of tag-based Table I)."""

AGNOSTIC_METRICS = {"AP_agnostic": "AP (class-agnostic)", "AP50_agnostic": "AP50 (class-agnostic)"}
"""Metric key -> column of the class-agnostic metrics (``uvis eval ytvis --protocol both``)
that UVIS Table 1 adds, to place a run beside the class-agnostic papers."""

DAVIS_METRICS = ("JF", "J", "F")
"""The DAVIS columns of tag-based Tables II and III (keys of ``uvis eval davis`` output)."""

TICK = "✓"
NO = "✗"
NONE = "–"


@dataclass(frozen=True)
class Value:
    """One number of one run: ``metric`` from its metrics JSON (``fps`` from its speed file)."""

    run: str
    metric: str


@dataclass(frozen=True)
class Delta:
    """The gain ``value - base`` of one run over another on one metric."""

    value: Value
    base: Value


Cell = str | Value | Delta | None
"""A table cell: text, a number, a difference, or nothing (shown as an en dash)."""


@dataclass(frozen=True)
class TableSpec:
    """One paper table's layout: a title, column headers and rows of cells.

    ``transpose`` shows the table with rows and columns swapped in Markdown (UVIS Table 3
    lists τ values across); the CSV always has one line per row. ``notes`` are printed
    under the table.
    """

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    transpose: bool = False
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"{self.name}: row {row} does not have {len(self.columns)} cells")

    def runs(self) -> tuple[str, ...]:
        """Every run the table reads, in order of first use."""
        return tuple(dict.fromkeys(run for row in self.rows for run in row_runs(row)))


def cell_values(cell: Cell) -> tuple[Value, ...]:
    """The run metrics a cell is computed from (none for text)."""
    if isinstance(cell, Value):
        return (cell,)
    if isinstance(cell, Delta):
        return (cell.value, cell.base)
    return ()


def row_runs(row: Sequence[Cell]) -> tuple[str, ...]:
    """The runs whose numbers a row shows, in cell order, without repeats."""
    return tuple(dict.fromkeys(v.run for cell in row for v in cell_values(cell)))


# ---------------------------------------------------------------------------------------------
# The papers' tables


def _roles(
    name: str, runs: Mapping[str, str], required: Sequence[str], optional: Sequence[str] = ()
) -> None:
    """ConfigError naming the table and role when a role is missing or unknown."""
    for role in required:
        if role not in runs:
            raise ConfigError(f"table {name}: no run given for row {role!r}")
    known = set(required) | set(optional)
    for role in runs:
        if role not in known:
            raise ConfigError(
                f"table {name}: unknown row {role!r} (rows: {', '.join(sorted(known))})"
            )


def uvis_table1(runs: Mapping[str, str], dataset: str) -> TableSpec:
    """UVIS Table 1: roles ``supervised`` (optional), ``deepsort`` (A1: CLIP-labelled
    pseudo-labels without the denoising filters), ``deepsort_pmf`` (optional: DeepSORT on the
    PMF-level pseudo-labels UVIS trains on) and ``uvis``."""
    _roles("uvis_table1", runs, ("deepsort", "uvis"), ("supervised", "deepsort_pmf"))
    methods = (
        ("supervised", "MinVIS (supervised upper bound)", "M"),
        ("deepsort", "DeepSORT", NONE),
        ("deepsort_pmf", "DeepSORT (PMF-level pseudo-labels)", NONE),
        ("uvis", "UVIS", NONE),
    )
    return TableSpec(
        name="uvis_table1",
        title="UVIS Table 1: supervision vs. the unsupervised setting",
        columns=(
            "Method",
            "Video-Dataset",
            "COCO",
            "I-Sup.",
            "V-Sup.",
            *YTVIS_METRICS,
            *AGNOSTIC_METRICS.values(),
        ),
        rows=tuple(
            (
                label,
                dataset,
                NO,
                NONE,
                video_sup,
                *(Value(runs[role], m) for m in (*YTVIS_METRICS, *AGNOSTIC_METRICS)),
            )
            for role, label, video_sup in methods
            if role in runs
        ),
        notes=(
            "I-Sup./V-Sup.: supervision from an image / the video dataset (M: masks). The "
            "upper bound is the same model trained on ground-truth masks, with MinVIS matching "
            "(the paper's MinVIS row without COCO); UVIS uses the tracking memory. DeepSORT "
            "tracks the CLIP-labelled pseudo-labels without the denoising filters (A1 of "
            "Table 2); DeepSORT (PMF-level) tracks the filtered ones UVIS trains on. "
            "Class-agnostic: the same results with the categories ignored (the official code "
            "with useCats=0), as VideoCutLER and AutoQ-VIS report; the other columns are "
            "class-aware, as UVIS reports.",
        ),
    )


#: UVIS Table 2's trained rows and their ticks (Video Train, Mask Score, CLIP Score, PMF,
#: Tracking Memory); CLIP is ticked in every row, A1 (DeepSORT) ticks only CLIP.
_ABLATION = (
    ("A2", (TICK, NONE, NONE, NONE, NONE)),
    ("A3", (TICK, TICK, NONE, NONE, NONE)),
    ("A4", (TICK, TICK, TICK, NONE, NONE)),
    ("A5", (TICK, TICK, TICK, TICK, NONE)),
    ("A6", (TICK, TICK, TICK, TICK, TICK)),
)


def uvis_table2(runs: Mapping[str, str]) -> TableSpec:
    """UVIS Table 2: roles ``A1`` ... ``A6`` and ``upper`` (optional)."""
    _roles("uvis_table2", runs, ("A1", "A2", "A3", "A4", "A5", "A6"), ("upper",))
    a1 = Value(runs["A1"], "AP")
    rows: list[tuple[Cell, ...]] = []
    if "upper" in runs:
        rows.append(("MinVIS (upper bound)", *(NONE,) * 6, Value(runs["upper"], "AP"), None))
    rows.append(("A1", TICK, *(NONE,) * 5, a1, None))
    for model_id, ticks in _ABLATION:
        ap = Value(runs[model_id], "AP")
        rows.append((model_id, TICK, *ticks, ap, Delta(ap, a1)))
    return TableSpec(
        name="uvis_table2",
        title="UVIS Table 2: ablation of the pipeline's components",
        columns=(
            "Model ID",
            "CLIP",
            "Video Train",
            "Mask Score",
            "CLIP Score",
            "PMF",
            "Tracking Memory",
            "AP",
            "Δ",
        ),
        rows=tuple(rows),
        notes=(
            "A1: DeepSORT on the CLIP-labelled pseudo-labels without the denoising filters "
            "(deepsort.level: none). A2-A5: the VIS model trained on pseudo-labels "
            "with no filter, + mask (objectness) score, + CLIP score, + PMF, tracked with MinVIS "
            "matching; A6: A5 with the tracking memory. Δ: AP gain over A1.",
        ),
    )


def uvis_table3(runs: Sequence[tuple[str, str]]) -> TableSpec:
    """UVIS Table 3: one ``(τ, run)`` per threshold, in the order given."""
    if not runs:
        raise ConfigError("table uvis_table3: no τ values given")
    return TableSpec(
        name="uvis_table3",
        title="UVIS Table 3: prototype memory filtering threshold τ",
        columns=("τ", "AP"),
        rows=tuple((tau, Value(run, "AP")) for tau, run in runs),
        transpose=True,
        notes=(
            "The VIS model trained on PMF pseudo-labels filtered at each τ, tracked with MinVIS "
            "matching (no tracking memory), as in the paper.",
        ),
    )


def uvis_table4(runs: Mapping[str, str], dataset: str) -> TableSpec:
    """UVIS Table 4: roles ``uvis``/``uvis_memory`` and, optionally, ``supervised``/
    ``supervised_memory``: each model tracked without / with the tracking memory."""
    _roles("uvis_table4", runs, ("uvis", "uvis_memory"), ("supervised", "supervised_memory"))
    if ("supervised" in runs) != ("supervised_memory" in runs):
        raise ConfigError("table uvis_table4: give both supervised rows or neither")
    models = (("C0 (UVIS)", NONE, "uvis"), ("C2 (supervised)", "V-M", "supervised"))
    rows = []
    for model, sup, role in models:
        if role in runs:
            plain, memory = Value(runs[role], "AP"), Value(runs[f"{role}_memory"], "AP")
            rows.append((model, sup, dataset, plain, memory, Delta(memory, plain)))
    return TableSpec(
        name="uvis_table4",
        title="UVIS Table 4: the tracking memory",
        columns=("Model", "Sup.", "Dataset", "AP", "AP (+Tracking Memory)", "Δ"),
        rows=tuple(rows),
        notes=(
            "Each model tracked with MinVIS matching (AP) and with the tracking memory. "
            "V-M: ground-truth video masks. Δ: the tracking memory's gain.",
        ),
    )


def tag_table1(runs: Mapping[str, str]) -> TableSpec:
    """Tag-based Table I: roles ``deepsort`` (optional) and ``ours``."""
    _roles("tag_table1", runs, ("ours",), ("deepsort",))
    rows: list[tuple[Cell, ...]] = []
    if "deepsort" in runs:
        rows.append(("DeepSORT", NONE, TICK, *(Value(runs["deepsort"], m) for m in YTVIS_METRICS)))
    rows.append(("Ours (tag-based)", NONE, NONE, *(Value(runs["ours"], m) for m in YTVIS_METRICS)))
    return TableSpec(
        name="tag_table1",
        title="Tag-based Table I: YouTube-VIS",
        columns=("Method", "FF", "P/D", "mAP", "AP@50", "AP@75", "AR@1", "AR@10"),
        rows=tuple(rows),
        notes=(
            "FF: first-frame proposal; P/D: proposals/detections (DeepSORT tracks the "
            "per-frame pseudo-labels).",
        ),
    )


def tag_table2(runs: Mapping[str, str]) -> TableSpec:
    """Tag-based Table II: role ``ours``, with DAVIS metrics and fps."""
    _roles("tag_table2", runs, ("ours",))
    ours = runs["ours"]
    return TableSpec(
        name="tag_table2",
        title="Tag-based Table II: DAVIS 2019 unsupervised",
        columns=("Method", "P/D", "OF", "RI", "J&F", "J Mean", "F Mean", "fps"),
        rows=(
            (
                "Ours (tag-based)",
                NONE,
                NONE,
                NONE,
                *(Value(ours, m) for m in DAVIS_METRICS),
                Value(ours, "fps"),
            ),
        ),
        notes=("P/D: proposals/detections; OF: optical flow; RI: re-identification.",),
    )


def tag_table3(runs: Sequence[tuple[str, str]]) -> TableSpec:
    """Tag-based Table III: one ``(variant, run)`` per ablation variant; ``full`` comes last."""
    names = [variant for variant, _ in runs]
    if "full" not in names:
        raise ConfigError("table tag_table3: the variants must include 'full' (the whole model)")
    ordered = [r for r in runs if r[0] != "full"] + [r for r in runs if r[0] == "full"]
    return TableSpec(
        name="tag_table3",
        title="Tag-based Table III: ablation (DAVIS 2019 unsupervised)",
        columns=("Variant", "J&F", "J Mean", "F Mean"),
        rows=tuple(
            (
                "Ours (full model)" if variant == "full" else variant,
                *(Value(run, m) for m in DAVIS_METRICS),
            )
            for variant, run in ordered
        ),
        notes=("Each variant is the model without the component its name says.",),
    )


TABLES = (
    "uvis_table1",
    "uvis_table2",
    "uvis_table3",
    "uvis_table4",
    "tag_table1",
    "tag_table2",
    "tag_table3",
)
"""Names of the tables :func:`table_spec` builds."""


def table_spec(name: str, runs: Sequence[tuple[str, str]], dataset: str) -> TableSpec:
    """The spec of table ``name`` with each row role filled by a run: ``runs`` is a list of
    ``(role, run)``; for UVIS Table 3 the roles are τ values, for tag-based Table III variant
    names, both kept in the order given."""
    mapping = dict(runs)
    if len(mapping) != len(runs):
        raise ConfigError(f"table {name}: a row is given twice")
    if name == "uvis_table1":
        return uvis_table1(mapping, dataset)
    if name == "uvis_table2":
        return uvis_table2(mapping)
    if name == "uvis_table3":
        return uvis_table3(runs)
    if name == "uvis_table4":
        return uvis_table4(mapping, dataset)
    if name == "tag_table1":
        return tag_table1(mapping)
    if name == "tag_table2":
        return tag_table2(mapping)
    if name == "tag_table3":
        return tag_table3(runs)
    raise ConfigError(f"unknown table {name!r} (known: {', '.join(TABLES)})")


# ---------------------------------------------------------------------------------------------
# Reading runs


@dataclass(frozen=True)
class RunFiles:
    """Where one run's numbers are, and the logs of the stages that produce them."""

    metrics: Path
    speed: Path | None = None
    logs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class RunOutcome:
    """One run as a table sees it: its numbers, or why it failed and which log tells more.

    ``metrics`` holds the metrics JSON (plus ``fps`` and ``device`` from the speed file);
    ``failure`` is ``None`` for a run whose numbers can be shown.
    """

    run: str
    metrics: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    log: Path | None = None


def _read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object from ``path``, or ``None`` and the problem with the file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"no file {path}"
    except (OSError, ValueError) as exc:
        return None, f"unreadable {path}: {exc}"
    if not isinstance(data, dict):
        return None, f"{path} is not a JSON object"
    return data, None


def newest_log(logs: Sequence[Path]) -> Path | None:
    """The most recently written of the logs that exist (the stage that ran last, i.e. the
    one that failed when later stages never started), or ``None`` if none exists."""
    existing = [p for p in logs if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime_ns) if existing else None


def _run_numbers(files: RunFiles) -> tuple[dict[str, Any] | None, str | None]:
    """A run's metrics (with ``fps``/``device`` from its speed file), or the problem."""
    metrics, problem = _read_json_object(files.metrics)
    if metrics is None:
        return None, problem
    if "error" in metrics:
        return None, f"{files.metrics} records an error: {metrics['error']}"
    if files.speed is None:
        return metrics, None
    speed, problem = _read_json_object(files.speed)
    if speed is None:
        return None, problem
    if speed.get("fps") is None or not _is_number_or_null(speed["fps"]):
        return None, f"{files.speed} has no number 'fps'"
    device = speed.get("device", "an unknown device")
    return {**metrics, "fps": speed["fps"], "device": device}, None


def _is_number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def read_run(
    run: str, files: RunFiles, needed: Sequence[str], fallback_log: Path | None = None
) -> RunOutcome:
    """Read one run's metrics (and speed) file, checking it has every ``needed`` metric.

    A metrics JSON with an ``error`` key records a failed run (its value says why). The
    failure's log is the newest existing of ``files.logs``, else ``fallback_log`` (e.g. the
    Snakemake log, when an upstream stage shared by many runs failed).
    """
    metrics, problem = _run_numbers(files)
    if metrics is not None:
        missing = [m for m in needed if m not in metrics]
        bad = [m for m in needed if m in metrics and not _is_number_or_null(metrics[m])]
        if missing:
            problem = f"{files.metrics} has no metric {missing[0]!r}"
        elif bad:
            problem = f"{files.metrics}: metric {bad[0]!r} is not a number: {metrics[bad[0]]!r}"
        else:
            return RunOutcome(run=run, metrics=metrics)
    return RunOutcome(run=run, failure=problem, log=newest_log(files.logs) or fallback_log)


@dataclass(frozen=True)
class Provenance:
    """What produced a table: config file name(s), a digest of the resolved config, when."""

    config_name: str
    config_digest: str
    built: datetime
    dataset: str
    split: str


@dataclass(frozen=True)
class BuiltTable:
    """A table spec with its runs read, ready to render."""

    spec: TableSpec
    outcomes: dict[str, RunOutcome]
    provenance: Provenance


def build_table(
    spec: TableSpec,
    files: Mapping[str, RunFiles],
    provenance: Provenance,
    fallback_log: Path | None = None,
) -> BuiltTable:
    """Read every run of ``spec`` (ConfigError if a run has no files given)."""
    needed: dict[str, dict[str, None]] = {run: {} for run in spec.runs()}
    for row in spec.rows:
        for cell in row:
            for v in cell_values(cell):
                needed[v.run][v.metric] = None
    outcomes = {}
    for run, metrics in needed.items():
        if run not in files:
            raise ConfigError(f"table {spec.name}: no metrics file given for run {run!r}")
        outcomes[run] = read_run(run, files[run], list(metrics), fallback_log)
    return BuiltTable(spec=spec, outcomes=outcomes, provenance=provenance)


# ---------------------------------------------------------------------------------------------
# Cells


@dataclass(frozen=True)
class Failed:
    """A cell whose run failed."""

    run: str


def table_delta(value: float | None, base: float | None) -> float | None:
    """Δ of UVIS Tables 2 and 4: ``value - base``, undefined if either is undefined."""
    if value is None or base is None:
        return None
    return value - base


def _number(metrics: Mapping[str, Any], metric: str) -> float | None:
    v = metrics[metric]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def resolve(cell: Cell, outcomes: Mapping[str, RunOutcome]) -> str | float | Failed | None:
    """A cell's content: its text, its number (None if undefined), or :class:`Failed`."""
    if cell is None or isinstance(cell, str):
        return cell
    values = cell_values(cell)
    for v in values:
        if outcomes[v.run].failure is not None:
            return Failed(v.run)
    numbers = [_number(outcomes[v.run].metrics, v.metric) for v in values]
    return numbers[0] if isinstance(cell, Value) else table_delta(*numbers)


def _markdown_cell(cell: Cell, content: str | float | Failed | None) -> str:
    if isinstance(content, Failed):
        return "failed"
    if content is None:
        return NONE
    if isinstance(content, str):
        return content
    return f"{content:+.1f}" if isinstance(cell, Delta) else f"{content:.1f}"


def _csv_cell(content: str | float | Failed | None) -> str:
    if content is None or isinstance(content, Failed):
        return ""
    return content if isinstance(content, str) else repr(content)


def failure_line(outcome: RunOutcome, quote: str = "") -> str:
    """``failed — see <log>`` (with the reason when no log exists yet); ``quote`` goes around
    the log path (a backtick in Markdown)."""
    if outcome.log is not None:
        return f"failed — see {quote}{outcome.log}{quote}"
    return f"failed — {outcome.failure} (no log: the run has not started)"


def _row_status(row: Sequence[Cell], outcomes: Mapping[str, RunOutcome]) -> str:
    failed = [outcomes[r] for r in row_runs(row) if outcomes[r].failure is not None]
    if not failed:
        return "ok"
    return "; ".join(f"{o.run}: {failure_line(o)}" for o in failed)


# ---------------------------------------------------------------------------------------------
# Rendering


def _header_lines(table: BuiltTable) -> list[str]:
    p = table.provenance
    return [
        f"# {table.spec.title}",
        "",
        f"Dataset `{p.dataset}`, split `{p.split}`. Built {p.built:%Y-%m-%d %H:%M %Z} from "
        f"config `{p.config_name}` (resolved config digest `{p.config_digest}`).",
        "",
    ]


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def table_markdown(table: BuiltTable) -> str:
    """The table as Markdown: title, provenance, the table, its notes and one line per failed
    run (``- `run` failed — see <log>``)."""
    spec = table.spec
    grid = [
        [_markdown_cell(cell, resolve(cell, table.outcomes)) for cell in row] for row in spec.rows
    ]
    header = list(spec.columns)
    if spec.transpose:
        lines = [_md_row([header[0], *(r[0] for r in grid)])]
        lines.append("|---|" + "---:|" * len(grid))
        for k in range(1, len(header)):
            lines.append(_md_row([header[k], *(r[k] for r in grid)]))
    else:
        numeric = [
            any(isinstance(row[k], Value | Delta) for row in spec.rows) for k in range(len(header))
        ]
        lines = [_md_row(header), "|" + "".join("---:|" if n else "---|" for n in numeric)]
        lines += [_md_row(r) for r in grid]
    notes = [*spec.notes]
    for outcome in table.outcomes.values():
        if outcome.failure is not None:
            notes.append(f"`{outcome.run}` {failure_line(outcome, quote='`')}")
        elif "fps" in outcome.metrics:
            notes.append(f"fps of `{outcome.run}` measured on {outcome.metrics['device']}.")
    body = _header_lines(table) + lines + [""] + [f"- {n}" for n in notes]
    return "\n".join(body) + "\n"


def table_csv(table: BuiltTable) -> str:
    """The table as CSV: one line per row (never transposed), numbers at full precision, empty
    where undefined or failed, plus the row's runs, its status (``ok`` or the failures) and
    the provenance."""
    p = table.provenance
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*table.spec.columns, "runs", "status", "config", "config_digest", "built"])
    for row in table.spec.rows:
        writer.writerow(
            [
                *(_csv_cell(resolve(cell, table.outcomes)) for cell in row),
                " ".join(row_runs(row)),
                _row_status(row, table.outcomes),
                p.config_name,
                p.config_digest,
                p.built.isoformat(timespec="seconds"),
            ]
        )
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Files


def partial_path(md_path: Path) -> Path:
    """Where a table with failed runs goes when it is built outside its Snakemake rule:
    ``<name>.partial.md`` beside ``<name>.md``.

    (A file at the rule's own output path would look up to date to Snakemake, which would then
    never retry the failed run.)
    """
    return md_path.with_name(f"{md_path.stem}.partial.md")


def failed_runs(table: BuiltTable) -> list[str]:
    """Runs of the table whose numbers could not be read."""
    return [o.run for o in table.outcomes.values() if o.failure is not None]


def write_table(table: BuiltTable, md_path: Path) -> list[Path]:
    """Write the table as ``.md``, ``.csv`` and ``.html`` (same stem); returns the paths."""
    markdown = table_markdown(table)
    paths = [md_path.with_suffix(".csv"), md_path.with_suffix(".html"), md_path]
    atomic_write_text(paths[0], table_csv(table))
    atomic_write_text(paths[1], markdown_html(markdown))
    atomic_write_text(paths[2], markdown)
    return paths
