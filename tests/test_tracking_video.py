"""Online video tracking: class scores, top-k, masks and RLE, spool, results files, evaluation."""

from __future__ import annotations

import json
import math
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uvis import masks
from uvis.errors import ConfigError, DataError
from uvis.evaluation.ytvis import evaluate, evaluate_files
from uvis.model.outputs import FrameQueries
from uvis.schemas import TRACKS
from uvis.tracking.mask_encoding import MaskEncoder
from uvis.tracking.query_tracker import (
    QueryTracker,
    mask_confidence,
    time_averaged_class_scores,
    top_k_pairs,
    track_video,
    write_vis_results,
)
from uvis.tracking.spool import MaskSpool

torch.set_num_threads(1)


def frame(
    embeddings, class_logits, mask_logits=None, frame_size=(4, 6), order=None
) -> FrameQueries:
    """FrameQueries with queries listed in ``order`` (query j = object order[j])."""
    emb = np.asarray(embeddings, np.float32)
    logits = np.asarray(class_logits, np.float32)
    if mask_logits is None:
        mask_logits = -np.ones((len(emb), *frame_size), np.float32)
    mask_logits = np.asarray(mask_logits, np.float32)
    if order is not None:
        emb, logits, mask_logits = emb[order], logits[order], mask_logits[order]
    return FrameQueries(emb, logits, mask_logits, tuple(frame_size))


# --------------------------------------------------------------------------------------------
# Class scores and top-k


def test_track_score_is_softmax_of_time_averaged_logits_and_top_k_by_hand():
    """Three tracks, two classes, two frames; logits chosen so the averages are logs.

    Averaged logits (class 0, class 1, no object): track 0 (ln 6, ln 3, ln 1) -> softmax
    (0.6, 0.3, 0.1); track 1 (ln 1, ln 4, ln 5) -> (0.1, 0.4, 0.5); track 2 (ln 2, ln 2, ln 6)
    -> (0.2, 0.2, 0.6). Top-3 of the six (track, class) pairs: (0, c0) 0.6, (1, c1) 0.4,
    (0, c1) 0.3. Frames differ by +-1 around the averages, so averaging per-frame
    probabilities instead would give other scores (0.540 for (0, c0)).
    """
    ln = np.log
    mean = np.array([[ln(6), ln(3), 0.0], [0.0, ln(4), ln(5)], [ln(2), ln(2), ln(6)]])
    swing = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.5, -0.5, 0.0]])
    embeddings = np.eye(3)
    frames = [
        frame(embeddings, mean + swing, order=[2, 0, 1]),
        frame(embeddings, mean - swing, order=[1, 2, 0]),
    ]
    results = track_video(frames, video_id=7, category_ids=[10, 20], top_k=3)
    got = [(r.track_id, r.category_id, r.score) for r in results]
    # Track ids are query indices of the first frame: object 0 is query 1, object 1 query 2.
    assert [g[:2] for g in got] == [(1, 10), (2, 20), (1, 20)]
    np.testing.assert_allclose([g[2] for g in got], [0.6, 0.4, 0.3], rtol=1e-6)
    per_frame = [np.exp(x) / np.exp(x).sum() for x in (mean[0] + swing[0], mean[0] - swing[0])]
    assert np.mean(per_frame, axis=0)[0] == pytest.approx(0.540, abs=1e-3)  # the other rule
    assert all(r.video_id == 7 for r in results)


def test_time_averaged_scores_and_top_k_rules():
    scores = time_averaged_class_scores(np.array([[2.0, 0.0, 0.0]]), 2)
    np.testing.assert_allclose(scores, [[math.e / (math.e + 2), 1 / (math.e + 2)]])
    tied = np.array([[0.5, 0.2], [0.5, 0.9]])
    pairs = top_k_pairs(tied, 10)  # more than available: all four, ties in index order
    assert [(p.track_id, p.class_index) for p in pairs] == [(1, 1), (0, 0), (1, 0), (0, 1)]
    with pytest.raises(ValueError):
        top_k_pairs(tied, 0)


def test_mask_confidence_is_the_mean_probability_inside_the_mask():
    # Query 0: logits ln 3 (p 0.75) on two cells, ln 9 (p 0.9) on one, negative elsewhere;
    # query 1: nothing above 0 (empty mask: 0, whatever the probabilities outside).
    logits = np.full((2, 2, 3), -2.0, np.float32)
    logits[0, 0, :2] = np.log(3.0)
    logits[0, 1, 2] = np.log(9.0)
    logits[1, 0, 0] = -0.01
    np.testing.assert_allclose(mask_confidence(logits), [(0.75 + 0.75 + 0.9) / 3, 0.0])


def test_mask_score_ranks_confident_masks_first_and_falls_back_to_the_models_logits():
    """Two tracks of equal class scores; track 1's masks are sure (p 0.9), track 0's hesitant
    (p 0.6) in one frame and empty in the other: with ``mask_score`` the scores are
    0.6 x 0.9 and 0.6 x 0.3 (class 1 of track 1, 0.3 x 0.9, comes between them), without it
    the tie keeps query order."""
    ln = np.log
    logits = np.array([[ln(6), ln(3), 0.0], [ln(6), ln(3), 0.0]])
    hesitant = np.full((4, 6), ln(0.6 / 0.4), np.float32)
    sure = np.full((4, 6), ln(9.0), np.float32)
    empty = -np.ones((4, 6), np.float32)
    frames = [
        frame(np.eye(2), logits, np.stack([hesitant, sure])),
        frame(np.eye(2), logits, np.stack([empty, sure])),
    ]
    plain = track_video(frames, video_id=1, category_ids=[1, 2], top_k=2)
    assert [(r.track_id, r.category_id) for r in plain] == [(0, 1), (1, 1)]
    np.testing.assert_allclose([r.score for r in plain], [0.6, 0.6], rtol=1e-6)
    ranked = track_video(frames, video_id=1, category_ids=[1, 2], top_k=3, mask_score=True)
    assert [(r.track_id, r.category_id) for r in ranked] == [(1, 1), (1, 2), (0, 1)]
    np.testing.assert_allclose(
        [r.score for r in ranked], [0.6 * 0.9, 0.3 * 0.9, 0.6 * 0.3], rtol=1e-5
    )
    # Scores handed over with the frame (as output refinement keeps the model's) win over the
    # mask logits: here they swap the tracks' confidences.
    given = [
        FrameQueries(f.embeddings, f.class_logits, f.mask_logits, f.frame_size, swap)
        for f, swap in zip(frames, (np.array([0.9, 0.6]), np.array([0.9, 0.0])), strict=True)
    ]
    swapped = track_video(given, video_id=1, category_ids=[1, 2], top_k=1, mask_score=True)
    assert (swapped[0].track_id, swapped[0].score) == (0, pytest.approx(0.6 * 0.9))
    with pytest.raises(ValueError, match="mask_scores"):
        FrameQueries(np.eye(2), logits, np.stack([sure, sure]), (4, 6), np.zeros(3))


# --------------------------------------------------------------------------------------------
# Masks


@pytest.mark.parametrize(
    ("logits_size", "frame_size"),
    [((6, 8), (24, 32)), ((9, 7), (9, 7)), ((12, 10), (5, 7)), ((3, 5), (20, 3)), ((1, 1), (4, 4))],
)
def test_mask_encoding_matches_bilinear_resize_and_pycocotools(logits_size, frame_size):
    rng = np.random.default_rng(5)
    h, w = logits_size
    logits = rng.standard_normal((6, h, w)).astype(np.float32)
    logits[0] = -1.0  # empty everywhere: null
    logits[1] = 1.0  # full frame: runs cross column boundaries
    logits[2, 0, 0] = 3.0  # a corner
    encoder = MaskEncoder(logits_size, frame_size)
    reference = F.interpolate(
        torch.from_numpy(logits)[None], size=frame_size, mode="bilinear", align_corners=False
    )[0].numpy()
    encoded = encoder.encode(logits)
    assert encoded[0] is None
    for q in range(len(logits)):
        resized = encoder.resize(logits[q])
        np.testing.assert_allclose(resized, reference[q], atol=1e-5)
        full = resized > 0
        expected = masks.encode(full.astype(np.uint8))["counts"] if full.any() else None
        got = None if encoded[q] is None else encoded[q].decode()
        assert got == expected


def test_half_resolution_blocks_upsample_to_the_same_blocks():
    """A +-1 block on even pixel edges at half resolution becomes the full-size block."""
    logits = -np.ones((1, 4, 6), np.float32)
    logits[0, 1:3, 2:5] = 1.0
    (counts,) = MaskEncoder((4, 6), (8, 12)).encode(logits)
    decoded = masks.decode({"size": [8, 12], "counts": counts.decode()})
    expected = np.zeros((8, 12), np.uint8)
    expected[2:6, 4:10] = 1
    np.testing.assert_array_equal(decoded, expected)


def test_spool_reads_back_each_track_in_frame_order(tmp_path):
    with MaskSpool((2, 3), tmp_path) as spool:
        a = masks.encode(np.array([[1, 0, 0], [0, 0, 1]], np.uint8))["counts"].encode()
        b = masks.encode(np.array([[0, 1, 1], [0, 0, 0]], np.uint8))["counts"].encode()
        spool.append(np.array([0, 1]), [a, None])
        spool.append(np.array([1, 0]), [b, a])
        first = spool.track(0)
        assert next(first) == (0, {"size": [2, 3], "counts": a.decode()})
        assert list(spool.track(1)) == [(1, None), (0, {"size": [2, 3], "counts": a.decode()})]
        spool.append(np.array([0, 1]), [None, None])  # a reader reads the frames it started
        assert list(first) == [(1, {"size": [2, 3], "counts": b.decode()})]  # with
        assert [s for s, _ in spool.track(0)] == [0, 1, 0]
        assert list(tmp_path.iterdir()) == []  # anonymous file: nothing left behind


def test_tracker_memory_does_not_grow_with_video_length(tmp_path):
    """Masks go to the spool: traced memory after 90 more frames grows by far less than the
    RLE bytes those frames produced."""
    rng = np.random.default_rng(6)
    q, size = 8, (48, 64)
    embeddings = rng.standard_normal((q, 16))
    encoder = MaskEncoder((12, 16), size)

    def next_frame() -> tuple[FrameQueries, int]:
        mask_logits = rng.standard_normal((q, 12, 16)).astype(np.float32)
        rle_bytes = sum(len(c) for c in encoder.encode(mask_logits) if c is not None)
        logits = rng.standard_normal((q, 4))
        return frame(embeddings, logits, mask_logits, size, order=rng.permutation(q)), rle_bytes

    made = [next_frame() for _ in range(100)]  # made first, so only the tracker is traced
    frames = [f for f, _ in made]
    produced_late = sum(n for _, n in made[10:])
    tracemalloc.start()
    try:
        with QueryTracker(video_id=1, category_ids=[1, 2, 3], spool_dir=tmp_path) as tracker:
            for f in frames[:10]:
                tracker.update(f)
            before = tracemalloc.get_traced_memory()[0]
            for f in frames[10:]:
                tracker.update(f)
            growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert produced_late > 200_000
    assert growth < 20_000, f"tracker memory grew by {growth} bytes over 90 frames"


# --------------------------------------------------------------------------------------------
# Whole videos, results files and evaluation


def _two_object_video() -> tuple[dict, list[FrameQueries]]:
    """Ground truth and model outputs for one 3-frame video of 8x12 pixels, two objects.

    Object 1 (category 1) is a block moving right; object 2 (category 2) is a block present in
    frames 0-1 and gone in frame 2. The model has 4 queries (2 objects, 2 "no object"), shown
    in a different order each frame, with mask logits at half resolution on even edges (so
    the resized masks equal the blocks) and distinct embeddings per object.
    """
    gt_masks = {1: [], 2: []}
    half = []
    for t in range(3):
        m1 = np.zeros((8, 12), np.uint8)
        m1[2:6, 2 + 2 * t : 6 + 2 * t] = 1
        m2 = np.zeros((8, 12), np.uint8)
        if t < 2:
            m2[0:2, 8:12] = 1
        gt_masks[1].append(m1)
        gt_masks[2].append(m2)
        logits = -np.ones((4, 4, 6), np.float32)
        logits[0] = np.where(m1[::2, ::2], 1.0, -1.0)
        logits[1] = np.where(m2[::2, ::2], 1.0, -1.0)
        half.append(logits)

    def seg(m):
        return masks.encode(m) if m.any() else None

    gt = {
        "videos": [{"id": 5, "height": 8, "width": 12, "length": 3}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {
                "id": k,
                "video_id": 5,
                "category_id": k,
                "iscrowd": 0,
                "segmentations": [seg(m) for m in gt_masks[k]],
                "areas": [int(m.sum()) or None for m in gt_masks[k]],
            }
            for k in (1, 2)
        ],
    }
    embeddings = np.eye(4, 6)
    class_logits = np.array(
        [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [0.0, 0.0, 4.0]], np.float32
    )
    orders = [[0, 1, 2, 3], [3, 1, 0, 2], [2, 0, 3, 1]]
    frames = [frame(embeddings, class_logits, half[t], (8, 12), order=orders[t]) for t in range(3)]
    return gt, frames


def test_perfect_prediction_scores_ap_100_from_json_and_zip(tmp_path):
    gt, frames = _two_object_video()
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt))
    out = tmp_path / "out" / "results.json"
    n = write_vis_results(
        [(5, iter(frames))],
        out,
        category_ids=[1, 2],
        zip_path=out.with_suffix(".zip"),
        tracks_path=tmp_path / "out" / "tracks.parquet",
        spool_dir=tmp_path,
    )
    assert n == 8  # 4 tracks x 2 classes, fewer than top_k = 10
    results = json.loads(out.read_text())
    assert evaluate_files(gt_path, out)["AP"] == pytest.approx(100.0)
    assert evaluate_files(gt_path, out.with_suffix(".zip"))["AP"] == pytest.approx(100.0)
    with zipfile.ZipFile(out.with_suffix(".zip")) as archive:
        assert archive.namelist() == ["results.json"]
    assert results[0]["segmentations"][2] is not None  # object 1, present in every frame
    assert results[1]["segmentations"][2] is None  # object 2 left: null, not an empty mask
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "results.json",
        "results.zip",
        "tracks.parquet",
    ]

    tracks = TRACKS.read(tmp_path / "out" / "tracks.parquet").to_pylist()
    assert len(tracks) == 8 * 3
    rebuilt: dict[int, list] = {}
    for row in tracks:
        rle = None if row["rle"] is None else {"size": [8, 12], "counts": row["rle"]}
        rebuilt.setdefault(row["result_id"], []).append(rle)
    assert [rebuilt[i] for i in range(8)] == [r["segmentations"] for r in results]
    first = [row for row in tracks if row["result_id"] == 0]
    assert [row["source_id"] for row in first] == [0, 2, 1]  # object 1's query per frame
    assert {row["track_id"] for row in first} == {0}


def test_write_is_atomic_when_tracking_fails(tmp_path):
    _, frames = _two_object_video()
    bad = FrameQueries(frames[0].embeddings, frames[0].class_logits, frames[0].mask_logits, (9, 12))
    out = tmp_path / "results.json"
    with pytest.raises(DataError, match=r"video 5, frame 1: frame size \(9, 12\)"):
        write_vis_results(
            [(5, iter([frames[0], bad]))], out, category_ids=[1, 2], tracks_path=out.parent / "t"
        )
    assert list(tmp_path.iterdir()) == []


def test_one_frame_video(tmp_path):
    gt, frames = _two_object_video()
    results = track_video(frames[:1], video_id=5, category_ids=[1, 2], spool_dir=tmp_path)
    assert len(results) == 8
    assert all(len(r.frames) == 1 for r in results)
    assert results[0].score == pytest.approx(math.exp(4) / (math.exp(4) + 2))
    gt["videos"][0]["length"] = 1
    for ann in gt["annotations"]:
        ann["segmentations"], ann["areas"] = ann["segmentations"][:1], ann["areas"][:1]
    assert evaluate(gt, [r.ytvis() for r in results])["AP"] == pytest.approx(100.0)


def test_frame_without_confident_queries_gives_null_masks_and_a_valid_result():
    """Middle frame: every query says "no object" and has no positive mask pixel."""
    gt, frames = _two_object_video()
    f = frames[1]
    blank = FrameQueries(
        f.embeddings,
        np.tile(np.array([[0.0, 0.0, 9.0]], np.float32), (4, 1)),
        -np.ones_like(f.mask_logits),
        f.frame_size,
    )
    results = track_video([frames[0], blank, frames[2]], video_id=5, category_ids=[1, 2])
    assert all(r.frames[1].rle is None for r in results)
    assert results[0].frames[0].rle is not None and results[0].frames[2].rle is not None
    metrics = evaluate(gt, [r.ytvis() for r in results])
    assert 0.0 < metrics["AP"] < 100.0


def test_video_without_frames_has_no_results():
    assert track_video([], video_id=1, category_ids=[1]) == []


def test_model_output_problems_are_clear_errors():
    _, frames = _two_object_video()
    with pytest.raises(ConfigError, match="2 classes but 3 category ids"):
        track_video(frames, video_id=5, category_ids=[1, 2, 3])
    nan = frames[1].class_logits.copy()
    nan[0, 0] = np.nan
    broken = FrameQueries(frames[1].embeddings, nan, frames[1].mask_logits, (8, 12))
    with pytest.raises(DataError, match="video 5, frame 1: class logits contain NaN"):
        track_video([frames[0], broken], video_id=5, category_ids=[1, 2])
    f = frames[1]
    scores = np.full(f.num_queries, np.nan)
    unsure = FrameQueries(f.embeddings, f.class_logits, f.mask_logits, f.frame_size, scores)
    track_video([frames[0], unsure], video_id=5, category_ids=[1, 2])  # unused without the flag
    with pytest.raises(DataError, match="video 5, frame 1: mask scores contain NaN"):
        track_video([frames[0], unsure], video_id=5, category_ids=[1, 2], mask_score=True)
    fewer = FrameQueries(frames[1].embeddings[:3], nan[:3], frames[1].mask_logits[:3], (8, 12))
    with pytest.raises(DataError, match="video 5, frame 1"):
        track_video([frames[0], fewer], video_id=5, category_ids=[1, 2])
