"""The noisy-ground-truth baseline: exact at zero noise, degraded as configured."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uvis import masks
from uvis.baselines import NoiseParams, noisy_davis_predictions, noisy_ytvis_results
from uvis.baselines.noisy_gt import jitter_mask
from uvis.errors import DataError

ZERO = NoiseParams(seed=0, jitter_px=0, drop_rate=0.0, class_flip_rate=0.0, false_positives=0)


def _square(h: int, w: int, y: int, x: int, s: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y : y + s, x : x + s] = 1
    return m


def _gt() -> dict:
    h, w, n = 20, 30, 3
    segs1 = [masks.encode(_square(h, w, 2 + t, 3, 5)) for t in range(n)]
    segs2 = [None, masks.encode(_square(h, w, 10, 15, 6)), masks.encode(_square(h, w, 10, 16, 6))]
    return {
        "videos": [
            {
                "id": 1,
                "height": h,
                "width": w,
                "length": n,
                "file_names": [f"v/{i}.jpg" for i in range(n)],
            }
        ],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "star"}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": segs1},
            {"id": 2, "video_id": 1, "category_id": 2, "iscrowd": 0, "segmentations": segs2},
            {"id": 3, "video_id": 1, "category_id": 2, "iscrowd": 1, "segmentations": segs2},
        ],
    }


def test_zero_noise_reproduces_ground_truth_exactly():
    gt = _gt()
    res = noisy_ytvis_results(gt, ZERO)
    assert len(res) == 2  # crowd skipped, no false positives
    for r, a in zip(res, gt["annotations"][:2], strict=True):
        assert r["video_id"] == a["video_id"] and r["category_id"] == a["category_id"]
        for got, want in zip(r["segmentations"], a["segmentations"], strict=True):
            if want is None:
                assert got is None
            else:
                np.testing.assert_array_equal(masks.decode(got), masks.decode(want))
        assert 0 < r["score"] <= 1


def test_noise_knobs_change_what_they_say():
    gt = _gt()
    flipped = noisy_ytvis_results(
        gt, NoiseParams(seed=1, jitter_px=0, drop_rate=0, class_flip_rate=1.0, false_positives=0)
    )
    assert [r["category_id"] for r in flipped] == [2, 1]
    dropped = noisy_ytvis_results(
        gt, NoiseParams(seed=1, jitter_px=0, drop_rate=1.0, class_flip_rate=0, false_positives=0)
    )
    assert all(s is None for r in dropped for s in r["segmentations"])
    fps = noisy_ytvis_results(
        gt, NoiseParams(seed=1, jitter_px=0, drop_rate=0, class_flip_rate=0, false_positives=3)
    )
    assert len(fps) == 2 + 3
    assert all(len(r["segmentations"]) == 3 for r in fps)


def test_jitter_is_one_of_the_erosions_or_dilations_within_bound():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    m = _square(30, 30, 10, 10, 8).astype(bool)
    candidates = [ndimage.binary_erosion(m, iterations=k) for k in (2, 1)] + [m]
    candidates += [ndimage.binary_dilation(m, iterations=k) for k in (1, 2)]
    seen = set()
    for _ in range(40):
        j = jitter_mask(m, rng, 2)
        idx = [i for i, c in enumerate(candidates) if np.array_equal(j, c)]
        assert len(idx) == 1
        seen.add(idx[0])
    assert seen == {0, 1, 2, 3, 4}


def test_ground_truth_without_annotations_is_a_clear_error():
    gt = _gt()
    del gt["annotations"]
    with pytest.raises(DataError, match="no 'annotations'"):
        noisy_ytvis_results(gt, ZERO)


def test_davis_zero_noise_is_a_relabelling_of_ground_truth(tmp_path):
    gt_dir = tmp_path / "gt" / "seq"
    gt_dir.mkdir(parents=True)
    frames = []
    for t in range(3):
        lab = np.zeros((16, 16), np.uint8)
        lab[2:6, 2 + t : 6 + t] = 1
        lab[9:14, 9:14] = 2
        if t == 2:
            lab[0:2, 12:16] = 3  # enters late
        frames.append(lab)
        Image.fromarray(lab, mode="L").save(gt_dir / f"{t:05d}.png")
    n = noisy_davis_predictions(tmp_path / "gt", tmp_path / "pred", ZERO)
    assert n == 3
    preds = [np.asarray(Image.open(tmp_path / "pred" / "seq" / f"{t:05d}.png")) for t in range(3)]
    # One consistent bijection between GT ids and predicted ids over the whole sequence.
    mapping: dict[int, int] = {}
    for lab, pred in zip(frames, preds, strict=True):
        assert np.array_equal(lab == 0, pred == 0)
        for gid in (1, 2, 3):
            vals = np.unique(pred[lab == gid])
            if vals.size:
                assert vals.size == 1
                assert mapping.setdefault(gid, int(vals[0])) == int(vals[0])
    assert sorted(mapping.values()) == [1, 2, 3]


def test_davis_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no sequence folders"):
        noisy_davis_predictions(tmp_path / "nope", tmp_path / "pred", ZERO)
