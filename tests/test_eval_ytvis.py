"""YouTube-VIS evaluation: hand-computed cases for each official rule, errors, and agreement of
the vectorised implementation with the straightforward reference on random cases."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from uvis import masks
from uvis.cli import main
from uvis.errors import DataError
from uvis.evaluation.ytvis import (
    SUMMARY_METRICS,
    average_area,
    evaluate,
    evaluate_files,
    format_summary,
)
from ytvis_reference import case_for_seed, reference_evaluate

H, W = 8, 8


def box(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def gt_json(
    anns: list[dict], *, frames: int = 1, num_videos: int = 1, cats: int = 1, h: int = H, w: int = W
) -> dict[str, Any]:
    return {
        "videos": [
            {"id": v, "height": h, "width": w, "length": frames} for v in range(1, num_videos + 1)
        ],
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, cats + 1)],
        "annotations": anns,
    }


def ann(
    aid: int, frames: list, *, vid: int = 1, cat: int = 1, crowd: int = 0, areas: list | None = None
) -> dict[str, Any]:
    """An annotation; ``areas`` defaults to the masks' pixel counts, as in real files."""
    return {
        "id": aid,
        "video_id": vid,
        "category_id": cat,
        "iscrowd": crowd,
        "segmentations": [None if f is None else masks.encode(f) for f in frames],
        "areas": areas
        if areas is not None
        else [None if f is None else int(f.sum()) for f in frames],
    }


def res(score: float, frames: list, *, vid: int = 1, cat: int = 1) -> dict[str, Any]:
    return {
        "video_id": vid,
        "category_id": cat,
        "score": score,
        "segmentations": [None if f is None else masks.encode(f) for f in frames],
    }


def approx(value: float) -> Any:
    return pytest.approx(value, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# Hand-computed rules


def test_perfect_prediction_gives_100() -> None:
    a, b = box(0, 4, 0, 4), box(4, 8, 2, 7)
    anns = [ann(1, [a, b], vid=1, cat=1), ann(2, [None, a], vid=2, cat=2), ann(3, [b, b], vid=2)]
    results = [
        res(0.9, [a, b], vid=1, cat=1),
        res(0.8, [None, a], vid=2, cat=2),
        res(0.7, [b, b], vid=2, cat=1),
    ]
    m = evaluate(gt_json(anns, frames=2, num_videos=2, cats=2), results)
    for key in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100"):
        assert m[key] == approx(100.0), key
    assert m["APm"] is None and m["APl"] is None  # no ground truth in those ranges
    assert m["per_category"] == {"c1": approx(100.0), "c2": approx(100.0)}
    assert (m["num_videos"], m["num_results"], m["num_gt_instances"]) == (2, 3, 3)


def test_video_iou_sums_over_frames_instead_of_averaging() -> None:
    # Frame 0: identical 6x6 masks (IoU 1). Frame 1: disjoint 2x2 masks (IoU 0).
    # Mean of per-frame IoUs = 0.5; the official video IoU = (36 + 0) / (36 + 8) = 0.818...,
    # so the result matches at thresholds 0.50 .. 0.80 (7 of 10) and not above.
    big, small_gt, small_dt = box(0, 6, 0, 6), box(6, 8, 6, 8), box(6, 8, 0, 2)
    m = evaluate(gt_json([ann(1, [big, small_gt])], frames=2), [res(0.9, [big, small_dt])])
    assert m["AP50"] == approx(100.0)
    assert m["AP75"] == approx(100.0)  # a mean of per-frame IoUs (0.5) would fail at 0.75
    assert m["AP"] == approx(70.0)
    assert m["AR1"] == approx(70.0)


def test_video_iou_below_frame_mean() -> None:
    # Frame 0: identical 2x2 masks (IoU 1). Frame 1: GT 6x6, result covers a 6x2 strip of it
    # (IoU 1/3). Mean = 0.667 would match at 0.5; video IoU = (4 + 12) / (4 + 36) = 0.4 does not.
    gt_frames = [box(0, 2, 0, 2), box(2, 8, 2, 8)]
    dt_frames = [box(0, 2, 0, 2), box(2, 8, 2, 4)]
    m = evaluate(gt_json([ann(1, gt_frames)], frames=2), [res(0.9, dt_frames)])
    assert m["AP50"] == approx(0.0)


def test_frames_without_masks() -> None:
    a = box(0, 2, 0, 2)
    # Frame 0: both 4 px, identical. Frame 1: only the GT (adds 4 to the union). Frame 2: both
    # null (skipped). Video IoU = 4 / 8 = 0.5: matches at 0.50 only -> AP = 10, AP50 = 100.
    m = evaluate(gt_json([ann(1, [a, a, None])], frames=3), [res(0.9, [a, None, None])])
    assert m["AP50"] == approx(100.0)
    assert m["AP75"] == approx(0.0)
    assert m["AP"] == approx(10.0)


def test_all_null_tracks_have_iou_zero() -> None:
    # Neither side has a mask in any frame: union 0 -> IoU 0, not a match (and the GT, whose
    # average area is 0, still counts in the "all" range).
    m = evaluate(gt_json([ann(1, [None, None])], frames=2), [res(0.9, [None, None])])
    assert m["AP"] == approx(0.0)
    assert m["AR100"] == approx(0.0)


def test_categories_without_ground_truth_are_left_out() -> None:
    a, b = box(0, 4, 0, 4), box(4, 8, 4, 8)
    anns = [ann(1, [a], cat=1), ann(2, [b], cat=3, crowd=1)]  # category 3: only a crowd
    results = [res(0.9, [a], cat=1), res(0.95, [b], cat=2)]  # category 2: only a result
    m = evaluate(gt_json(anns, cats=4), results)
    assert m["AP"] == approx(100.0)
    assert m["per_category"] == {"c1": approx(100.0), "c2": None, "c3": None, "c4": None}
    assert m["num_categories_with_gt"] == 1


def test_crowd_absorbs_several_results_which_are_ignored() -> None:
    region, person = box(0, 6, 0, 6), box(6, 8, 6, 8)
    anns = [ann(1, [region], crowd=1), ann(2, [person])]
    # Two results on the crowd region rank above the true positive: both are ignored (a
    # crowd is never used up), so precision at recall 1 is 1. Counted as false positives,
    # AP would be 33; with the crowd used up by the first, 50.
    results = [res(0.95, [region]), res(0.9, [region]), res(0.85, [person])]
    assert evaluate(gt_json(anns), results)["AP"] == approx(100.0)


def test_crowd_uses_plain_iou_not_the_coco_crowd_rule() -> None:
    region, person = box(0, 6, 0, 6), box(6, 8, 6, 8)
    anns = [ann(1, [region], crowd=1), ann(2, [person])]
    # A 4x4 result inside the 6x6 crowd: plain IoU 16/36 < 0.5, so it is a false positive
    # (COCO's crowd rule, 16/16 = 1, would ignore it). It ranks first: precision 1/2 -> AP 50.
    results = [res(0.95, [box(1, 5, 1, 5)]), res(0.85, [person])]
    assert evaluate(gt_json(anns), results)["AP"] == approx(50.0)


def test_ignore_field_is_overridden_by_iscrowd() -> None:
    a = ann(1, [box(0, 4, 0, 4)])
    a["ignore"] = 1  # the official code replaces 'ignore' by 'iscrowd': still counted
    m = evaluate(gt_json([a]), [res(0.9, [box(4, 8, 4, 8)])])
    assert m["AP"] == approx(0.0)


def test_average_area_skips_null_and_zero() -> None:
    assert average_area([None, 0, 20000, 20000]) == 20000.0
    assert average_area([None, 0]) == 0.0
    assert average_area(np.array([0, 3, 4])) == 3.5


def test_area_range_comes_from_gt_areas_field() -> None:
    small_mask = box(0, 4, 0, 4)  # 16 px, but the areas field says medium
    anns = [ann(1, [small_mask, small_mask], areas=[0, 20000])]
    m = evaluate(gt_json(anns, frames=2), [res(0.9, [small_mask, small_mask])])
    # avg area = 20000 (the 0 is skipped; with it, 10000 would be small).
    assert m["APm"] == approx(100.0)  # a matched result is never area-ignored
    assert m["APs"] is None and m["APl"] is None


def test_area_range_edges_are_inclusive() -> None:
    a = box(0, 4, 0, 4)
    m = evaluate(gt_json([ann(1, [a], areas=[128**2])]), [res(0.9, [a])])
    assert m["APs"] == approx(100.0) and m["APm"] == approx(100.0) and m["APl"] is None


def test_unmatched_result_outside_area_range_is_ignored() -> None:
    h, w = 130, 140
    person = box(0, 4, 0, 4, h, w)
    huge = box(0, 130, 10, 140, h, w)  # 16900 px > 128^2: medium
    gt = gt_json([ann(1, [person])], h=h, w=w)
    m = evaluate(gt, [res(0.95, [huge]), res(0.9, [person])])
    assert m["AP"] == approx(50.0)  # in "all" the huge false positive ranks first
    assert m["APs"] == approx(100.0)  # in "small" it is outside the range: ignored


def test_only_100_results_per_video_and_category() -> None:
    person, elsewhere = box(0, 4, 0, 4), box(6, 8, 6, 8)
    gt = gt_json([ann(1, [person])], cats=2)
    false_pos = [res(0.9, [elsewhere]) for _ in range(99)]
    m = evaluate(gt, [*false_pos, res(0.5, [person])])
    assert m["AP"] == approx(1.0)  # the true positive is 100th: precision 1/100
    m = evaluate(gt, [*false_pos, res(0.9, [elsewhere]), res(0.5, [person])])
    assert m["AP"] == approx(0.0)  # 101st: dropped
    assert m["AR100"] == approx(0.0)
    assert m["num_results_beyond_max_dets"] == 1
    other_cat = [res(0.9, [elsewhere], cat=2) for _ in range(100)]
    assert evaluate(gt, [*other_cat, res(0.5, [person])])["AP"] == approx(100.0)


def test_equal_scores_keep_results_list_order() -> None:
    gt_mask = box(0, 5, 0, 4)  # 20 px
    partial = box(0, 4, 0, 3)  # 12 px inside: IoU 0.6
    gt = gt_json([ann(1, [gt_mask])])
    # Listed first, the partial result takes the GT at 0.50-0.60 (exact one is then a false
    # positive ranked second: AP_t = 100); above 0.60 it is a false positive ranked first and
    # the exact one a true positive (AP_t = 50): AP = (3 * 100 + 7 * 50) / 10 = 65.
    assert evaluate(gt, [res(0.5, [partial]), res(0.5, [gt_mask])])["AP"] == approx(65.0)
    assert evaluate(gt, [res(0.5, [gt_mask]), res(0.5, [partial])])["AP"] == approx(100.0)


def test_higher_score_matches_first() -> None:
    gt_mask, partial = box(0, 5, 0, 4), box(0, 4, 0, 3)
    gt = gt_json([ann(1, [gt_mask])])
    assert evaluate(gt, [res(0.9, [partial]), res(0.8, [gt_mask])])["AP"] == approx(65.0)
    assert evaluate(gt, [res(0.8, [partial]), res(0.9, [gt_mask])])["AP"] == approx(100.0)


def test_equal_ious_go_to_the_last_instance() -> None:
    left, right = box(0, 2, 0, 2), box(0, 2, 2, 4)
    both = box(0, 2, 0, 4)  # IoU 0.5 with each of left and right
    gt = gt_json([ann(1, [left]), ann(2, [right])])
    # At 0.50 the first result takes the *last* instance (right), leaving left to the second:
    # recall 1, AP50 100. Taking left would leave the second a false positive: AP50 ~ 50.5.
    m = evaluate(gt, [res(0.9, [both]), res(0.8, [left])])
    assert m["AP50"] == approx(100.0)


def test_non_ignored_instance_preferred_over_better_ignored_one() -> None:
    person = box(0, 5, 0, 4)  # 20 px
    region = box(0, 5, 0, 3)  # crowd, 15 px
    result = box(0, 4, 0, 3)  # 12 px: IoU 0.6 with person, 0.8 with the crowd region
    gt = gt_json([ann(1, [person]), ann(2, [region], crowd=1)])
    # 0.50-0.60: matched to the person (TP); above, matched to the crowd (ignored): AP 30.
    assert evaluate(gt, [res(0.9, [result])])["AP"] == approx(30.0)


def test_ar1_counts_one_result_per_video_and_category() -> None:
    a, b = box(0, 4, 0, 4), box(4, 8, 4, 8)
    m = evaluate(gt_json([ann(1, [a]), ann(2, [b])]), [res(0.9, [a]), res(0.8, [b])])
    assert (m["AR1"], m["AR10"]) == (approx(50.0), approx(100.0))
    two_videos = gt_json([ann(1, [a], vid=1), ann(2, [b], vid=2)], num_videos=2)
    m = evaluate(two_videos, [res(0.9, [a], vid=1), res(0.8, [b], vid=2)])
    assert m["AR1"] == approx(100.0)


def test_ground_truth_id_zero_is_a_normal_id() -> None:
    a = box(0, 4, 0, 4)
    m0 = evaluate(gt_json([ann(0, [a])]), [res(0.9, [a])])
    m5 = evaluate(gt_json([ann(5, [a])]), [res(0.9, [a])])
    assert m0 == m5 and m0["AP"] == approx(100.0)


def test_empty_results_give_zero() -> None:
    m = evaluate(gt_json([ann(1, [box(0, 4, 0, 4)])]), [])
    assert m["AP"] == 0.0 and m["AR100"] == 0.0 and m["num_results"] == 0


def test_uncompressed_rle_and_polygon_ground_truth() -> None:
    a = box(2, 6, 1, 5)
    uncompressed = ann(1, [a])
    flat = a.flatten(order="F").tolist()  # runs: 17 zeros, 4 ones, 4 zeros, ... column-major
    counts, value, run = [], 0, 0
    for px in flat:
        if px != value:
            counts.append(run)
            value, run = px, 0
        run += 1
    counts.append(run)
    uncompressed["segmentations"] = [{"size": [H, W], "counts": counts}]
    polygon = ann(2, [a], vid=2)
    polygon["segmentations"] = [[[1.0, 2.0, 5.0, 2.0, 5.0, 6.0, 1.0, 6.0]]]
    gt = gt_json([uncompressed, polygon], num_videos=2)
    # pycocotools rasterises that square polygon to exactly rows 2-5, columns 1-4, i.e. `a`.
    results = [res(0.9, [a], vid=1), res(0.9, [a], vid=2)]
    assert evaluate(gt, results)["AP"] == approx(100.0)
    assert evaluate(gt, [res(0.9, [a], vid=1)])["AR100"] == approx(50.0)


def test_inputs_are_not_modified() -> None:
    gt, results = case_for_seed(1)
    gt_copy, results_copy = copy.deepcopy(gt), copy.deepcopy(results)
    evaluate(gt, results)
    assert gt == gt_copy and results == results_copy


def test_result_is_json_serialisable_and_summary_lists_every_metric() -> None:
    gt, results = case_for_seed(2)
    m = evaluate(gt, results)
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    text = format_summary(m)
    for metric in SUMMARY_METRICS:
        assert f"  {metric.key} " in text
    assert "n/a" in format_summary(evaluate(gt_json([ann(1, [box(0, 4, 0, 4)])]), []))


# ---------------------------------------------------------------------------------------------
# Class-agnostic mode (the official useCats = 0)


def test_class_agnostic_ignores_the_category() -> None:
    a = box(0, 4, 0, 4)
    gt = gt_json([ann(1, [a])], cats=2)
    results = [res(0.9, [a], cat=2)]  # the right mask, the wrong class
    aware, agnostic = evaluate(gt, results), evaluate(gt, results, class_agnostic=True)
    assert aware["AP"] == approx(0.0) and aware["per_category"] == {"c1": 0.0, "c2": None}
    assert agnostic["AP"] == approx(100.0) and agnostic["AR1"] == approx(100.0)
    assert agnostic["per_category"] == {} and agnostic["class_agnostic"] is True
    assert aware["class_agnostic"] is False
    assert agnostic["num_categories_with_gt"] == aware["num_categories_with_gt"] == 1


def test_class_agnostic_keeps_100_results_per_video() -> None:
    a, b = box(0, 4, 0, 4), box(5, 8, 5, 8)
    gt = gt_json([ann(1, [a])], cats=2)
    results = [res(0.9, [b], cat=2) for _ in range(100)] + [res(0.5, [a], cat=1)]
    aware, agnostic = evaluate(gt, results), evaluate(gt, results, class_agnostic=True)
    # class-aware: the one class-1 result is within its category's 100 and matches
    assert aware["AP"] == approx(100.0) and aware["num_results_beyond_max_dets"] == 0
    # class-agnostic: it is the video's 101st result by score, so it is not evaluated
    assert agnostic["AP"] == approx(0.0) and agnostic["num_results_beyond_max_dets"] == 1
    assert "beyond 100 per video, ignored" in format_summary(agnostic)


def test_class_agnostic_equal_scores_go_in_category_order() -> None:
    a, b = box(0, 4, 0, 4), box(5, 8, 5, 8)
    gt = gt_json([ann(1, [a], cat=2)], cats=2)
    # listed first but of the later category: ranked after the false positive of category 1
    results = [res(0.5, [a], cat=2), res(0.5, [b], cat=1)]
    m = evaluate(gt, results, class_agnostic=True)
    assert m["AP"] == approx(50.0)  # precision 1/2 at full recall
    assert m["AR1"] == approx(0.0)  # the first result of the video is the miss
    swapped = evaluate(gt, [res(0.5, [a], cat=1), res(0.5, [b], cat=2)], class_agnostic=True)
    assert swapped["AP"] == approx(100.0) and swapped["AR1"] == approx(100.0)


def test_protocol_both_adds_the_class_agnostic_metrics(tmp_path: Path) -> None:
    a = box(0, 4, 0, 4)
    gt_path = write(tmp_path / "gt.json", gt_json([ann(1, [a])], cats=2))
    res_path = write(tmp_path / "res.json", [res(0.9, [a], cat=2)])
    both = evaluate_files(gt_path, res_path, protocol="both")
    assert both["AP"] == approx(0.0) and both["AP_agnostic"] == approx(100.0)
    assert both["class_agnostic"] is False and both["per_category"]["c1"] == approx(0.0)
    assert {m.key + "_agnostic" for m in SUMMARY_METRICS} <= both.keys()
    assert "agnostic" in format_summary(both).splitlines()[1]
    with pytest.raises(ValueError, match="protocol"):
        evaluate_files(gt_path, res_path, protocol="agnostic")


@pytest.mark.parametrize("seed", range(1000, 1020))
def test_class_agnostic_fast_matches_reference(seed: int) -> None:
    gt, results = case_for_seed(seed)
    ours = evaluate(gt, results, class_agnostic=True)
    ref = reference_evaluate(gt, results, class_agnostic=True)
    for metric in SUMMARY_METRICS:
        a, b = ours[metric.key], ref[metric.key]
        assert (a is None) == (b is None), metric.key
        assert a is None or a == approx(b), metric.key


# ---------------------------------------------------------------------------------------------
# Fast implementation versus the reference


@pytest.mark.parametrize("seed", range(1000, 1040))
def test_fast_matches_reference(seed: int) -> None:
    gt, results = case_for_seed(seed)
    ours, ref = evaluate(gt, results), reference_evaluate(gt, results)
    for metric in SUMMARY_METRICS:
        a, b = ours[metric.key], ref[metric.key]
        assert (a is None) == (b is None), metric.key
        assert a is None or a == approx(b), metric.key
    assert ours["per_category"].keys() == ref["per_category"].keys()
    for name, value in ours["per_category"].items():
        assert value == ref["per_category"][name] or value == approx(ref["per_category"][name])


# ---------------------------------------------------------------------------------------------
# Files and errors


def write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, dict, list]:
    a = box(0, 4, 0, 4)
    gt, results = gt_json([ann(1, [a, None])], frames=2), [res(0.9, [a, None])]
    return write(tmp_path / "gt.json", gt), write(tmp_path / "res.json", results), gt, results


def test_files_and_zip(files: tuple[Path, Path, dict, list], tmp_path: Path) -> None:
    gt_path, res_path, _, results = files
    direct = evaluate_files(gt_path, res_path)
    assert direct["AP"] == approx(100.0)
    zipped = tmp_path / "submission.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("results.json", json.dumps(results))
    assert evaluate_files(gt_path, zipped) == direct


def _error(gt_path: Path, res_path: Path) -> str:
    with pytest.raises(DataError) as info:
        evaluate_files(gt_path, res_path)
    return str(info.value)


def test_missing_and_unparsable_files(files: tuple[Path, Path, dict, list], tmp_path: Path) -> None:
    gt_path, res_path, _, _ = files
    missing = tmp_path / "nope.json"
    assert _error(missing, res_path) == f"{missing}: file not found"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert _error(bad, res_path).startswith(f"{bad}: not valid JSON")
    assert _error(gt_path, bad).startswith(f"{bad}: not valid JSON")
    no_member = tmp_path / "empty.zip"
    with zipfile.ZipFile(no_member, "w") as zf:
        zf.writestr("other.json", "[]")
    assert "exactly one results.json" in _error(gt_path, no_member)
    not_zip = tmp_path / "broken.zip"
    not_zip.write_bytes(b"PK garbage")
    assert _error(gt_path, not_zip).startswith(f"{not_zip}: not a readable .zip")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda gt: gt.pop("videos"), "not in YouTube-VIS format: no 'videos' list"),
        (lambda gt: gt.pop("annotations"), "no 'annotations' list"),
        (
            lambda gt: gt["annotations"].append(dict(gt["annotations"][0])),
            "duplicate annotation id 1",
        ),
        (lambda gt: gt["annotations"][0].update(category_id=9), "category_id 9 is not in"),
        (
            lambda gt: gt["annotations"][0].update(video_id=9),
            "video_id 9 is not a ground-truth video",
        ),
        (lambda gt: gt["annotations"][0]["areas"].pop(), "'areas' has 1 entries but video 1 has 2"),
        (lambda gt: gt["annotations"][0].pop("iscrowd"), "'iscrowd' must be 0 or 1"),
        (lambda gt: gt["videos"][0].update(length=3, file_names=["a", "b"]), "'length' is 3"),
        (lambda gt: gt["videos"].append(dict(gt["videos"][0])), "duplicate video id 1"),
    ],
)
def test_bad_ground_truth(
    files: tuple[Path, Path, dict, list], tmp_path: Path, change: Any, message: str
) -> None:
    _, res_path, gt, _ = files
    gt = copy.deepcopy(gt)
    change(gt)
    gt_path = write(tmp_path / "gt_bad.json", gt)
    error = _error(gt_path, res_path)
    assert error.startswith(f"{gt_path}: ") and message in error


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r[0].update(video_id=7), "video_id 7 is not a ground-truth video"),
        (lambda r: r[0].update(category_id=3), "category_id 3 is not a ground-truth category"),
        (lambda r: r[0]["segmentations"].pop(), "'segmentations' has 1 entries but video 1 has 2"),
        (
            lambda r: r[0]["segmentations"].__setitem__(0, masks.encode(np.ones((4, 4), np.uint8))),
            "frame 0: mask size [4, 4] differs from the video size [8, 8]",
        ),
        (lambda r: r[0].update(score=float("nan")), "'score' must be a finite number"),
        (lambda r: r[0].pop("segmentations"), "'segmentations' must be a list"),
        (
            lambda r: r[0]["segmentations"].__setitem__(0, [[1, 1, 4, 1, 4, 4]]),
            "must be null or an RLE",
        ),
        (lambda r: r.__setitem__(0, "x"), "result #0 must be an object"),
    ],
)
def test_bad_results(
    files: tuple[Path, Path, dict, list], tmp_path: Path, change: Any, message: str
) -> None:
    gt_path, _, _, results = files
    results = copy.deepcopy(results)
    change(results)
    res_path = write(tmp_path / "res_bad.json", results)
    error = _error(gt_path, res_path)
    assert error.startswith(f"{res_path}: ") and message in error


def test_results_must_be_a_list(files: tuple[Path, Path, dict, list], tmp_path: Path) -> None:
    gt_path, _, _, results = files
    res_path = write(tmp_path / "res_dict.json", {"annotations": results})
    assert "results must be a JSON list" in _error(gt_path, res_path)


def test_cli(files: tuple[Path, Path, dict, list], tmp_path: Path, capsys: Any) -> None:
    gt_path, res_path, _, _ = files
    assert main(["eval", "ytvis", str(gt_path), str(res_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("YouTube-VIS evaluation: 1 videos")  # the table, then JSON
    assert json.loads(out[-1])["AP"] == approx(100.0)
    args = ["eval", "ytvis", "--protocol", "class-agnostic", str(gt_path), str(res_path)]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("YouTube-VIS evaluation, class-agnostic: 1 videos")
    assert json.loads(out[-1])["class_agnostic"] is True
    missing = tmp_path / "missing.json"
    assert main(["eval", "ytvis", str(gt_path), str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {missing}: file not found"]
