"""Per-video error analysis on constructed ground truth and tracks with known error kinds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uvis import masks
from uvis.data.frames import VideoRecord
from uvis.errors import DataError
from uvis.report.failures import (
    MaskTrack,
    VideoErrors,
    analyse_video,
    pick_failures,
    read_tracks,
    shown_tracks,
    write_failures,
)
from uvis.schemas import TRACKS

H, W = 20, 30


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def video(num_frames: int, video_id: int = 1) -> VideoRecord:
    return VideoRecord(
        id=video_id,
        name=f"v{video_id}",
        height=H,
        width=W,
        frame_paths=tuple(Path(f"v{video_id}/{t}.jpg") for t in range(num_frames)),
    )


LEFT = box_mask(H, W, 2, 8, 2, 8)  # object 1: 36 pixels
RIGHT = box_mask(H, W, 10, 16, 18, 26)  # object 2: 48 pixels, disjoint from LEFT


def obj(track_id, category_id, frames, score=1.0):
    """A MaskTrack from per-frame masks (None where absent)."""
    return MaskTrack(
        track_id, category_id, score, tuple(None if m is None else masks.encode(m) for m in frames)
    )


def test_wrong_class_is_a_found_object_with_another_category():
    gt = [obj(1, 1, [LEFT] * 3), obj(2, 2, [RIGHT] * 3)]
    tracks = [obj(10, 2, [LEFT] * 3, 0.9), obj(11, 2, [RIGHT] * 3, 0.8)]
    errors, _, pairs = analyse_video(video(3), gt, tracks)
    assert sorted(pairs) == [(0, 0), (1, 1)]
    assert (errors.matched, errors.wrong_class, errors.merged, errors.flicker) == (2, 1, 0, 0)


def test_merged_is_one_mask_covering_two_objects_per_frame():
    both = np.maximum(LEFT, RIGHT)
    gt = [obj(1, 1, [LEFT] * 4), obj(2, 1, [RIGHT] * 4)]
    # Track 10 covers both objects in frames 1 and 2 only; track 11 is elsewhere.
    elsewhere = box_mask(H, W, 17, 20, 0, 3)
    tracks = [
        obj(10, 1, [LEFT, both, both, LEFT], 0.9),
        obj(11, 1, [elsewhere] * 4, 0.5),
    ]
    errors, _, _ = analyse_video(video(4), gt, tracks)
    assert errors.merged == 2
    assert errors.merged_frames == (1, 2)
    # Covering only part of an object is no merge: a mask over LEFT and a third of RIGHT.
    partial = np.maximum(LEFT, box_mask(H, W, 10, 12, 18, 26))
    one_frame = [obj(1, 1, [LEFT]), obj(2, 1, [RIGHT])]
    errors, _, _ = analyse_video(video(1), one_frame, [obj(10, 1, [partial])])
    assert errors.merged == 0


def test_flicker_counts_dropouts_and_identity_switches():
    gt = [obj(1, 1, [LEFT] * 6)]
    # Track 10 has the object in frames 0, 1, 3, 4, 5 and loses it in frame 2: one dropout.
    track = obj(10, 1, [LEFT, LEFT, None, LEFT, LEFT, LEFT], 0.9)
    errors, _, _ = analyse_video(video(6), gt, [track])
    assert (errors.dropouts, errors.id_switches, errors.flicker) == (1, 0, 1)
    assert errors.flicker_frames == (2,)

    # Two objects; track 10 follows object 1 for frames 0-2, then track 11 takes it over:
    # one identity switch at frame 3 (and track 10 jumps to object 2 there: another switch).
    gt = [obj(1, 1, [LEFT] * 6), obj(2, 1, [RIGHT] * 6)]
    tracks = [
        obj(10, 1, [LEFT, LEFT, LEFT, RIGHT, RIGHT, RIGHT], 0.9),
        obj(11, 1, [RIGHT, RIGHT, RIGHT, LEFT, LEFT, LEFT], 0.8),
    ]
    errors, _, _ = analyse_video(video(6), gt, tracks)
    assert errors.id_switches == 2
    assert errors.dropouts == 0
    assert errors.flicker_frames == (3,)


def test_two_tracks_on_one_object_are_no_identity_switch():
    # Both tracks hold the object in every frame (IoU 1 or 30/36); which one fits best
    # alternates, but neither ever loses it.
    smaller = box_mask(H, W, 2, 7, 2, 8)
    gt = [obj(1, 1, [LEFT] * 4)]
    tracks = [
        obj(10, 1, [LEFT, smaller, LEFT, smaller], 0.9),
        obj(11, 1, [smaller, LEFT, smaller, LEFT], 0.8),
    ]
    # (A second object, so that both tracks are analysed: as many tracks as objects.)
    errors, shown, _ = analyse_video(video(4), [*gt, obj(2, 1, [RIGHT] * 4)], tracks)
    assert len(shown) == 2
    assert errors.id_switches == 0


def test_object_absent_while_track_is_absent_is_no_dropout():
    # Occlusion: the object is not visible in frame 2, the track rightly has no mask there.
    gt = [obj(1, 1, [LEFT, LEFT, None, LEFT])]
    errors, _, _ = analyse_video(video(4), gt, [obj(10, 1, [LEFT, LEFT, None, LEFT])])
    assert errors.flicker == 0


def test_shown_tracks_keep_each_tracks_best_result_then_the_top_ones():
    tracks = [
        obj(5, 1, [LEFT], 0.3),
        obj(5, 2, [LEFT], 0.6),  # same track, another class, higher score
        obj(7, 1, [RIGHT], 0.5),
        obj(9, 1, [RIGHT], 0.1),
    ]
    shown = shown_tracks(tracks, 2)
    assert [(t.track_id, t.category_id) for t in shown] == [(5, 2), (7, 1)]


def errors_of(video_id, wrong=0, merged=0, dropouts=0):
    return VideoErrors(video_id, f"v{video_id}", 2, 2, 2, wrong, merged, dropouts, 0, (), ())


def test_pick_failures_ranks_by_count_then_video_id():
    errors = [
        errors_of(1, wrong=1, merged=5),
        errors_of(2, wrong=3),
        errors_of(3, wrong=1, dropouts=2),
        errors_of(4),
    ]
    assert pick_failures(errors, 2) == {
        "wrong_class": [2, 1],
        "merged": [1],
        "flicker": [3],
    }


def write_tracks(path: Path, results: list[tuple[int, int, int, float, list]]) -> Path:
    """A tracks Parquet: one (video_id, result_id, track_id, score, per-frame masks) per result."""
    columns = {f.name: [] for f in TRACKS.schema}
    for video_id, result_id, track_id, score, frames in results:
        for t, m in enumerate(frames):
            columns["video_id"].append(video_id)
            columns["result_id"].append(result_id)
            columns["track_id"].append(track_id)
            columns["category_id"].append(1)
            columns["score"].append(score)
            columns["frame_index"].append(t)
            columns["source_id"].append(None)
            columns["height"].append(H)
            columns["width"].append(W)
            columns["rle"].append(None if m is None else masks.encode(m)["counts"])
    pq.write_table(pa.table(columns, schema=TRACKS.schema), path)
    return path


def write_gt(path: Path, num_frames: int) -> Path:
    rle = masks.encode(LEFT)
    doc = {
        "videos": [
            {
                "id": 1,
                "height": H,
                "width": W,
                "file_names": [f"v1/{t}.jpg" for t in range(num_frames)],
            }
        ],
        "categories": [{"id": 1, "name": "circle"}],
        "annotations": [
            {
                "id": 1,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": [rle] * num_frames,
            }
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def test_write_failures_from_files(tmp_path):
    gt = write_gt(tmp_path / "valid.json", 3)
    tracks = write_tracks(tmp_path / "tracks.parquet", [(1, 0, 4, 0.7, [LEFT, None, LEFT])])
    assert [t.masks[1] for t in read_tracks(tracks)[1]] == [None]
    doc = write_failures(gt, tracks, tmp_path / "f" / "run.valid.json", per_kind=1, progress=False)
    assert doc["totals"] == {"wrong_class": 0, "merged": 0, "flicker": 1}
    assert doc["picks"] == {"wrong_class": [], "merged": [], "flicker": [1]}
    saved = json.loads((tmp_path / "f" / "run.valid.json").read_text())
    assert saved["videos"][0]["dropouts"] == 1
    summary = (tmp_path / "f" / "run.valid.md").read_text()
    assert "| flicker | 1 | `v1` (1) |" in summary


def test_tracks_that_do_not_fit_the_ground_truth_are_data_errors(tmp_path):
    gt = write_gt(tmp_path / "valid.json", 3)
    short = write_tracks(tmp_path / "short.parquet", [(1, 0, 4, 0.7, [LEFT, LEFT])])
    with pytest.raises(DataError, match=r"short\.parquet.*2 frames, the ground truth 3"):
        write_failures(gt, short, tmp_path / "out.json")
    unknown = write_tracks(tmp_path / "unknown.parquet", [(9, 0, 4, 0.7, [LEFT] * 3)])
    with pytest.raises(DataError, match="video 9 is not in the ground truth"):
        write_failures(gt, unknown, tmp_path / "out.json")
    no_gt = tmp_path / "test.json"
    doc = json.loads(gt.read_text())
    del doc["annotations"]
    no_gt.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="has no annotations"):
        write_failures(no_gt, unknown, tmp_path / "out.json")
