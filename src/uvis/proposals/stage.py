"""The MaskCut proposal stage: frames of one shard -> ViT keys -> MaskCut masks -> Parquet.

Frames are read from the frame index, resized so both sides are multiples of the ViT's patch
size (optionally scaled first so the short side is ``input_short``: CutLER feeds 480 x 480),
run through the self-supervised ViT in batches of same-size frames, cut by MaskCut, and the
masks resized back to the frame's own size (nearest neighbour). Masks are written without an
objectness score (``source = "maskcut"``); the detector stage adds one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from uvis.data.frames import read_frame
from uvis.data.shards import select_shard
from uvis.errors import ConfigError
from uvis.io import atomic_path
from uvis.progress import progress_bar
from uvis.proposals.maskcut import MaskCutConfig, maskcut
from uvis.proposals.table import ProposalRows
from uvis.schemas import FRAME_INDEX

logger = logging.getLogger(__name__)


def read_frame_index(path: str | Path) -> pa.Table:
    """A frame index Parquet, checked against its schema."""
    return FRAME_INDEX.read(path)


def model_input_size(
    height: int, width: int, patch: int, input_short: int | None
) -> tuple[int, int]:
    """Input size for the ViT: optionally scaled so the short side is ``input_short``, then
    each side rounded to the nearest multiple of the patch size (at least one patch)."""
    scale = 1.0 if input_short is None else input_short / min(height, width)
    return tuple(max(patch, round(s * scale / patch) * patch) for s in (height, width))  # type: ignore[return-value]


@dataclass(frozen=True)
class _Frame:
    video_id: int
    frame_index: int
    path: str
    height: int
    width: int


def _batches(frames: pa.Table, batch_size: int) -> Iterator[list[_Frame]]:
    """Consecutive frames of equal size, at most ``batch_size`` at a time."""
    batch: list[_Frame] = []
    for row in frames.to_pylist():
        f = _Frame(row["video_id"], row["frame_index"], row["path"], row["height"], row["width"])
        if batch and (
            len(batch) == batch_size or (f.height, f.width) != (batch[0].height, batch[0].width)
        ):
            yield batch
            batch = []
        batch.append(f)
    if batch:
        yield batch


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

    frames = select_shard(read_frame_index(frame_index), num_shards, shard)
    if frame_stride < 1:
        raise ConfigError(f"maskcut frame_stride must be >= 1, got {frame_stride}")
    if frame_stride > 1:
        positions = frames.column("frame_index").to_numpy(zero_copy_only=False)
        frames = frames.filter(pa.array(positions % frame_stride == 0))
    patch = patch_size_of(model)[0]
    device = next(model.parameters()).device
    rows = ProposalRows()
    bar = progress_bar(
        total=frames.num_rows, desc=f"maskcut shard {shard}", disable=not progress, unit="frame"
    )
    for batch in _batches(frames, batch_size):
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
