"""The spatio-temporal tagging loss (eqs. 1-6) on constructed tags with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uvis.tagvis.data import sample_instance_pixels
from uvis.tagvis.losses import (
    TERMS,
    frame_mean_tags,
    gather_tags,
    instance_mean_tags,
    spatial_inter_instance_loss,
    spatial_intra_instance_loss,
    tagging_loss,
    temporal_instance_grouping_loss,
    temporal_instance_separation_loss,
)

G = 3.0


def instance_map() -> np.ndarray:
    """Two frames 4x6: background 0, instance 1 a 2x2 square moving right by 2, instance 2 a
    column at the right edge in both frames."""
    ids = np.zeros((2, 4, 6), dtype=np.int64)
    ids[0, 1:3, 0:2] = 1
    ids[1, 1:3, 2:4] = 1
    ids[:, :, 5] = 2
    return ids


def sampled(tag_of_instance: dict[int, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tags of 5 sampled pixels per instance and frame of :func:`instance_map`, from a tag map
    holding ``tag_of_instance[n]`` on every pixel of instance ``n``."""
    ids = instance_map()
    tag_map = torch.zeros(ids.shape)
    for n, tag in tag_of_instance.items():
        tag_map[torch.from_numpy(ids == n)] = tag
    pixels, present = sample_instance_pixels(ids, 3, 5, np.random.default_rng(0))
    assert present.all()
    tags = gather_tags(tag_map, torch.from_numpy(pixels))
    # Every sampled pixel lies in its instance.
    for n in range(3):
        for t in range(2):
            assert (ids[t].reshape(-1)[pixels[n, t]] == n).all()
    return tags, torch.from_numpy(present)


def test_a_perfect_separation_has_zero_loss_in_every_term() -> None:
    tags, present = sampled({0: 0.0, 1: 3.0, 2: 6.5})
    result = tagging_loss(tags, present, margin=G)
    for name in TERMS:
        assert result.terms[name].item() == pytest.approx(0.0, abs=1e-6), name
    assert result.total.item() == pytest.approx(0.0, abs=1e-6)


def test_merged_instances_are_penalised_by_the_separation_terms() -> None:
    tags, present = sampled({0: 0.0, 1: 3.0, 2: 3.0})  # instances 1 and 2 share a tag
    result = tagging_loss(tags, present, margin=G)
    assert result.terms["spatial_inter"].item() == pytest.approx(G)  # the one pair at gap 0
    assert result.terms["temporal_separation"].item() == pytest.approx(2 * G)  # in 2 frames
    assert result.terms["spatial_intra"].item() == pytest.approx(0.0, abs=1e-6)
    assert result.terms["temporal_grouping"].item() == pytest.approx(0.0, abs=1e-6)
    assert result.total.item() == pytest.approx(3 * G)


def test_hand_computed_values_on_a_tiny_clip() -> None:
    # Instance 0: frame 0 tags (0, 2), frame 1 tags (4, 6): h_0 = 3, h_00 = 1, h_01 = 5.
    # Instance 1: tag 4 everywhere (h_1 = 4). Both visible in both frames.
    tags = torch.tensor([[[0.0, 2.0], [4.0, 6.0]], [[4.0, 4.0], [4.0, 4.0]]])
    present = torch.ones(2, 2, dtype=torch.bool)
    means = instance_mean_tags(tags, present)
    frame_means = frame_mean_tags(tags, present)
    torch.testing.assert_close(means, torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(frame_means, torch.tensor([[1.0, 5.0], [4.0, 4.0]]))
    # Eq. 2: (1/N) * ((3-0)^2 + (3-2)^2 + (3-4)^2 + (3-6)^2 + 0) = 20 / 2.
    assert spatial_intra_instance_loss(tags, present, means).item() == pytest.approx(10.0)
    # Eq. 3: max(0, 3 - |3 - 4|) = 2.
    assert spatial_inter_instance_loss(means, present, G).item() == pytest.approx(2.0)
    # Eq. 4: (1/N) * ((3-1)^2 + (3-5)^2 + 0) = 8 / 2.
    assert temporal_instance_grouping_loss(means, frame_means, present).item() == pytest.approx(4.0)
    # Eq. 5: frame 0: max(0, 3 - |1 - 4|) = 0; frame 1: max(0, 3 - |5 - 4|) = 2.
    assert temporal_instance_separation_loss(frame_means, present, G).item() == pytest.approx(2.0)
    assert tagging_loss(tags, present, margin=G).total.item() == pytest.approx(18.0)


def test_absent_frames_and_instances_do_not_count() -> None:
    # Instance 0 visible in frame 0 only (its frame-1 entries are garbage); instance 1 in
    # frame 1 only; instance 2 nowhere (not one of the N instances).
    tags = torch.tensor(
        [[[1.0, 3.0], [99.0, -99.0]], [[50.0, 50.0], [2.0, 2.0]], [[7.0, 7.0], [7.0, 7.0]]]
    )
    present = torch.tensor([[True, False], [False, True], [False, False]])
    means = instance_mean_tags(tags, present)
    torch.testing.assert_close(means[:2], torch.tensor([2.0, 2.0]))
    # Eq. 2: (1 + 1 + 0) / N with N = 2 visible instances.
    assert spatial_intra_instance_loss(tags, present, means).item() == pytest.approx(1.0)
    # Eq. 3: only the pair (0, 1): max(0, 3 - 0) = 3; instance 2 has no pair.
    assert spatial_inter_instance_loss(means, present, G).item() == pytest.approx(3.0)
    # Eq. 5: instances 0 and 1 are never visible in the same frame.
    frame_means = frame_mean_tags(tags, present)
    assert temporal_instance_separation_loss(frame_means, present, G).item() == 0.0
    assert temporal_instance_grouping_loss(means, frame_means, present).item() == pytest.approx(0.0)


def test_a_disabled_term_adds_nothing_and_sends_no_gradient() -> None:
    tags = torch.tensor([[[0.0, 2.0], [4.0, 6.0]], [[4.0, 4.0], [4.0, 4.0]]], requires_grad=True)
    present = torch.ones(2, 2, dtype=torch.bool)
    full = tagging_loss(tags, present, margin=G)
    without = tagging_loss(tags, present, margin=G, enabled=frozenset(TERMS) - {"spatial_intra"})
    assert without.total.item() == pytest.approx(full.total.item() - 10.0)
    assert without.terms["spatial_intra"].item() == pytest.approx(10.0)  # still logged
    assert not without.terms["spatial_intra"].requires_grad
    only_intra = tagging_loss(tags, present, margin=G, enabled=frozenset({"spatial_intra"}))
    (grad,) = torch.autograd.grad(only_intra.total, tags)
    # d/dh' of (1/N) sum (h_n - h')^2 with h_n the mean: 2 (h' - h_n) / N (the mean's own
    # gradient sums to zero over the instance).
    expected = torch.tensor([[[-3.0, -1.0], [1.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(grad, expected)
    with pytest.raises(ValueError, match="unknown tagging loss terms"):
        tagging_loss(tags, present, margin=G, enabled=frozenset({"spectra"}))


def test_mean_reduction_hand_computed_on_the_tiny_clip() -> None:
    # The clip of test_hand_computed_values_on_a_tiny_clip, every term a mean.
    tags = torch.tensor([[[0.0, 2.0], [4.0, 6.0]], [[4.0, 4.0], [4.0, 4.0]]])
    present = torch.ones(2, 2, dtype=torch.bool)
    means = instance_mean_tags(tags, present)
    frame_means = frame_mean_tags(tags, present)
    # Eq. 2: instance 0's squared deviations 20 over its 4 pixels, instance 1's 0: (5 + 0) / 2.
    assert spatial_intra_instance_loss(tags, present, means, "mean").item() == pytest.approx(2.5)
    # Eq. 3: one pair.
    assert spatial_inter_instance_loss(means, present, G, "mean").item() == pytest.approx(2.0)
    # Eq. 4: instance 0: 8 over its 2 frames; instance 1: 0: (4 + 0) / 2.
    grouping = temporal_instance_grouping_loss(means, frame_means, present, "mean")
    assert grouping.item() == pytest.approx(2.0)
    # Eq. 5: (0 + 2) over the 2 (pair, frame) entries.
    separation = temporal_instance_separation_loss(frame_means, present, G, "mean")
    assert separation.item() == pytest.approx(1.0)
    total = tagging_loss(tags, present, margin=G, reduction="mean").total
    assert total.item() == pytest.approx(7.5)
    with pytest.raises(ValueError, match="unknown reduction"):
        tagging_loss(tags, present, margin=G, reduction="median")


def test_mean_reduction_does_not_grow_with_the_sample_size() -> None:
    # The same tags sampled 5 and 50 times per instance and frame: "sum" grows tenfold in
    # eq. 2, "mean" stays; with more frames eq. 5's sum grows and its mean stays.
    base = torch.tensor([[[0.0], [1.0]], [[0.5], [0.5]]])
    present = torch.ones(2, 2, dtype=torch.bool)
    small, large = base.expand(2, 2, 5), base.expand(2, 2, 50)
    for reduction, ratio in (("sum", 10.0), ("mean", 1.0)):
        a = tagging_loss(small, present, margin=G, reduction=reduction).terms["spatial_intra"]
        b = tagging_loss(large, present, margin=G, reduction=reduction).terms["spatial_intra"]
        assert b.item() == pytest.approx(ratio * a.item())
    longer = torch.cat([small, small], dim=1)
    both = torch.ones(2, 4, dtype=torch.bool)
    for reduction, ratio in (("sum", 2.0), ("mean", 1.0)):
        a = tagging_loss(small, present, margin=G, reduction=reduction)
        b = tagging_loss(longer, both, margin=G, reduction=reduction)
        sep_a, sep_b = a.terms["temporal_separation"], b.terms["temporal_separation"]
        assert sep_b.item() == pytest.approx(ratio * sep_a.item())
