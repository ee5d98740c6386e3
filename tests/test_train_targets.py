"""Training targets from pseudo-labels (a filter level) and from ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from uvis import masks
from uvis.data import load_ytvis
from uvis.data.frames import Category
from uvis.errors import ConfigError, DataError
from uvis.schemas import FRAME_INDEX, PSEUDO_LABELS
from uvis.train import targets_from_ground_truth, targets_from_pseudo_labels

CATEGORIES = (Category(5, "circle"), Category(9, "star"))
H, W = 8, 10


def frame_index(frames: list[tuple[int, int]]) -> pa.Table:
    """Frames ``(video_id, frame_index)`` of size 8 x 10 at ``/f/<video>/<frame>.jpg``."""
    cols = {f.name: [] for f in FRAME_INDEX.schema}
    for vid, t in frames:
        for key, value in zip(cols, (vid, f"v{vid}", t, f"/f/{vid}/{t}.jpg", H, W), strict=True):
            cols[key].append(value)
    return pa.table(cols, schema=FRAME_INDEX.schema)


def box_rle(y0: int, y1: int, x0: int, x1: int) -> str:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return masks.encode(mask)["counts"]


#: (video, frame, class id, objectness pass, CLIP pass, PMF pass, PMF similarity, box)
ROWS = [
    (1, 0, 5, True, True, True, 0.9, (0, 2, 0, 2)),  # kept at every level
    (1, 0, 9, True, True, False, 0.6, (4, 6, 4, 6)),  # fails the stored PMF flag (tau 0.7)
    (1, 1, 9, True, False, False, 0.8, (0, 3, 0, 3)),  # fails CLIP
    (2, 0, 5, False, True, True, 0.95, (1, 4, 1, 4)),  # fails objectness
]


def pseudo_labels(rows=ROWS) -> pa.Table:
    cols = {f.name: [] for f in PSEUDO_LABELS.schema}
    for pid, (vid, t, cls, ok_obj, ok_clip, ok_pmf, sim, box) in enumerate(rows):
        rle = box_rle(*box)
        values = {
            "video_id": vid,
            "frame_index": t,
            "proposal_id": pid,
            "box": [0.0, 0.0, 1.0, 1.0],
            "area": masks.area({"size": [H, W], "counts": rle}),
            "height": H,
            "width": W,
            "rle": rle,
            "class_id": cls,
            "objectness": 0.9 if ok_obj else 0.1,
            "class_score": 0.9 if ok_clip else 0.1,
            "pmf_similarity": sim,
            "pass_objectness": ok_obj,
            "pass_clip": ok_clip,
            "pass_pmf": ok_pmf,
            "valid_embedding": True,
        }
        for key, value in values.items():
            cols[key].append(value)
    return pa.table(cols, schema=PSEUDO_LABELS.schema)


FRAMES = [(1, 0), (1, 1), (2, 0), (2, 1)]


def kept(level: str, tau: float | None = None) -> dict[tuple[int, int], tuple[int, ...]]:
    data = targets_from_pseudo_labels(
        frame_index(FRAMES), pseudo_labels(), CATEGORIES, level=level, tau=tau
    )
    assert [(f.video_id, f.frame_index) for f in data.frames] == FRAMES  # every frame, in order
    return {(f.video_id, f.frame_index): f.labels for f in data.frames if f.labels}


def test_pseudo_label_levels_are_cumulative_and_classes_contiguous() -> None:
    # circle (id 5) is class 0, star (id 9) class 1: positions in the vocabulary.
    assert kept("none") == {(1, 0): (0, 1), (1, 1): (1,), (2, 0): (0,)}
    assert kept("objectness") == {(1, 0): (0, 1), (1, 1): (1,)}
    assert kept("clip") == {(1, 0): (0, 1)}
    assert kept("pmf") == {(1, 0): (0,)}
    assert kept("pmf", tau=0.5) == {(1, 0): (0, 1)}  # re-thresholded similarity 0.6 passes


def test_pseudo_label_masks_are_the_rows_masks() -> None:
    data = targets_from_pseudo_labels(
        frame_index(FRAMES), pseudo_labels(), CATEGORIES, level="clip"
    )
    frame = data.frames[0]
    got = frame.masks()
    assert got.shape == (2, H, W) and got.dtype == np.uint8
    assert got[0].sum() == 4 and got[0][:2, :2].all()
    assert got[1].sum() == 4 and got[1][4:6, 4:6].all()
    summary = data.summary()
    assert {k: summary[k] for k in ("frames", "frames_with_targets", "masks")} == {
        "frames": 4,
        "frames_with_targets": 1,
        "masks": 2,
    }
    assert len(summary["digest"]) == 40  # SHA-1 hex; what it tells apart: test_train_loop
    assert data.source["level"] == "clip" and data.source["kept_rows"] == 2


def test_pseudo_label_errors_name_the_file_and_problem() -> None:
    frames = frame_index(FRAMES)
    labels = pseudo_labels()
    with pytest.raises(
        DataError, match=r"p\.parquet: no pseudo-label passes level 'pmf' at tau 0.99"
    ):
        targets_from_pseudo_labels(
            frames, labels, CATEGORIES, level="pmf", tau=0.99, labels_path="p.parquet"
        )
    with pytest.raises(DataError, match=r"class id 9, which is not in the vocabulary"):
        targets_from_pseudo_labels(frames, labels, CATEGORIES[:1], level="none")
    with pytest.raises(DataError, match="video 2 frame 0: not in the frame index"):
        targets_from_pseudo_labels(frame_index(FRAMES[:2]), labels, CATEGORIES, level="none")
    with pytest.raises(ConfigError, match="unknown pseudo-label level"):
        targets_from_pseudo_labels(frames, labels, CATEGORIES, level="best")
    with pytest.raises(ConfigError, match="tau applies to the 'pmf' level only"):
        targets_from_pseudo_labels(frames, labels, CATEGORIES, level="clip", tau=0.5)
    with pytest.raises(DataError, match="not a pseudo-labels artefact"):
        targets_from_pseudo_labels(frames, labels.drop(["pass_pmf"]), CATEGORIES, level="none")


def test_ground_truth_targets(tiny_ytvis) -> None:
    dataset = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)
    data = targets_from_ground_truth(dataset.frame_index(), dataset, annotations_path="gt.json")
    by_frame = {(f.video_id, f.frame_index): f for f in data.frames}
    assert len(by_frame) == 5
    # Video 3: the dog (category 2 -> class 1) in frames 0 and 2, absent in frame 1.
    assert (
        by_frame[3, 0].labels == (1,)
        and by_frame[3, 1].labels == ()
        and by_frame[3, 2].labels == (1,)
    )
    np.testing.assert_array_equal(by_frame[3, 0].masks()[0], tiny_ytvis.masks[1, 0])
    # Video 7: the person (category 1 -> class 0) in both frames.
    assert by_frame[7, 0].labels == (0,) and by_frame[7, 1].labels == (0,)
    assert by_frame[7, 0].path == tiny_ytvis.image_root / "bbb" / "00000.jpg"
    assert data.categories == dataset.categories
    # Each mask keeps its annotation id, the instance across frames.
    assert by_frame[3, 0].track_ids == (1,) and by_frame[3, 1].track_ids == ()
    assert by_frame[7, 0].track_ids == (2,) and by_frame[7, 1].track_ids == (2,)


def test_ground_truth_with_another_stride_is_an_error(tiny_ytvis) -> None:
    dataset = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)
    strided = dataset.subsample(2).frame_index()
    with pytest.raises(
        DataError, match=r"gt\.json: video 3 has 3 annotated frames but the frame index has 2"
    ):
        targets_from_ground_truth(strided, dataset, annotations_path="gt.json")


def test_ground_truth_without_annotations_is_an_error(tiny_ytvis, tmp_path: Path) -> None:
    doc = dict(tiny_ytvis.doc)
    doc.pop("annotations")
    tiny_ytvis.write(doc)
    dataset = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)
    with pytest.raises(DataError, match="has no annotations"):
        targets_from_ground_truth(dataset.frame_index(), dataset)
