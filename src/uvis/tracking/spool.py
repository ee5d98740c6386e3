"""A temporary file of per-frame track masks, so tracking memory does not grow with video length.

Each frame appends one record: for every track, the query index it took in that frame and its
mask as COCO compressed RLE counts (empty where the mask is empty). Only the top-k tracks are
output, and which ones is known only at the end of the video, so every track's masks are kept
-- on disk, not in memory. Reading a track back (:meth:`MaskSpool.track`) is one sequential pass
that seeks over the other tracks' masks.

Record layout (little-endian): ``uint32 Q``, ``int32[Q]`` query index per track, ``uint32[Q]``
byte length of each track's counts (0 = empty mask), then the counts, track after track.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np

from uvis.io import Closing
from uvis.masks import RLE

_COUNT = np.dtype("<u4")
_INDEX = np.dtype("<i4")


class MaskSpool(Closing):
    """Append-only spool of per-frame track masks in an anonymous temporary file.

    The file lives in ``directory`` (default: the system's temporary folder) and disappears
    when the spool is closed, or when the process ends.
    """

    def __init__(
        self, frame_size: tuple[int, int], directory: str | os.PathLike[str] | None = None
    ) -> None:
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.num_frames = 0
        self.num_tracks: int | None = None
        self._file = tempfile.TemporaryFile(prefix="uvis-track-spool-", dir=directory)

    def append(self, sources: np.ndarray, counts: Sequence[bytes | None]) -> None:
        """Add one frame: ``sources[i]`` the query index of track i, ``counts[i]`` its mask."""
        if len(sources) != len(counts):
            raise ValueError(f"{len(sources)} query indices for {len(counts)} masks")
        if self.num_tracks is None:
            self.num_tracks = len(counts)
        elif len(counts) != self.num_tracks:
            raise ValueError(f"{len(counts)} tracks after frames of {self.num_tracks}")
        payload = [b"" if c is None else c for c in counts]
        lengths = np.array([len(p) for p in payload], dtype=_COUNT)
        self._file.seek(0, os.SEEK_END)  # a reader may have left the position elsewhere
        self._file.write(np.array([len(payload)], dtype=_COUNT).tobytes())
        self._file.write(np.asarray(sources, dtype=_INDEX).tobytes())
        self._file.write(lengths.tobytes())
        self._file.write(b"".join(payload))
        self.num_frames += 1

    def track(self, index: int) -> Iterator[tuple[int, RLE | None]]:
        """``(query index, RLE or None)`` of track ``index`` in each frame, in frame order.

        The frames are those spooled when the iteration starts; frames may be appended while
        a reader is paused (it keeps its own position in the file).
        """
        if self.num_tracks is None or not 0 <= index < self.num_tracks:
            raise IndexError(f"track {index} of {self.num_tracks or 0}")
        self._file.flush()
        height, width = self.frame_size
        position = 0
        for _ in range(self.num_frames):
            self._file.seek(position)
            (num_tracks,) = np.frombuffer(self._file.read(_COUNT.itemsize), dtype=_COUNT)
            sources = np.frombuffer(self._file.read(num_tracks * _INDEX.itemsize), dtype=_INDEX)
            lengths = np.frombuffer(self._file.read(num_tracks * _COUNT.itemsize), dtype=_COUNT)
            position = self._file.tell() + int(lengths.sum())
            self._file.seek(int(lengths[:index].sum()), os.SEEK_CUR)
            counts = self._file.read(int(lengths[index]))
            rle = None if not counts else {"size": [height, width], "counts": counts.decode()}
            yield int(sources[index]), rle

    def close(self) -> None:
        """Delete the spool file."""
        self._file.close()
