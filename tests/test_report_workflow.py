"""rules/report.smk: run names of the table rows, and tables built when a row's run fails."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from uvis import masks
from uvis.workflow import tables as wt

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("level", "tau", "expected_levels", "expected_taus"),
    [
        (
            "pmf",
            0.7,
            {
                "none": "uvis_none",
                "objectness": "uvis_objectness",
                "clip": "uvis_clip",
                "pmf": "uvis",
            },
            {0.0: "uvis_tau0.0", 0.5: "uvis_tau0.5", 0.7: "uvis", 0.9: "uvis_tau0.9"},
        ),
        (
            # Trained without PMF (e.g. the smoke world): the PMF row is the configured tau's run.
            "none",
            0.9,
            {
                "none": "uvis",
                "objectness": "uvis_objectness",
                "clip": "uvis_clip",
                "pmf": "uvis_tau0.9",
            },
            {0.0: "uvis_tau0.0", 0.9: "uvis_tau0.9", 1: "uvis_tau1.0"},
        ),
    ],
)
def test_run_names_of_table_rows(level, tau, expected_levels, expected_taus):
    plan = wt.TablePlan(pseudo_level=level, tau=tau)
    assert {lv: str(plan.level_training(lv)) for lv in expected_levels} == expected_levels
    assert {t: str(plan.tau_training(t)) for t in expected_taus} == expected_taus


@dataclass
class Table4World:
    """UVIS Table 4's runs on a one-video ground truth: metrics of every run but `uvis-memory`,
    whose results.json is ``results`` (corrupt unless rewritten), so Snakemake evaluates it."""

    res: Path
    tables: Path
    overlay: Path
    results: str

    def results_path(self, run: str = "uvis-memory") -> Path:
        return self.res / "predictions" / run / "valid" / "results.json"

    def snakemake(self, *targets: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        # Only the evaluation and the table may run: everything upstream is given.
        args = ["--cores", "1", "--configfile", "config.yaml", str(self.overlay), *extra]
        args += ["--allowed-rules", "eval_ytvis", "table", "--", *targets]
        return subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )


def table4_world(tmp_path: Path, uvis_memory_results: str = "not json") -> Table4World:
    res = tmp_path / "results" / "synth"
    obj = np.zeros((8, 10), np.uint8)
    obj[2:5, 3:7] = 1
    rle = masks.encode(obj)
    gt = {
        "videos": [{"id": 1, "width": 10, "height": 8, "file_names": ["v/0.jpg", "v/1.jpg"]}],
        "categories": [{"id": 1, "name": "circle"}],
        "annotations": [
            {
                "id": 1,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": [rle] * 2,
                "areas": [12, 12],
            }
        ],
    }
    (res / "world" / "ytvis").mkdir(parents=True)
    (res / "world" / "ytvis" / "valid.json").write_text(json.dumps(gt))
    results = json.dumps(
        [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [rle] * 2}]
    )
    runs = {"uvis-minvis": 10.0, "uvis-memory": None, "supervised-minvis": 30.0}
    runs["supervised-memory"] = 31.5
    world = Table4World(res, res / "tables", tmp_path / "overlay.yaml", results)
    for run in runs:
        world.results_path(run).parent.mkdir(parents=True)
        if runs[run]:
            world.results_path(run).write_text(results)
        elif uvis_memory_results != "fifo":
            world.results_path(run).write_text(uvis_memory_results)
        else:
            os.mkfifo(world.results_path(run))  # reading it blocks until the test writes
    time.sleep(0.05)  # metrics newer than their inputs: up to date for Snakemake
    (res / "metrics").mkdir()
    for run, ap in runs.items():
        if ap is not None:
            values = {"AP": ap, "AP50": 0.0, "AP75": 0.0, "AR1": 0.0, "AR10": 0.0}
            (res / "metrics" / f"{run}.valid.ytvis.json").write_text(json.dumps(values))
    world.overlay.write_text(
        yaml.safe_dump({"results": str(tmp_path / "results"), "tables": {"build": ["uvis_table4"]}})
    )
    return world


def test_a_failed_row_still_gets_its_table_and_is_retried(tmp_path):
    """uvis-memory's evaluation fails (corrupt results): the workflow keeps going and the
    onerror handler writes UVIS Table 4 as uvis_table4.partial.md with that row marked failed,
    citing the evaluation's log. The next run retries the failed evaluation; once it passes,
    the complete table replaces the partial one."""
    world = table4_world(tmp_path)
    res, tables = world.res, world.tables
    target = str(tables / "uvis_table4.md")

    proc = world.snakemake(target)
    assert proc.returncode != 0, proc.stdout + proc.stderr  # the failure is still reported
    assert "uvis_table4: 1 run(s) failed (uvis-memory)" in proc.stderr
    assert not (tables / "uvis_table4.md").exists()
    partial = (tables / "uvis_table4.partial.md").read_text()
    log = res / "logs" / "eval_ytvis" / "uvis-memory.valid.log"
    assert "| C0 (UVIS) | – | synth | 10.0 | failed | failed |" in partial
    assert "| C2 (supervised) | V-M | synth | 30.0 | 31.5 | +1.5 |" in partial
    assert f"- `uvis-memory` failed — see `{log}`" in partial
    assert "not valid JSON" in log.read_text()
    assert (tables / "uvis_table4.partial.csv").is_file()
    assert (tables / "uvis_table4.partial.html").is_file()

    # Nothing changed: a new run retries the failed evaluation.
    dry = world.snakemake(target, extra=("-n",))
    assert "rule eval_ytvis:" in dry.stdout + dry.stderr

    # Fixed: the complete table replaces the partial one.
    world.results_path().write_text(world.results)
    proc = world.snakemake(target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "| C0 (UVIS) | – | synth | 10.0 | 100.0 | +90.0 |"
        in (tables / "uvis_table4.md").read_text()
    )
    assert sorted(p.name for p in tables.iterdir()) == [
        "uvis_table4.csv",
        "uvis_table4.html",
        "uvis_table4.md",
    ]


def test_no_partial_table_for_a_table_this_run_was_not_asked_to_build(tmp_path):
    """Only uvis-memory's metrics are requested and its evaluation fails: uvis_table4 (in
    tables.build, but not a target of this run) gets no partial table."""
    world = table4_world(tmp_path)
    proc = world.snakemake(str(world.res / "metrics" / "uvis-memory.valid.ytvis.json"))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "rule eval_ytvis" in proc.stdout + proc.stderr
    assert not world.tables.exists(), sorted(p.name for p in world.tables.iterdir())
    assert "run(s) failed" not in proc.stderr


def test_sigterm_writes_no_partial_table(tmp_path):
    """SIGTERM (a SLURM preemption) while uvis-memory is being evaluated: Snakemake lets the
    job finish and starts neither supervised-memory's evaluation nor the table. Nothing failed,
    so no partial table is written (it used to be, with supervised-memory marked failed); the
    next run builds the complete one."""
    world = table4_world(tmp_path, uvis_memory_results="fifo")
    (world.res / "metrics" / "supervised-memory.valid.ytvis.json").unlink()
    first = world.res / "metrics" / "uvis-memory.valid.ytvis.json"
    args = ["--cores", "1", "--configfile", "config.yaml", str(world.overlay)]
    args += ["--allowed-rules", "eval_ytvis", "table", "--prioritize", str(first)]
    args += ["--", str(world.tables / "uvis_table4.md")]
    with subprocess.Popen(
        [sys.executable, "-m", "snakemake", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        log = world.res / "logs" / "eval_ytvis" / "uvis-memory.valid.log"
        deadline = time.monotonic() + 120
        while not log.exists():  # the evaluation has started and waits on the FIFO
            if time.monotonic() > deadline or proc.poll() is not None:
                with contextlib.suppress(ProcessLookupError):  # the group may be gone
                    os.killpg(proc.pid, signal.SIGKILL)  # its jobs too: they hold its stdout
                pytest.fail(f"the evaluation did not start: {proc.communicate()[0]}")
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        with open(world.results_path(), "w") as fifo:
            fifo.write(world.results)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out
    assert first.is_file(), out
    assert not (world.res / "metrics" / "supervised-memory.valid.ytvis.json").exists(), out
    assert not world.tables.exists() or not list(world.tables.iterdir()), out

    world.results_path().unlink()
    world.results_path().write_text(world.results)
    proc2 = world.snakemake(str(world.tables / "uvis_table4.md"))
    assert proc2.returncode == 0, proc2.stdout + proc2.stderr
    assert sorted(p.name for p in world.tables.iterdir()) == [
        "uvis_table4.csv",
        "uvis_table4.html",
        "uvis_table4.md",
    ]


class FakeTableJob:
    """A job of rule `table` as the onerror handler reads it from Snakemake's DAG (hashable)."""

    def __init__(self, table: str) -> None:
        self.rule = SimpleNamespace(name="table")
        self.wildcards = SimpleNamespace(table=table)


def test_the_note_of_a_run_without_logs_cites_the_snakemake_log(tmp_path):
    """onerror passes Snakemake's log files as a list: the note cites the first as a path."""
    snakemake_log = tmp_path / "run.snakemake.log"
    snakemake_log.write_text("")
    failed_job = object()
    table_job, other_table = FakeTableJob("uvis_table4"), FakeTableJob("uvis_table1")
    upstream = {"uvis_table4": [table_job, failed_job], "uvis_table1": [other_table]}
    dag = SimpleNamespace(
        needrun_jobs=lambda: [table_job, other_table],
        dependencies={},
        bfs=lambda direction, job: iter(upstream[job.wildcards.table]),
    )
    workflow = SimpleNamespace(
        configfiles=["config.yaml"], dag=dag, scheduler=SimpleNamespace(failed={failed_job})
    )
    res = tmp_path / "results" / "synth"
    plan = wt.TablePlan(pseudo_level="pmf", tau=0.7, supervised=True, tagvis_variants=("full",))
    built = ["uvis_table1", "uvis_table4"]
    failed = wt.failed_tables(workflow, built)
    assert failed == ["uvis_table4"]

    def table_args(name: str, fallback: str | None) -> str:
        return wt.table_args(
            plan,
            name,
            results=str(res),
            split="valid",
            dataset="synth",
            provenance=("config.yaml", "0123456789ab"),
            fallback_log=fallback,
        )

    wt.build_tables_after_error(
        failed, [str(snakemake_log)], results=str(res), src=str(ROOT / "src"), table_args=table_args
    )
    partial = (res / "tables" / "uvis_table4.partial.md").read_text()
    assert f"- `uvis-minvis` failed — see `{snakemake_log}`" in partial
    assert "['" not in partial
    assert not (res / "tables" / "uvis_table1.partial.md").exists()
