"""Tags to instances: 1-D mean-shift, instance classes and scores, mask interpolation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import noisy_square
from uvis.data.frame_index import VideoFrames
from uvis.errors import ConfigError
from uvis.proposals.refine import mask_iou
from uvis.tagvis.clustering import cluster_tags, density_modes, tag_density
from uvis.tagvis.infer import (
    ClipPrediction,
    InferenceConfig,
    clip_instances,
    instance_class_scores,
    interpolate_masks,
    refine_video_masks,
    shift_mask,
)


def three_groups(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tags of 600 pixels in three groups around 0, 3 and 6 (sizes 300, 200, 100), shuffled;
    returns ``(tags, group)``."""
    group = rng.permutation(np.repeat([0, 1, 2], [300, 200, 100]))
    tags = 3.0 * group + rng.normal(0.0, 0.25, group.size)
    return tags.reshape(6, 10, 10), group.reshape(6, 10, 10)


def test_well_separated_groups_become_one_cluster_each() -> None:
    tags, group = three_groups(np.random.default_rng(0))
    clusters = cluster_tags(tags, np.ones(tags.shape, bool), bandwidth=0.5, min_pixels=1)
    assert clusters.count == 3
    # Numbered by decreasing size: the group of 300 is cluster 1, of 200 cluster 2 ...
    np.testing.assert_array_equal(clusters.labels, group + 1)
    np.testing.assert_array_equal(clusters.sizes, [300, 200, 100])
    np.testing.assert_allclose(clusters.modes, [0.0, 3.0, 6.0], atol=0.15)


def test_background_is_left_out_and_small_clusters_are_dropped() -> None:
    tags, group = three_groups(np.random.default_rng(1))
    foreground = group != 1  # the middle group is background here
    tags = np.where(foreground, tags, 100.0)  # background tags never matter
    tags.reshape(-1)[np.flatnonzero(foreground.reshape(-1))[:4]] = 20.0  # 4 stray pixels
    clusters = cluster_tags(tags, foreground, bandwidth=0.5, min_pixels=5)
    assert clusters.count == 2
    assert (clusters.labels[~foreground] == 0).all()
    assert (clusters.labels[tags == 20.0] == 0).all()  # a cluster of 4 < 5 pixels
    expected = np.where(group == 0, 1, np.where(group == 2, 2, 0))
    expected[tags == 20.0] = 0
    np.testing.assert_array_equal(clusters.labels, expected)


def test_groups_closer_than_the_bandwidth_merge() -> None:
    tags = np.concatenate([np.full(50, 1.0), np.full(50, 1.4)]).reshape(1, 10, 10)
    clusters = cluster_tags(tags, np.ones(tags.shape, bool), bandwidth=0.5, min_pixels=1)
    assert clusters.count == 1 and (clusters.labels == 1).all()
    apart = cluster_tags(tags, np.ones(tags.shape, bool), bandwidth=0.1, min_pixels=1)
    assert apart.count == 2


def test_density_modes_and_basin_boundaries() -> None:
    grid, density = tag_density(np.array([0.0, 0.0, 4.0]), bandwidth=0.5)
    modes, cuts = density_modes(density)
    np.testing.assert_allclose(grid[modes], [0.0, 4.0], atol=0.07)
    assert len(cuts) == 1 and 0.0 < grid[cuts[0]] < 4.0


def test_bad_tags_are_errors() -> None:
    tags = np.array([[[0.0, np.nan]]])
    with pytest.raises(ValueError, match="NaN or inf"):
        cluster_tags(tags, np.ones(tags.shape, bool), bandwidth=0.5, min_pixels=1)
    with pytest.raises(ValueError, match="bandwidth"):
        cluster_tags(tags, np.ones(tags.shape, bool), bandwidth=0.0, min_pixels=1)


def two_objects() -> tuple[np.ndarray, np.ndarray]:
    """Three frames 8x8: object A (tag 3) a 2x2 square moving right by 1 per frame, object B
    (tag -3) a 3x3 square fixed at the bottom right; background tag 0. Returns (tags, ids)."""
    ids = np.zeros((3, 8, 8), dtype=np.int64)
    for t in range(3):
        ids[t, 1:3, t : t + 2] = 1
    ids[:, 5:8, 5:8] = 2
    tags = np.choose(ids, [0.0, 3.0, -3.0])
    return tags, ids


def test_clip_instances_follow_tags_across_frames_with_semantic_classes_and_scores() -> None:
    tags, ids = two_objects()
    probs = np.zeros((4, *ids.shape))  # background + 3 classes
    probs[0] = 0.9
    probs[1] = 0.1
    a, b = ids == 1, ids == 2
    probs[:, a] = np.array([0.1, 0.1, 0.7, 0.1])[:, None]  # A: class 1 at 0.7
    probs[:, b] = np.array([0.2, 0.5, 0.1, 0.2])[:, None]  # B: class 0 at 0.5
    cfg = InferenceConfig(bandwidth=0.5, min_area=0.0, classes_per_instance=2)
    found = clip_instances(ClipPrediction(tags=tags, probs=probs), cfg, prior_class=2)
    assert len(found) == 2
    first, second = found  # by decreasing score: A (0.7) then B (0.5)
    np.testing.assert_array_equal(first.masks, a)
    np.testing.assert_array_equal(second.masks, b)
    assert first.classes[0] == (1, pytest.approx(0.7))
    assert first.classes[1] == (0, pytest.approx(0.1))  # ties: the lower class index
    assert second.classes == ((0, pytest.approx(0.5)), (2, pytest.approx(0.2)))


def test_the_instance_heads_classes_replace_the_pixel_means_at_the_foreground_mass() -> None:
    tags, ids = two_objects()
    probs = np.zeros((4, *ids.shape))
    probs[0] = 0.9
    probs[1:] = 0.1 / 3
    a, b = ids == 1, ids == 2
    probs[:, a] = np.array([0.2, 0.7, 0.05, 0.05])[:, None]  # pixels say class 0 for both
    probs[:, b] = np.array([0.4, 0.5, 0.05, 0.05])[:, None]
    seen = []

    def classify(region: np.ndarray) -> np.ndarray:  # the head: class 2 for A, class 1 for B
        seen.append(region.copy())
        return np.array([0.1, 0.1, 0.8]) if region[a].all() else np.array([0.3, 0.6, 0.1])

    cfg = InferenceConfig(bandwidth=0.5, min_area=0.0, classes_per_instance=2)
    found = clip_instances(ClipPrediction(tags=tags, probs=probs, classify=classify), cfg, 0)
    assert len(found) == 2 and len(seen) == 2
    assert sorted(int(r.sum()) for r in seen) == sorted([int(a.sum()), int(b.sum())])
    first, second = found  # A: 0.8 x foreground mass 0.8 = 0.64; B: 0.6 x 0.6 = 0.36
    np.testing.assert_array_equal(first.masks, a)
    assert first.classes == ((2, pytest.approx(0.64)), (0, pytest.approx(0.08)))
    np.testing.assert_array_equal(second.masks, b)
    assert second.classes == ((1, pytest.approx(0.36)), (0, pytest.approx(0.18)))
    np.testing.assert_allclose(
        instance_class_scores(ClipPrediction(tags=tags, probs=probs), b), [0.5, 0.05, 0.05]
    )  # without the head: the mean of the pixels' probabilities
    with pytest.raises(ValueError, match="semantic branch"):
        instance_class_scores(ClipPrediction(tags=tags, probs=None), b)


def test_without_semantic_branch_the_border_cluster_is_background() -> None:
    tags, _ = two_objects()
    found = clip_instances(
        ClipPrediction(tags=tags, probs=None),
        InferenceConfig(bandwidth=0.5, min_area=0.0),
        prior_class=2,
    )
    # Object B touches the border too, but the background holds most border pixels.
    assert sorted(int(inst.masks.sum()) for inst in found) == [12, 27]
    assert all(inst.classes == ((2, 1.0),) for inst in found)  # prior class, compact tags


def test_objects_with_the_same_tag_are_split_where_apart_in_space_time() -> None:
    tags, ids = two_objects()
    tags = np.where(ids == 2, 3.0, tags)  # B now has A's tag
    probs = np.stack([ids == 0, ids > 0]).astype(float)  # background, one class
    prediction = ClipPrediction(tags=tags, probs=probs)
    split = clip_instances(
        prediction, InferenceConfig(min_area=0.0, split_components=True), prior_class=0
    )
    assert sorted(int(inst.masks.sum()) for inst in split) == [4 * 3, 9 * 3]
    merged = clip_instances(prediction, InferenceConfig(min_area=0.0), prior_class=0)
    # The default is the paper's inference: tags alone, no space-time split.
    assert len(merged) == 1 and merged[0].masks.sum() == 12 + 27
    # A part smaller than min_area (here: A, 12 pixels < 0.25 * 64) is dropped.
    small = clip_instances(
        prediction, InferenceConfig(min_area=0.25, split_components=True), prior_class=0
    )
    assert len(small) == 1 and small[0].masks.sum() == 27


def test_max_instances_keeps_the_best_scored() -> None:
    tags, ids = two_objects()
    probs = np.zeros((2, *ids.shape))
    probs[0] = 1.0
    probs[:, ids == 1] = np.array([0.4, 0.6])[:, None]
    probs[:, ids == 2] = np.array([0.1, 0.9])[:, None]
    found = clip_instances(
        ClipPrediction(tags=tags, probs=probs),
        InferenceConfig(min_area=0.0, max_instances=1),
        prior_class=0,
    )
    assert len(found) == 1 and found[0].score == pytest.approx(0.9)


def square(size: tuple[int, int], y: int, x: int, side: int) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[y : y + side, x : x + side] = True
    return mask


def test_interpolated_masks_move_with_the_object() -> None:
    # Clip frames 0 and 4 of a 5-frame video: a 3x3 square moving 8 px right.
    keys = np.array([0, 4])
    key_masks = np.stack([square((10, 20), 2, 2, 3), square((10, 20), 2, 10, 3)])
    out = interpolate_masks(keys, key_masks, 5)
    for f in range(5):
        np.testing.assert_array_equal(out[f], square((10, 20), 2, 2 + 2 * f, 3))


def test_interpolation_of_appearing_objects_and_repeated_frames() -> None:
    # The object is absent at clip frame 0 and present at clip frame 4: it appears half-way.
    keys = np.array([0, 4])
    present = square((6, 6), 1, 1, 2)
    out = interpolate_masks(keys, np.stack([np.zeros_like(present), present]), 5)
    assert [bool(m.any()) for m in out] == [False, False, True, True, True]
    # A 2-frame video stretched to 4 clip frames: repeats vote (2 of 2 say yes -> mask).
    keys = np.array([0, 0, 1, 1])
    masks = np.stack([present, present, present, np.zeros_like(present)])
    out = interpolate_masks(keys, masks, 2)
    np.testing.assert_array_equal(out[0], present)
    np.testing.assert_array_equal(out[1], present)  # 1 of 2 votes: >= 0.5


def test_shift_mask_empties_what_leaves_the_frame() -> None:
    mask = square((4, 4), 0, 2, 2)
    expected = np.zeros((4, 4), dtype=bool)
    expected[0:2, 3] = True  # one of the two columns is still in the frame
    np.testing.assert_array_equal(shift_mask(mask, 0.4, 1.2), expected)
    assert shift_mask(mask, 0, 1.6).sum() == 0  # rounded to 2 px: all of it left


def test_foreground_is_where_the_classes_together_outweigh_the_background() -> None:
    # Object A: background 0.3, each of 10 classes 0.07: no single class beats the
    # background, but together they do (0.7). Object B: background 0.6, classes 0.4.
    tags, ids = two_objects()
    probs = np.zeros((11, *ids.shape))
    probs[0] = 1.0
    a, b = ids == 1, ids == 2
    probs[:, a] = np.array([0.3] + [0.07] * 10)[:, None]
    probs[:, b] = np.array([0.6] + [0.04] * 10)[:, None]
    prediction = ClipPrediction(tags=tags, probs=probs)
    mass = clip_instances(prediction, InferenceConfig(min_area=0.0), prior_class=0)
    assert len(mass) == 1
    np.testing.assert_array_equal(mass[0].masks, a)
    argmax = InferenceConfig(min_area=0.0, foreground="argmax")
    assert clip_instances(prediction, argmax, prior_class=0) == []
    with pytest.raises(ConfigError, match="foreground"):
        InferenceConfig(foreground="all")


def test_refined_masks_snap_to_each_frames_colour_edges(tmp_path: Path) -> None:
    image, square_mask, coarse = noisy_square()
    paths = []
    for t in range(2):
        paths.append(str(tmp_path / f"{t}.png"))
        Image.fromarray(image).save(paths[-1])  # lossless: the test image exactly
    video = VideoFrames(video_id=1, name="v", paths=tuple(paths), height=32, width=40)
    # One instance, coarse (2 px too wide on every side) in frame 0 and absent in frame 1.
    masks_ = [np.stack([coarse, np.zeros_like(coarse)])]
    assert refine_video_masks(masks_, video, "none", 20.0) is masks_
    (snapped,) = refine_video_masks(masks_, video, "bilateral", 20.0)
    np.testing.assert_array_equal(snapped[0], square_mask)
    assert not snapped[1].any()  # an empty mask stays empty
    np.testing.assert_array_equal(masks_[0][0], coarse)  # the input is not modified
    # The colour bandwidth is the setting's: CutLER's 5 does not pull the coarse mask back.
    (narrow,) = refine_video_masks(masks_, video, "bilateral", 5.0)
    assert mask_iou(narrow[0], square_mask) < 0.95
    with pytest.raises(ConfigError, match="refine"):
        InferenceConfig(refine="crf")
    with pytest.raises(ConfigError, match="refine_sigma_rgb"):
        InferenceConfig(refine_sigma_rgb=0.0)
