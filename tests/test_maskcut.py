"""MaskCut (uvis.proposals) on constructed features and images whose answers are known by hand.

Feature maps are built from a label grid: every label gets its own direction (orthonormal, so
different labels have cosine ~0 < tau and the same label cosine ~1 > tau) plus small noise.
MaskCut must then cut along the label boundaries.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from uvis.errors import ConfigError
from uvis.proposals import maskcut as maskcut_module
from uvis.proposals.maskcut import (
    MaskCutConfig,
    affinity,
    bipartition,
    is_new_object,
    maskcut,
    maskcut_patches,
    second_smallest_eigenvector,
    seed_component,
    split_piece,
    upsample_mask,
    within_area_cap,
)
from uvis.proposals.refine import agrees_with_refinement, bilateral_refine, mask_iou, refine_mask

FEAT_DIM = 16
OBJECT_RGB = (200, 60, 60)
BACKGROUND_RGB = (40, 90, 40)


def label_feats(labels: np.ndarray, noise: float = 0.02, seed: int = 0) -> torch.Tensor:
    """Features ``(1, h*w, FEAT_DIM)``: one orthonormal direction per label, plus noise."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(FEAT_DIM, FEAT_DIM)))[0][: labels.max() + 1]
    feats = directions[labels.reshape(-1)] + noise * rng.normal(size=(labels.size, FEAT_DIM))
    return torch.from_numpy(feats[None]).float()


def two_colour_image(object_mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(H, W, 3)`` uint8: OBJECT_RGB on the mask, BACKGROUND_RGB elsewhere, noise of std 2."""
    rng = np.random.default_rng(seed)
    rgb = np.where(object_mask[..., None], OBJECT_RGB, BACKGROUND_RGB).astype(float)
    return np.clip(rgb + rng.normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)


def disc(size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def patch_cover(mask: np.ndarray, patch: int) -> np.ndarray:
    """Patch grid of a pixel mask: a patch is set when more than half its pixels are."""
    g_h, g_w = mask.shape[0] // patch, mask.shape[1] // patch
    return mask.reshape(g_h, patch, g_w, patch).mean(axis=(1, 3)) > 0.5


def as_set(masks: list[np.ndarray]) -> set[bytes]:
    return {m.astype(bool).tobytes() for m in masks}


# --------------------------------------------------------------------------------------------
# Steps 1-2: graph and eigenvector


def test_affinity_binarises_cosine_and_cuts_removed_patches() -> None:
    # cos(f0, f1) = cos(f1, f2) = 1/sqrt(2) > 0.5; cos(f0, f2) = 0.
    feats = torch.tensor([[[1.0, 0.0], [3.0, 3.0], [0.0, 2.0]]])
    eps = 1e-5
    expected = np.array([[1, 1, eps], [1, 1, 1], [eps, 1, 1]])
    np.testing.assert_array_equal(affinity(feats, None, 0.5, eps)[0].numpy(), expected)
    removed = torch.tensor([[False, False, True]])
    expected_removed = np.array([[1, 1, eps], [1, 1, eps], [eps, eps, eps]])
    np.testing.assert_array_equal(affinity(feats, removed, 0.5, eps)[0].numpy(), expected_removed)
    # The threshold is strict: orthogonal features (cosine exactly 0) at tau = 0 get eps.
    assert affinity(feats, None, 0.0, eps)[0, 0, 2].item() == eps


def test_batched_eigenvector_equals_scipy_generalised_solution() -> None:
    rng = np.random.default_rng(3)
    batch, n = 5, 40
    feats = torch.from_numpy(rng.normal(size=(batch, n, 8)))
    removed = torch.from_numpy(rng.random((batch, n)) < 0.2)
    removed[0] = False
    graphs = affinity(feats, removed, 0.1, 1e-5)
    vectors = second_smallest_eigenvector(graphs).numpy()
    for graph, vector in zip(graphs.numpy(), vectors, strict=True):
        degree = np.diag(graph.sum(axis=1))
        values, reference = scipy.linalg.eigh(degree - graph, degree, subset_by_index=[1, 2])
        assert values[1] - values[0] > 1e-6  # a simple eigenvalue, so the vector is unique
        reference = reference[:, 0]
        sign = np.sign(reference @ vector)
        np.testing.assert_allclose(sign * vector, reference, atol=1e-8)


# --------------------------------------------------------------------------------------------
# Steps 3-4: bipartition, corner rule, seed component


def test_bipartition_takes_side_of_largest_magnitude() -> None:
    # 2 x 3 grid; mean 0.5, so the upper side is {0, 1}; |x| peaks at index 0 (upper side).
    fg, seed = bipartition(np.array([5.0, 1.0, 0.0, 0.0, -1.0, -2.0]), (2, 3))
    np.testing.assert_array_equal(fg, [[True, True, False], [False, False, False]])
    assert seed == 0
    # |x| peaks at index 5 (-6), on the side below the mean -11/12, which is {4, 5} (one
    # corner, so no flip); the seed is then argmax(-x) = 5.
    fg, seed = bipartition(np.array([1.0, 0.5, 0.0, 0.0, -1.0, -6.0]), (2, 3))
    np.testing.assert_array_equal(fg, [[False, False, False], [False, True, True]])
    assert seed == 5


def test_bipartition_flips_when_foreground_holds_corners() -> None:
    # 3 x 3 grid: corners 4, edges -1, centre -3; mean 1, so the upper side is the 4 corners,
    # where |x| peaks. Four corners >= 3: flip to the other side; seed = argmax(-x) = centre.
    vector = np.array([4.0, -1.0, 4.0, -1.0, -3.0, -1.0, 4.0, -1.0, 4.0])
    fg, seed = bipartition(vector, (3, 3))
    np.testing.assert_array_equal(
        fg, [[False, True, False], [True, True, True], [False, True, False]]
    )
    assert seed == 4


def test_seed_component_is_four_connected() -> None:
    fg = np.array([[True, False, False], [False, True, True], [False, False, False]])
    np.testing.assert_array_equal(seed_component(fg, 0), fg & (np.arange(9) == 0).reshape(3, 3))
    np.testing.assert_array_equal(
        seed_component(fg, 5), [[False, False, False], [False, True, True], [False, False, False]]
    )
    with pytest.raises(ValueError, match="not in the foreground"):
        seed_component(fg, 2)


# --------------------------------------------------------------------------------------------
# Steps 1-5 end to end on constructed feature maps


def test_single_object_is_cut_exactly() -> None:
    labels = np.zeros((12, 12), int)
    labels[3:7, 4:9] = 1
    masks = maskcut_patches(label_feats(labels), (12, 12), MaskCutConfig())[0]
    # The second cut only finds the removed object again: a repeat, dropped.
    assert len(masks) == 1
    np.testing.assert_array_equal(masks[0], labels == 1)


def test_corner_rule_flips_a_large_object_framed_by_background() -> None:
    # An 8 x 8 object framed by a one-patch background border: the border has the smaller
    # volume, so the eigenvector peaks there and the naive choice is the border (4 corners).
    labels = np.ones((10, 10), int)
    labels[[0, -1], :] = 0
    labels[:, [0, -1]] = 0
    feats = label_feats(labels)
    vector = second_smallest_eigenvector(affinity(feats, None, 0.15, 1e-5))[0].numpy()
    upper = vector > vector.mean()
    naive = upper if upper[np.argmax(np.abs(vector))] else ~upper
    np.testing.assert_array_equal(naive.reshape(10, 10), labels == 0)
    masks = maskcut_patches(feats, (10, 10), MaskCutConfig())[0]
    np.testing.assert_array_equal(masks[0], labels == 1)


@pytest.mark.parametrize(
    ("corners", "flipped"),
    [(2, False), (3, True)],
    ids=["left-band-2-corners-kept", "L-shape-3-corners-flipped"],
)
def test_corner_rule_threshold_is_three_corners(corners: int, flipped: bool) -> None:
    # A small region (the eigenvector's pick) touching 2 or 3 corners of a 10 x 10 grid.
    labels = np.zeros((10, 10), int)
    if corners == 2:
        labels[:, :3] = 1  # left band: top-left and bottom-left corners
    else:
        labels[0, :] = 1  # top row and left column: three corners
        labels[:, 0] = 1
    first = maskcut_patches(label_feats(labels), (10, 10), MaskCutConfig())[0][0]
    np.testing.assert_array_equal(first, labels == (0 if flipped else 1))


def test_two_objects_give_two_masks_and_no_third() -> None:
    labels = np.zeros((12, 12), int)
    labels[2:6, 2:6] = 1
    labels[7:10, 6:10] = 2
    for seed in range(3):  # the noise decides which object is cut first
        masks = maskcut_patches(label_feats(labels, seed=seed), (12, 12), MaskCutConfig())[0]
        assert as_set(masks) == as_set([labels == 1, labels == 2])


def test_only_the_seed_blob_of_a_disconnected_foreground_is_kept() -> None:
    labels = np.zeros((12, 12), int)
    labels[2:5, 2:5] = 1  # two disjoint blobs with the same feature
    labels[7:10, 6:10] = 1
    blobs = [np.zeros((12, 12), bool), np.zeros((12, 12), bool)]
    blobs[0][2:5, 2:5] = True
    blobs[1][7:10, 6:10] = True
    feats = label_feats(labels)
    first = maskcut_patches(feats, (12, 12), MaskCutConfig(num_masks=1))[0]
    assert len(first) == 1 and as_set(first) <= as_set(blobs)
    assert as_set(maskcut_patches(feats, (12, 12), MaskCutConfig())[0]) == as_set(blobs)


def test_batch_gives_the_same_masks_as_single_images() -> None:
    grids = [np.zeros((10, 10), int) for _ in range(3)]
    grids[0][2:5, 3:7] = 1
    grids[1][1:4, 1:4] = 1
    grids[1][6:9, 5:9] = 2
    grids[2][5:9, 0:4] = 1
    feats = [label_feats(g, seed=i) for i, g in enumerate(grids)]
    batched = maskcut_patches(torch.cat(feats), (10, 10), MaskCutConfig())
    for single, together in zip(feats, batched, strict=True):
        alone = maskcut_patches(single, (10, 10), MaskCutConfig())[0]
        assert len(alone) == len(together)
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_array_equal(a, b)


def test_first_mask_is_kept_even_when_tiny() -> None:
    labels = np.zeros((12, 12), int)
    labels[5, 6] = 1  # one patch: 1/144 of the grid, under min_area_frac = 1 %
    masks = maskcut_patches(label_feats(labels), (12, 12), MaskCutConfig())[0]
    assert len(masks) == 1
    np.testing.assert_array_equal(masks[0], labels == 1)


def test_overlapping_candidates_emit_only_their_unclaimed_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Step 5's bookkeeping with the cut stubbed: the candidates come from a fixed list.
    first = np.zeros((10, 10), bool)
    first[0:4, 0:4] = True  # 16 patches
    second = np.zeros((10, 10), bool)
    second[2:6, 2:8] = True  # 24 patches, 4 of them in `first`: IoU 4 / 36, a new object
    third = np.zeros((10, 10), bool)
    third[9, 9] = True  # 1 % of the grid: too small, ends the loop
    candidates = iter([first, second, third])
    monkeypatch.setattr(maskcut_module, "seed_component", lambda fg, seed: next(candidates))
    removed_seen = []
    real_affinity = maskcut_module.affinity

    def recording_affinity(
        feats: torch.Tensor, removed: torch.Tensor, tau: float, eps: float
    ) -> torch.Tensor:
        removed_seen.append(removed[0].numpy().reshape(10, 10).copy())
        return real_affinity(feats, removed, tau, eps)

    monkeypatch.setattr(maskcut_module, "affinity", recording_affinity)
    feats = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 100, 8)))
    masks = maskcut_patches(feats, (10, 10), MaskCutConfig())[0]
    assert len(masks) == 2
    np.testing.assert_array_equal(masks[0], first)
    np.testing.assert_array_equal(masks[1], second & ~first)  # 20 patches
    # The graph loses whole candidates, not only their emitted parts.
    np.testing.assert_array_equal(removed_seen[2], first | second)


def test_new_object_rule() -> None:
    earlier = np.zeros((10, 10), bool)
    earlier[0:4, 0:4] = True  # 16 patches
    candidate = np.zeros((10, 10), bool)
    candidate[0:4, 0:2] = True
    candidate[0:4, 4:6] = True  # IoU 8 / 24
    assert is_new_object(candidate, candidate & ~earlier, [earlier], 0.01, 0.5)
    assert not is_new_object(candidate, candidate & ~earlier, [earlier], 0.01, 0.3)
    same_half = earlier.copy()
    same_half[0:4, 2:4] = False  # IoU exactly 0.5: not "> 0.5", kept
    assert is_new_object(same_half, same_half, [earlier], 0.01, 0.5)
    one_patch = np.zeros((10, 10), bool)
    one_patch[9, 9] = True  # 1 % of the grid: "<= 1 %" is too small
    assert not is_new_object(one_patch, one_patch, [earlier], 0.01, 0.5)
    one_patch[9, 8] = True
    assert is_new_object(one_patch, one_patch, [earlier], 0.01, 0.5)


# --------------------------------------------------------------------------------------------
# Steps 6-8: upsampling, refinement, holes, agreement


def test_upsample_mask_nearest() -> None:
    mask = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(upsample_mask(mask, (4, 6)), np.kron(mask, np.ones((2, 3))))
    # 5 rows from 2: rows y * 2 // 5 = 0, 0, 0, 1, 1.
    np.testing.assert_array_equal(upsample_mask(mask, (5, 1))[:, 0], [1, 1, 1, 0, 0])


def test_bilateral_refinement_snaps_blocky_mask_to_object_edges() -> None:
    size, patch = 96, 8
    truth = disc(size, 45.3, 50.1, 21.0)
    image = two_colour_image(truth)
    blocky = upsample_mask(patch_cover(truth, patch), (size, size))
    refined = bilateral_refine(image, blocky[None])[0]
    assert mask_iou(blocky, truth) < 0.9
    assert mask_iou(refined, truth) > 0.98
    # A mask already on the edges stays there.
    assert mask_iou(bilateral_refine(image, truth[None])[0], truth) > 0.99


def test_refine_none_keeps_mask_and_hole_filling_is_switchable() -> None:
    size = 64
    outer, hole = disc(size, 32, 32, 20), disc(size, 32, 32, 9)
    ring = outer & ~hole
    image = two_colour_image(ring)
    kept = refine_mask(image, ring[None], method="none", fill_holes=False)[0]
    np.testing.assert_array_equal(kept, ring)
    filled = refine_mask(image, ring[None], method="none", fill_holes=True)[0]
    np.testing.assert_array_equal(filled, outer)
    # Bilateral refinement of a ring already on its edges keeps the hole unless filling is asked.
    refined = refine_mask(image, ring[None], method="bilateral", fill_holes=False)[0]
    assert np.count_nonzero(refined & hole) < 0.05 * np.count_nonzero(hole)
    assert mask_iou(refined, ring) > 0.98


def test_agreement_with_refinement_rule() -> None:
    coarse = np.zeros((8, 8), bool)
    coarse[0:4, 0:4] = True  # 16 pixels
    half = np.zeros((8, 8), bool)
    half[0:2, 0:4] = True  # IoU 8 / 16 = 0.5: kept (CutLER drops below 0.5)
    quarter = np.zeros((8, 8), bool)
    quarter[0:1, 0:4] = True  # IoU 0.25
    assert agrees_with_refinement(coarse, half, 0.5)
    assert not agrees_with_refinement(coarse, quarter, 0.5)
    assert not agrees_with_refinement(coarse, np.zeros_like(coarse), 0.0)


def test_maskcut_pipeline_recovers_pixel_object() -> None:
    size, patch = 96, 8
    truth = disc(size, 45.3, 50.1, 21.0)
    cover = patch_cover(truth, patch)
    image = two_colour_image(truth)[None]
    feats = label_feats(cover.astype(int))
    grid = (size // patch, size // patch)
    refined = maskcut(image, feats, grid, MaskCutConfig())[0]
    assert len(refined) == 1 and mask_iou(refined[0], truth) > 0.98
    coarse = maskcut(image, feats, grid, MaskCutConfig(refine="none"))[0]
    np.testing.assert_array_equal(coarse[0], upsample_mask(cover, (size, size)))


def test_size_cap_drops_only_the_masks_above_it() -> None:
    labels = np.zeros((12, 12), int)
    labels[1:8, 1:8] = 1  # 49 of 144 patches: 34 % of the image
    labels[9:11, 9:11] = 2  # 4 patches: 2.8 %
    image = two_colour_image(upsample_mask(labels > 0, (48, 48)))[None]
    feats = label_feats(labels)
    uncapped = maskcut(image, feats, (12, 12), MaskCutConfig(refine="none"))[0]
    capped = maskcut(image, feats, (12, 12), MaskCutConfig(refine="none", max_area_frac=0.3))[0]
    big, small = (upsample_mask(labels == k, (48, 48)) for k in (1, 2))
    assert as_set(uncapped) == as_set([big, small])
    assert as_set(capped) == as_set([small])
    assert within_area_cap(big, 0.35) and not within_area_cap(big, 0.34)


def halo_piece() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels of a 12 x 12 grid: two objects (label 1) inside one band of halo (label 2) on a
    background (label 0); returns the labels, the piece (objects and halo) and the two objects."""
    labels = np.zeros((12, 12), int)
    labels[2:10, 1:11] = 2
    first, second = np.zeros((2, 12, 12), bool)
    first[3:5, 2:4] = True
    second[7:9, 7:10] = True
    labels[first | second] = 1
    return labels, labels > 0, first, second


def test_split_piece_cuts_the_objects_out_of_their_halo() -> None:
    # Inside the piece the objects' keys agree with each other and not with the halo: the
    # sub-cut separates objects from halo, and the seed's 4-connected part is one object.
    labels, piece, first, second = halo_piece()
    feats = label_feats(labels)[0]
    cfg = MaskCutConfig(tau=0.5, num_masks=5, min_area_frac=0.01)
    parts = split_piece(feats, piece, cfg)
    assert as_set(parts[:2]) == as_set([first, second])
    assert 2 < len(parts) <= cfg.num_masks
    stacked = np.stack(parts)
    assert stacked.sum(axis=0).max() == 1  # disjoint
    assert not (stacked.any(axis=0) & ~piece).any()  # inside the piece


def test_split_piece_returns_a_piece_too_small_to_cut_whole() -> None:
    piece = np.zeros((12, 12), bool)
    piece[5, 5] = True
    feats = label_feats(piece.astype(int))[0]
    parts = split_piece(feats, piece, MaskCutConfig())
    assert len(parts) == 1 and np.array_equal(parts[0], piece)


def test_oversized_cuts_are_replaced_by_their_parts() -> None:
    # Off, the image's one kept cut takes the halo band (70 of 144 patches); on, that mask gives
    # way to its parts, and a threshold at the mask's own size leaves it whole.
    labels, *_ = halo_piece()
    feats = label_feats(labels)
    whole = maskcut_patches(feats, (12, 12), MaskCutConfig(tau=0.5, num_masks=2))[0]
    assert len(whole) == 1 and whole[0].mean() > 0.3
    cfg = MaskCutConfig(tau=0.5, num_masks=2, split_area_frac=0.3)
    parts = split_piece(feats[0], whole[0], cfg)
    assert len(parts) == 2 and all(0 < p.sum() < whole[0].sum() for p in parts)
    assert as_set(maskcut_patches(feats, (12, 12), cfg)[0]) == as_set(parts)
    above = MaskCutConfig(tau=0.5, num_masks=2, split_area_frac=whole[0].mean())
    assert as_set(maskcut_patches(feats, (12, 12), above)[0]) == as_set(whole)


# --------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tau": 1.5},
        {"num_masks": 0},
        {"eps": 0.0},
        {"refine": "crf"},
        {"max_iou": 2.0},
        {"max_area_frac": 0.0},
        {"max_area_frac": 1.5},
        {"split_area_frac": 0.0},
    ],
)
def test_bad_config_raises_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=f"maskcut.{next(iter(kwargs))}"):
        MaskCutConfig(**kwargs)


def test_bad_features_raise_value_error() -> None:
    feats = torch.zeros(1, 12, 4)
    with pytest.raises(ValueError, match="12 patches but the grid is 4 x 4"):
        maskcut_patches(feats, (4, 4), MaskCutConfig())
    feats = torch.ones(1, 16, 4)
    feats[0, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        maskcut_patches(feats, (4, 4), MaskCutConfig())
    with pytest.raises(ValueError, match="images but features"):
        maskcut(np.zeros((2, 32, 32, 3), np.uint8), torch.ones(1, 16, 4), (4, 4), MaskCutConfig())
