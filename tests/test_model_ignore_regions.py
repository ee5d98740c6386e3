"""Ignore regions in the Mask2Former criterion (uvis's addition; see
``DistributedMask2FormerLoss.forward``): which queries they silence and what the losses become."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from uvis.model import create_vis_model
from uvis.model.mask2former import ignored_queries

torch.set_num_threads(1)


def halves_logits() -> torch.Tensor:
    """One image, three queries at 8 x 8: left half, right half, nothing (logits +-5)."""
    logits = torch.full((1, 3, 8, 8), -5.0)
    logits[0, 0, :, :4] = 5.0
    logits[0, 1, :, 4:] = 5.0
    return logits


def right_half(size: int = 32) -> torch.Tensor:
    """An ignore region covering the right half at the padded input's size (4x the logits)."""
    region = torch.zeros(1, size, size)
    region[:, :, size // 2 :] = 1.0
    return region


def matched(*queries: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.tensor(queries, dtype=torch.int64), torch.arange(len(queries)))]


def test_ignored_queries_by_hand() -> None:
    logits = halves_logits()
    # query 1 lies exactly on the region (IoU 1); query 0 is disjoint; query 2 predicts nothing
    assert ignored_queries(logits, [right_half()], matched(0), 0.5).tolist() == [
        [False, True, False]
    ]
    # a matched query is taught its target, whatever it overlaps
    assert ignored_queries(logits, [right_half()], matched(1), 0.5).tolist() == [[False] * 3]
    # a region covering the right quarter only: IoU 0.5 with query 1
    quarter = torch.zeros(1, 32, 32)
    quarter[:, :, 24:] = 1.0
    assert ignored_queries(logits, [quarter], matched(0), 0.5)[0, 1]
    assert not ignored_queries(logits, [quarter], matched(0), 0.51)[0, 1]
    assert not ignored_queries(logits, [torch.zeros(0, 32, 32)], matched(0), 0.5).any()


@pytest.fixture(scope="module")
def criterion():
    return create_vis_model("uvis-tiny", 3).mask2former.criterion


def inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 6, 8, 8, generator=gen)
    classes = torch.randn(2, 6, 4, generator=gen)
    masks = [(torch.rand(2, 32, 32, generator=gen) > 0.5).float(), torch.zeros(0, 32, 32)]
    labels = [torch.tensor([0, 2]), torch.zeros(0, dtype=torch.int64)]
    return logits, classes, masks, labels


def losses(criterion, ignore=None, seed: int = 0):
    torch.manual_seed(seed)  # the matcher and the mask terms sample points
    logits, classes, masks, labels = inputs()
    return criterion(logits, classes, masks, labels, None, ignore_masks=ignore), (classes, logits)


def test_without_ignored_queries_the_losses_are_transformers(criterion) -> None:
    plain, _ = losses(criterion)
    # a region no predicted mask reaches (one pixel) goes through the new code path and must
    # give transformers' numbers exactly
    speck = torch.zeros(1, 32, 32)
    speck[0, 0, 0] = 1.0
    with_speck, _ = losses(criterion, [speck, torch.zeros(0, 32, 32)])
    assert plain.keys() == with_speck.keys()
    for key in plain:
        torch.testing.assert_close(with_speck[key], plain[key])


def test_queries_on_ignore_regions_leave_the_class_loss(criterion) -> None:
    logits, classes, masks, labels = inputs()
    # image 1 has no target: every query is unmatched; cover query 3's own predicted mask
    region = (logits[1, 3] > 0).float().repeat_interleave(4, 0).repeat_interleave(4, 1)[None]
    got, _ = losses(criterion, [torch.zeros(0, 32, 32), region])
    plain, _ = losses(criterion)
    torch.manual_seed(0)
    indices = criterion.matcher(logits, classes, masks, labels)
    target = torch.full((2, 6), 3)
    target[0, indices[0][0]] = labels[0][indices[0][1]]
    dropped = ignored_queries(logits, [torch.zeros(0, 32, 32), region], indices, 0.5)
    assert dropped.sum() >= 1 and dropped[1, 3]
    target[dropped] = -100
    expected = F.cross_entropy(classes.transpose(1, 2), target, weight=criterion.empty_weight)
    torch.testing.assert_close(got["loss_cross_entropy"], expected)
    assert not torch.isclose(got["loss_cross_entropy"], plain["loss_cross_entropy"])
    torch.testing.assert_close(got["loss_mask"], plain["loss_mask"])  # mask terms unchanged
    torch.testing.assert_close(got["loss_dice"], plain["loss_dice"])


def test_the_model_weights_the_losses_with_or_without_ignore_regions() -> None:
    model = create_vis_model("uvis-tiny", 3).train()
    torch.manual_seed(1)
    batch = model.pixel_batch([torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)])
    outputs = model(batch)
    masks = [(torch.rand(1, 64, 64) > 0.5).float()]
    labels = [torch.tensor([1])]
    torch.manual_seed(2)
    plain = model.losses(outputs, masks, labels)
    torch.manual_seed(2)
    empty = model.losses(outputs, masks, labels, ignore_masks=[torch.zeros(0, 64, 64)])
    assert plain.keys() == empty.keys() and len(plain) > 3  # with every decoder layer's terms
    for key in plain:
        torch.testing.assert_close(empty[key], plain[key])
    weights = model.mask2former.weight_dict
    assert weights["loss_cross_entropy"] != 1.0  # the weighting is exercised
