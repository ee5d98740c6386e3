"""Image-level sampling and augmentation for training the VIS model (MinVIS).

MinVIS trains on single frames: every sample is one frame drawn independently of its video
(``SAMPLING_FRAME_NUM: 1``), resized so its short side is one of a few sizes and mirrored
left-right at random (:func:`augment`).

Sampling is a pure function of the seed and the sample's *position*, the number of samples
drawn before it over all processes: position ``p`` is frame ``order_e[p mod n]`` of epoch
``e = p div n``, ``order_e`` a permutation seeded by ``(seed, e)``, and its augmentation is
seeded by ``(seed, p)``. Iteration ``i`` of a run with ``B`` images per step takes positions
``i*B .. i*B + B - 1``, process ``r`` of ``W`` the ``r``-th slice of ``B / W`` of them
(:class:`PositionBatches`), so processes see disjoint frames, and a run resumed at iteration
``i`` draws exactly what the uninterrupted run would have drawn (no sampler state to save).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from uvis.data.frames import read_frame
from uvis.model.mask2former import resize_rgb, shortest_edge_size
from uvis.train.targets import FrameTargets


@dataclass(frozen=True, eq=False)
class TrainingSample:
    """One augmented frame: ``image`` ``(3, h, w)`` uint8 RGB, ``masks`` ``(N, h, w)`` uint8
    0/1 and ``labels`` ``(N,)`` int64 class indices (``N`` may be 0)."""

    image: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor


def augment(
    image: np.ndarray,
    masks: np.ndarray,
    *,
    short_side: int,
    max_size: int,
    flip: bool,
    channels: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MinVIS's training augmentation of one frame: resize, then optionally mirror.

    ``image`` ``(H, W, 3)`` is resized by :func:`~uvis.model.mask2former.shortest_edge_size`
    with bilinear interpolation, ``masks`` ``(N, H, W)`` with nearest-neighbour (detectron2's
    ``ResizeShortestEdge``); ``flip`` mirrors both left-right (``RandomFlip``). ``channels``, a
    permutation of (0, 1, 2), reorders the colour channels (not MinVIS's: see
    :attr:`~uvis.train.config.TrainConfig.channel_shuffle`).
    """
    height, width = shortest_edge_size(image.shape[0], image.shape[1], short_side, max_size)
    image = resize_rgb(image, height, width)
    if len(masks) == 0:
        masks = np.zeros((0, height, width), dtype=np.uint8)
    elif masks.shape[1:] != (height, width):
        resized = F.interpolate(
            torch.from_numpy(masks)[None].float(), size=(height, width), mode="nearest-exact"
        )
        masks = resized[0].to(torch.uint8).numpy()
    if flip:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    if channels is not None:
        image = image[..., list(channels)]
    return np.ascontiguousarray(image), np.ascontiguousarray(masks)


def epoch_order(num_frames: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the frames: a permutation of ``num_frames``."""
    return np.random.default_rng([seed, 0, epoch]).permutation(num_frames)


class FrameSamples(Dataset):
    """Augmented training samples by position (see the module docstring).

    ``short_sides`` are the sizes the short side is drawn from (uniformly), ``max_size`` the cap
    of the long side, ``flip`` whether half of the samples are mirrored, ``channel_shuffle``
    whether each sample's colour channels are put in a random order.
    """

    def __init__(
        self,
        frames: Sequence[FrameTargets],
        *,
        seed: int,
        short_sides: Sequence[int],
        max_size: int,
        flip: bool,
        channel_shuffle: bool = False,
    ) -> None:
        if not frames:
            raise ValueError("no frames to sample from")
        self.frames = list(frames)
        self.seed = seed
        self.short_sides = tuple(short_sides)
        self.max_size = max_size
        self.flip = flip
        self.channel_shuffle = channel_shuffle
        self._order_epoch = -1
        self._order = np.zeros(0, dtype=np.int64)

    def frame_at(self, position: int) -> FrameTargets:
        """The frame sampled at ``position``."""
        epoch, offset = divmod(position, len(self.frames))
        if epoch != self._order_epoch:
            self._order = epoch_order(len(self.frames), self.seed, epoch)
            self._order_epoch = epoch
        return self.frames[int(self._order[offset])]

    def __getitem__(self, position: int) -> TrainingSample:
        frame = self.frame_at(position)
        rng = np.random.default_rng([self.seed, 1, position])
        short_side = int(rng.choice(self.short_sides))
        flip = bool(self.flip and rng.random() < 0.5)
        channels = rng.permutation(3).tolist() if self.channel_shuffle else None
        image, masks = augment(
            read_frame(frame.path, frame.height, frame.width),
            frame.masks(),
            short_side=short_side,
            max_size=self.max_size,
            flip=flip,
            channels=channels,
        )
        # Masks too small to survive the resize are no longer targets.
        present = masks.any(axis=(1, 2))
        labels = np.asarray(frame.labels, dtype=np.int64)
        return TrainingSample(
            image=torch.from_numpy(image).permute(2, 0, 1),
            masks=torch.from_numpy(masks[present]),
            labels=torch.from_numpy(labels[present]),
        )


class PositionBatches:
    """The sample positions of one process for iterations ``start .. iterations - 1``.

    Iteration ``i`` covers positions ``i * batch_size ..``; process ``rank`` of ``world_size``
    takes the ``rank``-th of ``world_size`` equal slices (``batch_size`` must divide evenly).
    """

    def __init__(
        self, *, start: int, iterations: int, batch_size: int, world_size: int, rank: int
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not a multiple of {world_size} processes")
        self.start, self.iterations = start, iterations
        self.batch_size, self.per_rank, self.rank = batch_size, batch_size // world_size, rank

    def __len__(self) -> int:
        return max(0, self.iterations - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for iteration in range(self.start, self.iterations):
            first = iteration * self.batch_size + self.rank * self.per_rank
            yield list(range(first, first + self.per_rank))


def as_list(samples: list[TrainingSample]) -> list[TrainingSample]:
    """DataLoader ``collate_fn``: samples differ in size, so a batch stays a list."""
    return samples
