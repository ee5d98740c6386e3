"""Video inference: model -> per-frame queries -> tracking -> results (uvis track vis, segment).

The model is an untrained ``uvis-smoke`` Mask2Former with fixed seeds: what it predicts is
arbitrary, so these tests check what must hold whatever it predicts — one entry per frame,
masks of the frame's size, the vocabulary's category ids, windowing that does not change the
answer, and clear errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from conftest import noisy_square
from uvis import masks
from uvis.checkpoints import save_checkpoint
from uvis.cli import main
from uvis.cli.types import CUTLER_SIGMA_RGB, REFINE_CHOICES
from uvis.data.frames import Category
from uvis.errors import DataError
from uvis.inference import frame_index_videos, refine_frame_queries, track_videos
from uvis.inference.overlay import draw_frame
from uvis.model import create_vis_model, load_vis_model
from uvis.model.checkpoint import checkpoint_dict
from uvis.model.outputs import FrameQueries
from uvis.proposals.refine import REFINE_METHODS, BilateralParams, mask_iou
from uvis.schemas import FRAME_INDEX

CATEGORIES = (Category(3, "cat"), Category(7, "dog"))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_vis_model("uvis-smoke", num_classes=len(CATEGORIES))
    path = tmp_path / "model_final.pth"
    save_checkpoint(path, checkpoint_dict(model, CATEGORIES, iteration=0, train_config={}))
    return path


def _frame_index(tmp_path: Path, lengths: dict[int, int], h: int = 36, w: int = 44) -> Path:
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in FRAME_INDEX.schema.names}
    for vid, n in lengths.items():
        for t in range(n):
            path = tmp_path / f"v{vid}" / f"{t:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            # Random content, so the masks are not all alike.
            Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(path)
            for key, value in zip(
                FRAME_INDEX.schema.names, (vid, f"v{vid}", t, str(path), h, w), strict=True
            ):
                rows[key].append(value)
    out = tmp_path / "frames.parquet"
    pq.write_table(pa.table(rows, schema=FRAME_INDEX.schema), out)
    return out


def _track(checkpoint: Path, index: Path, out: Path, **options) -> list[dict]:
    """The results JSON of tracking ``index``'s videos with the checkpoint (lambda 0.5)."""
    model, meta = load_vis_model(checkpoint)
    track_videos(
        model,
        frame_index_videos(index),
        out,
        category_ids=meta.category_ids,
        progress=False,
        **{"lam": 0.5, **options},
    )
    return json.loads(out.read_text())


def test_results_have_one_entry_per_frame_and_the_vocabulary(
    tmp_path: Path, checkpoint: Path
) -> None:
    index = _frame_index(tmp_path, {5: 3, 2: 1})
    model, meta = load_vis_model(checkpoint)
    out = tmp_path / "results.json"
    n = track_videos(
        model,
        frame_index_videos(index),
        out,
        category_ids=meta.category_ids,
        lam=0.5,
        top_k=4,
        tracks_path=tmp_path / "tracks.parquet",
        progress=False,
    )
    results = json.loads(out.read_text())
    assert n == len(results) == 8  # top-4 (query, class) pairs of each of the 2 videos
    by_video = {2: 1, 5: 3}
    for r in results:
        assert r["category_id"] in (3, 7)
        assert 0.0 <= r["score"] <= 1.0
        assert len(r["segmentations"]) == by_video[r["video_id"]]
        for seg in r["segmentations"]:
            assert seg is None or seg["size"] == [36, 44]
    assert {r["video_id"] for r in results} == {2, 5}
    assert (tmp_path / "tracks.parquet").is_file()


def test_windowing_does_not_change_the_results(tmp_path: Path, checkpoint: Path) -> None:
    index = _frame_index(tmp_path, {1: 5})
    a, b = (
        _track(checkpoint, index, tmp_path / f"r{batch}.json", top_k=6, batch_size=batch)
        for batch in (1, 4)
    )
    assert [(r["category_id"]) for r in a] == [(r["category_id"]) for r in b]
    np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-5)
    for ra, rb in zip(a, b, strict=True):
        for sa, sb in zip(ra["segmentations"], rb["segmentations"], strict=True):
            ma = np.zeros((36, 44)) if sa is None else masks.decode(sa)
            mb = np.zeros((36, 44)) if sb is None else masks.decode(sb)
            assert (ma != mb).mean() < 0.01  # float noise of batched convolutions at most


def _ring_frame(h: int = 48, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A red ring on a grey background: the frame and the ring's true mask."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - 23.3, xx - 30.6)
    ring = (r <= 15.0) & (r >= 6.0)
    image = np.full((h, w, 3), 110, np.uint8)
    image[ring] = (200, 30, 40)
    return image, ring


def test_refine_frame_queries_snaps_coarse_masks_to_the_object_and_keeps_holes() -> None:
    image, ring = _ring_frame()
    # Mask logits at a quarter of the frame size, as Mask2Former predicts them, and too
    # tight: positive only on the cells wholly inside the ring, so the resized mask misses a
    # band along both outlines.
    cells = ring.reshape(12, 4, 16, 4).mean(axis=(1, 3)).astype(np.float32)
    tight = (cells > 0.9).astype(np.float32) - 0.5
    logits = np.stack([tight, np.full_like(cells, -3.0)])  # the ring; an empty query
    frame = FrameQueries(
        embeddings=np.arange(8, dtype=np.float32).reshape(2, 4),
        class_logits=np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]], np.float32),
        mask_logits=logits,
        frame_size=(48, 64),
    )
    assert refine_frame_queries(frame, image, "none") is frame
    out = refine_frame_queries(frame, image, "bilateral")
    assert out.mask_logits.shape == (2, 48, 64)
    np.testing.assert_array_equal(out.embeddings, frame.embeddings)
    np.testing.assert_array_equal(out.class_logits, frame.class_logits)
    coarse = (
        torch.nn.functional.interpolate(
            torch.from_numpy(logits)[None], size=(48, 64), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        > 0
    )
    refined = out.mask_logits[0] > 0
    assert mask_iou(coarse, ring) < 0.7  # the premise: the coarse mask misses the outline
    assert mask_iou(refined, ring) > 0.95
    assert not refined[23, 30]  # the ring's hole is not filled
    assert not (out.mask_logits[1] > 0).any()  # an empty mask stays empty
    # The model's mask confidences survive the +-1 logits (tight cells at p sigmoid(0.5)).
    np.testing.assert_allclose(out.mask_scores, [1 / (1 + np.exp(-0.5)), 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="image of size"):
        refine_frame_queries(frame, image[:40], "bilateral")


def test_refine_frame_queries_takes_the_crfs_constants() -> None:
    image, square, coarse = noisy_square()
    frame = FrameQueries(
        embeddings=np.zeros((1, 4), np.float32),
        class_logits=np.zeros((1, 3), np.float32),
        mask_logits=np.where(coarse, 1.0, -1.0).astype(np.float32)[None],
        frame_size=(32, 40),
    )
    cutler = refine_frame_queries(frame, image, "bilateral").mask_logits[0] > 0
    wide = BilateralParams(bilateral_sigma_rgb=20.0)
    snapped = refine_frame_queries(frame, image, "bilateral", wide).mask_logits[0] > 0
    np.testing.assert_array_equal(snapped, square)
    assert mask_iou(cutler, square) < 0.95


def test_refine_choices_of_the_cli_are_the_library_methods() -> None:
    assert tuple(REFINE_CHOICES) == tuple(REFINE_METHODS)
    assert CUTLER_SIGMA_RGB == BilateralParams().bilateral_sigma_rgb


def test_refined_tracking_keeps_one_entry_per_frame(tmp_path: Path, checkpoint: Path) -> None:
    index = _frame_index(tmp_path, {1: 3})
    plain, refined = (
        _track(checkpoint, index, tmp_path / f"{refine}.json", top_k=3, refine=refine)
        for refine in ("none", "bilateral")
    )
    # Refinement changes masks only: the same tracks, classes and scores, one entry per frame.
    assert [(r["category_id"], r["score"]) for r in plain] == [
        (r["category_id"], r["score"]) for r in refined
    ]
    for r in refined:
        assert len(r["segmentations"]) == 3
        assert all(seg is None or seg["size"] == [36, 44] for seg in r["segmentations"])


def test_frame_index_gaps_are_an_error(tmp_path: Path) -> None:
    index = _frame_index(tmp_path, {1: 3})
    table = pq.read_table(index)
    table = table.filter(pa.compute.not_equal(table["frame_index"], 1))
    pq.write_table(table, index)
    with pytest.raises(DataError, match=r"frames\.parquet: video 1: frame indices are not 0\.\.1"):
        frame_index_videos(index)


def test_cli_track_vis_and_errors(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    index = _frame_index(tmp_path, {1: 2})
    out = tmp_path / "pred" / "results.json"
    argv = ["track", "vis", "--checkpoint", str(checkpoint), "--frames", str(index)]
    assert (
        main([*argv, "--out", str(out), "--lam", "1", "--top-k", "2", "--no-progress", "--zip"])
        == 0
    )
    plain = json.loads(out.read_text())
    assert len(plain) == 2
    assert out.with_suffix(".zip").is_file()
    ranked = tmp_path / "ranked.json"
    assert main([*argv, "--out", str(ranked), "--lam", "1", "--mask-score", "--no-progress"]) == 0
    # The flag reaches the tracker: scores shrink by the masks' confidences (<= 1, not all 1).
    high, low = (
        max(r["score"] for r in plain),
        max(r["score"] for r in json.loads(ranked.read_text())),
    )
    assert 0 <= low < high
    capsys.readouterr()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert (
        main(["track", "vis", "--checkpoint", str(bad), "--frames", str(index), "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.pth" in err and err.count("\n") == 1


def test_segment_writes_results_and_overlay(
    tmp_path: Path, checkpoint: Path, make_video, capsys
) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=6, width=46, height=34)
    out = tmp_path / "seg"
    argv = ["segment", str(video), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert (
        main([*argv, "--vocab", "cat,dog", "--top-k", "3", "--min-score", "0", "--no-progress"])
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 3 and {r["video_id"] for r in results} == {1}
    assert all(len(r["segmentations"]) == 6 for r in results)
    assert json.loads((out / "categories.json").read_text()) == [
        {"id": 3, "name": "cat"},
        {"id": 7, "name": "dog"},
    ]
    with av.open(str(out / "overlay.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (34, 46, 3)
    capsys.readouterr()
    assert main([*argv, "--vocab", "cat,horse"]) == 2
    assert "vocabulary" in capsys.readouterr().err


def test_draw_frame_tints_only_the_mask() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 1
    out = draw_frame(image, [(mask, (200, 0, 0), ""), (None, (0, 200, 0), "")], alpha=0.5)
    assert (out[:2, :2] == [100, 0, 0]).all()
    assert (out[2:] == 0).all() and (out[:, 2:] == 0).all()


# --------------------------------------------------------------------------------------------
# The Python API (uvis.inference.predictor)


def test_predictor_gives_the_results_of_track_vis(tmp_path: Path, checkpoint: Path) -> None:
    from uvis.inference.predictor import VideoPredictor

    index = _frame_index(tmp_path, {1: 5})
    expected = _track(checkpoint, index, tmp_path / "r.json", top_k=4, batch_size=2)
    paths = [str(tmp_path / "v1" / f"{t:05d}.jpg") for t in range(5)]
    predictor = VideoPredictor.from_checkpoint(checkpoint, lam=0.5, top_k=4, batch_size=2)
    tracks = predictor.predict(paths)
    assert [t.ytvis() for t in tracks] == expected
    assert [t.track_id for t in tracks] == [0, 1, 2, 3]
    assert {t.category for t in tracks} <= {"cat", "dog"}
    assert predictor.categories == {3: "cat", 7: "dog"}
    first = tracks[0]
    assert first.num_frames == 5 and first.frame_size == (36, 44)
    for t, rle in enumerate(first.masks):
        decoded = first.mask(t)
        assert decoded.dtype == bool and decoded.shape == (36, 44)
        assert (decoded == (masks.decode(rle).astype(bool) if rle else False)).all()
    # Arrays in memory give the same tracks as the files they were read from.
    arrays = [np.array(Image.open(p).convert("RGB")) for p in paths]
    assert [t.ytvis() for t in predictor.predict(arrays)] == expected


def test_predictor_errors_name_the_frame(tmp_path: Path, checkpoint: Path) -> None:
    from uvis.inference.predictor import VideoPredictor

    predictor = VideoPredictor.from_checkpoint(checkpoint)
    a = np.zeros((36, 44, 3), np.uint8)
    with pytest.raises(DataError, match="frame 1 is"):
        predictor.predict([a, np.zeros((30, 44, 3), np.uint8)])
    with pytest.raises(DataError, match=r"frame 0: expected an \(H, W, 3\) uint8"):
        predictor.predict([np.zeros((36, 44), np.uint8)])
    with pytest.raises(DataError, match=r"missing\.jpg"):
        predictor.predict([str(tmp_path / "missing.jpg")])
    with pytest.raises(ValueError, match="lam"):
        VideoPredictor.from_checkpoint(checkpoint, lam=2.0)
    assert predictor.predict([]) == []
