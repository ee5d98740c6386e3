"""Reader of YouTube-VIS 2019/2021 and OVIS annotation files (one JSON format).

The file has ``videos`` (``id``, ``file_names``, ``height``, ``width``, optional ``length``),
``categories`` (``id``, ``name``) and, for splits with public ground truth, ``annotations``
(``id``, ``video_id``, ``category_id``, ``iscrowd``, per-frame ``segmentations`` as COCO RLEs or
``null`` where the object is absent, per-frame ``areas``). ``file_names`` are relative to the
split's image folder, e.g. ``0043f083b5/00000.jpg`` under ``train/JPEGImages``.

Every format problem is a :class:`DataError` naming the JSON file and the video or annotation id.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

from uvis import masks
from uvis.data.frames import Category, Instance, VideoDataset, VideoRecord
from uvis.errors import DataError
from uvis.masks import RLE


def load_ytvis(json_path: Path, image_root: Path, *, check_files: bool = True) -> VideoDataset:
    """Load a YouTube-VIS/OVIS JSON file whose frames live under ``image_root``.

    Splits without public ground truth (no ``annotations`` key, or ``null``) give
    ``instances=None``. Videos are sorted by id. With ``check_files`` every listed frame must exist
    (one directory listing per video folder, so this is cheap).
    """
    json_path = Path(json_path)
    doc = _read_json(json_path)
    categories = _parse_categories(doc["categories"], json_path)
    root = Path(image_root).absolute()
    videos = _parse_videos(doc["videos"], json_path, root)
    instances = None
    if doc.get("annotations") is not None:
        instances = _parse_annotations(doc["annotations"], json_path, videos, categories)
    if check_files:
        _check_frames_exist(videos, json_path)
    return VideoDataset(
        name=json_path.stem,
        categories=categories,
        videos=tuple(sorted(videos.values(), key=lambda v: v.id)),
        instances=instances,
        root=root,
    )


def _read_json(json_path: Path) -> dict[str, Any]:
    """The parsed top-level object, which must have ``videos`` and ``categories``."""
    try:
        with json_path.open("rb") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DataError(json_path, "annotation file does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(json_path, f"not a JSON file: {exc}") from None
    except OSError as exc:
        raise DataError(json_path, f"cannot read: {exc.strerror or exc}") from None
    if not isinstance(doc, dict):
        raise DataError(json_path, f"expected a JSON object at top level, got {type(doc).__name__}")
    missing = [key for key in ("videos", "categories") if key not in doc]
    if missing:
        raise DataError(json_path, f"not a YouTube-VIS file: missing top-level keys {missing}")
    for key in ("videos", "categories", "annotations"):
        if doc.get(key) is not None and not isinstance(doc[key], list):
            raise DataError(json_path, f"'{key}' must be a list, got {type(doc[key]).__name__}")
    return doc


def _field(obj: Any, key: str, kind: type | tuple[type, ...], where: str, json_path: Path) -> Any:
    """``obj[key]``, which must exist and be of type ``kind`` (booleans are never integers)."""
    if not isinstance(obj, dict):
        raise DataError(json_path, f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(json_path, f"{where}: missing '{key}'")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DataError(json_path, f"{where}: '{key}' has the wrong type ({value!r})")
    return value


def _positive_id(obj: Any, key: str, where: str, json_path: Path) -> int:
    value = _field(obj, key, int, where, json_path)
    if value <= 0:
        raise DataError(json_path, f"{where}: '{key}' must be a positive integer, got {value}")
    return value


def _parse_categories(items: list[Any], json_path: Path) -> tuple[Category, ...]:
    categories: dict[int, Category] = {}
    for k, item in enumerate(items):
        cid = _positive_id(item, "id", f"category #{k}", json_path)
        name = _field(item, "name", str, f"category {cid}", json_path)
        if cid in categories:
            raise DataError(json_path, f"category {cid}: duplicate category id")
        categories[cid] = Category(id=cid, name=name)
    return tuple(sorted(categories.values(), key=lambda c: c.id))


def _parse_videos(items: list[Any], json_path: Path, root: Path) -> dict[int, VideoRecord]:
    videos: dict[int, VideoRecord] = {}
    for k, item in enumerate(items):
        vid = _positive_id(item, "id", f"video #{k}", json_path)
        where = f"video {vid}"
        if vid in videos:
            raise DataError(json_path, f"{where}: duplicate video id")
        height = _positive_id(item, "height", where, json_path)
        width = _positive_id(item, "width", where, json_path)
        file_names = _field(item, "file_names", list, where, json_path)
        if not file_names or not all(isinstance(name, str) for name in file_names):
            raise DataError(json_path, f"{where}: 'file_names' must be a non-empty list of strings")
        length = item.get("length")
        if length is not None and length != len(file_names):
            raise DataError(
                json_path,
                f"{where}: 'length' is {length} but 'file_names' lists {len(file_names)} frames",
            )
        folder = PurePosixPath(file_names[0]).parent
        if str(folder) == ".":
            raise DataError(
                json_path,
                f"{where}: file names must be '<video folder>/<frame>', got '{file_names[0]}'",
            )
        videos[vid] = VideoRecord(
            id=vid,
            name=folder.as_posix(),
            height=height,
            width=width,
            frame_paths=tuple(root / name for name in file_names),
        )
    return videos


def _normalized_rle(seg: Any, video: VideoRecord, where: str, json_path: Path) -> RLE:
    """A per-frame segmentation as a compressed RLE of the video's size (uncompressed converted)."""
    if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
        raise DataError(json_path, f"{where}: segmentation is not an RLE with 'size' and 'counts'")
    if not isinstance(seg["size"], (list, tuple)) or list(seg["size"]) != [
        video.height,
        video.width,
    ]:
        raise DataError(
            json_path,
            f"{where}: RLE size {seg['size']} differs from the video size "
            f"[{video.height}, {video.width}] (video {video.id})",
        )
    problem = masks.rle_problem(seg, video.height, video.width)
    if problem is not None:
        raise DataError(json_path, f"{where} (video {video.id}): {problem}")
    if isinstance(seg["counts"], str):
        return seg
    compressed = masks.to_coco(seg)
    return {"size": [video.height, video.width], "counts": compressed["counts"].decode("ascii")}


def _parse_annotations(
    items: list[Any],
    json_path: Path,
    videos: dict[int, VideoRecord],
    categories: tuple[Category, ...],
) -> tuple[Instance, ...]:
    category_ids = {c.id for c in categories}
    seen: set[int] = set()
    instances = []
    for k, item in enumerate(items):
        aid = _field(item, "id", int, f"annotation #{k}", json_path)
        where = f"annotation {aid}"
        if aid <= 0:
            raise DataError(json_path, f"{where}: annotation ids must be positive (0 is reserved)")
        if aid in seen:
            raise DataError(json_path, f"{where}: duplicate annotation id")
        seen.add(aid)
        video = videos.get(_field(item, "video_id", int, where, json_path))
        if video is None:
            raise DataError(json_path, f"{where}: unknown video_id {item['video_id']}")
        category_id = _field(item, "category_id", int, where, json_path)
        if category_id not in category_ids:
            raise DataError(json_path, f"{where}: unknown category_id {category_id}")
        length = len(video.frame_paths)
        segs = _field(item, "segmentations", list, where, json_path)
        if len(segs) != length:
            raise DataError(
                json_path,
                f"{where}: 'segmentations' has {len(segs)} entries but video {video.id} has {length} frames",
            )
        segmentations = [
            None if seg is None else _normalized_rle(seg, video, f"{where}, frame {t}", json_path)
            for t, seg in enumerate(segs)
        ]
        areas = item.get("areas")
        if areas is None:
            areas = [None if seg is None else float(masks.area(seg)) for seg in segmentations]
        elif (
            not isinstance(areas, list)
            or len(areas) != length
            or not all(
                a is None or (isinstance(a, (int, float)) and not isinstance(a, bool))
                for a in areas
            )
        ):
            raise DataError(
                json_path, f"{where}: 'areas' must list one number or null per frame ({length})"
            )
        else:
            areas = [None if a is None else float(a) for a in areas]
        iscrowd = item.get("iscrowd", 0)
        if iscrowd not in (0, 1):
            raise DataError(json_path, f"{where}: 'iscrowd' must be 0 or 1, got {iscrowd!r}")
        instances.append(
            Instance(
                id=aid,
                video_id=video.id,
                category_id=category_id,
                iscrowd=int(iscrowd),
                segmentations=segmentations,
                areas=areas,
            )
        )
    return tuple(instances)


def _check_frames_exist(videos: dict[int, VideoRecord], json_path: Path) -> None:
    """Raise :class:`DataError` naming the first missing frame file and how many are missing."""
    listings: dict[Path, set[str]] = {}
    missing: dict[int, list[Path]] = defaultdict(list)
    for video in sorted(videos.values(), key=lambda v: v.id):
        for path in video.frame_paths:
            folder = path.parent
            if folder not in listings:
                try:
                    listings[folder] = set(os.listdir(folder))
                except OSError:
                    listings[folder] = set()
            if path.name not in listings[folder]:
                missing[video.id].append(path)
    if missing:
        vid, paths = next(iter(missing.items()))
        total = sum(len(p) for p in missing.values())
        raise DataError(
            paths[0],
            f"frame of video {vid} listed in {json_path} does not exist "
            f"({total} missing frames in {len(missing)} videos)",
        )
