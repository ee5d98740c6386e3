"""The MaskCut proposal stage: frames of one shard -> ViT keys -> MaskCut masks -> Parquet.

Frames are read from the frame index, resized so both sides are multiples of the ViT's patch
size (optionally scaled first so the short side is ``input_short``: CutLER feeds 480 x 480),
run through the self-supervised ViT in batches of same-size frames, cut by MaskCut, and the
masks resized back to the frame's own size (nearest neighbour). Masks are written without an
objectness score (``source = "maskcut"``); the detector stage adds one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from uvis.data.frame_index import FrameIndex
from uvis.data.frames import read_frame
from uvis.errors import ConfigError
from uvis.io import atomic_path
from uvis.progress import progress_bar
from uvis.proposals.maskcut import MaskCutConfig, maskcut
from uvis.proposals.table import ProposalRows

logger = logging.getLogger(__name__)


def model_input_size(
    height: int, width: int, patch: int, input_short: int | None
) -> tuple[int, int]:
    """Input size for the ViT: optionally scaled so the short side is ``input_short``, then
    each side rounded to the nearest multiple of the patch size (at least one patch)."""
    scale = 1.0 if input_short is None else input_short / min(height, width)
    return tuple(max(patch, round(s * scale / patch) * patch) for s in (height, width))  # type: ignore[return-value]


def _resize_masks(masks: list[np.ndarray], height: int, width: int) -> list[np.ndarray]:
    if not masks or masks[0].shape == (height, width):
        return masks
    return [
        np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((width, height), Image.NEAREST))
        > 127
        for m in masks
    ]


def maskcut_shard(
    frame_index: Path,
    out_path: Path,
    model: torch.nn.Module,
    cfg: MaskCutConfig,
    *,
    shard: int = 0,
    num_shards: int = 1,
    batch_size: int = 8,
    input_short: int | None = None,
    frame_stride: int = 1,
    progress: bool = True,
) -> dict[str, int]:
    """Run MaskCut on one shard of a frame index and write its proposals atomically.

    With ``frame_stride`` > 1 only every ``frame_stride``-th frame of each video is segmented
    (frame positions 0, N, 2N, ...): MaskCut's masks only train the class-agnostic detector,
    which leaves out frames without masks and then runs on every frame.
    """
    from uvis.foundation.ssl import last_block_keys, normalise_images, patch_size_of

    if frame_stride < 1:
        raise ConfigError(f"maskcut frame_stride must be >= 1, got {frame_stride}")
    frames = FrameIndex.read(frame_index).shard(num_shards, shard).every_nth_frame(frame_stride)
    patch = patch_size_of(model)[0]
    device = next(model.parameters()).device
    rows = ProposalRows()
    bar = progress_bar(
        total=frames.num_frames, desc=f"maskcut shard {shard}", disable=not progress, unit="frame"
    )
    for batch in frames.batches(batch_size, same_size=True):
        h, w = batch[0].height, batch[0].width
        in_h, in_w = model_input_size(h, w, patch, input_short)
        images = []
        for f in batch:
            img = read_frame(f.path, h, w)
            if (in_h, in_w) != (h, w):
                img = np.asarray(Image.fromarray(img).resize((in_w, in_h), Image.BICUBIC))
            images.append(img)
        stack = np.stack(images)
        tensor = torch.from_numpy(stack).permute(0, 3, 1, 2).to(device)
        with torch.no_grad():
            keys = last_block_keys(model, normalise_images(tensor))
        per_image = maskcut(stack, keys.keys.float().cpu(), keys.grid_hw, cfg)
        for f, masks in zip(batch, per_image, strict=True):
            rows.add_frame(f.video_id, f.frame_index, _resize_masks(masks, h, w), None, "maskcut")
        bar.update(len(batch))
    bar.close()
    with atomic_path(out_path) as tmp:
        pq.write_table(rows.table(), tmp)
    if rows.empty_frames:
        logger.info(
            "%s: %d of %d frames have no MaskCut mask", out_path, rows.empty_frames, rows.frames
        )
    return {"frames": rows.frames, "proposals": len(rows), "empty_frames": rows.empty_frames}
