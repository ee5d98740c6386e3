"""The Snakemake workflow as users drive it: config validation, DAG, a smoke run, re-runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from uvis.report.costs import read_costs, summarise
from uvis.synth.params import SynthParams

ROOT = Path(__file__).resolve().parents[1]


def snakemake(
    *args: str, check: bool = True, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake in the repository root (where users run it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def overlay(path: Path, cfg: dict) -> list[str]:
    """A config overlay file on top of config.yaml, as users pass one.

    (`--configfile` keeps YAML types; nested `--config key={...}` values reach Snakemake as
    strings.)
    """
    path.write_text(yaml.safe_dump(cfg))
    return ["--configfile", "config.yaml", str(path)]


#: The tour (config/tour.yaml): every stage at smoke size, as README shows it to new users.
TOUR = yaml.safe_load((ROOT / "config" / "tour.yaml").read_text())
SMOKE_MODELS = {key: value for key, value in TOUR.items() if key not in ("results", "synth")}


def smoke_synth() -> dict:
    """The tour's ``synth`` section: the smoke world (see :func:`test_tour_resets_every_synth_override_to_the_smoke_preset`)."""
    return TOUR["synth"]


def test_tour_resets_every_synth_override_to_the_smoke_preset():
    """Snakemake merges an overlay into config.yaml key by key, so the tour must set each of
    config.yaml's synth overrides (the default world's 600 train videos) back to the smoke
    preset's value, or the tour would generate the full-size world."""
    smoke = SynthParams.preset("smoke").to_dict()
    base = yaml.safe_load((ROOT / "config.yaml").read_text())["synth"].get("overrides") or {}
    assert TOUR["synth"]["preset"] == "smoke"
    assert TOUR["synth"]["overrides"] == {key: smoke[key] for key in base}


def smoke(tmp: Path, name: str, filter_cfg: dict | None = None, **baseline) -> list[str]:
    cfg: dict = {
        "results": str(tmp / "results"),
        "synth": smoke_synth(),
        "baseline": baseline,
        **SMOKE_MODELS,
    }
    if filter_cfg:
        cfg["filter"] = filter_cfg
    return overlay(tmp / f"{name}.yaml", cfg)


def test_dry_run_builds_the_default_dag(tmp_path):
    proc = snakemake("-n", "--config", f"results={tmp_path}")
    out = proc.stdout + proc.stderr
    for rule in (
        "synth_world",
        "frame_index",
        "frames_from_video",
        "baseline_ytvis",
        "eval_ytvis",
        "eval_davis",
    ):
        assert f"rule {rule}:" in out


@pytest.mark.parametrize("members", [1, 3])
def test_clip_members_are_trained_and_all_scored(tmp_path, members):
    """clip.members stand-ins: one pretrain_clip job writes them all, and every clip_scores
    job loads every one of them (an ensemble), so changing the number reruns both."""
    args = overlay(tmp_path / "o.yaml", {"results": str(tmp_path), "clip": {"members": members}})
    out = snakemake("-n", "-F", "-p", *args).stdout
    extra = [f"{tmp_path}/synth/models/clip-member{m}.pt" for m in range(1, members)]
    pretrain = [line for line in out.splitlines() if "uvis pretrain clip" in line]
    assert len(pretrain) == 1
    assert pretrain[0].count("--member-out") == members - 1
    assert all(f"--member-out {path}" in pretrain[0] for path in extra)
    scoring = [line for line in out.splitlines() if "uvis pseudo clip-scores" in line]
    assert scoring
    for line in scoring:
        assert line.count("--weights") == members
        assert f"--weights {tmp_path}/synth/models/clip.pt" in line
        assert all(f"--weights {path}" in line for path in extra)


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ({"dataset": {"name": "x", "format": "synth", "colour": 1}}, ["colour"]),
        ({"dataset": {"name": "x", "format": "youtube"}}, ["format", "youtube"]),
        (
            {"dataset": {"name": "x", "format": "ytvis", "splits": {"valid": {"json": "a.json"}}}},
            ["images"],
        ),
        ({"dataset": {"name": "x", "format": "davis", "splits": {}}}, ["root"]),
        ({"frames": {"stride": 0}}, ["stride", "minimum"]),
        ({"synth": {"preset": "huge"}}, ["preset", "huge"]),
        ({"tagvis": {"targets": "labels"}}, ["targets", "labels"]),
        ({"tagvis": {"variants": {"no.dots": {}}}}, ["no.dots"]),
    ],
    ids=[
        "unknown-key",
        "bad-format",
        "ytvis-missing-images",
        "davis-missing-root",
        "stride",
        "preset",
        "tagvis-targets",
        "tagvis-variant-name",
    ],
)
def test_bad_config_is_rejected_naming_the_key(tmp_path, override, names):
    cfg = {"results": str(tmp_path), **override}
    proc = snakemake("-n", *overlay(tmp_path / "bad.yaml", cfg), check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "Error validating config file" in err
    for name in names:
        assert name in err, err


def test_a_schema_error_is_one_line_not_the_schema_and_config(tmp_path):
    """An unknown top-level key: jsonschema's own message appended the whole schema and config
    (about 790 lines)."""
    cfg = {"results": str(tmp_path), "colour": 1}
    proc = snakemake("-n", *overlay(tmp_path / "bad.yaml", cfg), check=False)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "Error validating config file: unknown config key colour (known keys: results," in err
    assert "Failed validating" not in err and "On instance" not in err
    assert len(err.splitlines()) < 10, err


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ({"clip": {"weights": "/nonexistent"}}, "config clip.weights: weight file '/nonexistent'"),
        (
            {"ssl": {"weights": "dino_vitb8", "arch": "vit_base_patch8_224", "arch_kwargs": {}}},
            "config ssl.weights: weight 'dino_vitb8' (",
        ),
        # a key that is no field, or a value of the wrong type: the schema's settings blocks
        (
            {"tagvis": {"variants": {"full": {}, "odd": {"tag_atention": False}}}},
            "unknown config key tagvis.variants.odd.tag_atention (known in tagvis.variants.odd:",
        ),
        (
            {"vis": {"train": {"preset": "default", "overrides": {"lr": "fast"}}}},
            "Error validating config file: vis.train.overrides.lr: 'fast' does not match",
        ),
        # a value out of range: the settings dataclass, built before any job runs
        (
            {"tagvis": {"variants": {"full": {}, "odd": {"margin": -1.0}}}},
            "config tagvis.variants.odd: invalid tagvis setting margin=-1.0",
        ),
        (
            {"vis": {"train": {"preset": "default", "overrides": {"lr": -0.001}}}},
            "config vis.train: invalid train setting lr=-0.001",
        ),
    ],
    ids=[
        "clip-weights-file",
        "ssl-weights-name",
        "tagvis-switch",
        "vis-lr-type",
        "tagvis-range",
        "vis-lr-range",
    ],
)
def test_dry_run_catches_settings_and_weights_the_jobs_would_fail_on(tmp_path, override, line):
    """Issue 14's late failures: each passed `snakemake -n` and stopped its job."""
    cfg = {"results": str(tmp_path), **override}
    weights = tmp_path / "weights"  # an empty weights folder
    weights.mkdir()
    proc = snakemake(
        "-n", *overlay(tmp_path / "bad.yaml", cfg), check=False, env={"UVIS_WEIGHTS": str(weights)}
    )
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert line in err, err
    assert "Traceback" not in err


def test_unknown_tagvis_variant_to_run_is_named(tmp_path):
    cfg = {"results": str(tmp_path), "tagvis": {"run_variants": ["full", "nope"]}}
    proc = snakemake("-n", *overlay(tmp_path / "bad.yaml", cfg), check=False)
    assert proc.returncode != 0
    assert "tagvis.run_variants names ['nope'], not in tagvis.variants" in proc.stdout + proc.stderr


def test_lint_is_clean():
    proc = snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_smoke_run_end_to_end_and_param_reruns(tmp_path):
    """A perfect baseline scores 100 on both metrics; changing a knob re-runs only its stages."""
    res = tmp_path / "results" / "synth"
    exact = {
        "seed": 0,
        "jitter_px": 0,
        "drop_rate": 0.0,
        "class_flip_rate": 0.0,
        "false_positives": 0,
    }
    snakemake("--cores", "2", *smoke(tmp_path, "exact", **exact))
    ytvis = json.loads((res / "metrics/baseline.valid.ytvis.json").read_text())
    davis = json.loads((res / "metrics/baseline.valid.davis.json").read_text())
    assert ytvis["AP"] == pytest.approx(100.0)
    assert davis["JF"] == pytest.approx(100.0)
    counts = json.loads((res / "world/manifest.json").read_text())["counts"]
    assert counts["train"]["videos"] == SynthParams.preset("smoke").num_train_videos
    frames = res / "frames/train.parquet"
    frames_mtime = frames.stat().st_mtime_ns

    noisy = dict(exact, jitter_px=2, drop_rate=0.2, class_flip_rate=0.2, false_positives=1)
    dry = snakemake("-n", "--cores", "2", *smoke(tmp_path, "noisy", **noisy))
    planned = dry.stdout + dry.stderr
    for rule in ("baseline_ytvis", "baseline_davis", "eval_ytvis", "eval_davis"):
        assert f"rule {rule}:" in planned
    for rule in ("synth_world", "frame_index", "frames_from_video"):
        assert f"rule {rule}:" not in planned
    snakemake("--cores", "2", *smoke(tmp_path, "noisy", **noisy))
    ytvis2 = json.loads((res / "metrics/baseline.valid.ytvis.json").read_text())
    davis2 = json.loads((res / "metrics/baseline.valid.davis.json").read_text())
    assert ytvis2["AP"] < 100.0 and davis2["JF"] < 100.0
    assert frames.stat().st_mtime_ns == frames_mtime

    # Pseudo-labels exist with every flag, and a quality table per split.
    labels = pq.read_table(res / "pseudo/labels/train.parquet")
    assert {"pass_objectness", "pass_clip", "pass_pmf", "pmf_similarity"} <= set(
        labels.column_names
    )
    assert (res / "pseudo/quality/valid.md").read_text().count("|") > 20

    # The VIS runs side by side: DeepSORT, UVIS and the upper bound, without/with memory.
    table = (res / "metrics/vis.valid.md").read_text().splitlines()
    runs = [line.split("|")[1].strip() for line in table if line.startswith("| ")][1:]
    assert runs == [
        "DeepSORT on unfiltered pseudo-labels",
        "DeepSORT on PMF-filtered pseudo-labels",
        "UVIS, MinVIS matching",
        "UVIS, tracking memory",
        "Supervised (upper bound), MinVIS matching",
        "Supervised (upper bound), tracking memory",
    ]
    valid = json.loads((res / "world/ytvis/valid.json").read_text())
    lengths = {v["id"]: v["length"] for v in valid["videos"]}
    for run in ("uvis-memory", "supervised-minvis"):  # top-3 (query, class) pairs per video
        results = json.loads((res / f"predictions/{run}/valid/results.json").read_text())
        assert sorted(r["video_id"] for r in results) == sorted(list(lengths) * 3)
        assert all(len(r["segmentations"]) == lengths[r["video_id"]] for r in results)

    # Every job left a Snakemake benchmark file beside its log, which `uvis report costs` sums.
    logs = {p.relative_to(res / "logs").with_suffix("") for p in (res / "logs").rglob("*.log")}
    benches = res / "benchmarks"
    assert {p.relative_to(benches).with_suffix("") for p in benches.rglob("*.tsv")} == logs
    stages = {s.stage: s for s in summarise(read_costs(benches))}
    assert stages["train_vis"].jobs == 2 and stages["train_vis"].cpu_s > 0  # UVIS, supervised
    # The tour validates each training periodically (every 3 of the smoke preset's 6 steps).
    for run in ("uvis", "supervised"):
        rows = (res / f"vis/{run}/validation.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows] == ["iteration", "3", "6"], rows

    # The tag-based model, evaluated on both benchmarks, with its inference speed.
    for bench, column in (("ytvis", "AP"), ("davis", "JF")):
        table = (res / f"metrics/tagvis.valid.{bench}.md").read_text()
        assert f"| {column} |" in table and "| full |" in table
    speed = json.loads((res / "predictions/tagvis-full/valid/speed.json").read_text())
    assert speed["frames"] == sum(lengths.values()) and speed["fps"] > 0

    # Changing tau re-runs filtering and what depends on it, never proposals or CLIP scoring.
    tau = {
        "objectness_threshold": 0.7,
        "clip_threshold": 0.7,
        "tau": 0.5,
        "k_ratio": 0.05,
        "k_min": 1,
        "k_max": 64,
    }
    dry = snakemake("-n", "--cores", "2", *smoke(tmp_path, "tau", filter_cfg=tau, **noisy))
    planned = dry.stdout + dry.stderr
    for rule in ("filter", "pseudo_quality"):
        assert f"rule {rule}:" in planned
    for rule in (
        "pretrain_ssl",
        "pretrain_clip",
        "maskcut",
        "train_detector",
        "detect",
        "clip_scores",
    ):
        assert f"rule {rule}:" not in planned
    assert "params" in planned.lower()


# --------------------------------------------------------------------------------------------
# Paths with spaces, quotes and non-ASCII characters (issue 14)

#: Options of the rules' shell commands that are whole option strings, built with shlex.quote
#: in rules/common.smk and rules/report_common.smk (or numbers).
PREQUOTED = {
    "args",
    "backbone",
    "clip_weights",
    "drop_groups",
    "encoder",
    "flip",
    "mask_background",
    "mask_score",
    "member_outs",
    "num_shards",
    "opts",
    "overrides",
    "resize_mode",
    "runs",
    "sets",
    "targets",
    "templates",
    "validation",
    "verify",
    "vocabulary",
}


def test_every_path_in_a_shell_command_is_quoted():
    """Each {input}, {output}, {log}, {params.x} and {wildcards.x} of every rule's shell
    command is formatted with :q, except the option strings quoted where they are built."""
    unquoted = []
    for path in sorted((ROOT / "rules").glob("*.smk")):
        text = path.read_text()
        for block in re.findall(r"shell:\n((?:\s+\".*\"\n)+)", text):
            for field in re.findall(r"(?<!\{)\{([a-z_.]+)(:q)?\}", block):
                name, quoted = field
                if quoted or name == "threads" or name.split(".")[-1] in PREQUOTED:
                    continue
                unquoted.append(f"{path.name}: {{{name}}}")
    assert not unquoted


WEIRD = "rés ults 'q'"


def weird_repo(tmp_path: Path) -> Path:
    """A copy of the workflow and library in a folder whose path has a space and an accent."""
    repo = tmp_path / "répo with space"
    repo.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("rules", "workflow", "envs", "profiles"):
        shutil.copytree(ROOT / name, repo / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "src" / "uvis", repo / "src" / "uvis", ignore=ignore)
    return repo


def test_paths_with_spaces_quotes_and_accents(tmp_path):
    """From a checkout at a path with a space and an accent, into a results folder with a
    space, a quote and an accent: every shell command of the default DAG keeps each path one
    word, and the synthetic world, its frame index, the baseline and its evaluation run."""
    repo = weird_repo(tmp_path)
    results = tmp_path / WEIRD
    cfg = {
        "results": str(results),
        "synth": smoke_synth(),
        **SMOKE_MODELS,
    }
    args = overlay(tmp_path / "weird.yaml", cfg)
    dry = snakemake("-n", "-F", "-p", *args, cwd=repo)
    commands = [
        line[len("Shell command: ") :]
        for line in (dry.stdout + dry.stderr).splitlines()
        if line.startswith("Shell command: ") and line != "Shell command: None"  # rule all
    ]
    assert len(commands) > 20
    for command in commands:
        words = shlex.split(command)
        split = [w for w in words if ("rés" in w or "ults" in w) and str(results) not in w]
        assert not split, command
        assert words[0] in ("python", "torchrun"), command

    res = results / "synth"
    targets = [str(res / "metrics/baseline.valid.ytvis.json"), str(res / "frames/valid.parquet")]
    snakemake("--cores", "1", *args, "--", *targets, cwd=repo)
    metrics = json.loads((res / "metrics/baseline.valid.ytvis.json").read_text())
    assert 0 < metrics["AP"] <= 100
    assert pq.read_table(res / "frames/valid.parquet").num_rows > 0
    assert "AP" in (res / "logs/eval_ytvis/baseline.valid.log").read_text()
    # Nothing was written at a truncated path (e.g. a log redirect to ".../rés").
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["répo with space", WEIRD, "weird.yaml"]
    )
