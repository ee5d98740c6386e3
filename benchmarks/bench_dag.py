"""Snakemake's DAG at YouTube-VIS scale: dry-run time, jobs and cluster submissions (issue 7).

Usage: ``python benchmarks/bench_dag.py [--shards 4 16 64 256] [--generate] [--results DIR]``.

Runs ``snakemake -n`` on ``config.yaml`` + ``config/scale-ytvis.yaml`` (3,000 videos, 60,000
frames) with the SLURM profile (``workflow/profiles/slurm``: its per-rule resources and job
groups; needs ``pip install -e ".[cluster]"``), once per ``pseudo_labels.shards`` value, and
prints per run: the dry run's wall time, the number of jobs, and the number of submissions to
the cluster (jobs outside groups + group jobs; ``rule all`` runs inside Snakemake).

With ``--generate`` it first runs ``synth_world`` and ``frame_index`` (both splits) for real on
this machine and prints their times, so the dry runs then also check the generated files'
timestamps; ``--results`` keeps the generated world (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCALE_CONFIG = ROOT / "config" / "scale-ytvis.yaml"
PROFILE = ROOT / "workflow" / "profiles" / "slurm"


def snakemake(args: list[str]) -> tuple[str, float]:
    """Run snakemake in the repository root; its output and wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr, seconds


def dag_figures(output: str) -> tuple[int, int]:
    """(jobs, submissions) of a dry run's printed plan.

    Jobs are the "total" of its job stats. A submission is a job printed at the top level (not
    inside a "Group job" block), other than rule all, or a group job.
    """
    total = re.search(r"^total\s+(\d+)$", output, re.MULTILINE)
    if total is None:
        sys.exit(f"no job stats in the dry run's output:\n{output}")
    single = re.findall(r"^rule (\w+):", output, re.MULTILINE)
    groups = re.findall(r"Group job \w+", output)
    return int(total.group(1)), len([r for r in single if r != "all"]) + len(groups)


def overlay(folder: Path, results: Path, shards: int) -> list[str]:
    """Config options: config.yaml, the scale config, then results and shards."""
    path = folder / f"shards-{shards}.yaml"
    path.write_text(yaml.safe_dump({"results": str(results), "pseudo_labels": {"shards": shards}}))
    return ["--configfile", "config.yaml", str(SCALE_CONFIG), str(path)]


def generate(folder: Path, results: Path) -> None:
    """Run synth_world, then frame_index for both splits, and print their times."""
    name = yaml.safe_load(SCALE_CONFIG.read_text())["dataset"]["name"]
    cfg = overlay(folder, results, 64)
    world = results / name / "world" / "manifest.json"
    _, seconds = snakemake([str(world), "--cores", "2", *cfg])
    print(f"synth_world (3,000 videos, 60,000 frames of 32x32): {seconds:.0f} s")
    frames = [str(results / name / "frames" / f"{s}.parquet") for s in ("train", "valid")]
    _, seconds = snakemake([*frames, "--cores", "2", *cfg])
    print(f"frame_index, train + valid (--verify header, 2 jobs on 2 cores): {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--generate", action="store_true", help="generate the world first")
    parser.add_argument("--results", type=Path, help="results folder (default: temporary)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results = args.results or folder / "results"
        if args.generate:
            generate(folder, results)
        print("| pseudo_labels.shards | jobs | SLURM submissions | `snakemake -n` wall time |")
        print("|---|---|---|---|")
        for shards in args.shards:
            cfg = overlay(folder, results, shards)
            output, seconds = snakemake(["-n", "--workflow-profile", str(PROFILE), *cfg])
            jobs, submissions = dag_figures(output)
            print(f"| {shards} | {jobs} | {submissions} | {seconds:.1f} s |")


if __name__ == "__main__":
    main()
