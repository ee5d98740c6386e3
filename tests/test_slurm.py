"""The cluster profiles: their DAGs, and a real run on a one-node SLURM cluster on this machine.

The slow test installs Debian's slurm-wlm and munge and starts a cluster through
``.ci/slurm-localhost.sh`` (root on Debian only; elsewhere it skips and says why), runs a small
target of the pipeline locally, then again through ``snakemake --executor slurm`` with
``workflow/profiles/slurm`` (resources capped to the one node), requeues the multi-GPU training
job mid-run as a preemption does, and checks that both runs wrote the same outputs.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from test_workflow import smoke_synth

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = ROOT / ".ci" / "slurm-localhost.sh"
SLURM_PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
HAS_PLUGIN = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None
NEEDS_PLUGIN = pytest.mark.skipif(
    not HAS_PLUGIN, reason="snakemake-executor-plugin-slurm not installed (pip install .[cluster])"
)

#: Settings a cluster without an accounting database needs: job states from squeue (the
#: cluster keeps finished jobs there for MinJobAge = 300 s) and a first status check after 2 s
#: rather than 40. (Plugin 2.8 accepts --slurm-no-account but does not read it: it tries to
#: guess an account with sacct, fails, and submits without one.)
NO_ACCOUNTING = {
    "slurm-status-command": "squeue",
    "slurm-no-account": True,
    "slurm-init-seconds-before-status-checks": 2,
}
JOB_MEM_MB = 4000  # every job fits the test node several times over

#: Smoke-sized stages. train_vis runs as 2 DDP processes in both runs (locally from
#: compute.gpus_per_job, on SLURM from the profile's GPUs capped to the node's 2), long enough to
#: be requeued after its first checkpoint.
ITERATIONS, CHECKPOINT_PERIOD = 30, 5
CONFIG = {
    "compute": {"gpus_per_job": 2},
    "synth": smoke_synth(),
    "pseudo_labels": {"splits": ["train"], "shards": 2},
    "ssl": {"pretrain": {"preset": "smoke", "overrides": {}}},
    "vis": {
        "model": "uvis-smoke",
        "backbone_weights": None,
        "train": {
            "preset": "smoke",
            "overrides": {"iterations": ITERATIONS, "checkpoint_period": CHECKPOINT_PERIOD},
        },
    },
}
#: synth_world, frame_index, pretrain_ssl (one GPU), train_vis (two GPUs) and the two maskcut
#: shards (one GPU, one grouped submission).
TARGETS = (
    "world/manifest.json",
    "frames/train.parquet",
    "vis/supervised/model_final.pth",
    "pseudo/maskcut/train/shard-0.parquet",
    "pseudo/maskcut/train/shard-1.parquet",
)
#: JSON keys that hold wall-clock timings, or (resumed_from_iteration) where the run resumed.
RUN_KEYS = {"generation_seconds", "seconds", "cpu_seconds", "resumed_from_iteration"}


def snakemake(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run snakemake in the repository root; raise with its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def configfiles(tmp: Path, results: Path) -> list[str]:
    overlay = tmp / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"results": str(results), **CONFIG}))
    return ["--configfile", "config.yaml", str(overlay)]


# --------------------------------------------------------------------------------------------
# Profiles, dry-run


@NEEDS_PLUGIN
def test_slurm_profile_dag_gpus_groups_and_ddp_launch(tmp_path: Path) -> None:
    """GPU rules ask for the gpu partition; train_vis is one 4-GPU job that starts 4 DDP
    processes (under torchrun, from its --processes); the default world's 4 MaskCut shards go as
    one group, detect + CLIP scoring as two."""
    out = snakemake(
        "-n",
        "-p",
        "--workflow-profile",
        str(SLURM_PROFILE.parent),
        "--config",
        f"results={tmp_path}",
    ).stdout
    train = next(j for j in out.split("rule ") if j.startswith("train_vis:"))
    assert "python -m uvis train vis" in train and "--processes 4" in train
    assert "gpu=4" in train
    assert out.count("Group job maskcut") == 1
    assert out.count("Group job shard") == 2
    jobs = out.split("rule ")
    detect = next(j for j in jobs if j.startswith("detect:"))
    assert "slurm_partition=gpu" in detect and "gpu=1" in detect
    synth = next(j for j in jobs if j.startswith("synth_world:"))
    assert "slurm_partition=cpu" in synth and "gpu=" not in synth


def test_local_profile_gives_each_gpu_rule_one_gpu(tmp_path: Path) -> None:
    out = snakemake(
        "-n",
        "-p",
        "--workflow-profile",
        "workflow/profiles/local",
        "--config",
        f"results={tmp_path}",
    ).stdout
    jobs = out.split("rule ")
    train = next(j for j in jobs if j.startswith("train_vis:"))
    assert "python -m uvis train vis" in train and "--processes 1" in train
    for rule in ("pretrain_ssl:", "maskcut:", "train_vis:", "track_vis:"):
        assert "gpu=1" in next(j for j in jobs if j.startswith(rule)), rule


# --------------------------------------------------------------------------------------------
# A real SLURM cluster


@dataclass(frozen=True)
class Node:
    """The test cluster's one node: CPUs, memory (MB) and GPUs (gres)."""

    cpus: int
    mem_mb: int
    gpus: int


@pytest.fixture(scope="module")
def slurm_node() -> Iterator[Node]:
    """A running one-node cluster (started here and stopped afterwards if it was not up)."""
    if not HAS_PLUGIN:
        pytest.skip("snakemake-executor-plugin-slurm not installed (pip install .[cluster])")
    if os.geteuid() != 0:
        pytest.skip("needs root: installs slurm-wlm and munge, starts their daemons")
    if not Path("/etc/debian_version").is_file():
        pytest.skip("installs SLURM with apt: Debian only")
    start = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=900
    )
    if start.returncode != 0:
        pytest.skip(f"no local SLURM cluster: {start.stderr.strip()[-500:]}")
    info = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%c %m %G"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    yield Node(cpus=int(info[0]), mem_mb=int(info[1]), gpus=int(info[2].split(":")[-1]))
    if start.stdout.strip() == "started":
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], check=False, timeout=60)


def node_profile(node: Node, dest: Path) -> Path:
    """workflow/profiles/slurm as it is, with NO_ACCOUNTING and every job fitted to ``node``.

    set-threads is dropped, so every job runs with its rule's threads, as in the local run.
    """
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    profile.update(NO_ACCOUNTING)
    profile.pop("set-threads")
    profile["default-resources"]["mem_mb"] = JOB_MEM_MB
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = min(resources["mem_mb"], JOB_MEM_MB)
        for key, limit in (("gpu", node.gpus), ("cpus_per_task", node.cpus)):
            if key in resources:
                resources[key] = min(resources[key], limit)
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


@dataclass(frozen=True)
class SlurmJob:
    """A job as squeue lists it; ``comment`` names the rule (and wildcards) it runs."""

    partition: str
    comment: str
    tres_per_job: str


def slurm_jobs() -> dict[str, SlurmJob]:
    """Every job the cluster still lists, finished ones too (for MinJobAge seconds), by id."""
    out = subprocess.run(
        [
            "squeue",
            "--noheader",
            "--states=all",
            "-O",
            "JobID:|,Partition:|,Comment:|,tres-per-job:|",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = (line.split("|") for line in out.splitlines())
    return {r[0].strip(): SlurmJob(*(f.strip() for f in r[1:4])) for r in rows}


def watch_and_preempt(
    run: subprocess.Popen, out_dir: Path, earlier: set[str]
) -> tuple[dict[str, SlurmJob], str]:
    """Follow the run's jobs (those not in ``earlier``) until it ends; once train_vis's first
    checkpoint is in ``out_dir``, requeue its job as a preemption does. Returns the run's jobs
    and its output. If anything fails, the run and its jobs are stopped."""
    seen: dict[str, SlurmJob] = {}
    requeued = None
    try:
        while run.poll() is None:
            seen.update((j, s) for j, s in slurm_jobs().items() if j not in earlier)
            if requeued is None and any(out_dir.glob("checkpoint_*.pth")):
                requeued = next(j for j, s in seen.items() if s.comment.startswith("rule_train"))
                subprocess.run(["scontrol", "requeue", requeued], check=True, capture_output=True)
            time.sleep(0.2)
    finally:
        if run.poll() is None:
            run.kill()
            subprocess.run(["scancel", *seen], check=False, capture_output=True)
    seen.update((j, s) for j, s in slurm_jobs().items() if j not in earlier)
    log = run.communicate()[0]
    assert requeued is not None, f"train_vis ended before its first checkpoint was seen:\n{log}"
    return seen, log


def same_content(a: Any, b: Any) -> bool:
    """Nested checkpoint contents are equal (tensors exactly, dtype and shape included)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(same_content(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same_content(x, y) for x, y in zip(a, b, strict=True))
        )
    return a == b


def without_run_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_run_keys(v) for k, v in value.items() if k not in RUN_KEYS}
    if isinstance(value, list):
        return [without_run_keys(v) for v in value]
    return value


def assert_same_output(a: Path, b: Path) -> None:
    """``a`` and ``b`` hold the same result, byte for byte except where a file legitimately
    records its run: torch.save names its zip archive after the (random) temporary file it
    writes, so checkpoints are compared by content; JSON reports record wall-clock seconds
    (and resumed_from_iteration); metrics.csv records seconds per iteration."""
    if a.suffix == ".pth":
        assert same_content(load(a), load(b)), a.name
    elif a.suffix == ".json":
        assert without_run_keys(json.loads(a.read_text())) == without_run_keys(
            json.loads(b.read_text())
        ), a.name
    elif a.name == "metrics.csv":
        assert loss_curve(a) == loss_curve(b)
    else:
        assert a.read_bytes() == b.read_bytes(), a.name


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def loss_curve(path: Path) -> list[dict[str, str]]:
    """metrics.csv without its timing column."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        del row["seconds_per_iteration"]
    return rows


def outputs(results: Path) -> set[Path]:
    """Every file of a run but its logs, its jobs' benchmark files (timings) and TensorBoard
    events (named after host and time)."""
    skipped = {"logs", "benchmarks", "tensorboard"}
    return {
        p.relative_to(results)
        for p in results.rglob("*")
        if p.is_file() and not skipped & set(p.relative_to(results).parts)
    }


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_run_matches_local_run_and_resumes_after_requeue(slurm_node, tmp_path) -> None:
    results = tmp_path / "results"
    res = results / "synth"
    targets = [str(res / t) for t in TARGETS]
    cfg = configfiles(tmp_path, results)

    snakemake(*targets, "--cores", "2", *cfg)
    local = tmp_path / "local"
    shutil.move(res, local)

    cfg = ["--workflow-profile", str(node_profile(slurm_node, tmp_path / "profile")), *cfg]
    earlier = set(slurm_jobs())
    run = subprocess.Popen(
        # The plugin waits for ever on jobs it cannot see, and ignores SIGTERM: kill it at last.
        ["timeout", "-k", "10", "480", sys.executable, "-m", "snakemake", *targets, *cfg],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    jobs, log = watch_and_preempt(run, res / "vis" / "supervised", earlier)
    assert run.returncode == 0, log

    # Every job went through SLURM, with the partition and GPUs the profile asks for (capped to
    # the node's 2); the two MaskCut shards as one submission.
    jobs = {s.comment: s for s in jobs.values()}
    assert jobs["rule_synth_world"].partition == "cpu"
    assert jobs["rule_frame_index_wildcards_train"].partition == "cpu"
    for comment, gpus in (
        ("rule_pretrain_ssl", 1),
        ("rule_train_vis_wildcards_supervised", 2),
        ("rule_maskcut_maskcut", 1),
    ):
        assert (jobs[comment].partition, jobs[comment].tres_per_job) == ("gpu", f"gres:gpu:{gpus}")
    assert len(jobs) == 5, jobs

    # The requeued training resumed from a checkpoint, in 2 DDP processes.
    described = json.loads((res / "vis/supervised/config.json").read_text())
    assert described["processes"] == 2
    assert CHECKPOINT_PERIOD <= described["resumed_from_iteration"] < ITERATIONS

    assert outputs(res) == outputs(local)
    for rel in sorted(outputs(local)):
        assert_same_output(local / rel, res / rel)
    assert pq.read_table(res / "pseudo/maskcut/train/shard-1.parquet").num_rows > 0
