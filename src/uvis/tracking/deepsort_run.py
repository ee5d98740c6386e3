"""The DeepSORT baseline of UVIS Table 1: per-frame pseudo-labels + CLIP embeddings -> tracks.

"We feed our per-frame pseudo-labels in the validation split and the associated CLIP CLS token
features of each instance crop into DeepSort to generate spatio-temporal masks" (UVIS §4.1).
Inputs, joined on ``(video_id, frame_index, proposal_id)``:

- the eval split's pseudo-labels (:data:`uvis.schemas.PSEUDO_LABELS`), kept at one of UVIS
  Table 2's filter levels (:func:`uvis.pseudo.levels.select`, default all filters incl. PMF);
- their CLIP embeddings (:data:`uvis.schemas.CLIP_SCORES` shards, ``embedding`` column);
- the frame index (:data:`uvis.schemas.FRAME_INDEX`): each video's length and frame size.

A track becomes a YouTube-VIS result whose mask at frame ``t`` is the mask of the detection
it was associated with at ``t`` (``null`` otherwise), with the category and score of
:func:`~uvis.tracking.deepsort.track_class_and_score`. A video's results are ordered by
decreasing score. Pseudo-labels whose embedding is unusable (``valid_embedding`` false) have
no appearance and are left out, with a warning giving their number.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from uvis.data.frame_index import FrameIndex
from uvis.data.ytvis import load_ytvis
from uvis.errors import ConfigError, DataError
from uvis.prototypes.kmeans import unit_rows
from uvis.pseudo.filtering import KEYS, embedding_matrix
from uvis.pseudo.levels import Level, select
from uvis.schemas import CLIP_SCORES, PSEUDO_LABELS
from uvis.tracking.deepsort import (
    DeepSortConfig,
    DeepSortTracker,
    FrameDetections,
    track_class_and_score,
)
from uvis.tracking.results import TrackFrame, TrackResult, write_results

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoDetections:
    """One video's pseudo-label detections, frame by frame (``frames[t]``, possibly empty).

    Per frame: ``detections`` (boxes, unit embeddings) and, row for row, ``proposal_ids``,
    ``class_ids`` (category ids), ``class_scores`` and ``rles`` (compressed counts).
    """

    video_id: int
    frame_size: tuple[int, int]
    frames: tuple[FrameDetections, ...]
    proposal_ids: tuple[np.ndarray, ...]
    class_ids: tuple[np.ndarray, ...]
    class_scores: tuple[np.ndarray, ...]
    rles: tuple[list[str], ...]


def load_pseudo_detections(
    labels_path: str | os.PathLike[str],
    clip_paths: Sequence[str | os.PathLike[str]],
    frames_path: str | os.PathLike[str],
    *,
    level: Level = "pmf",
    tau: float | None = None,
    category_ids: Iterable[int] | None = None,
) -> list[VideoDetections]:
    """Join the kept pseudo-labels with their CLIP embeddings, grouped by video and frame.

    Every video of the frame index is returned, in index order (videos without detections
    too). ConfigError for an unknown ``level`` or a ``tau`` it does not take; DataError,
    naming the file, for: a pseudo-label without a CLIP embedding, duplicate
    keys, a video or frame not in the frame index, a mask of another size than its frame, a
    box without area, a category id not in ``category_ids``.
    """
    labels = PSEUDO_LABELS.read(labels_path)
    try:
        keep = select(labels, level, tau)
    except ValueError as exc:
        raise ConfigError(f"pseudo-label filter level: {exc}") from None
    labels = labels.filter(pa.array(keep))
    labels = labels.sort_by([(k, "ascending") for k in KEYS])
    videos = FrameIndex.read(frames_path).video_sizes()
    _check_labels(labels, videos, category_ids, str(labels_path))
    embeddings = _join_embeddings(labels, clip_paths)
    unit, valid = unit_rows(embeddings)
    valid &= labels.column("valid_embedding").to_numpy(zero_copy_only=False)
    if not valid.all():
        logger.warning(
            "%s: %d kept pseudo-labels have unusable CLIP embeddings and are left out",
            labels_path,
            int((~valid).sum()),
        )
        labels, unit = labels.filter(pa.array(valid)), unit[valid]
    return _group(labels, unit, videos)


def _check_labels(
    labels: pa.Table,
    videos: dict[int, tuple[int, int, int]],
    category_ids: Iterable[int] | None,
    source: str,
) -> None:
    """DataError unless every kept label fits its frame and vocabulary (see the caller)."""
    keys = np.stack([labels.column(k).to_numpy() for k in KEYS], axis=1)
    if len(keys) and (np.diff(keys, axis=0) == 0).all(axis=1).any():
        raise DataError(source, "duplicate (video_id, frame_index, proposal_id) keys")
    heights = labels.column("height").to_numpy()
    widths = labels.column("width").to_numpy()
    for row, (vid, frame, _) in enumerate(keys):
        if vid not in videos:
            raise DataError(source, f"video {vid} is not in the frame index")
        num_frames, height, width = videos[vid]
        if not 0 <= frame < num_frames:
            raise DataError(source, f"video {vid} has {num_frames} frames, not frame {frame}")
        if (heights[row], widths[row]) != (height, width):
            raise DataError(
                source,
                f"video {vid} frame {frame}: mask size {heights[row]}x{widths[row]}, frame "
                f"size {height}x{width}",
            )
    boxes = _boxes(labels)
    bad = np.flatnonzero(~(np.isfinite(boxes).all(axis=1) & (boxes[:, 2:] > 0).all(axis=1)))
    if bad.size:
        vid, frame, proposal = keys[bad[0]]
        raise DataError(
            source,
            f"{bad.size} pseudo-labels have boxes without area or non-finite boxes (first: "
            f"video {vid} frame {frame} proposal {proposal})",
        )
    if category_ids is not None:
        unknown = set(np.unique(labels.column("class_id").to_numpy()).tolist()) - set(category_ids)
        if unknown:
            raise DataError(source, f"class ids {sorted(unknown)} are not dataset categories")


def _boxes(labels: pa.Table) -> np.ndarray:
    flat = labels.column("box").combine_chunks().flatten()
    return flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 4)


def _keys(table: pa.Table) -> Iterator[tuple[int, int, int]]:
    """The ``(video_id, frame_index, proposal_id)`` key of each row."""
    return zip(*(table.column(k).to_pylist() for k in KEYS), strict=True)


def _join_embeddings(labels: pa.Table, clip_paths: Sequence[str | os.PathLike[str]]) -> np.ndarray:
    """The CLIP embedding of each label row (N, D) float32, read shard by shard.

    Only the rows of the kept labels are taken from each shard, so the embeddings of dropped
    proposals are never held in memory.
    """
    position = {key: i for i, key in enumerate(_keys(labels))}
    found = np.full(labels.num_rows, -1)
    parts: list[np.ndarray] = []
    offset = 0
    names = ", ".join(str(p) for p in clip_paths) or "(no CLIP-score files)"
    for path in clip_paths:
        clip = CLIP_SCORES.read(path)
        rows: list[int] = []
        for r, key in enumerate(_keys(clip)):
            target = position.get(key)
            if target is not None:
                if found[target] >= 0:
                    raise DataError(path, f"CLIP scores for {key} appear twice")
                rows.append(r)
                found[target] = offset + len(rows) - 1
        taken = clip.column("embedding").take(pa.array(rows, pa.int64()))
        parts.append(embedding_matrix(taken, str(path)))
        offset += len(rows)
    missing = np.flatnonzero(found < 0)
    if missing.size:
        vid, frame, proposal = (labels.column(k)[int(missing[0])].as_py() for k in KEYS)
        raise DataError(
            names,
            f"{missing.size} kept pseudo-labels have no CLIP embedding (first: video {vid} "
            f"frame {frame} proposal {proposal}): are these the CLIP scores of the same split?",
        )
    widths = {p.shape[1] for p in parts if len(p)}
    if len(widths) > 1:
        raise DataError(names, f"CLIP embeddings of different widths {sorted(widths)}")
    stacked = np.concatenate([p for p in parts if len(p)] or [np.zeros((0, 0), np.float32)])
    return stacked[found]


def _group(
    labels: pa.Table, unit: np.ndarray, videos: dict[int, tuple[int, int, int]]
) -> list[VideoDetections]:
    """Split label rows (sorted by key) into videos and frames."""
    video_ids = labels.column("video_id").to_numpy()
    frame_ids = labels.column("frame_index").to_numpy()
    boxes = _boxes(labels)
    proposal_ids = labels.column("proposal_id").to_numpy()
    class_ids = labels.column("class_id").to_numpy()
    class_scores = labels.column("class_score").to_numpy().astype(np.float64)
    rles = labels.column("rle").to_pylist()
    out = []
    for vid, (num_frames, height, width) in videos.items():
        start, stop = np.searchsorted(video_ids, [vid, vid + 1])
        bounds = start + np.searchsorted(frame_ids[start:stop], np.arange(num_frames + 1))
        spans = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        out.append(
            VideoDetections(
                video_id=int(vid),
                frame_size=(height, width),
                frames=tuple(FrameDetections(boxes=boxes[s], embeddings=unit[s]) for s in spans),
                proposal_ids=tuple(proposal_ids[s] for s in spans),
                class_ids=tuple(class_ids[s] for s in spans),
                class_scores=tuple(class_scores[s] for s in spans),
                rles=tuple(rles[s] for s in spans),
            )
        )
    return out


def deepsort_video(video: VideoDetections, config: DeepSortConfig) -> list[TrackResult]:
    """Run DeepSORT over one video; its results by decreasing score (ties: track order)."""
    tracker = DeepSortTracker(config)
    for frame in video.frames:
        tracker.step(frame)
    height, width = video.frame_size
    results = []
    for track in tracker.reported_tracks():
        frames = [TrackFrame(None, None)] * len(video.frames)
        for t, j in track.history:
            rle = {"size": [height, width], "counts": video.rles[t][j]}
            frames[t] = TrackFrame(int(video.proposal_ids[t][j]), rle)
        category, score = track_class_and_score(
            np.array([video.class_ids[t][j] for t, j in track.history]),
            np.array([video.class_scores[t][j] for t, j in track.history]),
        )
        results.append(
            TrackResult(
                video_id=video.video_id,
                track_id=track.track_id,
                category_id=category,
                score=score,
                frame_size=video.frame_size,
                frames=tuple(frames),
            )
        )
    return sorted(results, key=lambda r: -r.score)


def deepsort_results(
    videos: Iterable[VideoDetections], config: DeepSortConfig
) -> Iterator[TrackResult]:
    """:func:`deepsort_video` over each video, in order."""
    for video in videos:
        yield from deepsort_video(video, config)


def deepsort_files(
    labels_path: str | os.PathLike[str],
    clip_paths: Sequence[str | os.PathLike[str]],
    frames_path: str | os.PathLike[str],
    categories_json: str | os.PathLike[str],
    results_path: str | os.PathLike[str],
    *,
    config: DeepSortConfig,
    level: Level = "pmf",
    tau: float | None = None,
    zip_path: str | os.PathLike[str] | None = None,
    tracks_path: str | os.PathLike[str] | None = None,
) -> dict[str, int]:
    """The ``deepsort`` stage: read the inputs, track, write results (JSON, zip, Parquet).

    ``categories_json`` is a YouTube-VIS JSON whose ``categories`` are the vocabulary the
    pseudo-labels' class ids refer to. Returns counts for the log line.
    """
    categories = load_ytvis(Path(categories_json), Path(categories_json).parent, check_files=False)
    videos = load_pseudo_detections(
        labels_path,
        clip_paths,
        frames_path,
        level=level,
        tau=tau,
        category_ids=[c.id for c in categories.categories],
    )
    num_results = write_results(
        deepsort_results(videos, config),
        results_path,
        zip_path=zip_path,
        tracks_path=tracks_path,
    )
    return {
        "videos": len(videos),
        "detections": int(sum(len(f) for v in videos for f in v.frames)),
        "results": num_results,
    }
