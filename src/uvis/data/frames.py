"""The common dataset containers, the frame index every later stage reads, and frame extraction.

Every dataset format (YouTube-VIS/OVIS JSON, DAVIS folders, folders of raw video files) is loaded
into one :class:`VideoDataset`. Its :meth:`VideoDataset.frame_index` is the one table of frames
(schema :data:`uvis.schemas.FRAME_INDEX`) that later stages read, whatever the source format.
JPEG datasets are indexed in place; raw videos are first decoded to JPEG folders by
:func:`extract_frames`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from uvis.categories import Category
from uvis.errors import ConfigError, DataError
from uvis.io import atomic_path
from uvis.masks import RLE
from uvis.progress import progress_bar
from uvis.schemas import FRAME_INDEX

logger = logging.getLogger(__name__)

VerifyMode = Literal["none", "header", "decode"]
OnError = Literal["fail", "skip"]

#: Name of the file, inside a finished extraction folder, that records how it was extracted.
MANIFEST_NAME = "extraction.json"


@dataclass(frozen=True)
class VideoRecord:
    """One video: its id, folder name, frame size and the absolute paths of its frames in order."""

    id: int
    name: str
    height: int
    width: int
    frame_paths: tuple[Path, ...]


@dataclass(frozen=True)
class Instance:
    """One annotated object track, in the YouTube-VIS layout.

    ``segmentations[t]`` is the object's mask in frame ``t`` of its video (``None`` where the
    object is not visible) and ``areas[t]`` its pixel area (``None`` likewise).
    """

    id: int
    video_id: int
    category_id: int
    iscrowd: int
    segmentations: list[RLE | None]
    areas: list[float | None]


@dataclass(frozen=True)
class VideoDataset:
    """One split of a dataset: vocabulary, videos and, where ground truth is public, instances.

    ``instances`` is ``None`` for splits without annotations (YouTube-VIS/OVIS valid and test,
    raw video folders), which is different from an annotated split with no objects (``()``).
    ``root`` is the folder the frame paths live under.
    """

    name: str
    categories: tuple[Category, ...]
    videos: tuple[VideoRecord, ...]
    instances: tuple[Instance, ...] | None
    root: Path

    def frame_index(self) -> pa.Table:
        """One row per frame, videos in dataset order (schema :data:`uvis.schemas.FRAME_INDEX`).

        Sizes are those of the video records; :func:`write_frame_index` checks them on disk.
        """
        columns: dict[str, list[Any]] = {field.name: [] for field in FRAME_INDEX.schema}
        for video in self.videos:
            for position, path in enumerate(video.frame_paths):
                columns["video_id"].append(video.id)
                columns["video_name"].append(video.name)
                columns["frame_index"].append(position)
                columns["path"].append(str(path))
                columns["height"].append(video.height)
                columns["width"].append(video.width)
        return pa.table(columns, schema=FRAME_INDEX.schema)

    def subsample(self, stride: int) -> VideoDataset:
        """Keep every ``stride``-th frame of every video (see :func:`is_kept_frame`).

        Instance masks and areas are subsampled the same way, so after subsampling a frame's
        ``frame_index`` is its position in the strided list, and still the index into
        ``Instance.segmentations``; it is no longer the position in the original annotation file.
        """
        check_stride(stride)
        if stride == 1:
            return self

        def keep(items: list[Any] | tuple[Any, ...]) -> list[Any]:
            return [item for t, item in enumerate(items) if is_kept_frame(t, stride)]

        videos = tuple(
            dataclasses.replace(video, frame_paths=tuple(keep(video.frame_paths)))
            for video in self.videos
        )
        instances = None
        if self.instances is not None:
            instances = tuple(
                dataclasses.replace(
                    inst, segmentations=keep(inst.segmentations), areas=keep(inst.areas)
                )
                for inst in self.instances
            )
        return dataclasses.replace(self, videos=videos, instances=instances)

    def objects_by_frame(
        self, videos: Collection[int] | None = None
    ) -> dict[tuple[int, int], list[tuple[RLE, int]]]:
        """The annotated objects of each frame, ``{(video_id, frame_index): [(mask,
        category_id)]}``.

        Crowd instances and frames where an instance is not annotated (``None``) are left out;
        frames without objects are absent. ``videos`` restricts the result to those video ids.
        An unannotated split (``instances is None``) gives an empty mapping.
        """
        objects: dict[tuple[int, int], list[tuple[RLE, int]]] = {}
        for inst in self.instances or ():
            if inst.iscrowd or (videos is not None and inst.video_id not in videos):
                continue
            for t, seg in enumerate(inst.segmentations):
                if seg is not None:
                    objects.setdefault((inst.video_id, t), []).append((seg, inst.category_id))
        return objects

    def drop_videos(self, video_ids: Collection[int]) -> VideoDataset:
        """The dataset without the given videos and their instances; other ids are unchanged."""
        videos = tuple(v for v in self.videos if v.id not in video_ids)
        instances = None
        if self.instances is not None:
            instances = tuple(i for i in self.instances if i.video_id not in video_ids)
        return dataclasses.replace(self, videos=videos, instances=instances)


def read_frame(path: str | Path, height: int | None = None, width: int | None = None) -> np.ndarray:
    """One frame as ``(H, W, 3)`` uint8 RGB.

    With ``height`` and ``width`` (what the frame index says), a frame of another size is an
    error too. Every failure is a :class:`DataError` naming the file and the problem.
    """
    try:
        with Image.open(path) as image:
            rgb = np.array(image.convert("RGB"))
    except FileNotFoundError as exc:
        raise DataError(path, "frame file does not exist") from exc
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot read image: {exc}") from exc
    if height is not None and width is not None and rgb.shape[:2] != (height, width):
        raise DataError(
            path,
            f"frame is {rgb.shape[1]}x{rgb.shape[0]} (WxH), the frame index says {width}x{height}",
        )
    return rgb


def check_stride(stride: int) -> None:
    """Raise :class:`ConfigError` unless ``stride`` is a positive integer."""
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"stride: must be a positive integer, got {stride!r}")


def is_kept_frame(position: int, stride: int) -> bool:
    """The frame-stride rule: keep frames 0, stride, 2*stride, ... (the first frame always)."""
    return position % stride == 0


# --------------------------------------------------------------------------------------------
# Writing the frame index


@dataclass(frozen=True)
class IndexSummary:
    """What :func:`write_frame_index` wrote: counts, and one message per video it dropped."""

    videos: int
    frames: int
    skipped: tuple[str, ...]


def frame_problem(path: Path, height: int, width: int, verify: VerifyMode) -> str | None:
    """The problem with one frame file, or ``None`` if it is fine.

    ``"header"`` opens the image and compares its size with ``height`` x ``width`` (cheap:
    catches missing files and sizes that disagree with the annotation file); ``"decode"`` also
    decodes all pixels (catches truncated or corrupt JPEGs).
    """
    if verify == "none":
        return None
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                return f"frame is {image.width}x{image.height}, expected {width}x{height} (WxH)"
            if verify == "decode":
                image.load()
    except FileNotFoundError:
        return "frame file does not exist"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"cannot read image: {exc}"
    return None


def write_frame_index(
    dataset: VideoDataset,
    out_path: Path,
    *,
    verify: VerifyMode = "header",
    on_error: OnError = "fail",
    progress: bool = False,
    workers: int | None = None,
) -> IndexSummary:
    """Verify the frames of ``dataset`` and write its frame index as Parquet, atomically.

    A missing frame, a corrupt image or a size mismatch (see :func:`frame_problem`) raises a
    :class:`DataError` naming the frame file, or with ``on_error="skip"`` drops that whole video
    (a video with a bad frame cannot be processed as a sequence); each dropped video is logged
    and listed in the returned summary. Frames are checked by a thread pool (``workers``
    threads), since image opening and decoding release the GIL.
    """
    if verify not in ("none", "header", "decode"):
        raise ConfigError(f"verify: must be 'none', 'header' or 'decode', got {verify!r}")
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error: must be 'fail' or 'skip', got {on_error!r}")
    skipped: dict[int, str] = {}
    if verify != "none":
        workers = workers or min(16, 2 * (os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for video in progress_bar(
                dataset.videos, desc="verify frames", unit="video", disable=not progress
            ):
                problems = pool.map(
                    lambda path, v=video: frame_problem(path, v.height, v.width, verify),
                    video.frame_paths,
                )
                for path, problem in zip(video.frame_paths, problems, strict=True):
                    if problem is None:
                        continue
                    error = DataError(path, f"{problem} (video {video.id} '{video.name}')")
                    if on_error == "fail":
                        raise error
                    logger.warning("skipping video %d '%s': %s", video.id, video.name, error)
                    skipped[video.id] = str(error)
                    break
    kept = dataset.drop_videos(skipped)
    table = kept.frame_index()
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    if skipped:
        logger.warning(
            "%d of %d videos of %s skipped because of bad frames",
            len(skipped),
            len(dataset.videos),
            dataset.name,
        )
    return IndexSummary(
        videos=len(kept.videos), frames=table.num_rows, skipped=tuple(skipped.values())
    )


# --------------------------------------------------------------------------------------------
# Frame extraction from video files


def check_resize_short(short_side: int) -> None:
    """Raise :class:`ConfigError` unless ``short_side`` is a positive even number of pixels."""
    if isinstance(short_side, bool) or not isinstance(short_side, int) or short_side < 2:
        raise ConfigError(f"resize_short: must be a positive even integer, got {short_side!r}")
    if short_side % 2:
        raise ConfigError(f"resize_short: must be even (4:2:0 video), got {short_side}")


def resized_shape(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Frame size ``(height, width)`` after resizing so that the short side is ``short_side``.

    The aspect ratio is kept and the long side rounded to the nearest even number (ties up):
    even sizes keep 4:2:0 chroma subsampling exact when frames are re-encoded as video.
    """
    check_resize_short(short_side)
    scale = short_side / min(height, width)

    def even(size: int) -> int:
        return max(2, 2 * math.floor(size * scale / 2 + 0.5))

    return even(height), even(width)


def frame_file_name(position: int) -> str:
    """File name of the ``position``-th extracted frame: ``00000.jpg``, ``00001.jpg``, ..."""
    return f"{position:05d}.jpg"


def partial_dir(out_dir: Path) -> Path:
    """Where :func:`extract_frames` writes before renaming to ``out_dir`` (next to it, hidden)."""
    return out_dir.parent / f".{out_dir.name}.partial"


def _decoded_frames(
    video_path: Path, stride: int, max_frames: int | None
) -> Iterator[av.VideoFrame]:
    """Decode ``video_path`` and yield every ``stride``-th frame, at most ``max_frames``.

    Decoder errors become :class:`DataError` naming the video; errors of the caller (writing
    frames) are not caught here.
    """
    kept = decoded = 0
    try:
        with av.open(str(video_path)) as container:
            if not container.streams.video:
                raise DataError(video_path, "cannot decode: the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for decoded, frame in enumerate(container.decode(stream), start=1):
                if not is_kept_frame(decoded - 1, stride):
                    continue
                yield frame
                kept += 1
                if kept == max_frames:
                    return
            declared = stream.frames  # 0 where the container does not say
    except av.FFmpegError as exc:
        raise DataError(video_path, f"cannot decode: {exc.strerror or exc}") from exc
    if decoded < declared:
        shortfall = declared - decoded
        if shortfall > truncation_tolerance(declared):
            raise DataError(
                video_path,
                f"truncated or damaged: decoded {decoded} of the {declared} frames the "
                "container declares",
            )
        # Edit lists can legitimately hide a few frames that the container counts.
        logger.warning(
            "%s: decoded %d frames but the container declares %d (an edit list?)",
            video_path,
            decoded,
            declared,
        )


def truncation_tolerance(declared: int) -> int:
    """How many of a container's declared frames may fail to decode before the file counts as
    truncated: edit lists hide a couple of frames at most (2, or 1 % of long videos); a cut
    file loses everything after the cut."""
    return max(2, declared // 100)


#: Manifest entries that identify the source file, not the settings.
_SOURCE_KEYS = ("source_bytes", "source_mtime_ns")


def source_identity(video_path: Path) -> dict[str, int]:
    """Size and modification time of a video file: a finished extraction whose source no longer
    has them was made from another file (replaced or re-encoded since) and is redone."""
    try:
        stat = video_path.stat()
    except OSError as exc:
        raise DataError(video_path, f"cannot read: {exc.strerror or exc}") from None
    return {"source_bytes": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


def _extraction_settings(
    video_path: Path,
    stride: int,
    resize_short: int | None,
    max_frames: int | None,
    jpeg_quality: int,
) -> dict[str, Any]:
    """The settings recorded in the manifest; a finished folder is reused only if they match."""
    return {
        "source": video_path.name,
        **source_identity(video_path),
        "stride": stride,
        "resize_short": resize_short,
        "max_frames": max_frames,
        "jpeg_quality": jpeg_quality,
    }


def read_extraction(out_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    """The manifest of a finished extraction folder and its frame paths, in order.

    Raises :class:`DataError` if the folder has no readable manifest or a listed frame is gone.
    """
    manifest_path = out_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        count, height, width = (int(manifest[key]) for key in ("frames", "height", "width"))
    except FileNotFoundError:
        raise DataError(
            out_dir, f"not a finished frame extraction (no {MANIFEST_NAME}); delete it and re-run"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(manifest_path, f"unreadable extraction manifest: {exc}") from exc
    frames = [out_dir / frame_file_name(t) for t in range(count)]
    missing = [path for path in frames if not path.is_file()]
    if missing:
        raise DataError(
            missing[0], f"extracted frame is missing ({len(missing)} of {count} missing)"
        )
    return {**manifest, "frames": count, "height": height, "width": width}, frames


def extract_frames(
    video_path: Path,
    out_dir: Path,
    *,
    stride: int = 1,
    resize_short: int | None = None,
    max_frames: int | None = None,
    jpeg_quality: int = 95,
) -> list[Path]:
    """Decode a video file to JPEG frames ``out_dir/00000.jpg, 00001.jpg, ...``; return their paths.

    Every ``stride``-th decoded frame is kept (:func:`is_kept_frame`), at most ``max_frames``
    of them, optionally resized so the short side is ``resize_short`` (:func:`resized_shape`).
    Frames are written to :func:`partial_dir` and the folder renamed to ``out_dir`` at the end,
    so an interrupted run never leaves a folder that looks finished; a leftover partial folder
    is replaced. A finished ``out_dir`` is not rewritten: its frames are returned if it was
    extracted with the same settings (recorded in ``extraction.json``), else it is an error.
    Raises :class:`DataError` naming the video if it cannot be decoded or has no frames.
    """
    check_stride(stride)
    if resize_short is not None:
        check_resize_short(resize_short)
    if max_frames is not None and (isinstance(max_frames, bool) or max_frames < 1):
        raise ConfigError(f"max_frames: must be a positive integer, got {max_frames!r}")
    if not 1 <= jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality: must be between 1 and 100, got {jpeg_quality!r}")
    settings = _extraction_settings(video_path, stride, resize_short, max_frames, jpeg_quality)
    stale = None
    if out_dir.exists():
        manifest, frames = read_extraction(out_dir)
        changed = [
            f"{key}={manifest.get(key)!r} (now {value!r})"
            for key, value in settings.items()
            if manifest.get(key) != value and key not in _SOURCE_KEYS
        ]
        if changed:
            raise DataError(
                out_dir,
                f"was extracted with other settings: {', '.join(changed)}; "
                "delete it or use another output folder",
            )
        if all(manifest.get(key) == settings[key] for key in _SOURCE_KEYS):
            return frames
        logger.warning(
            "%s: %s changed since its frames were extracted (size or time); extracting again",
            out_dir,
            video_path,
        )
        stale = out_dir

    tmp = partial_dir(out_dir)
    if tmp.exists():
        logger.info("removing %s left by an interrupted extraction", tmp)
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    count, source_size, out_size = 0, None, None
    try:
        for frame in _decoded_frames(video_path, stride, max_frames):
            if source_size is None:
                source_size = (frame.width, frame.height)
            elif (frame.width, frame.height) != source_size:
                raise DataError(
                    video_path,
                    f"frame size changes mid-stream, from {source_size} to "
                    f"{(frame.width, frame.height)} (WxH)",
                )
            if resize_short is None:
                image = frame.to_image()
            else:
                # Resized by swscale while converting to RGB: several times faster than PIL.
                height, width = resized_shape(frame.height, frame.width, resize_short)
                image = frame.to_image(width=width, height=height, interpolation="AREA")
            image.save(tmp / frame_file_name(count), quality=jpeg_quality)
            out_size = image.size
            count += 1
        if out_size is None:
            raise DataError(video_path, "cannot decode: no video frames in the file")
        manifest = {**settings, "frames": count, "height": out_size[1], "width": out_size[0]}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if stale is not None:  # the frames of the replaced source go only once these are done
            shutil.rmtree(stale)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / frame_file_name(t) for t in range(count)]
