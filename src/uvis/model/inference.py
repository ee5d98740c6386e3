"""Per-frame inference: what MinVIS hands to tracking for every frame.

Each frame is resized as at test time (:func:`~uvis.model.mask2former.shortest_edge_size` with
the model's ``test_short_side`` and ``max_size``), normalised, padded and run through the model
in batches; the output per frame is a :class:`~uvis.model.outputs.FrameQueries`: the last
decoder layer's query embeddings, class logits and mask logits, the latter cropped to the
part of the 1/4-resolution mask grid that covers the resized image (not its padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from uvis.model.mask2former import MASK_STRIDE, VisModel, resize_rgb, shortest_edge_size
from uvis.model.outputs import FrameQueries


def _check_image(image: np.ndarray, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"image {index}: expected a uint8 numpy array")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"image {index}: expected shape (H, W, 3), got {image.shape}")


def mask_grid_size(height: int, width: int) -> tuple[int, int]:
    """Cells of the 1/4-resolution mask grid covering a ``height`` x ``width`` input image.

    The grid of a padded input has one cell per 4 x 4 pixels; the image occupies its first
    ``ceil(height / 4)`` rows and ``ceil(width / 4)`` columns (when a side is not a multiple of
    4, the last cell also covers up to 3 pixels of padding).
    """
    return -(-height // MASK_STRIDE), -(-width // MASK_STRIDE)


def predict_frames(
    model: VisModel, images: Sequence[np.ndarray], *, batch_size: int = 8
) -> list[FrameQueries]:
    """The per-frame outputs of ``model`` for ``(H, W, 3)`` uint8 RGB ``images``, in order.

    Runs under ``torch.inference_mode()`` on the model's device (float16 autocast on CUDA), in
    eval mode, ``batch_size`` frames at a time; frames of different sizes may share a batch
    (each is padded to the batch's size, as in training). Mask logits ``(Q, h, w)`` cover the
    resized frame (:func:`mask_grid_size` of its resized size); ``frame_size`` is the original
    ``(H, W)``, the size tracking resizes masks to. CPU threads are the caller's choice
    (``torch.set_num_threads``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, image in enumerate(images):
        _check_image(image, i)
    model.eval()
    device = model.pixel_mean.device
    cfg = model.config
    results: list[FrameQueries] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        sizes = [
            shortest_edge_size(img.shape[0], img.shape[1], cfg.test_short_side, cfg.max_size)
            for img in chunk
        ]
        tensors = [
            torch.tensor(resize_rgb(img, h, w)).permute(2, 0, 1)
            for img, (h, w) in zip(chunk, sizes, strict=True)
        ]
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"),
        ):
            outputs = model(model.pixel_batch(tensors))
            embeddings = model.query_embeddings(outputs).float().cpu().numpy()
            logits = outputs.class_queries_logits.float().cpu().numpy()
            masks = outputs.masks_queries_logits.float().cpu().numpy()
        for i, (img, (h, w)) in enumerate(zip(chunk, sizes, strict=True)):
            rows, cols = mask_grid_size(h, w)
            results.append(
                FrameQueries(
                    # Copies, so a frame's arrays do not keep the whole batch's alive.
                    embeddings=embeddings[i].copy(),
                    class_logits=logits[i].copy(),
                    mask_logits=masks[i, :, :rows, :cols].copy(),
                    frame_size=(int(img.shape[0]), int(img.shape[1])),
                )
            )
    return results
