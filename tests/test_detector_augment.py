"""CutLER's copy-paste on constructed frames whose outcome is known pixel by pixel."""

from __future__ import annotations

import pytest
import torch

from uvis.proposals.detector.augment import boxes_from_masks, copy_paste, paste_objects


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    mask = torch.zeros((height, width), dtype=torch.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def target_of(*mask_list: torch.Tensor) -> dict[str, torch.Tensor]:
    stack = torch.stack(mask_list) if mask_list else torch.zeros((0, 8, 8), dtype=torch.uint8)
    return {
        "boxes": boxes_from_masks(stack.bool()),
        "labels": torch.ones(len(stack), dtype=torch.int64),
        "masks": stack,
    }


def test_boxes_from_masks_are_tight_with_exclusive_ends() -> None:
    boxes = boxes_from_masks(torch.stack([box_mask(6, 9, 1, 3, 4, 8), box_mask(6, 9, 5, 6, 0, 1)]))
    assert boxes.tolist() == [[4, 1, 8, 3], [0, 5, 1, 6]]


def test_a_shrunk_object_lands_where_it_is_placed() -> None:
    image = torch.zeros((3, 8, 8))
    own = box_mask(8, 8, 0, 2, 0, 2)
    source = torch.ones((3, 8, 8))
    # The source's object fills its bottom-right quarter; halved, it is rows 2-3, cols 2-3 of
    # a 4 x 4 patch, which is placed at row 0, column 4 of the frame.
    new_image, new = paste_objects(
        image,
        target_of(own),
        source,
        box_mask(8, 8, 4, 8, 4, 8)[None],
        size=(4, 4),
        offset=(0, 4),
    )
    expected = box_mask(8, 8, 2, 4, 6, 8)
    assert torch.equal(new["masks"][0], own) and torch.equal(new["masks"][1], expected)
    assert new["boxes"].tolist() == [[0, 0, 2, 2], [6, 2, 8, 4]]
    assert new["labels"].tolist() == [1, 1]
    # Only the pasted object's pixels come from the source; the rest of the patch does not.
    assert torch.equal(new_image[0], expected.float())
    assert torch.equal(image, torch.zeros((3, 8, 8)))  # the input is left as it was


def test_a_paste_hides_what_it_covers_and_the_box_shrinks() -> None:
    own = box_mask(8, 8, 0, 4, 0, 4)  # 16 pixels; the paste covers 4 of them (a quarter)
    _, new = paste_objects(
        torch.zeros((3, 8, 8)),
        target_of(own),
        torch.ones((3, 8, 8)),
        box_mask(8, 8, 2, 6, 2, 6)[None],
        size=(8, 8),
        offset=(0, 0),
    )
    assert int(new["masks"][0].sum()) == 12 and not bool((new["masks"][0] & new["masks"][1]).any())
    assert new["boxes"][0].tolist() == [0, 0, 4, 4]  # the L-shape keeps its extent
    _, new = paste_objects(
        torch.zeros((3, 8, 8)),
        target_of(box_mask(8, 8, 0, 4, 0, 4)),
        torch.ones((3, 8, 8)),
        box_mask(8, 8, 0, 4, 2, 6)[None],  # covers columns 2-3: half of it, so not pasted
        size=(8, 8),
        offset=(0, 0),
    )
    assert len(new["masks"]) == 1 and int(new["masks"][0].sum()) == 16
    _, new = paste_objects(
        torch.zeros((3, 8, 8)),
        target_of(box_mask(8, 8, 0, 4, 0, 4)),
        torch.ones((3, 8, 8)),
        box_mask(8, 8, 0, 4, 1, 5)[None],  # covers columns 1-3: three quarters, not pasted
        size=(8, 8),
        offset=(0, 0),
    )
    assert len(new["masks"]) == 1


def test_a_mask_hidden_by_several_pastes_is_dropped() -> None:
    own = box_mask(4, 4, 0, 1, 0, 3)  # three pixels; each paste covers one (a third)
    pieces = torch.stack([box_mask(4, 4, 0, 1, x, x + 1) for x in range(3)])
    stack = own[None]
    target = {
        "boxes": boxes_from_masks(stack.bool()),
        "labels": torch.ones(1).long(),
        "masks": stack,
    }
    image, new = paste_objects(
        torch.zeros((3, 4, 4)), target, torch.ones((3, 4, 4)), pieces, size=(4, 4), offset=(0, 0)
    )
    assert torch.equal(new["masks"], pieces)
    assert float(image[:, 0, :3].min()) == 1.0 and float(image[:, 1:].max()) == 0.0


def test_a_paste_that_the_shrinking_empties_is_left_out() -> None:
    image, new = paste_objects(
        torch.zeros((3, 8, 8)),
        target_of(box_mask(8, 8, 0, 2, 0, 2)),
        torch.ones((3, 8, 8)),
        box_mask(8, 8, 7, 8, 7, 8)[None],  # one pixel, lost when the frame shrinks to 2 x 2
        size=(2, 2),
        offset=(6, 6),
    )
    assert len(new["masks"]) == 1 and float(image.max()) == 0.0


def test_a_paste_that_does_not_fit_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        paste_objects(
            torch.zeros((3, 8, 8)),
            target_of(box_mask(8, 8, 0, 2, 0, 2)),
            torch.ones((3, 8, 8)),
            box_mask(8, 8, 0, 2, 0, 2)[None],
            size=(4, 4),
            offset=(6, 0),
        )


def two_frame_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two flat frames (0.2 and 0.8) of 16 x 16, each with one small square."""
    images = [torch.full((3, 16, 16), 0.2), torch.full((3, 16, 16), 0.8)]
    targets = [target_of(box_mask(16, 16, 0, 3, 0, 3)), target_of(box_mask(16, 16, 12, 16, 12, 16))]
    return images, targets


def pasted_batch(rate: float, seed: int) -> tuple[list, list, list, list]:
    """The batch of :func:`two_frame_batch`, and it after :func:`copy_paste` at ``rate``."""
    images, targets = two_frame_batch()
    out = copy_paste(
        images,
        targets,
        rate=rate,
        scale_range=(0.5, 1.0),
        generator=torch.Generator().manual_seed(seed),
    )
    return images, targets, *out


def test_copy_paste_at_rate_zero_changes_nothing() -> None:
    images, targets, out_images, out_targets = pasted_batch(0.0, seed=0)
    assert all(a is b for a, b in zip(out_images, images, strict=True))
    assert all(a is b for a, b in zip(out_targets, targets, strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_copy_paste_pastes_the_mirrored_frames_object(seed: int) -> None:
    _, targets, out_images, out_targets = pasted_batch(1.0, seed)
    for i, (image, target) in enumerate(zip(out_images, out_targets, strict=True)):
        other = 0.8 if i == 0 else 0.2
        masks = target["masks"].bool()
        assert len(masks) == len(target["labels"]) == len(target["boxes"])
        assert torch.equal(target["boxes"], boxes_from_masks(masks))
        assert all(bool(m.any()) for m in masks)
        # The squares sit in opposite corners, so neither paste can cover the frame's own
        # square, and a square shrunk to half its side keeps a pixel: both frames get theirs.
        assert len(masks) == 2
        pasted = masks[1]
        assert 1 <= int(pasted.sum()) <= 16 and torch.equal(masks[0], targets[i]["masks"][0].bool())
        assert torch.allclose(image[:, pasted], torch.full_like(image[:, pasted], other))
        assert torch.allclose(image[:, ~pasted], torch.full_like(image[:, ~pasted], 1 - other))
