"""Reading and validating YouTube-VIS ground truth and results for :mod:`uvis.evaluation.ytvis`.

This module only parses: it turns the JSON objects into small typed containers whose masks are
pycocotools RLEs (``{"size": [h, w], "counts": bytes}``) and checks everything the metric relies
on, so that a malformed file gives a :class:`~uvis.errors.DataError` naming the file and the
problem instead of a traceback or a silently wrong number. The evaluation rules themselves live
in :mod:`uvis.evaluation.ytvis`.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from uvis import masks
from uvis.categories import Category
from uvis.errors import DataError
from uvis.io import parse_json, read_json

CocoRle = dict[str, Any]
"""A compressed RLE as pycocotools takes it: ``{"size": [h, w], "counts": bytes}``."""

_AREA_CHUNK = 255
"""Most RLEs per ``pycocotools.mask.area`` call (it overflows a uint8 counter from 256 on)."""

RESULTS_MEMBER = "results.json"
"""Name of the results file inside a ``.zip`` submission (as the evaluation servers expect)."""


@dataclass(frozen=True, slots=True)
class Video:
    """A ground-truth video: its id, frame size and number of frames."""

    id: int
    height: int
    width: int
    num_frames: int


@dataclass(frozen=True, slots=True, eq=False)
class GtInstance:
    """One ground-truth annotation: an object track over the frames of one video.

    ``masks[f]`` is ``None`` where the annotation has no segmentation in frame ``f``;
    ``mask_areas[f]`` is the pixel count of that mask (0 where absent). ``area_field`` is the
    annotation's own ``areas`` list, which (not the masks) decides the small/medium/large range.
    """

    id: int
    video_id: int
    category_id: int
    iscrowd: bool
    masks: tuple[CocoRle | None, ...]
    mask_areas: np.ndarray
    area_field: tuple[float | None, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Detection:
    """One result: a scored, categorised mask track over the frames of one video.

    ``index`` is the position in the results list (the official code numbers results
    ``index + 1`` in that order, which decides ties between equal scores).
    """

    index: int
    video_id: int
    category_id: int
    score: float
    masks: tuple[CocoRle | None, ...]
    mask_areas: np.ndarray


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """A validated YouTube-VIS ground truth: videos and categories sorted by id."""

    videos: dict[int, Video]
    categories: tuple[Category, ...]
    instances: tuple[GtInstance, ...]


# ---------------------------------------------------------------------------------------------
# Files


def read_results_file(path: Path) -> Any:
    """Load results from a JSON file, or from the ``results.json`` inside a ``.zip`` file."""
    if path.suffix.lower() != ".zip":
        return read_json(path)
    if not path.exists():
        raise DataError(path, "file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if PurePosixPath(n).name == RESULTS_MEMBER]
            if len(members) != 1:
                found = "none" if not members else ", ".join(members)
                raise DataError(
                    path,
                    f"a results .zip must contain exactly one {RESULTS_MEMBER} (found {found})",
                )
            data = archive.read(members[0])
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(path, f"not a readable .zip file: {exc}") from None
    return parse_json(path, data, member=members[0])


# ---------------------------------------------------------------------------------------------
# Ground truth


def load_ground_truth(gt: Any, name: str) -> GroundTruth:
    """Validate a YouTube-VIS ground-truth object (``videos``, ``categories``, ``annotations``).

    Raises :class:`DataError` (naming ``name``) for anything the evaluation cannot use
    unambiguously: missing keys, duplicate ids, unknown video/category references, list lengths
    that differ from the video's frame count, masks of another size than the video.
    """
    if not isinstance(gt, dict):
        raise DataError(name, f"expected a YouTube-VIS JSON object, got a JSON {_kind(gt)}")
    for key in ("videos", "categories", "annotations"):
        if key not in gt:
            extra = " (ground truth with annotations is needed)" if key == "annotations" else ""
            raise DataError(name, f"not in YouTube-VIS format: no '{key}' list{extra}")
        if not isinstance(gt[key], list):
            raise DataError(name, f"'{key}' must be a list, got a JSON {_kind(gt[key])}")
    videos = _load_videos(gt["videos"], name)
    categories = _load_categories(gt["categories"], name)
    cat_ids = {c.id for c in categories}
    fields = []
    seen_ids: set[int] = set()
    for pos, ann in enumerate(gt["annotations"]):
        fields.append(_gt_instance_fields(ann, pos, videos, cat_ids, name))
        if fields[-1]["id"] in seen_ids:
            raise DataError(name, f"duplicate annotation id {fields[-1]['id']}")
        seen_ids.add(fields[-1]["id"])
    areas = _mask_areas([f["masks"] for f in fields])
    instances = tuple(GtInstance(**f, mask_areas=a) for f, a in zip(fields, areas, strict=True))
    return GroundTruth(videos=videos, categories=categories, instances=instances)


def _load_videos(items: list[Any], name: str) -> dict[int, Video]:
    videos: dict[int, Video] = {}
    for pos, v in enumerate(items):
        where = f"videos[{pos}]"
        if not isinstance(v, dict):
            raise DataError(name, f"{where} must be an object")
        vid = _int_field(v, "id", where, name)
        where = f"video {vid}"
        if vid in videos:
            raise DataError(name, f"duplicate video id {vid}")
        height = _int_field(v, "height", where, name, minimum=1)
        width = _int_field(v, "width", where, name, minimum=1)
        videos[vid] = Video(vid, height, width, _num_frames(v, where, name))
    return dict(sorted(videos.items()))


def _num_frames(v: dict[str, Any], where: str, name: str) -> int:
    """Frame count: ``len(file_names)``, else ``length`` (2021/OVIS files may lack ``length``)."""
    file_names = v.get("file_names")
    length = _int_field(v, "length", where, name, minimum=1) if "length" in v else None
    if file_names is not None:
        if not isinstance(file_names, list) or not file_names:
            raise DataError(name, f"{where}: 'file_names' must be a non-empty list")
        if length is not None and length != len(file_names):
            raise DataError(
                name, f"{where}: 'length' is {length} but 'file_names' has {len(file_names)}"
            )
        return len(file_names)
    if length is None:
        raise DataError(name, f"{where} has neither 'file_names' nor 'length'")
    return length


def _load_categories(items: list[Any], name: str) -> tuple[Category, ...]:
    cats: dict[int, Category] = {}
    names: set[str] = set()
    for pos, c in enumerate(items):
        where = f"categories[{pos}]"
        if not isinstance(c, dict):
            raise DataError(name, f"{where} must be an object")
        cid = _int_field(c, "id", where, name)
        cname = c.get("name")
        if not isinstance(cname, str):
            raise DataError(name, f"category {cid}: 'name' must be a string")
        if cid in cats:
            raise DataError(name, f"duplicate category id {cid}")
        if cname in names:
            raise DataError(name, f"duplicate category name {cname!r}")
        cats[cid] = Category(cid, cname)
        names.add(cname)
    return tuple(cats[k] for k in sorted(cats))


def _gt_instance_fields(
    ann: Any, pos: int, videos: dict[int, Video], cat_ids: set[int], name: str
) -> dict[str, Any]:
    """The fields of a :class:`GtInstance` but ``mask_areas`` (computed for all at once)."""
    if not isinstance(ann, dict):
        raise DataError(name, f"annotations[{pos}] must be an object")
    aid = _int_field(ann, "id", f"annotations[{pos}]", name)
    where = f"annotation {aid}"
    video = _video_ref(ann, where, videos, name)
    category_id = _int_field(ann, "category_id", where, name)
    if category_id not in cat_ids:
        raise DataError(name, f"{where}: category_id {category_id} is not in 'categories'")
    iscrowd = ann.get("iscrowd")
    if iscrowd not in (0, 1) or isinstance(iscrowd, float):
        raise DataError(name, f"{where}: 'iscrowd' must be 0 or 1, got {iscrowd!r}")
    segs = _frame_list(ann, "segmentations", where, video, name)
    frame_masks = tuple(_gt_mask(seg, where, f, video, name) for f, seg in enumerate(segs))
    areas = _frame_list(ann, "areas", where, video, name)
    for f, a in enumerate(areas):
        if a is not None and not _is_real(a, minimum=0.0):
            raise DataError(
                name, f"{where}, frame {f}: 'areas' entries must be null or numbers >= 0, got {a!r}"
            )
    return {
        "id": aid,
        "video_id": video.id,
        "category_id": category_id,
        "iscrowd": bool(iscrowd),
        "masks": frame_masks,
        "area_field": tuple(areas),
    }


def _gt_mask(seg: Any, where: str, frame: int, video: Video, name: str) -> CocoRle | None:
    """A ground-truth frame mask: null, RLE (compressed or not) or polygons, as the official
    ``annToRLE`` accepts; polygons are rasterised at the video's size and merged."""
    if isinstance(seg, list):
        if not seg:
            return None  # the official code treats an empty polygon list as "no mask"
        if not all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(map(_is_real, p))
            for p in seg
        ):
            raise DataError(
                name, f"{where}, frame {frame}: polygons must be lists of at least 3 (x, y) pairs"
            )
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, video.height, video.width))
        return {"size": [video.height, video.width], "counts": rle["counts"]}
    return _rle_mask(seg, where, frame, video, name)


# ---------------------------------------------------------------------------------------------
# Results


def load_results(results: Any, gt: GroundTruth, name: str) -> list[Detection]:
    """Validate a results list: one object per predicted track with ``video_id``,
    ``category_id``, ``score`` and ``segmentations`` (one RLE or null per frame)."""
    if not isinstance(results, list):
        raise DataError(
            name, f"results must be a JSON list of objects, got a JSON {_kind(results)}"
        )
    cat_ids = {c.id for c in gt.categories}
    fields = []
    for index, res in enumerate(results):
        where = f"result #{index}"
        if not isinstance(res, dict):
            raise DataError(name, f"{where} must be an object, got a JSON {_kind(res)}")
        video = _video_ref(res, where, gt.videos, name)
        where = f"result #{index} (video {video.id})"
        category_id = _int_field(res, "category_id", where, name)
        if category_id not in cat_ids:
            raise DataError(
                name, f"{where}: category_id {category_id} is not a ground-truth category"
            )
        score = res.get("score")
        if not _is_real(score):
            raise DataError(name, f"{where}: 'score' must be a finite number, got {score!r}")
        segs = _frame_list(res, "segmentations", where, video, name)
        frame_masks = tuple(_rle_mask(seg, where, f, video, name) for f, seg in enumerate(segs))
        fields.append(
            {
                "index": index,
                "video_id": video.id,
                "category_id": category_id,
                "score": float(score),
                "masks": frame_masks,
            }
        )
    areas = _mask_areas([f["masks"] for f in fields])
    return [Detection(**f, mask_areas=a) for f, a in zip(fields, areas, strict=True)]


# ---------------------------------------------------------------------------------------------
# Field helpers


def _rle_mask(seg: Any, where: str, frame: int, video: Video, name: str) -> CocoRle | None:
    """A frame mask given as null or an RLE ``{"size": [h, w], "counts": str | list}``."""
    if seg is None:
        return None
    if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
        raise DataError(
            name, f"{where}, frame {frame}: a mask must be null or an RLE with 'size' and 'counts'"
        )
    size = [video.height, video.width]
    if seg["size"] != size and not (isinstance(seg["size"], tuple) and list(seg["size"]) == size):
        raise DataError(
            name,
            f"{where}, frame {frame}: mask size {seg['size']} differs from the video size {size}",
        )
    problem = masks.rle_problem(seg, video.height, video.width)
    if problem is not None:
        raise DataError(name, f"{where}, frame {frame}: {problem}")
    counts = seg["counts"]
    if isinstance(counts, str):
        return {"size": size, "counts": counts.encode("ascii")}
    if isinstance(counts, bytes):
        return {"size": size, "counts": counts}
    return {"size": size, "counts": masks.to_coco({"size": size, "counts": counts})["counts"]}


def _mask_areas(tracks: Sequence[Sequence[CocoRle | None]]) -> list[np.ndarray]:
    """Pixel count of each frame's mask (0 where there is none) of each track, computed with
    one pycocotools call for all of them."""
    flat = [m for track in tracks for m in track]
    present = np.array([m is not None for m in flat], dtype=bool)
    areas = np.zeros(len(flat), dtype=np.int64)
    rles = [m for m in flat if m is not None]
    if rles:
        # pycocotools 2.0.x + numpy 2 fail on area() of 256 RLEs or more: go in chunks.
        chunks = range(0, len(rles), _AREA_CHUNK)
        areas[present] = np.concatenate(
            [mask_utils.area(rles[i : i + _AREA_CHUNK]) for i in chunks]
        )
    if not tracks:
        return []
    return np.split(areas, np.cumsum([len(track) for track in tracks])[:-1])


def _video_ref(obj: dict[str, Any], where: str, videos: dict[int, Video], name: str) -> Video:
    vid = _int_field(obj, "video_id", where, name)
    if vid not in videos:
        raise DataError(name, f"{where}: video_id {vid} is not a ground-truth video")
    return videos[vid]


def _frame_list(obj: dict[str, Any], key: str, where: str, video: Video, name: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise DataError(name, f"{where}: '{key}' must be a list (one entry per frame)")
    if len(value) != video.num_frames:
        raise DataError(
            name,
            f"{where}: '{key}' has {len(value)} entries but video {video.id} has "
            f"{video.num_frames} frames",
        )
    return value


def _int_field(
    obj: dict[str, Any], key: str, where: str, name: str, minimum: int | None = None
) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        got = "missing" if key not in obj else f"got {value!r}"
        raise DataError(name, f"{where}: '{key}' must be an integer ({got})")
    if minimum is not None and value < minimum:
        raise DataError(name, f"{where}: '{key}' must be >= {minimum}, got {value}")
    return value


def _is_real(value: Any, minimum: float | None = None) -> bool:
    """True for a finite int/float (not bool) that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (minimum is None or value >= minimum)


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, (int, float)) else "null"
    )
