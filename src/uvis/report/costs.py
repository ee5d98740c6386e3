"""Where a run spent its time and memory: the per-job benchmark files every rule writes.

Each rule of the workflow has a ``benchmark:`` file, ``<results>/benchmarks/<stage>/...tsv``
(or ``<results>/benchmarks/<stage>.tsv`` for one-job stages), which Snakemake fills with the
job's wall time (``s``), CPU time of its processes (``cpu_time``, seconds) and peak resident
memory (``max_rss``, MB). This module sums them per stage, so that a run's cost can be read as
CPU-minutes per stage: unlike wall time, that does not depend on what else ran beside it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from uvis.errors import DataError

#: Columns of a Snakemake benchmark file this module reads (seconds, seconds, MB).
REQUIRED_COLUMNS = ("s", "cpu_time", "max_rss")


@dataclass(frozen=True)
class JobCost:
    """One job's benchmark: its stage (the rule's folder or file name), the file's path relative
    to the benchmarks folder, wall and CPU seconds, and peak RSS in MB (NaN where Snakemake
    recorded none: a job too short to be sampled)."""

    stage: str
    job: str
    wall_s: float
    cpu_s: float
    max_rss_mb: float


@dataclass(frozen=True)
class StageCost:
    """The sums over one stage's jobs (peak RSS: the largest of any job)."""

    stage: str
    jobs: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float


def _number(text: str | None) -> float:
    """A benchmark cell as a float; Snakemake writes ``NA`` (or leaves it empty) when a job ended
    before its first sample."""
    if text is None or text.strip() in ("", "NA", "-"):
        return math.nan
    return float(text)


def read_job_cost(path: Path, root: Path) -> JobCost:
    """One benchmark file (the last row if a job was repeated).

    Raises:
        DataError: the file is not a Snakemake benchmark table (names the file).
    """
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot read the benchmark file ({err})") from err
    if not rows or any(column not in rows[-1] for column in REQUIRED_COLUMNS):
        raise DataError(
            path,
            f"not a Snakemake benchmark table (needs a header with "
            f"{', '.join(REQUIRED_COLUMNS)} and a row)",
        )
    row = rows[-1]
    try:
        wall, cpu, rss = (_number(row[c]) for c in REQUIRED_COLUMNS)
    except ValueError as err:
        raise DataError(path, f"a benchmark value is not a number ({err})") from err
    relative = path.relative_to(root)
    stage = relative.parts[0] if len(relative.parts) > 1 else relative.stem
    return JobCost(stage, relative.as_posix(), wall, cpu, rss)


def read_costs(benchmarks: Path) -> list[JobCost]:
    """Every ``*.tsv`` under ``benchmarks`` (a run's ``<results>/benchmarks``), sorted by path.

    Raises:
        DataError: the folder does not exist, or a file in it is not a benchmark table.
    """
    if not benchmarks.is_dir():
        raise DataError(benchmarks, "no benchmarks folder (run the workflow first)")
    return [read_job_cost(p, benchmarks) for p in sorted(benchmarks.rglob("*.tsv"))]


def _nansum(values: list[float]) -> float:
    return sum(v for v in values if not math.isnan(v))


def _nanmax(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return max(kept) if kept else math.nan


def summarise(costs: list[JobCost]) -> list[StageCost]:
    """Per-stage sums, the most CPU time first (ties by name)."""
    stages: dict[str, list[JobCost]] = {}
    for cost in costs:
        stages.setdefault(cost.stage, []).append(cost)
    summary = [
        StageCost(
            stage,
            len(jobs),
            _nansum([j.wall_s for j in jobs]),
            _nansum([j.cpu_s for j in jobs]),
            _nanmax([j.max_rss_mb for j in jobs]),
        )
        for stage, jobs in stages.items()
    ]
    return sorted(summary, key=lambda s: (-s.cpu_s, s.stage))


def costs_markdown(summary: list[StageCost]) -> str:
    """A Markdown table of :func:`summarise`'s rows with a total row and each stage's share of
    the run's CPU time."""
    total_cpu = sum(s.cpu_s for s in summary)
    lines = [
        "| stage | jobs | CPU-min | share of CPU | wall-min (sum over jobs) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        share = s.cpu_s / total_cpu if total_cpu else 0.0
        rss = "–" if math.isnan(s.max_rss_mb) else f"{s.max_rss_mb:.0f}"
        lines.append(
            f"| {s.stage} | {s.jobs} | {s.cpu_s / 60:.1f} | {share:.0%} | {s.wall_s / 60:.1f} "
            f"| {rss} |"
        )
    jobs = sum(s.jobs for s in summary)
    wall = sum(s.wall_s for s in summary)
    rss_all = _nanmax([s.max_rss_mb for s in summary])
    rss_text = "–" if math.isnan(rss_all) else f"{rss_all:.0f}"
    lines.append(
        f"| **total** | {jobs} | {total_cpu / 60:.1f} | 100% | {wall / 60:.1f} | {rss_text} |"
    )
    return "\n".join(lines) + "\n"
