"""Folders of raw video files: discovery, vocabulary, frame extraction and loading.

A folder of videos (``*.mp4, *.avi, *.mov, *.mkv, *.webm``) has no annotations; its vocabulary
(the category names an open-vocabulary model is asked about) comes from the configuration.
Frames are first extracted to ``OUT_ROOT/<video stem>/00000.jpg ...`` by
:func:`extract_video_folder`; :func:`load_video_folder` then indexes the extracted frames.
Video ids are 1-based positions of the video files in sorted name order, counted over all files
found, so a video that failed to decode leaves a gap instead of renumbering the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from uvis.data.frames import (
    Category,
    OnError,
    VideoDataset,
    VideoRecord,
    extract_frames,
    read_extraction,
)
from uvis.errors import ConfigError, DataError
from uvis.progress import progress_bar

logger = logging.getLogger(__name__)

#: File name endings recognised as videos (compared case-insensitively).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def find_videos(video_dir: Path) -> list[Path]:
    """The video files directly in ``video_dir``, sorted by name; stems must be unique."""
    if not video_dir.is_dir():
        raise DataError(video_dir, "video folder does not exist")
    videos = sorted(
        p for p in video_dir.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    )
    if not videos:
        raise DataError(video_dir, f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in the folder")
    stems: dict[str, Path] = {}
    for path in videos:
        if path.stem in stems:
            raise DataError(
                path,
                f"has the same name as {stems[path.stem].name}; their frame folders would clash",
            )
        stems[path.stem] = path
    return videos


def vocabulary_option(text: str) -> tuple[Category, ...]:
    """A command-line vocabulary: a file with one name per line if ``text`` is an existing
    path, else comma-separated names (``"cat,dog"``); categories ``1..N`` as
    :func:`read_vocabulary` gives them."""
    return read_vocabulary(text if Path(text).exists() else text.split(","))


def read_vocabulary(vocabulary: Sequence[str] | str | os.PathLike[str]) -> tuple[Category, ...]:
    """Categories ``1..N`` from a list of names or a text file with one name per line.

    Blank lines and surrounding spaces are ignored; names must be unique.
    """
    source: Path | None = None
    if isinstance(vocabulary, (str, os.PathLike)):
        source = Path(vocabulary)
        try:
            names = source.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(source, "vocabulary file does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(source, f"cannot read vocabulary: {exc}") from None
    else:
        names = list(vocabulary)
    names = [name.strip() for name in names if name.strip()]
    problem = None
    if not names:
        problem = "the vocabulary is empty"
    elif len(set(names)) != len(names):
        problem = f"names listed twice: {sorted({n for n in names if names.count(n) > 1})}"
    if problem and source is not None:
        raise DataError(source, problem)
    if problem:
        raise ConfigError(f"vocabulary: {problem}")
    return tuple(Category(id=k, name=name) for k, name in enumerate(names, start=1))


def _video_dataset(
    video_dir: Path, frames_root: Path, categories: tuple[Category, ...], videos: list[VideoRecord]
) -> VideoDataset:
    return VideoDataset(
        name=video_dir.name,
        categories=categories,
        videos=tuple(videos),
        instances=None,
        root=frames_root.absolute(),
    )


def _record(video_id: int, video_path: Path, frames_dir: Path) -> VideoRecord:
    """The record of an extracted video, with the frame size from its extraction manifest."""
    manifest, frames = read_extraction(frames_dir)
    return VideoRecord(
        id=video_id,
        name=video_path.stem,
        height=manifest["height"],
        width=manifest["width"],
        frame_paths=tuple(p.absolute() for p in frames),
    )


def load_video_folder(
    video_dir: Path, vocabulary: Sequence[str] | Path, *, frames_root: Path
) -> VideoDataset:
    """The videos of ``video_dir`` whose frames were extracted under ``frames_root``.

    Every video must have a finished extraction folder ``frames_root/<stem>``; see
    :func:`extract_video_folder`.
    """
    categories = read_vocabulary(vocabulary)
    records = []
    for video_id, path in enumerate(find_videos(video_dir), start=1):
        frames_dir = frames_root / path.stem
        if not frames_dir.exists():
            raise DataError(path, f"frames not extracted to {frames_dir} (run `uvis data extract`)")
        records.append(_record(video_id, path, frames_dir))
    return _video_dataset(video_dir, frames_root, categories, records)


def extract_video_folder(
    video_dir: Path,
    out_root: Path,
    vocabulary: Sequence[str] | Path,
    *,
    stride: int = 1,
    resize_short: int | None = None,
    max_frames: int | None = None,
    jpeg_quality: int = 95,
    on_error: OnError = "fail",
    progress: bool = True,
) -> tuple[VideoDataset, list[str]]:
    """Extract the frames of every video of ``video_dir`` to ``out_root/<stem>/`` (resumable).

    See :func:`uvis.data.frames.extract_frames` for the options. A video that cannot be decoded
    raises :class:`DataError`, or with ``on_error="skip"`` is logged, left out of the dataset
    and reported in the returned list (one message naming the file and the problem per video).
    """
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error: must be 'fail' or 'skip', got {on_error!r}")
    categories = read_vocabulary(vocabulary)
    records, skipped = [], []
    videos = find_videos(video_dir)
    for video_id, path in enumerate(
        progress_bar(videos, desc="extract frames", unit="video", disable=not progress), start=1
    ):
        frames_dir = out_root / path.stem
        try:
            extract_frames(
                path,
                frames_dir,
                stride=stride,
                resize_short=resize_short,
                max_frames=max_frames,
                jpeg_quality=jpeg_quality,
            )
        except DataError as exc:
            if on_error == "fail":
                raise
            logger.warning("skipping video %s: %s", path.name, exc)
            skipped.append(str(exc))
            continue
        records.append(_record(video_id, path, frames_dir))
    if skipped:
        logger.warning(
            "%d of %d videos in %s could not be extracted", len(skipped), len(videos), video_dir
        )
    return _video_dataset(video_dir, out_root, categories, records), skipped
