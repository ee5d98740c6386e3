"""Clips as the tag-based model sees them: which frames, at which size.

A video is processed as one clip of ``T`` frames (the paper's 32): at inference evenly spaced
frames from first to last (:func:`inference_frame_indices`; the others are filled in by mask
interpolation, :mod:`uvis.tagvis.infer`), in training the paper's frame dropping
(:func:`uvis.tagvis.data.training_frame_indices`). Frames are resized to the model's input size
(:func:`resize_clip`), label maps by nearest neighbour (:func:`resize_labels`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uvis.data.frames import read_frame


def inference_frame_indices(length: int, clip_frames: int) -> np.ndarray:
    """Frames of the one clip a video is processed as: ``clip_frames`` evenly spaced frames
    from the first to the last (a video shorter than the clip repeats frames)."""
    return np.rint(np.linspace(0, length - 1, clip_frames)).astype(np.int64)


def resize_clip(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 frames to a ``(3, T, *size)`` uint8 clip (bilinear, antialiased
    when shrinking)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    if tuple(x.shape[2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(1, 0, 2, 3).contiguous()


def resize_labels(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(T, H, W)`` integer label maps resized to ``size`` by nearest neighbour."""
    if maps.shape[1:] == tuple(size):
        return maps
    x = torch.from_numpy(maps.astype(np.int64))[:, None].float()
    return F.interpolate(x, size=size, mode="nearest-exact")[:, 0].long().numpy()


def read_clip(
    paths: Sequence[str | os.PathLike[str]], height: int, width: int, size: tuple[int, int]
) -> torch.Tensor:
    """The frames at ``paths`` (each ``height`` x ``width``) as a ``(3, T, *size)`` uint8 clip."""
    return resize_clip(np.stack([read_frame(p, height, width) for p in paths]), size)
