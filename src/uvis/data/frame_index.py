"""The frame index, typed: one row per frame of a split (schema :data:`uvis.schemas.FRAME_INDEX`).

Every stage that reads frames reads them through :class:`FrameIndex`: its rows as
:class:`FrameRef`, in batches, per video (:class:`VideoFrames`), or as lookups by
``(video_id, frame_index)``. The checks each view needs (whole videos, frame numbers
``0..n-1``, one size per video) are made here, once, with errors naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from uvis.data.shards import select_shard
from uvis.errors import ConfigError, DataError
from uvis.schemas import FRAME_INDEX

_REF_COLUMNS = ["video_id", "frame_index", "path", "height", "width"]


@dataclass(frozen=True)
class FrameRef:
    """One frame-index row: which frame, where it is and its size."""

    video_id: int
    frame_index: int
    path: str
    height: int
    width: int


@dataclass(frozen=True)
class VideoFrames:
    """One video's frames in order: ``paths[t]`` is frame ``t``, of size ``(height, width)``."""

    video_id: int
    name: str
    paths: tuple[str, ...]
    height: int
    width: int


@dataclass(frozen=True, eq=False)
class FrameIndex:
    """A checked frame index table and where it came from (named in error messages)."""

    table: pa.Table
    source: str = "frame index"

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> FrameIndex:
        """Read and check a frame index Parquet (DataError naming ``path`` if it is not one)."""
        return cls(FRAME_INDEX.read(path), os.fspath(path))

    @classmethod
    def of(cls, table: pa.Table, source: str = "frame index") -> FrameIndex:
        """Check an in-memory table against the schema."""
        return cls(FRAME_INDEX.check(table, source), source)

    @property
    def num_frames(self) -> int:
        return self.table.num_rows

    def shard(self, num_shards: int, shard: int) -> FrameIndex:
        """The frames of one shard: whole videos, contiguous in index order
        (:func:`uvis.data.shards.select_shard`)."""
        return FrameIndex(select_shard(self.table, num_shards, shard), self.source)

    def every_nth_frame(self, n: int) -> FrameIndex:
        """Frames at positions ``0, n, 2n, ...`` of each video (all of them for ``n`` = 1)."""
        if n < 1:
            raise ConfigError(f"frame stride must be >= 1, got {n}")
        if n == 1:
            return self
        positions = self.table.column("frame_index").to_numpy(zero_copy_only=False)
        return FrameIndex(self.table.filter(pa.array(positions % n == 0)), self.source)

    def refs(self) -> Iterator[FrameRef]:
        """Every row, in index order."""
        for row in self.table.select(_REF_COLUMNS).to_pylist():
            yield FrameRef(**row)

    def batches(self, batch_size: int, *, same_size: bool) -> Iterator[list[FrameRef]]:
        """The rows in order, at most ``batch_size`` at a time; with ``same_size`` a batch also
        ends where the frame size changes (for models that stack frames without padding)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batch: list[FrameRef] = []
        for ref in self.refs():
            size_changes = (
                same_size
                and batch
                and (ref.height, ref.width)
                != (
                    batch[0].height,
                    batch[0].width,
                )
            )
            if batch and (len(batch) == batch_size or size_changes):
                yield batch
                batch = []
            batch.append(ref)
        if batch:
            yield batch

    def frame_files(self) -> dict[tuple[int, int], tuple[str, int, int]]:
        """``(video_id, frame_index) -> (path, height, width)``, in index order."""
        return {
            (ref.video_id, ref.frame_index): (ref.path, ref.height, ref.width)
            for ref in self.refs()
        }

    def video_sizes(self) -> dict[int, tuple[int, int, int]]:
        """``{video_id: (num_frames, height, width)}`` in index order.

        Raises:
            DataError: naming the file when a video's frames differ in size.
        """
        video_ids = self.table.column("video_id").to_numpy()
        heights = self.table.column("height").to_numpy()
        widths = self.table.column("width").to_numpy()
        sizes: dict[int, tuple[int, int, int]] = {}
        for vid in dict.fromkeys(video_ids.tolist()):
            rows = video_ids == vid
            h, w = np.unique(heights[rows]), np.unique(widths[rows])
            if len(h) != 1 or len(w) != 1:
                raise DataError(self.source, f"video {vid} has frames of different sizes")
            sizes[vid] = (int(rows.sum()), int(h[0]), int(w[0]))
        return sizes

    def videos(self) -> list[VideoFrames]:
        """The videos in video-id order, each with its frames in order.

        Raises:
            DataError: naming the file when a video's frame numbers are not ``0..n-1`` (results
                need one entry per frame) or its frames differ in size.
        """
        table = self.table.to_pydict()
        by_video: dict[int, list[int]] = {}
        for row, vid in enumerate(table["video_id"]):
            by_video.setdefault(vid, []).append(row)
        videos = []
        for vid in sorted(by_video):
            rows = sorted(by_video[vid], key=lambda r: table["frame_index"][r])
            indices = [table["frame_index"][r] for r in rows]
            if indices != list(range(len(rows))):
                raise DataError(
                    self.source,
                    f"video {vid}: frame indices are not 0..{len(rows) - 1}: {indices}",
                )
            sizes = {(table["height"][r], table["width"][r]) for r in rows}
            if len(sizes) != 1:
                raise DataError(
                    self.source, f"video {vid}: frames of different sizes {sorted(sizes)}"
                )
            (h, w) = sizes.pop()
            videos.append(
                VideoFrames(
                    video_id=vid,
                    name=table["video_name"][rows[0]],
                    paths=tuple(table["path"][r] for r in rows),
                    height=h,
                    width=w,
                )
            )
        return videos
