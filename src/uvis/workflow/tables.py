"""Which runs fill which paper table, where their files and logs are, and which tables a failed
Snakemake run left unbuilt. ``rules/report_common.smk`` binds these to the run's config."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from uvis.report.tables import TABLES
from uvis.workflow.runs import LEVELS, Run, VisTraining

ALL_TABLES = TABLES
"""Every table ``uvis report table`` builds; which ones a run builds is ``tables.build``."""

HEADLINE_TABLES = ("uvis_table1", "tag_table1")
"""Tables whose runs are compared per category and shown as strips."""

ROLE_LABELS = {
    "supervised": "Supervised (upper bound)",
    "deepsort": "DeepSORT",
    "deepsort_pmf": "DeepSORT (PMF-level pseudo-labels)",
    "uvis": "UVIS",
    "ours": "Tag-based",
}
"""Curve labels of the per-category AP charts, by table row role."""


def table_kind(name: str) -> str:
    """Which metrics a table reads: DAVIS for tag-based Tables II and III, else YouTube-VIS."""
    return "davis" if name in ("tag_table2", "tag_table3") else "ytvis"


@dataclass(frozen=True)
class TablePlan:
    """The runs behind the paper tables for one config.

    ``pseudo_level`` and ``tau`` are the configured selection (``vis.pseudo_level``,
    ``filter.tau``) that the run named ``uvis`` trains on; ``taus`` the thresholds of Table 3;
    ``supervised`` whether the upper bound is trained; ``deepsort_runs`` and
    ``tagvis_variants`` the DeepSORT runs and tag-based variants the workflow runs.
    """

    pseudo_level: str
    tau: float
    taus: tuple[float, ...] = ()
    supervised: bool = False
    deepsort_runs: tuple[str, ...] = ("deepsort",)
    tagvis_variants: tuple[str, ...] = ()

    def level_training(self, level: str) -> VisTraining:
        """The training on pseudo-labels at a filter level (UVIS Table 2): ``uvis`` for the
        configured level, the configured tau's training for ``pmf``, else ``uvis_<level>``."""
        if level == self.pseudo_level:
            return VisTraining()
        if level == "pmf":
            return self.tau_training(self.tau)
        return VisTraining(level=level)

    def tau_training(self, tau: float) -> VisTraining:
        """The training on PMF pseudo-labels at threshold ``tau`` (UVIS Table 3): ``uvis`` when
        that is the configured selection, else ``uvis_tau<tau>``."""
        if self.pseudo_level == "pmf" and float(tau) == float(self.tau):
            return VisTraining()
        return VisTraining(tau=float(tau))

    def rows(self, name: str) -> list[tuple[str, Run]]:
        """(row role, run) pairs of a table, as ``uvis report table --row`` takes them."""
        upper = VisTraining(supervised=True)
        if name == "uvis_table1":
            rows = [("deepsort", Run.deepsort())]
            rows += [
                ("deepsort_pmf", Run.deepsort("pmf"))
                for r in self.deepsort_runs
                if r == "deepsort_pmf"
            ]
            rows.append(("uvis", Run.vis(VisTraining(), "memory")))
            return ([("supervised", Run.vis(upper, "minvis"))] if self.supervised else []) + rows
        if name == "uvis_table2":
            rows = [("A1", Run.deepsort())]
            rows += [
                (f"A{k + 2}", Run.vis(self.level_training(level), "minvis"))
                for k, level in enumerate(LEVELS)
            ]
            rows.append(("A6", Run.vis(self.level_training("pmf"), "memory")))
            return rows + ([("upper", Run.vis(upper, "minvis"))] if self.supervised else [])
        if name == "uvis_table3":
            return [(str(float(t)), Run.vis(self.tau_training(t), "minvis")) for t in self.taus]
        if name == "uvis_table4":
            rows = [
                ("uvis", Run.vis(VisTraining(), "minvis")),
                ("uvis_memory", Run.vis(VisTraining(), "memory")),
            ]
            if self.supervised:
                rows += [
                    ("supervised", Run.vis(upper, "minvis")),
                    ("supervised_memory", Run.vis(upper, "memory")),
                ]
            return rows
        if name == "tag_table1":
            return [("deepsort", Run.deepsort()), ("ours", Run.tagvis("full"))]
        if name == "tag_table2":
            return [("ours", Run.tagvis("full"))]
        if name == "tag_table3":
            return [(variant, Run.tagvis(variant)) for variant in self.tagvis_variants]
        raise ValueError(f"unknown table {name!r}; known: {ALL_TABLES}")

    def runs(self, name: str) -> list[Run]:
        """The table's runs, each once, in row order."""
        return list(dict.fromkeys(run for _, run in self.rows(name)))

    def trainings(self, tables: Iterable[str]) -> list[str]:
        """The trainings (VIS models, tag-based variants) behind the tables' runs."""
        names = (run.training_name for name in tables for run in self.runs(name))
        return list(dict.fromkeys(n for n in names if n is not None))


def metrics_file(results: str, split: str, run: Run | str, kind: str) -> str:
    return f"{results}/metrics/{run}.{split}.{kind}.json"


def speed_file(results: str, split: str, run: Run | str) -> str:
    return f"{results}/predictions/{run}/{split}/speed.json"


def run_logs(results: str, split: str, run: Run) -> list[str]:
    """Logs of the stages that produce a run's metrics; a failed row cites the newest."""
    logs = [
        f"{results}/logs/eval_ytvis/{run}.{split}.log",
        f"{results}/logs/eval_davis/{run}.{split}.log",
    ]
    if run.kind == "deepsort":
        logs.append(f"{results}/logs/{run}/{split}.log")
    elif run.kind == "vis":
        logs.append(f"{results}/logs/train_vis/{run.training}.log")
        logs.append(f"{results}/logs/track_vis/{run}.{split}.log")
    return logs


def training_done(results: str, split: str, training: str) -> str:
    """A file that exists once a training has finished (its metrics.csv is not a declared
    output of the training rules): a tag-based variant's results, a VIS model's weights."""
    if tagvis_variant(training) is not None:
        return f"{results}/predictions/{training}/{split}/results.json"
    return f"{results}/vis/{training}/model_final.pth"


def training_csv(results: str, training: str) -> str:
    """The loss curve of a training: a tag-based variant's or a VIS model's ``metrics.csv``."""
    variant = tagvis_variant(training)
    if variant is not None:
        return f"{results}/tagvis/{variant}/metrics.csv"
    return f"{results}/vis/{training}/metrics.csv"


def tagvis_variant(training: str) -> str | None:
    """The tag-based variant a training name (:attr:`Run.training_name`) stands for, or
    ``None`` for a VIS model's training."""
    try:
        run = Run.parse(training)
    except ValueError:  # a VIS training's name (uvis, supervised, ...) is not a run's
        return None
    return run.variant if run.kind == "tagvis" else None


def table_args(
    plan: TablePlan,
    name: str,
    *,
    results: str,
    split: str,
    dataset: str,
    provenance: tuple[str, str],
    fallback_log: str | None = None,
) -> str:
    """``uvis report table`` options for a table (rows, files, logs, provenance: the config
    name and digest)."""
    q = shlex.quote
    kind = table_kind(name)
    args = [f"--row {q(f'{role}={run}')}" for role, run in plan.rows(name)]
    for run in plan.runs(name):
        args.append(f"--metrics {q(f'{run}={metrics_file(results, split, run, kind)}')}")
        args += [f"--log {q(f'{run}={log}')}" for log in run_logs(results, split, run)]
        if name == "tag_table2":
            args.append(f"--speed {q(f'{run}={speed_file(results, split, run)}')}")
    args.append(f"--dataset {q(dataset)} --split {q(split)}")
    args.append(f"--config-name {q(provenance[0])} --config-digest {provenance[1]}")
    if fallback_log:
        args.append(f"--fallback-log {q(str(fallback_log))}")
    return " ".join(args)


def config_provenance(configfiles: Sequence[str], config: Mapping[str, Any]) -> tuple[str, str]:
    """What the tables say produced them: the config file names, and a digest of the resolved
    config (files and --config overrides together)."""
    name = " + ".join(dict.fromkeys(os.path.basename(f) for f in configfiles)) or "config"
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    return name, digest.hexdigest()[:12]


def failed_tables(workflow: Any, built: Sequence[str]) -> list[str] | None:
    """Tables of ``built`` that this Snakemake run was to build and could not, because a job
    they depend on (their runs' evaluation, tracking, training, or a stage upstream) failed:
    the table jobs of the run's DAG left unfinished with a failed job among their ancestors. A
    table that was not a target, or that only stayed unbuilt because the run was stopped
    (SIGTERM: Snakemake lets running jobs finish and starts no new one), is not listed.

    Reads Snakemake's DAG and scheduler (``workflow.dag``, ``workflow.scheduler.failed``);
    returns None where this Snakemake version does not expose them."""
    try:
        dag = workflow.dag
        failed = set(workflow.scheduler.failed)
        pending = [job for job in dag.needrun_jobs() if job.rule.name == "table"]
        names = {
            job.wildcards.table for job in pending if failed & set(dag.bfs(dag.dependencies, job))
        }
    except AttributeError:
        return None
    return [name for name in built if name in names]


def build_tables_after_error(
    tables: Sequence[str] | None,
    snakemake_logs: Any,
    *,
    results: str,
    src: str,
    table_args: Callable[[str, str | None], str],
) -> None:
    """After a failed run (the default profile keeps going), build each of ``tables`` (those of
    :func:`failed_tables`) from the metrics that exist, as tables/<name>.partial.{md,csv,html}:
    a failed row cites its newest stage log, or this run's Snakemake log when none of its
    stages started. ``snakemake_logs`` is what ``onerror`` passes (a list of log files);
    ``table_args(name, fallback_log)`` gives a table's ``uvis report table`` options."""
    if tables is None:
        print(
            "onerror: this Snakemake version does not say which jobs failed; "
            "no partial tables written",
            file=sys.stderr,
        )
        return
    if isinstance(snakemake_logs, str | os.PathLike):
        snakemake_logs = [snakemake_logs]
    fallback = os.fspath(snakemake_logs[0]) if snakemake_logs else None
    os.makedirs(f"{results}/logs/report", exist_ok=True)
    pythonpath = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    for name in tables:
        log = f"{results}/logs/report/table_{name}.partial.log"
        command = [sys.executable, "-m", "uvis", "report", "table", name]
        command += shlex.split(table_args(name, fallback))
        command += ["--out", f"{results}/tables/{name}.md", "--partial"]
        with open(log, "w") as out:
            proc = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": pythonpath},
                check=False,
            )
        if proc.returncode != 0:
            print(f"table {name} could not be built, see {log}", file=sys.stderr)
        else:
            with open(log) as f:
                print(f.read().strip(), file=sys.stderr)
