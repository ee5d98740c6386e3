"""Tracking results: one container, and a streaming writer for the results JSON and tracks Parquet.

A :class:`TrackResult` is one YouTube-VIS result (``video_id``, ``category_id``, ``score`` and
one mask or ``null`` per frame) together with where it came from (the tracker's track id and,
per frame, the query or proposal the track took). :class:`ResultsWriter` writes results as
they come, so neither the results of a whole split nor the masks of a long video are ever held
together in memory:

- the YouTube-VIS results JSON (a list of ``{"video_id", "category_id", "score",
  "segmentations"}``), optionally also zipped as ``results.json`` inside a ``.zip``, the form
  the evaluation servers take;
- the tracks Parquet (:data:`uvis.schemas.TRACKS`), one row per result and frame.

Every file is written atomically: nothing appears under the final names unless all succeed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from uvis.evaluation.ytvis import RESULTS_MEMBER
from uvis.io import atomic_path
from uvis.masks import RLE
from uvis.schemas import TRACKS


class TrackFrame(NamedTuple):
    """A track in one frame: what it took (query index / proposal id, None if nothing) and its
    mask (None where the result has no mask in that frame)."""

    source_id: int | None
    rle: RLE | None


@dataclass(frozen=True)
class TrackResult:
    """One video instance segmentation result and its provenance.

    ``frames`` has one :class:`TrackFrame` per frame of the video. For results read back
    from a spool it is a one-pass iterator (consumed by :meth:`ResultsWriter.add`); results
    returned to callers hold a tuple.
    """

    video_id: int
    track_id: int
    category_id: int
    score: float
    frame_size: tuple[int, int]
    frames: Iterable[TrackFrame]

    def ytvis(self) -> dict[str, Any]:
        """The YouTube-VIS result object (consumes ``frames`` if it is an iterator)."""
        return {
            "video_id": self.video_id,
            "category_id": self.category_id,
            "score": self.score,
            "segmentations": [frame.rle for frame in self.frames],
        }


class ResultsWriter:
    """Write results to a YouTube-VIS JSON (and optionally a ``.zip`` and tracks Parquet).

    Use as a context manager; :meth:`add` results in the order they should appear, a video's
    results by decreasing score (their position is the tracks Parquet's ``result_id``). The
    files are renamed into place when the block ends without an exception.
    """

    def __init__(
        self,
        results_path: str | os.PathLike[str],
        *,
        zip_path: str | os.PathLike[str] | None = None,
        tracks_path: str | os.PathLike[str] | None = None,
        row_group_rows: int = 65536,
    ) -> None:
        self.results_path = Path(results_path)
        self.zip_path = None if zip_path is None else Path(zip_path)
        self.tracks_path = None if tracks_path is None else Path(tracks_path)
        self.row_group_rows = row_group_rows
        self.num_results = 0
        self._per_video: Counter[int] = Counter()
        self._stack = contextlib.ExitStack()
        self._json: IO[str] | None = None
        self._json_tmp: Path | None = None
        self._zip_tmp: Path | None = None
        self._parquet: pq.ParquetWriter | None = None
        self._rows: dict[str, list[Any]] = {}

    def __enter__(self) -> ResultsWriter:
        with self._stack as stack:
            self._json_tmp = stack.enter_context(atomic_path(self.results_path))
            self._json = stack.enter_context(self._json_tmp.open("w", encoding="utf-8"))
            self._json.write("[")
            if self.zip_path is not None:
                self._zip_tmp = stack.enter_context(atomic_path(self.zip_path))
            if self.tracks_path is not None:
                tmp = stack.enter_context(atomic_path(self.tracks_path))
                self._parquet = stack.enter_context(pq.ParquetWriter(tmp, TRACKS.schema))
                self._rows = {field.name: [] for field in TRACKS.schema}
            self._stack = stack.pop_all()
        return self

    def add(self, result: TrackResult) -> None:
        """Append one result (one pass over its frames) to every output."""
        if self._json is None:
            raise RuntimeError("ResultsWriter.add outside its `with` block")
        if not math.isfinite(result.score):
            raise ValueError(f"video {result.video_id}: result score {result.score} not finite")
        result_id = self._per_video[result.video_id]
        self._per_video[result.video_id] += 1
        self._json.write(
            ("," if self.num_results else "")
            + f'{{"video_id": {json.dumps(result.video_id)}, '
            + f'"category_id": {json.dumps(result.category_id)}, '
            + f'"score": {json.dumps(result.score)}, "segmentations": ['
        )
        for t, frame in enumerate(result.frames):
            self._json.write(("," if t else "") + json.dumps(frame.rle))
            if self._parquet is not None:
                self._add_row(result, result_id, t, frame)
        self._json.write("]}")
        self.num_results += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            assert self._json is not None and self._json_tmp is not None
            self._json.write("]\n")
            self._json.close()
            if self._parquet is not None:
                self._flush_rows()
            if self._zip_tmp is not None:
                with zipfile.ZipFile(self._zip_tmp, "w", zipfile.ZIP_DEFLATED) as archive:
                    archive.write(self._json_tmp, RESULTS_MEMBER)
        self._stack.__exit__(exc_type, exc, tb)

    def _add_row(self, result: TrackResult, result_id: int, t: int, frame: TrackFrame) -> None:
        row = {
            "video_id": result.video_id,
            "result_id": result_id,
            "track_id": result.track_id,
            "category_id": result.category_id,
            "score": result.score,
            "frame_index": t,
            "source_id": frame.source_id,
            "height": result.frame_size[0],
            "width": result.frame_size[1],
            "rle": None if frame.rle is None else frame.rle["counts"],
        }
        for name, value in row.items():
            self._rows[name].append(value)
        if len(self._rows["video_id"]) >= self.row_group_rows:
            self._flush_rows()

    def _flush_rows(self) -> None:
        assert self._parquet is not None
        if self._rows["video_id"]:
            self._parquet.write_table(pa.table(self._rows, schema=TRACKS.schema))
            self._rows = {name: [] for name in self._rows}


def write_results(
    results: Iterable[TrackResult],
    results_path: str | os.PathLike[str],
    *,
    zip_path: str | os.PathLike[str] | None = None,
    tracks_path: str | os.PathLike[str] | None = None,
) -> int:
    """Write ``results`` with a :class:`ResultsWriter`; returns how many were written."""
    with ResultsWriter(results_path, zip_path=zip_path, tracks_path=tracks_path) as writer:
        for result in results:
            writer.add(result)
    return writer.num_results


def materialise(result: TrackResult) -> TrackResult:
    """``result`` with its frames read into a tuple (from a spool iterator, for instance)."""
    return dataclasses.replace(result, frames=tuple(result.frames))
