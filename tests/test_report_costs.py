"""A run's cost per stage, from the Snakemake benchmark files its rules write."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from uvis.cli import main
from uvis.errors import DataError
from uvis.report.costs import costs_markdown, read_costs, summarise

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path: Path, wall: float, cpu: float | str, rss: float | str) -> None:
    """A benchmark file as Snakemake writes one (one repeat)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{HEADER}{wall}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_jobs_are_summed_per_stage_most_cpu_first(tmp_path):
    root = tmp_path / "benchmarks"
    bench(root / "maskcut/train.0.tsv", 100.0, 90.0, 300.0)
    bench(root / "maskcut/train.1.tsv", 50.0, 45.0, 500.0)
    bench(root / "train_detector.tsv", 600.0, 590.0, 1200.0)
    bench(root / "synth_world.tsv", 2.0, "NA", "NA")  # too short to be sampled
    costs = read_costs(root)
    assert [c.job for c in costs] == [
        "maskcut/train.0.tsv",
        "maskcut/train.1.tsv",
        "synth_world.tsv",
        "train_detector.tsv",
    ]
    summary = summarise(costs)
    assert [(s.stage, s.jobs) for s in summary] == [
        ("train_detector", 1),
        ("maskcut", 2),
        ("synth_world", 1),
    ]
    maskcut = summary[1]
    assert (maskcut.wall_s, maskcut.cpu_s, maskcut.max_rss_mb) == (150.0, 135.0, 500.0)
    assert summary[2].cpu_s == 0.0 and math.isnan(summary[2].max_rss_mb)

    table = costs_markdown(summary)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    # 590 + 135 = 725 CPU-s in all: the detector's share is 590 / 725 = 81 %.
    assert "| train_detector | 1 | 9.8 | 81% | 10.0 | 1200 |" in rows["train_detector"]
    assert "| maskcut | 2 | 2.2 | 19% | 2.5 | 500 |" in rows["maskcut"]
    assert "| synth_world | 1 | 0.0 | 0% | 0.0 | – |" in rows["synth_world"]
    assert "| **total** | 4 | 12.1 | 100% | 12.5 | 1200 |" in rows["**total**"]


def test_a_repeated_job_counts_its_last_row(tmp_path):
    path = tmp_path / "benchmarks/detect/valid.0.tsv"
    bench(path, 10.0, 9.0, 100.0)
    with open(path, "a") as f:
        f.write("20.0\t0:00:20\t200\t1\t1\t1\t0\t0\t50\t19.0\n")
    (job,) = read_costs(tmp_path / "benchmarks")
    assert (job.wall_s, job.cpu_s, job.max_rss_mb) == (20.0, 19.0, 200.0)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "not a Snakemake benchmark table"),
        ("s\tcpu_time\n", "not a Snakemake benchmark table"),
        (HEADER + "ten\t0\t1\t1\t1\t1\t0\t0\t0\t1\n", "not a number"),
    ],
)
def test_a_file_that_is_no_benchmark_is_named(tmp_path, text, problem):
    path = tmp_path / "benchmarks/filter/train.tsv"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as err:
        read_costs(tmp_path / "benchmarks")
    assert str(path) in str(err.value)


def test_cli_prints_the_table_and_exits_2_without_benchmarks(tmp_path, capsys):
    bench(tmp_path / "results/benchmarks/train_vis/uvis.tsv", 120.0, 118.0, 900.0)
    assert main(["report", "costs", str(tmp_path / "results")]) == 0
    assert "| train_vis | 1 | 2.0 | 100% | 2.0 | 900 |" in capsys.readouterr().out
    out = tmp_path / "costs.md"
    assert main(["report", "costs", str(tmp_path / "results"), "--out", str(out)]) == 0
    assert "| train_vis |" in out.read_text()
    assert main(["report", "costs", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no benchmarks folder" in err[0]
