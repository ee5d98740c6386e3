"""``uvis segment``: one video file in, YouTube-VIS results and an overlay video out.

Outside Snakemake: decode the video to JPEG frames (resumable, :func:`uvis.data.extract_frames`),
run the trained model and query tracking on them (:class:`uvis.inference.predictor.VideoPredictor`), and draw
the tracks (:mod:`uvis.inference.overlay`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av

from uvis.data.frames import extract_frames
from uvis.errors import DataError
from uvis.inference.overlay import write_overlay_video
from uvis.inference.predictor import VideoPredictor
from uvis.io import atomic_write_json


@dataclass(frozen=True)
class SegmentOutput:
    """Files written by :func:`segment_video` and what they hold."""

    results: Path
    overlay: Path | None
    frames: int
    tracks: int


def video_fps(path: Path) -> float:
    """Average frame rate of a video file's first video stream (DataError if unreadable)."""
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise DataError(path, f"cannot read the video's frame rate: {exc}") from exc
    return float(rate) if rate else 25.0


def segment_video(
    video: Path,
    predictor: VideoPredictor,
    out_dir: Path,
    *,
    stride: int = 1,
    resize_short: int | None = None,
    overlay: bool = True,
    min_score: float = 0.3,
    progress: bool = True,
) -> SegmentOutput:
    """Segment, classify and track the objects of one video file into ``out_dir`` with
    ``predictor`` (:class:`~uvis.inference.predictor.VideoPredictor`).

    Writes ``frames/`` (the decoded frames), ``results.json`` (YouTube-VIS results, video id 1,
    category ids of the model's vocabulary; ``categories.json`` maps them to names) and, with
    ``overlay``, ``overlay.mp4`` showing the results scoring at least ``min_score``.
    """
    paths = [
        str(p)
        for p in extract_frames(video, out_dir / "frames", stride=stride, resize_short=resize_short)
    ]
    tracks = predictor.predict(paths, progress=progress)
    results = [track.ytvis(video_id=1) for track in tracks]
    results_path = out_dir / "results.json"
    atomic_write_json(results_path, results)
    names = predictor.categories
    categories = [{"id": i, "name": name} for i, name in names.items()]
    atomic_write_json(out_dir / "categories.json", categories, indent=1)
    overlay_path = None
    if overlay:
        overlay_path = out_dir / "overlay.mp4"
        fps = max(1, math.floor(video_fps(video) / stride + 0.5))
        write_overlay_video(paths, results, names, overlay_path, fps=fps, min_score=min_score)
    return SegmentOutput(
        results=results_path, overlay=overlay_path, frames=len(paths), tracks=len(tracks)
    )
