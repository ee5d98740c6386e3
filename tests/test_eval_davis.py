"""DAVIS unsupervised evaluation: hand-computed J, F, matching and statistics; folders; errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uvis.cli import main
from uvis.errors import DataError
from uvis.evaluation._davis_pairs import score_pairs
from uvis.evaluation.davis import (
    boundary_f,
    boundary_map,
    boundary_radius,
    decay_bins,
    disk_footprint,
    evaluate_folders,
    evaluate_sequence,
    format_summary,
    gt_object_count,
    jaccard,
    match_unsupervised,
    temporal_statistics,
)


def _square(shape: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def _ring(shape: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    """The outline of a ``size`` x ``size`` box."""
    return _square(shape, top, left, size) & ~_square(shape, top + 1, left + 1, size - 2)


def _write_png(path: Path, ids: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette([(7 * i) % 256 for i in range(768)])  # colours unrelated to ids
    image.save(path)


def _write_video(folder: Path, frames: list[np.ndarray], mode: str = "L") -> None:
    for t, ids in enumerate(frames):
        _write_png(folder / f"{t:05d}.png", ids, mode)


# --- J -----------------------------------------------------------------------------------------


def test_jaccard_excludes_void_pixels() -> None:
    gt = np.zeros((4, 4), bool)
    gt[0:2, 0:2] = True  # 4 pixels
    pred = np.zeros((4, 4), bool)
    pred[0:2, 1:3] = True  # 4 pixels, 2 shared with gt
    void = np.zeros((4, 4), bool)
    # Without void: 2 / 6. Void removes one gt-only and one pred-only pixel: 2 / 4.
    assert float(jaccard(gt, pred)) == pytest.approx(2 / 6)
    void[0, 0] = void[1, 2] = True
    assert float(jaccard(gt, pred, void)) == pytest.approx(2 / 4)
    # A void-covered intersection pixel leaves 1 / 3.
    void[0, 1] = True
    assert float(jaccard(gt, pred, void)) == pytest.approx(1 / 3)


def test_jaccard_empty_union_scores_one_per_frame() -> None:
    gt = np.zeros((3, 4, 4), bool)
    pred = np.zeros((3, 4, 4), bool)
    gt[1, 0, 0] = True
    pred[2, 3, 3] = True
    np.testing.assert_array_equal(jaccard(gt, pred), [1.0, 0.0, 0.0])


# --- F -----------------------------------------------------------------------------------------


def test_boundary_map_of_square_is_ring_shifted_towards_origin() -> None:
    square = _square((10, 10), 2, 2, 4)  # rows/cols 2..5
    np.testing.assert_array_equal(boundary_map(square), _ring((10, 10), 1, 1, 5))


def test_boundary_map_ignores_image_border() -> None:
    assert not boundary_map(np.ones((5, 6), bool)).any()


def test_boundary_radius() -> None:
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert boundary_radius((10, 10)) == 1  # ceil(0.113)
    assert boundary_radius((10, 10), bound_th=3) == 3  # >= 1: pixels
    assert boundary_radius((10, 10), bound_th=0) == 0


def test_disk_footprint_radius_one_is_a_plus() -> None:
    np.testing.assert_array_equal(disk_footprint(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])


def test_boundary_f_diagonal_one_pixel_shift() -> None:
    # Boundaries: gt ring rows/cols 1..5, pred ring rows/cols 2..6 (16 pixels each).
    gt = _square((10, 10), 2, 2, 4)
    pred = _square((10, 10), 3, 3, 4)
    # 10x10 frame: tolerance ceil(0.008 * 14.1) = 1 pixel, a plus-shaped disk. Every pred
    # boundary pixel has a gt boundary pixel within it except the corner (6, 6), and every gt
    # one except (1, 1): precision = recall = 15/16.
    assert float(boundary_f(gt, pred)) == pytest.approx(15 / 16)
    # Zero tolerance: only (2, 5) and (5, 2) are on both rings: precision = recall = 2/16.
    assert float(boundary_f(gt, pred, bound_th=0)) == pytest.approx(2 / 16)


def test_boundary_f_precision_differs_from_recall() -> None:
    gt = _square((10, 10), 2, 2, 4)  # boundary: ring rows/cols 1..5 (16 px)
    pred = _square((10, 10), 2, 2, 2)  # boundary: ring rows/cols 1..3 (8 px)
    # Tolerance 1 px (plus). Pred boundary pixels near the gt ring: all but (3, 3): 7/8.
    # Gt boundary pixels near the pred ring: (1, 1..4) and (2..4, 1): 7/16.
    # F = 2 * (14/16) * (7/16) / (21/16) = 7/12.
    assert float(boundary_f(gt, pred)) == pytest.approx(7 / 12)


def test_boundary_f_empty_cases() -> None:
    empty = np.zeros((10, 10), bool)
    square = _square((10, 10), 2, 2, 4)
    assert float(boundary_f(empty, empty)) == 1.0
    assert float(boundary_f(square, empty)) == 0.0  # nothing predicted
    assert float(boundary_f(empty, square)) == 0.0  # nothing to find


def test_boundary_f_drops_void_pixels() -> None:
    gt = _square((10, 10), 2, 2, 4)
    pred = gt | _square((10, 10), 2, 6, 3)  # extra box to the right
    void = _square((10, 10), 0, 6, 10)  # covers the extra box entirely
    assert float(boundary_f(gt, pred)) < 1.0
    assert float(boundary_f(gt, pred, void)) == 1.0


# --- statistics ----------------------------------------------------------------------------------


def test_temporal_statistics_by_hand() -> None:
    values = [1.0, 1.0, 0.9, 0.6, 0.5, 0.4, 0.2, 0.0]
    # T = 8: edges round(1, 2.75, 4.5, 6.25, 8) - 1 = 0, 2, 4, 5, 7 (4.5 rounds up), bins
    # inclusive of their right edge: first [1, 1, 0.9], last [0.4, 0.2, 0.0].
    assert decay_bins(8) == [slice(0, 3), slice(2, 5), slice(4, 6), slice(5, 8)]
    stats = temporal_statistics(values)
    assert stats.mean == pytest.approx(4.6 / 8)
    assert stats.recall == pytest.approx(4 / 8)  # 0.5 itself is not above 0.5
    assert stats.decay == pytest.approx(2.9 / 3 - 0.6 / 3)


def test_temporal_statistics_short_sequences() -> None:
    assert temporal_statistics([0.7]).decay == 0.0
    assert temporal_statistics([0.9, 0.3]).decay == pytest.approx(0.6)
    # T = 300: the official uint8 bin indices would wrap; ours do not.
    assert decay_bins(300)[-1] == slice(224, 300)


# --- matching ------------------------------------------------------------------------------------


def _three_objects(shape: tuple[int, int] = (20, 30)) -> np.ndarray:
    ids = np.zeros(shape, np.uint8)
    ids[2:8, 2:8] = 1
    ids[10:18, 3:9] = 2
    ids[5:15, 15:25] = 3
    return ids


def test_matching_recovers_permuted_ids() -> None:
    gt = _three_objects()
    pred = np.zeros_like(gt)
    for gt_id, pred_id in [(1, 3), (2, 1), (3, 2)]:
        pred[gt == gt_id] = pred_id
    result = evaluate_sequence(gt[None], pred[None])
    assert {(o.gt_id, o.pred_id) for o in result.objects} == {(1, 3), (2, 1), (3, 2)}
    assert all(o.j.mean == 1.0 and o.f.mean == 1.0 for o in result.objects)


def test_match_unsupervised_maximises_total_not_greedy() -> None:
    # Pred 0 is best for both objects; greedy would give object 0 score 0.9 + 0.1, Hungarian
    # gives 0.8 + 0.7. Scores are (J + F) / 2 with J = F here.
    score = np.array([[0.9, 0.8], [0.7, 0.1]])[:, :, None]
    matching = match_unsupervised(score, score)
    assert dict(zip(matching.gt_index, matching.pred_index, strict=True)) == {0: 1, 1: 0}


def test_more_predictions_than_objects_are_ignored_when_unmatched() -> None:
    gt = _three_objects()
    pred = np.zeros_like(gt)
    pred[gt == 1], pred[gt == 2], pred[gt == 3] = 5, 9, 12
    pred[0, :] = 20  # 20 predicted ids, mostly empty, one spurious
    result = evaluate_sequence(gt[None], pred[None])
    assert sorted(o.pred_id for o in result.objects) == [5, 9, 12]
    assert all(o.j.mean == 1.0 for o in result.objects)


def test_unmatched_gt_object_scores_zero_where_visible_and_one_where_absent() -> None:
    frames = [_three_objects() for _ in range(4)]
    frames[3][frames[3] == 3] = 0  # object 3 leaves in the last frame
    gt = np.stack(frames)
    pred = np.where(gt == 3, 0, gt)  # objects 1 and 2 exact, nothing for 3 (only 2 ids)
    result = evaluate_sequence(gt, pred)
    by_id = {o.gt_id: o for o in result.objects}
    assert by_id[3].pred_id is None  # matched to padding
    np.testing.assert_array_equal(by_id[3].j_frames, [0, 0, 0, 1])
    np.testing.assert_array_equal(by_id[3].f_frames, [0, 0, 0, 1])
    assert by_id[1].j.mean == by_id[2].f.mean == 1.0


def test_gt_objects_are_counted_in_the_first_frame() -> None:
    first = np.array([[0, 3], [255, 0]])
    assert gt_object_count(first) == 3  # ids 1 and 2 are (empty) objects too
    gt = np.stack([first, np.array([[4, 3], [255, 0]])])  # id 4 appears later
    pred = np.stack([np.array([[0, 1], [0, 0]])] * 2)
    result = evaluate_sequence(gt, pred)
    assert sorted(o.gt_id for o in result.objects) == [1, 2, 3]


def test_score_pairs_agrees_with_per_object_functions() -> None:
    rng = np.random.default_rng(3)
    shape = (3, 41, 57)
    gt = rng.integers(0, 4, shape).astype(np.uint8)
    gt[:, 10:30, 10:40] = 1  # one big object touching nothing
    gt[:, -5:, :] = 2  # one touching the bottom border
    gt[rng.random(shape) < 0.05] = 255
    pred = rng.integers(0, 6, shape).astype(np.uint8)
    pred[:, 12:31, 8:38] = 4
    void = gt == 255
    j, f = score_pairs(gt, pred, void, num_gt=3, num_pred=6, bound_th=0.008)
    for p in range(6):
        for g in range(3):
            np.testing.assert_array_equal(j[p, g], jaccard(gt == g + 1, pred == p + 1, void))
            np.testing.assert_array_equal(f[p, g], boundary_f(gt == g + 1, pred == p + 1, void))


# --- folders -------------------------------------------------------------------------------------


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "gt", tmp_path / "pred"


def test_recall_and_decay_from_folders(tmp_path: Path) -> None:
    gt_dir, pred_dir = _folders(tmp_path)
    gt = np.zeros((8, 8), np.uint8)
    gt[2:6, 2:6] = 1  # 16 pixels
    preds = []
    for covered in (16, 12, 8, 4):  # J = 1, 0.75, 0.5, 0.25
        pred = np.zeros_like(gt)
        pred.reshape(-1)[np.flatnonzero(gt)[:covered]] = 1
        preds.append(pred)
    _write_video(gt_dir / "a", [gt] * 4)
    _write_video(pred_dir / "a", preds)
    metrics = evaluate_folders(gt_dir, pred_dir)
    assert metrics["J"] == pytest.approx(100 * 2.5 / 4)
    assert metrics["J_recall"] == pytest.approx(100 * 2 / 4)  # 1 and 0.75
    # T = 4: bins [0:2] and [2:4]; decay = (1 + 0.75) / 2 - (0.5 + 0.25) / 2.
    assert metrics["J_decay"] == pytest.approx(100 * 0.5)
    assert metrics["num_sequences"] == 1 and metrics["num_objects"] == 1
    assert metrics["JF"] == pytest.approx((metrics["J"] + metrics["F"]) / 2)


def test_means_are_over_objects_not_sequences(tmp_path: Path) -> None:
    gt_dir, pred_dir = _folders(tmp_path)
    one = np.zeros((20, 30), np.uint8)
    one[2:8, 2:8] = 1
    _write_video(gt_dir / "a", [one])
    _write_video(pred_dir / "a", [np.zeros_like(one)])  # J = 0 for its one object
    three = _three_objects()
    _write_video(gt_dir / "b", [three])
    _write_video(pred_dir / "b", [three])  # J = 1 for its three objects
    metrics = evaluate_folders(gt_dir, pred_dir)
    assert metrics["J"] == pytest.approx(100 * 3 / 4)  # not (0 + 1) / 2
    assert metrics["per_sequence"]["a"]["J"] == 0.0
    assert metrics["per_sequence"]["b"]["J"] == 100.0
    assert metrics["per_object"]["b_2"] == {"J": 100.0, "F": 100.0, "JF": 100.0, "pred_id": 2}
    json.dumps(metrics, allow_nan=False)
    assert "J&F-Mean" in format_summary(metrics)


def test_palette_and_grey_pngs_give_the_same_result(tmp_path: Path) -> None:
    frames = [_three_objects(), np.roll(_three_objects(), 2, axis=1)]
    preds = [np.roll(f, 1, axis=0) for f in frames]
    results = []
    for mode in ("L", "P"):
        gt_dir, pred_dir = tmp_path / mode / "gt", tmp_path / mode / "pred"
        _write_video(gt_dir / "s", frames, mode)
        _write_video(pred_dir / "s", preds, mode)
        assert Image.open(gt_dir / "s" / "00000.png").mode == mode
        results.append(evaluate_folders(gt_dir, pred_dir))
    assert results[0] == results[1]
    assert 0 < results[0]["J"] < 100


def test_sequence_without_objects_contributes_nothing(tmp_path: Path) -> None:
    gt_dir, pred_dir = _folders(tmp_path)
    _write_video(gt_dir / "empty", [np.zeros((6, 6), np.uint8)])
    _write_video(pred_dir / "empty", [np.ones((6, 6), np.uint8)])
    metrics = evaluate_folders(gt_dir, pred_dir)
    assert metrics["J"] is None and metrics["JF"] is None and metrics["num_objects"] == 0
    assert metrics["per_sequence"]["empty"] == {"J": None, "F": None, "JF": None, "num_objects": 0}
    json.dumps(metrics, allow_nan=False)


def test_sequences_argument_selects(tmp_path: Path) -> None:
    gt_dir, pred_dir = _folders(tmp_path)
    for name in ("a", "b"):
        _write_video(gt_dir / name, [_three_objects()])
    _write_video(pred_dir / "b", [_three_objects()])  # no prediction for "a"
    assert evaluate_folders(gt_dir, pred_dir, sequences=["b"])["J"] == 100.0
    with pytest.raises(DataError, match=r"pred/a: prediction folder for this sequence"):
        evaluate_folders(gt_dir, pred_dir)


# --- errors --------------------------------------------------------------------------------------


def test_more_than_max_objects_is_an_error_naming_the_file(tmp_path: Path) -> None:
    gt_dir, pred_dir = _folders(tmp_path)
    pred = _three_objects()
    pred[0, 0] = 21  # only 4 distinct ids, but id 21 > 20 (the official check is on the id)
    _write_video(gt_dir / "s", [_three_objects(), _three_objects()])
    _write_video(pred_dir / "s", [_three_objects(), pred])
    with pytest.raises(DataError, match=r"00001\.png: object id 21 exceeds the limit of 20"):
        evaluate_folders(gt_dir, pred_dir)
    assert evaluate_folders(gt_dir, pred_dir, max_objects=21)["num_objects"] == 3


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_frame", r"pred/s/00001\.png: missing predicted frame"),
        ("missing_sequence", r"pred/s: prediction folder for this sequence does not exist"),
        (
            "other_size",
            r"pred/s/00000\.png: predicted frame is 31x20 but the ground truth is 30x20",
        ),
        ("rgb", r"pred/s/00001\.png: expected a single-channel id PNG .* got mode 'RGB'"),
        ("garbage", r"pred/s/00000\.png: cannot read PNG"),
        ("gt_size", r"gt/s/00001\.png: ground-truth frame is 30x21 but 00000\.png is 30x20"),
        ("no_frames", r"gt/s: no PNG frames"),
    ],
)
def test_bad_input_raises_data_error_naming_the_file(
    tmp_path: Path, case: str, message: str
) -> None:
    gt_dir, pred_dir = _folders(tmp_path)
    frames = [_three_objects(), _three_objects()]
    _write_video(gt_dir / "s", frames)
    _write_video(pred_dir / "s", frames)
    if case == "missing_frame":
        (pred_dir / "s" / "00001.png").unlink()
    elif case == "missing_sequence":
        for path in (pred_dir / "s").iterdir():
            path.unlink()
        (pred_dir / "s").rmdir()
    elif case == "other_size":
        _write_png(pred_dir / "s" / "00000.png", np.zeros((20, 31), np.uint8))
    elif case == "rgb":
        Image.new("RGB", (30, 20)).save(pred_dir / "s" / "00001.png")
    elif case == "garbage":
        (pred_dir / "s" / "00000.png").write_bytes(b"not a png")
    elif case == "gt_size":
        _write_png(gt_dir / "s" / "00001.png", np.zeros((21, 30), np.uint8))
    elif case == "no_frames":
        for path in (gt_dir / "s").iterdir():
            path.unlink()
    with pytest.raises(DataError, match=message):
        evaluate_folders(gt_dir, pred_dir)


def test_missing_folders(tmp_path: Path) -> None:
    gt_dir, pred_dir = _folders(tmp_path)
    with pytest.raises(DataError, match="ground-truth folder does not exist"):
        evaluate_folders(gt_dir, pred_dir)
    gt_dir.mkdir()
    with pytest.raises(DataError, match="no sequence folders"):
        evaluate_folders(gt_dir, pred_dir)
    _write_video(gt_dir / "s", [_three_objects()])
    with pytest.raises(DataError, match="prediction folder does not exist"):
        evaluate_folders(gt_dir, pred_dir)
    with pytest.raises(DataError, match="sequence folder not found"):
        evaluate_folders(gt_dir, gt_dir, sequences=["t"])


def test_cli_prints_table_then_json_and_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt_dir, pred_dir = _folders(tmp_path)
    _write_video(gt_dir / "s", [_three_objects()])
    _write_video(pred_dir / "s", [_three_objects()])
    assert main(["eval", "davis", str(gt_dir), str(pred_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["JF"] == 100.0
    assert any("J&F-Mean" in line for line in lines[:-1])
    (pred_dir / "s" / "00000.png").unlink()
    assert main(["eval", "davis", str(gt_dir), str(pred_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "00000.png" in err[0]
