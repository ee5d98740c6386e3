"""The shipped real-dataset configs: valid, and their DAGs built on tiny stand-in datasets.

Each config file is used as users will (``--configfile config.yaml config/<name>.yaml``) with
its placeholder paths pointed at fixture datasets, and the dry run's job list is checked:
YouTube-VIS/OVIS validation splits without ground truth give server zips and no local metrics;
``dataset.holdout`` gives local metrics on a held-out part of the training split; DAVIS runs
are evaluated with J&F.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from test_workflow import ROOT, snakemake
from uvis.foundation.weights import KNOWN_WEIGHTS

YTVIS_CONFIGS = ["ytvis2019", "ytvis2021", "ovis"]


@pytest.fixture(autouse=True)
def placeholder_weights(tmp_path, monkeypatch) -> Path:
    """Every known weight file present in $UVIS_WEIGHTS (as placeholders): the workflow checks
    at DAG build that the weights the configs name exist."""
    folder = tmp_path / "weights"
    for spec in KNOWN_WEIGHTS.values():
        path = folder / spec.name / spec.filename
        path.parent.mkdir(parents=True)
        path.write_bytes(b"placeholder")
    monkeypatch.setenv("UVIS_WEIGHTS", str(folder))
    return folder


def _jobs(proc_stdout: str) -> dict[str, int]:
    """Job counts of a dry run's 'Job stats' table."""
    stats = proc_stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def _with_paths(name: str, tmp: Path, splits: dict, **dataset) -> list[str]:
    cfg = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    cfg["dataset"]["splits"] = splits
    cfg["dataset"].update(dataset)
    cfg["results"] = str(tmp / "results")
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["--configfile", "config.yaml", str(path)]


def _ytvis_splits(tiny_ytvis, tmp: Path) -> dict:
    valid = tmp / "valid.json"
    valid.write_text(json.dumps({k: v for k, v in tiny_ytvis.doc.items() if k != "annotations"}))
    images = str(tiny_ytvis.image_root)
    return {
        "train": {"json": str(tiny_ytvis.json_path), "images": images},
        "valid": {"json": str(valid), "images": images, "annotated": False},
    }


@pytest.mark.parametrize("name", YTVIS_CONFIGS)
def test_ytvis_config_without_valid_ground_truth_makes_server_zips(name, tiny_ytvis, tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    assert cfg["filter"]["tau"] == cfg["filter"]["clip_threshold"] == 0.7
    assert cfg["tracking"]["lam"] == 0.5 and cfg["vis"]["model"] == "minvis_r50"
    assert cfg["dataset"]["splits"]["valid"]["annotated"] is False
    args = _with_paths(name, tmp_path, _ytvis_splits(tiny_ytvis, tmp_path))
    proc = snakemake("-n", "-p", *args)
    # The overlay, not config.yaml's embedded default, decides the PMF rule: the paper's.
    assert "--tau 0.7 " in proc.stdout and "--prototype-fraction 1.0 " in proc.stdout
    assert "--k-ratio 0.005 --k-min 1 --k-max 64 " in proc.stdout
    jobs = _jobs(proc.stdout)
    # UVIS with memory, the upper bound (trained on the annotated train split), DeepSORT (A1)
    # and DeepSORT on the PMF-level pseudo-labels (deepsort.extra_levels).
    assert jobs["submission"] == 4 and jobs["train_vis"] == 2
    assert jobs["deepsort"] == 2
    assert "eval_ytvis" not in jobs and "compare_vis" not in jobs
    assert jobs["pseudo_quality"] == 1  # the train split only: valid has no ground truth
    trainings = [line for line in proc.stdout.splitlines() if "-m uvis train " in line]
    assert len(trainings) == 2 + jobs["train_tagvis"]
    assert all("--preset paper" in line for line in trainings)
    # The papers' masks: config.yaml's output refinement (embedded world only) is switched off.
    inferences = [line for line in proc.stdout.splitlines() if "-m uvis infer tagvis" in line]
    assert inferences and all('refine="none"' in line for line in inferences)
    tracks = [line for line in proc.stdout.splitlines() if "-m uvis track vis" in line]
    assert tracks and all("--refine none" in line for line in tracks)


def test_holdout_gives_local_metrics(tiny_ytvis, tmp_path):
    args = _with_paths(
        "ytvis2019",
        tmp_path,
        _ytvis_splits(tiny_ytvis, tmp_path),
        holdout={"split": "train", "fraction": 0.5},
        train_split="fit",
        eval_split="holdout",
    )
    proc = snakemake("-n", "-p", *args)
    jobs = _jobs(proc.stdout)
    assert jobs["holdout_split"] == 1 and jobs["compare_vis"] == 1
    assert "submission" not in jobs
    # Both trainings read the fit split; the side-by-side table evaluates on the holdout.
    fit_frames = "train vis --frames " + str(tmp_path / "results/ytvis2019/frames/fit.parquet")
    assert proc.stdout.count(fit_frames) >= 2
    assert "train vis --frames " + str(tmp_path / "results/ytvis2019/frames/train.parquet") not in (
        proc.stdout
    )
    assert "metrics/vis.holdout.md" in proc.stdout


def test_davis_config_evaluates_with_j_and_f(tiny_davis, tmp_path):
    args = _with_paths(
        "davis2019",
        tmp_path,
        {"train": {"imageset": "2019/val"}, "valid": {"imageset": "2019/val"}},
        root=str(tiny_davis.root),
    )
    jobs = _jobs(snakemake("-n", *args).stdout)
    assert jobs["eval_davis"] >= 1 and "eval_ytvis" not in jobs and "submission" not in jobs
    assert jobs["train_vis"] == 1  # no YouTube-VIS ground truth: no upper bound


def test_a_missing_weight_of_a_real_config_stops_the_dry_run(tiny_ytvis, tmp_path, monkeypatch):
    """Without the DINO file the dry run already stops, naming the config key and the file."""
    monkeypatch.setenv("UVIS_WEIGHTS", str(tmp_path / "empty"))
    args = _with_paths("ytvis2019", tmp_path, _ytvis_splits(tiny_ytvis, tmp_path))
    proc = snakemake("-n", *args, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config ssl.weights: weight 'dino_vitb8'" in out
    assert str(tmp_path / "empty" / "dino_vitb8" / "dino_vitbase8_pretrain.pth") in out


@pytest.mark.parametrize("name", [*YTVIS_CONFIGS, "davis2019"])
def test_real_configs_pin_the_papers_pmf_over_the_embedded_default(name):
    """The overlays sit on config.yaml, whose PMF is tuned to the stand-in CLIP (tau 0.85,
    prototypes from each class's top fifth, one prototype per class, Table 3 swept up to
    0.85): each must set the paper's values itself, or it would inherit those."""
    cfg = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    assert cfg["filter"]["tau"] == 0.7 and cfg["filter"]["prototype_fraction"] == 1.0
    # k proportional to the class's size (the paper), capped at the schema's 64, not at 1
    assert cfg["filter"]["k_ratio"] == 0.005
    assert cfg["filter"]["k_min"] == 1 and cfg["filter"]["k_max"] == 64
    assert cfg["tables"]["taus"] == [0.0, 0.5, 0.7, 0.9]
