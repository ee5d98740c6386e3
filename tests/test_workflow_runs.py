"""uvis.workflow.runs and .tables: run names and which runs fill which paper table."""

from __future__ import annotations

import pytest

from uvis.workflow import tables as wt
from uvis.workflow.runs import Run, VisTraining, track_vis_options

NAMES = [
    "uvis-minvis",
    "uvis-memory",
    "supervised-minvis",
    "uvis_none-minvis",
    "uvis_clip-memory",
    "uvis_tau0.5-minvis",
    "uvis_tau1.0-memory",
    "deepsort",
    "deepsort_pmf",
    "deepsort_none",
    "tagvis-full",
    "tagvis-no_tag_attention",
    "baseline",
]


@pytest.mark.parametrize("name", NAMES)
def test_names_round_trip(name):
    assert str(Run.parse(name)) == name


def test_what_a_name_means():
    run = Run.parse("uvis_tau0.5-memory")
    assert (run.kind, run.tracker, run.training) == ("vis", "memory", VisTraining(tau=0.5))
    assert run.training_name == "uvis_tau0.5"
    assert Run.parse("supervised-minvis").training == VisTraining(supervised=True)
    assert Run.parse("uvis_objectness-minvis").training.level == "objectness"
    assert Run.parse("deepsort").level is None and Run.parse("deepsort_clip").level == "clip"
    assert Run.parse("deepsort_pmf").training_name is None
    assert Run.parse("tagvis-full").variant == "full"
    assert Run.parse("tagvis-full").training_name == "tagvis-full"


@pytest.mark.parametrize(
    "name",
    ["uvis", "uvis-tracker", "uvis_best-minvis", "deepsort_all", "tagvis-", "uvis_tau-minvis", ""],
)
def test_unknown_names_are_refused(name):
    with pytest.raises(ValueError, match="name"):
        Run.parse(name)


def test_pseudo_label_selection_of_a_training():
    assert VisTraining.parse("uvis").selection("pmf") == ("pmf", None)
    assert VisTraining.parse("uvis").selection("clip") == ("clip", None)
    assert VisTraining.parse("uvis_none").selection("pmf") == ("none", None)
    assert VisTraining.parse("uvis_tau0.3").selection("clip") == ("pmf", 0.3)
    with pytest.raises(ValueError, match="ground truth"):
        VisTraining(supervised=True).selection("pmf")
    with pytest.raises(ValueError, match="level"):
        VisTraining(level="best")


def _names(rows):
    return [(role, str(run)) for role, run in rows]


def test_table_rows_follow_the_papers():
    plan = wt.TablePlan(
        pseudo_level="pmf",
        tau=0.7,
        taus=(0.5, 0.7),
        supervised=True,
        deepsort_runs=("deepsort", "deepsort_pmf"),
        tagvis_variants=("full", "no_tag_attention"),
    )
    assert _names(plan.rows("uvis_table1")) == [
        ("supervised", "supervised-minvis"),
        ("deepsort", "deepsort"),
        ("deepsort_pmf", "deepsort_pmf"),
        ("uvis", "uvis-memory"),
    ]
    assert _names(plan.rows("uvis_table2")) == [
        ("A1", "deepsort"),
        ("A2", "uvis_none-minvis"),
        ("A3", "uvis_objectness-minvis"),
        ("A4", "uvis_clip-minvis"),
        ("A5", "uvis-minvis"),
        ("A6", "uvis-memory"),
        ("upper", "supervised-minvis"),
    ]
    assert _names(plan.rows("uvis_table3")) == [
        ("0.5", "uvis_tau0.5-minvis"),
        ("0.7", "uvis-minvis"),
    ]
    assert _names(plan.rows("tag_table3")) == [
        ("full", "tagvis-full"),
        ("no_tag_attention", "tagvis-no_tag_attention"),
    ]
    assert plan.trainings(["uvis_table1", "uvis_table2", "tag_table3"]) == [
        "supervised",
        "uvis",
        "uvis_none",
        "uvis_objectness",
        "uvis_clip",
        "tagvis-full",
        "tagvis-no_tag_attention",
    ]
    with pytest.raises(ValueError, match="unknown table"):
        plan.rows("table9")


def test_without_the_upper_bound_and_the_extra_deepsort_run():
    plan = wt.TablePlan(pseudo_level="pmf", tau=0.7)
    assert _names(plan.rows("uvis_table1")) == [("deepsort", "deepsort"), ("uvis", "uvis-memory")]
    assert [role for role, _ in plan.rows("uvis_table4")] == ["uvis", "uvis_memory"]


def test_files_and_logs_of_a_run():
    run = Run.parse("uvis_clip-memory")
    assert (
        wt.metrics_file("R", "valid", run, "ytvis") == "R/metrics/uvis_clip-memory.valid.ytvis.json"
    )
    assert wt.run_logs("R", "valid", run)[2:] == [
        "R/logs/train_vis/uvis_clip.log",
        "R/logs/track_vis/uvis_clip-memory.valid.log",
    ]
    assert wt.run_logs("R", "valid", Run.parse("deepsort_pmf"))[2:] == [
        "R/logs/deepsort_pmf/valid.log"
    ]
    assert wt.training_csv("R", "tagvis-full") == "R/tagvis/full/metrics.csv"
    assert wt.training_done("R", "valid", "uvis") == "R/vis/uvis/model_final.pth"


def test_table_args_name_rows_files_and_provenance():
    plan = wt.TablePlan(pseudo_level="pmf", tau=0.7)
    args = wt.table_args(
        plan,
        "uvis_table4",
        results="R",
        split="valid",
        dataset="synth",
        provenance=("a b.yaml", "d1"),
    )
    assert "--row uvis=uvis-minvis --row uvis_memory=uvis-memory" in args
    assert "--metrics uvis-memory=R/metrics/uvis-memory.valid.ytvis.json" in args
    assert args.endswith("--config-name 'a b.yaml' --config-digest d1")


@pytest.mark.parametrize("mask_score", [True, False])
def test_track_vis_options_follow_the_config(mask_score):
    """The options the track_vis rule (and bench_tracking_memory) pass: each config value
    after its flag, --mask-score only when set; nothing else read from the config."""
    config = {
        "tracking": {
            "lam": 0.5,
            "top_k": 7,
            "refine": "bilateral",
            "refine_sigma_rgb": 20.0,
            "mask_score": mask_score,
        },
        "vis": {"batch_size": 3},
    }
    options = track_vis_options(config)
    flags = dict(zip(options[0:8:2], options[1:8:2], strict=True))
    assert flags == {
        "--top-k": "7",
        "--refine": "bilateral",
        "--refine-sigma-rgb": "20.0",
        "--batch-size": "3",
    }
    assert options[8:] == (["--mask-score"] if mask_score else [])
    assert "--lam" not in options
