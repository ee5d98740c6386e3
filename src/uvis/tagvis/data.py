"""Clips for the tag-based model: videos with tracked targets, clip sampling and augmentation.

Targets come from :mod:`uvis.train.targets` (ground truth, or UVIS pseudo-labels at a filter
level), frame by frame; :func:`video_targets` groups them into videos and gives every mask a
track: the annotation id for ground truth; for pseudo-labels, which are per frame (UVIS §3.1),
a track made by linking masks from frame to frame by mask IoU (:func:`link_tracks`), since the
tagging loss needs to know which masks are one instance across frames.

Training clips (:class:`ClipSamples`) follow the paper's recipe: ``T`` frames made by dropping
runs of 1 to ``max_drop`` consecutive frames at random (:func:`training_frame_indices`), random
crops, left-right flips and time reversal. Every sample is a pure function of the seed and its
*position* (the number of clips drawn before it), as in :mod:`uvis.train.data`: position ``p``
is video ``order_e[p mod n]`` of epoch ``e = p div n``, augmented with a generator seeded by
``(seed, p)``, so a resumed run draws exactly what the uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment
from torch.utils.data import Dataset

from uvis.data.frames import read_frame
from uvis.errors import DataError
from uvis.masks import to_coco
from uvis.tagvis.clips import inference_frame_indices, resize_clip, resize_labels
from uvis.tagvis.config import TagVisConfig
from uvis.train.data import epoch_order
from uvis.train.targets import FrameTargets, TrainingSet


@dataclass(frozen=True, eq=False)
class VideoTargets:
    """One video's frames in order (``frames[t]`` is frame ``t``) and, per frame, the track of
    each of its masks: ``tracks[t][i]`` for mask ``i`` of frame ``t`` (0-based per video)."""

    video_id: int
    frames: tuple[FrameTargets, ...]
    tracks: tuple[tuple[int, ...], ...]

    @property
    def length(self) -> int:
        return len(self.frames)


def link_tracks(
    frames: Sequence[FrameTargets], min_iou: float, max_gap: int
) -> tuple[tuple[int, ...], ...]:
    """Tracks of per-frame masks: a mask continues the track whose latest mask it matches
    (Hungarian matching on mask IoU, pairs at ``min_iou`` or more), among the tracks seen in
    the last ``max_gap + 1`` frames (so a track survives ``max_gap`` frames without a mask);
    unmatched masks start new tracks. Returns ``tracks[t][i]`` as :class:`VideoTargets` keeps
    them."""
    tracks: list[tuple[int, ...]] = []
    latest: dict[int, tuple[int, dict]] = {}  # track -> (frame of its latest mask, that mask)
    for t, frame in enumerate(frames):
        current = [to_coco(rle) for rle in frame.rles]
        ids = [-1] * len(current)
        alive = [k for k, (seen, _) in latest.items() if t - seen <= max_gap + 1]
        if alive and current:
            iou = mask_utils.iou(current, [latest[k][1] for k in alive], [0] * len(alive))
            rows, cols = linear_sum_assignment(iou, maximize=True)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= min_iou:
                    ids[r] = alive[c]
        for i, mask in enumerate(current):
            if ids[i] < 0:
                ids[i] = len(latest)
            latest[ids[i]] = (t, mask)
        tracks.append(tuple(ids))
    return tuple(tracks)


def video_targets(data: TrainingSet, link_iou: float, link_gap: int) -> list[VideoTargets]:
    """The videos of ``data`` in video-id order, each mask with its track (see the module
    docstring); frames must be ``0 .. n-1`` in every video.

    Raises:
        DataError: naming the targets' source when a video's frames are not contiguous.
    """
    by_video: dict[int, list[FrameTargets]] = {}
    for frame in data.frames:
        by_video.setdefault(frame.video_id, []).append(frame)
    tracked = data.source.get("kind") == "ground_truth"
    videos = []
    for vid in sorted(by_video):
        frames = sorted(by_video[vid], key=lambda f: f.frame_index)
        if [f.frame_index for f in frames] != list(range(len(frames))):
            raise DataError(data.origin, f"video {vid}: frames are not 0..{len(frames) - 1}")
        if tracked:
            dense: dict[int, int] = {}
            tracks = tuple(
                tuple(dense.setdefault(i, len(dense)) for i in f.track_ids) for f in frames
            )
        else:
            tracks = link_tracks(frames, link_iou, link_gap)
        videos.append(VideoTargets(video_id=vid, frames=tuple(frames), tracks=tracks))
    return videos


def class_counts(videos: Sequence[VideoTargets], num_classes: int) -> list[int]:
    """Target masks per class over all frames: the class prior of a model without classes."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for video in videos:
        for frame in video.frames:
            np.add.at(counts, list(frame.labels), 1)
    return [int(c) for c in counts]


def training_frame_indices(
    length: int, clip_frames: int, max_drop: int, rng: np.random.Generator
) -> np.ndarray:
    """The paper's clip of a video: runs of ``1 .. max_drop`` consecutive frames are dropped at
    random places until ``clip_frames`` remain. A video shorter than the clip is stretched by
    repeating frames (:func:`inference_frame_indices`)."""
    if length <= clip_frames:
        return inference_frame_indices(length, clip_frames)
    keep = list(range(length))
    while len(keep) > clip_frames:
        run = min(int(rng.integers(1, max_drop + 1)), len(keep) - clip_frames)
        start = int(rng.integers(0, len(keep) - run + 1))
        del keep[start : start + run]
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class ClipSample:
    """One augmented training clip.

    ``video`` ``(3, T, H, W)`` uint8 RGB; ``semantic`` ``(T, H, W)`` class per pixel (0
    background, ``c + 1`` for class ``c``); ``pixels`` ``(N, T, K)`` flat indices (``y * W +
    x``) of ``K`` pixels sampled per instance and frame, and ``present`` ``(N, T)`` where each
    instance is visible. Instance 0 is the background (see :mod:`uvis.tagvis.losses`).
    ``instances`` ``(T, H, W)``: the instance id of every pixel (what the instance class heads
    of :mod:`uvis.tagvis.model` train on; ``None`` where a caller has no map)."""

    video: torch.Tensor
    semantic: torch.Tensor
    pixels: torch.Tensor
    present: torch.Tensor
    instances: torch.Tensor | None = None


def sample_instance_pixels(
    instances: np.ndarray, num_instances: int, per_frame: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels, present)`` for an instance map ``(T, H, W)`` with ids ``0 .. num_instances-1``:
    ``per_frame`` pixels drawn uniformly (with replacement) from each instance in each frame
    where it has any, as flat indices ``(N, T, K)``; absent entries are 0."""
    frames = instances.shape[0]
    flat = instances.reshape(frames, -1)
    pixels = np.zeros((num_instances, frames, per_frame), dtype=np.int64)
    present = np.zeros((num_instances, frames), dtype=bool)
    for t in range(frames):
        order = np.argsort(flat[t], kind="stable")
        counts = np.bincount(flat[t], minlength=num_instances)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for n in np.flatnonzero(counts[:num_instances]):
            draw = rng.integers(0, counts[n], per_frame)
            pixels[n, t] = order[starts[n] + draw]
            present[n, t] = True
    return pixels, present


def paint_targets(
    frames: Sequence[FrameTargets],
    tracks: Sequence[tuple[int, ...]],
    crop: tuple[int, int, int, int],
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Instance and class maps ``(T, h, w)`` of the crop ``(y0, y1, x0, x1)`` of each frame.

    Masks are painted largest first, so where (pseudo-label) masks overlap the smaller one is
    on top. Instance ids are ``1 ..`` in the order of the returned track list; 0 is background;
    classes are ``label + 1``.
    """
    y0, y1, x0, x1 = crop
    shape = (len(frames), y1 - y0, x1 - x0)
    instances = np.zeros(shape, dtype=np.int64)
    semantic = np.zeros(shape, dtype=np.int64)
    order: dict[int, int] = {}
    for t, (frame, frame_tracks) in enumerate(zip(frames, tracks, strict=True)):
        if not frame.rles:
            continue
        masks = frame.masks()[:, y0:y1, x0:x1].astype(bool)
        for i in np.argsort(-masks.sum(axis=(1, 2)), kind="stable"):
            if masks[i].any():
                instance = order.setdefault(frame_tracks[i], len(order) + 1)
                instances[t][masks[i]] = instance
                semantic[t][masks[i]] = frame.labels[i] + 1
    return instances, semantic, list(order)


class ClipSamples(Dataset):
    """Augmented training clips by position (see the module docstring)."""

    def __init__(self, videos: Sequence[VideoTargets], config: TagVisConfig) -> None:
        if not videos:
            raise ValueError("no videos to sample clips from")
        self.videos = list(videos)
        self.config = config
        self._order_epoch = -1
        self._order = np.zeros(0, dtype=np.int64)

    def video_at(self, position: int) -> VideoTargets:
        """The video sampled at ``position``."""
        epoch, offset = divmod(position, len(self.videos))
        if epoch != self._order_epoch:
            self._order = epoch_order(len(self.videos), self.config.seed, epoch)
            self._order_epoch = epoch
        return self.videos[int(self._order[offset])]

    def __getitem__(self, position: int) -> ClipSample:
        cfg = self.config
        video = self.video_at(position)
        rng = np.random.default_rng([cfg.seed, 1, position])
        indices = training_frame_indices(video.length, cfg.clip_frames, cfg.max_drop, rng)
        if cfg.temporal_flip and rng.random() < 0.5:
            indices = indices[::-1]
        first = video.frames[0]
        height, width = first.height, first.width
        scale = rng.uniform(cfg.min_crop, 1.0)
        ch, cw = max(1, round(scale * height)), max(1, round(scale * width))
        y0, x0 = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        flip = bool(cfg.flip and rng.random() < 0.5)
        frames = [video.frames[t] for t in indices]
        images = np.stack([read_frame(f.path, f.height, f.width) for f in frames])
        instances, semantic, tracks = paint_targets(
            frames, [video.tracks[t] for t in indices], (y0, y0 + ch, x0, x0 + cw)
        )
        images = images[:, y0 : y0 + ch, x0 : x0 + cw]
        size = (int(cfg.input_size[0]), int(cfg.input_size[1]))
        instances, semantic = resize_labels(instances, size), resize_labels(semantic, size)
        clip = resize_clip(images, size)
        if flip:
            clip, instances, semantic = clip.flip(-1), instances[..., ::-1], semantic[..., ::-1]
        pixels, present = sample_instance_pixels(
            np.ascontiguousarray(instances), len(tracks) + 1, cfg.pixels_per_frame, rng
        )
        return ClipSample(
            video=clip.contiguous(),
            semantic=torch.from_numpy(np.ascontiguousarray(semantic)),
            pixels=torch.from_numpy(pixels),
            present=torch.from_numpy(present),
            instances=torch.from_numpy(np.ascontiguousarray(instances)),
        )
