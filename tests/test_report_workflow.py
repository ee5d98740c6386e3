"""rules/report.smk: run names of the table rows, and tables built when a row's run fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from uvis import masks

ROOT = Path(__file__).resolve().parents[1]


def report_functions(config: dict) -> dict:
    """The functions of rules/report_common.smk (plain Python), with ``config`` as given."""
    namespace = {
        "config": config,
        "workflow": SimpleNamespace(configfiles=["config.yaml"]),
        "os": os,
        "json": json,
    }
    path = ROOT / "rules" / "report_common.smk"
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


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
    fns = report_functions({"vis": {"pseudo_level": level}, "filter": {"tau": tau}, "tables": {}})
    assert {lv: fns["level_run"](lv) for lv in expected_levels} == expected_levels
    assert {t: fns["tau_run"](t) for t in expected_taus} == expected_taus


def test_a_failed_row_still_gets_its_table_and_is_retried(tmp_path):
    """uvis-memory's evaluation fails (corrupt results): the workflow keeps going and the
    onerror handler writes UVIS Table 4 as uvis_table4.partial.md with that row marked failed,
    citing the evaluation's log. The next run retries the failed evaluation; once it passes,
    the complete table replaces the partial one."""
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
    for run in runs:
        folder = res / "predictions" / run / "valid"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(results if runs[run] else "not json")
    time.sleep(0.05)  # metrics newer than their inputs: up to date for Snakemake
    (res / "metrics").mkdir()
    for run, ap in runs.items():
        if ap is not None:
            values = {"AP": ap, "AP50": 0.0, "AP75": 0.0, "AR1": 0.0, "AR10": 0.0}
            (res / "metrics" / f"{run}.valid.ytvis.json").write_text(json.dumps(values))
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump({"results": str(tmp_path / "results"), "tables": {"build": ["uvis_table4"]}})
    )
    tables = res / "tables"

    def snakemake(*extra: str) -> subprocess.CompletedProcess:
        # Only the evaluation and the table may run: everything upstream is given above.
        args = ["--cores", "1", "--configfile", "config.yaml", str(overlay), *extra]
        args += ["--allowed-rules", "eval_ytvis", "table", "--", str(tables / "uvis_table4.md")]
        return subprocess.run(
            [sys.executable, "-m", "snakemake", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

    proc = snakemake()
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
    dry = snakemake("-n")
    assert "rule eval_ytvis:" in dry.stdout + dry.stderr

    # Fixed: the complete table replaces the partial one.
    (res / "predictions" / "uvis-memory" / "valid" / "results.json").write_text(results)
    proc = snakemake()
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
