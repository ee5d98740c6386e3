"""Ignore regions in the VIS model's class loss: queries covering one are not taught "no object"."""

from __future__ import annotations

import pytest
import torch

from uvis.model import create_vis_model
from uvis.model.mask2former import queries_on_regions

torch.set_num_threads(1)


def block(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros(h, w)
    mask[y0:y1, x0:x1] = 1
    return mask


def test_queries_on_regions_by_hand() -> None:
    logits = torch.full((3, 4, 4), -5.0)
    logits[0, :2, :2] = 5.0  # covers the region exactly
    logits[1] = 5.0  # the whole frame: IoU 4 / 16 with the region
    # query 2 predicts nothing
    region = block(16, 16, 0, 8, 0, 8)[None]  # the input is 4 times the logits' size
    assert queries_on_regions(logits, region).tolist() == [True, False, False]
    assert queries_on_regions(logits, region, iou_threshold=0.25).tolist() == [True, True, False]
    assert queries_on_regions(logits, torch.zeros(0, 16, 16)).tolist() == [False] * 3
    # A region covering under half of a logit cell does not count in that cell.
    thin = block(16, 16, 0, 8, 0, 1)[None]
    assert queries_on_regions(logits, thin, iou_threshold=0.01).tolist() == [False] * 3


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    model = create_vis_model("uvis-smoke", 3).train()
    pixels = model.pixel_batch([torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)] * 2)
    out = model(pixels)
    masks = [block(64, 64, 0, 16, 0, 16)[None], torch.zeros(0, 64, 64)]
    labels = [torch.tensor([1]), torch.zeros(0, dtype=torch.int64)]
    return model, out, masks, labels


def test_empty_ignore_regions_give_the_plain_loss(batch) -> None:
    model, out, masks, labels = batch
    torch.manual_seed(1)  # the mask losses sample points at random
    plain = model.losses(out, masks, labels)
    torch.manual_seed(1)
    empty = model.losses(out, masks, labels, [torch.zeros(0, 64, 64)] * 2)
    assert plain.keys() == empty.keys() and len(plain) == 3 * model.config.decoder_layers
    for key in plain:
        torch.testing.assert_close(empty[key], plain[key], rtol=0, atol=0)


def test_a_query_on_an_ignore_region_leaves_the_class_loss(batch) -> None:
    model, out, masks, labels = batch
    q = model.config.num_queries - 1
    # Query q predicts the bottom-right block of image 0, far from its one target.
    out.masks_queries_logits.data[0, q] = -10.0
    out.masks_queries_logits.data[0, q, 8:, 8:] = 10.0
    matcher = model.mask2former.criterion.matcher
    torch.manual_seed(1)
    (rows, _), _ = matcher(out.masks_queries_logits, out.class_queries_logits, masks, labels)
    assert q not in rows.tolist()
    ignore = [block(64, 64, 32, 64, 32, 64)[None], torch.zeros(0, 64, 64)]

    def class_loss(with_ignore: bool) -> float:
        torch.manual_seed(1)  # the matcher and the mask losses sample points at random
        found = model.losses(out, masks, labels, ignore if with_ignore else None)
        return found["loss_cross_entropy"].item()

    before = class_loss(True), class_loss(False)
    out.class_queries_logits.data[0, q] += torch.tensor([3.0, -2.0, 1.0, -4.0])
    after = class_loss(True), class_loss(False)
    assert after[0] == pytest.approx(before[0], abs=1e-6)  # q is out of the ignoring loss
    assert abs(after[1] - before[1]) > 1e-3  # and in the plain one
    # With q's logits left out, the rest is the down-weighted cross-entropy of the others.
    weight = model.mask2former.criterion.empty_weight
    targets = torch.full((2, model.config.num_queries), 3)
    targets[0, rows] = 1
    targets[0, q] = -100
    expected = torch.nn.functional.cross_entropy(
        out.class_queries_logits.transpose(1, 2), targets, weight=weight
    )
    class_weight = model.config.class_weight
    assert after[0] == pytest.approx(class_weight * expected.item(), rel=1e-5)
