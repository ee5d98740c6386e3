"""CutLER's copy-paste augmentation for the detector's training batches (:func:`copy_paste`).

CutLER trains its detector with copy-paste on (``DATALOADER.COPY_PASTE`` in its ImageNet configs,
at rate 1.0; its trainer's ``copy_and_paste``): each frame of a batch receives objects from the
frame at the mirrored position of the batch (``batch[::-1]``), whose image and masks are first
shrunk as a whole by a random factor and placed at a random offset. Pasted objects hide what
lies under them, so the frame's own masks lose those pixels; a pasted mask that would hide half
or more of one of the frame's masks is not pasted. On MaskCut's masks, which miss objects and
merge some, this shows the detector more single, smaller objects on new backgrounds.

Departures: masks are resized by nearest-neighbour sampling (CutLER interpolates bilinearly
and keeps every pixel the interpolation touches, which grows small masks by a pixel ring);
pasted masks that the shrinking empties are not pasted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

from uvis.proposals.detector.config import OBJECT_LABEL

#: A pasted mask is not pasted when it covers at least this fraction of one of the frame's own
#: masks (CutLER's ``iou_matrix.max(1)[0] < 0.5`` on intersection over the frame mask's area).
PASTE_MAX_COVER = 0.5


def boxes_from_masks(mask_stack: torch.Tensor) -> torch.Tensor:
    """Tight ``x1, y1, x2, y2`` boxes (``x2``/``y2`` one past the last pixel, as
    :class:`~uvis.proposals.detector.train.MaskTargets` has them) of non-empty ``(N, H, W)`` masks.
    """
    boxes = masks_to_boxes(mask_stack.bool()).float()  # inclusive ends
    boxes[:, 2:] += 1
    return boxes


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _randint(lo: int, hi: int, generator: torch.Generator) -> int:
    """An integer in ``[lo, hi]``."""
    return int(torch.randint(lo, hi + 1, (), generator=generator))


def paste_objects(
    image: torch.Tensor,
    target: dict[str, torch.Tensor],
    source_image: torch.Tensor,
    source_masks: torch.Tensor,
    *,
    size: tuple[int, int],
    offset: tuple[int, int],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Paste the objects ``source_masks`` (``(K, h, w)`` of ``source_image``) onto one frame.

    The source image and masks are resized to ``size`` (``(height, width)``, at most the
    frame's) and placed with their top-left corner at ``offset`` (``(y, x)``). Pasted masks that
    the resizing empties, or that cover at least :data:`PASTE_MAX_COVER` of one of the frame's
    masks, are left out; the rest hide the frame's pixels and masks under them, frame masks left
    empty are dropped, and every box is recomputed from its mask. ``target`` holds torchvision's
    ``boxes``, ``labels`` and ``masks``; pasted objects are labelled
    :data:`~uvis.proposals.detector.config.OBJECT_LABEL` (the detector is class-agnostic).
    Returns the new image and target; the inputs are not modified.
    """
    _, height, width = image.shape
    new_h, new_w = size
    oy, ox = offset
    if new_h < 1 or new_w < 1 or oy + new_h > height or ox + new_w > width or oy < 0 or ox < 0:
        raise ValueError(
            f"a {new_h}x{new_w} paste at {offset} does not fit a {height}x{width} frame"
        )
    small = F.interpolate(
        source_image[None], size=(new_h, new_w), mode="bilinear", align_corners=False
    )[0]
    small_masks = F.interpolate(source_masks[None].float(), size=(new_h, new_w), mode="nearest")[0]
    pasted = torch.zeros((len(source_masks), height, width), dtype=torch.bool, device=image.device)
    pasted[:, oy : oy + new_h, ox : ox + new_w] = small_masks > 0.5
    own = target["masks"].bool()
    keep = pasted.flatten(1).any(1)
    if len(own):
        inter = pasted.flatten(1).float() @ own.flatten(1).float().T
        cover = inter / own.flatten(1).sum(1).clamp(min=1).float()
        keep &= cover.max(1).values < PASTE_MAX_COVER
    if not keep.any():
        return image, target
    pasted = pasted[keep]
    alpha = pasted.any(0)
    canvas = torch.zeros_like(image)
    canvas[:, oy : oy + new_h, ox : ox + new_w] = small
    out_image = torch.where(alpha[None], canvas, image)
    own = own & ~alpha
    survivors = own.flatten(1).any(1)
    pasted_labels = torch.full((len(pasted),), OBJECT_LABEL, device=image.device)
    out_masks = torch.cat([own[survivors], pasted])
    out = {
        "boxes": boxes_from_masks(out_masks),
        "labels": torch.cat([target["labels"][survivors], pasted_labels]),
        "masks": out_masks.to(target["masks"].dtype),
    }
    return out_image, out


def copy_paste(
    images: Sequence[torch.Tensor],
    targets: Sequence[dict[str, torch.Tensor]],
    *,
    rate: float,
    scale_range: tuple[float, float],
    generator: torch.Generator,
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """CutLER's copy-paste on one training batch (see the module docstring).

    Frame ``i`` receives objects of frame ``n - 1 - i`` (the frame's own objects when the batch
    has one frame or ``i`` is its middle), with probability ``rate``: a random number of them,
    one when the source has one or two masks and otherwise from 1 to one fewer than it has
    (CutLER's ``randint(1, n)`` with ``n`` excluded), chosen without replacement, shrunk by a
    factor drawn uniformly from ``scale_range`` and pasted at a uniformly drawn offset
    (:func:`paste_objects`). Sources are the batch's frames as they were before any paste.
    """
    n = len(images)
    lo, hi = scale_range
    out_images, out_targets = list(images), list(targets)
    for i in range(n):
        j = n - 1 - i
        source_masks = targets[j]["masks"]
        count = len(source_masks)
        if count == 0 or float(torch.rand((), generator=generator)) >= rate:
            continue
        k = 1 if count <= 2 else _randint(1, count - 1, generator)
        chosen = torch.randperm(count, generator=generator)[:k].to(source_masks.device)
        scale = _uniform(lo, hi, generator)
        _, height, width = images[i].shape
        new_h, new_w = max(1, int(scale * height)), max(1, int(scale * width))
        offset = (_randint(0, height - new_h, generator), _randint(0, width - new_w, generator))
        out_images[i], out_targets[i] = paste_objects(
            images[i],
            targets[i],
            images[j],
            source_masks[chosen],
            size=(new_h, new_w),
            offset=offset,
        )
    return out_images, out_targets
