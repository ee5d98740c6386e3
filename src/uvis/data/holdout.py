"""A held-out part of an annotated split, for local metrics where the official split has none.

YouTube-VIS 2019/2021 and OVIS publish annotations for their training split only. To measure
locally, :func:`split_holdout` cuts the training JSON into two JSONs by video: ``fit`` (the
rest, which the supervised upper bound trains on) and ``holdout`` (evaluated). Both keep the
original ``categories`` and image paths, so they read from the same ``JPEGImages`` folder.
The choice of videos depends only on the video ids, the fraction and the seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from uvis.errors import ConfigError, DataError
from uvis.io import atomic_write_json, read_json


def holdout_video_ids(video_ids: list[int], fraction: float, seed: int) -> set[int]:
    """The ids of ``round(fraction * n)`` videos (at least one, at most n - 1), drawn by seed."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"holdout fraction must be in (0, 1), got {fraction}")
    ids = sorted(video_ids)
    if len(ids) < 2:
        raise ConfigError(f"a holdout needs at least 2 videos, the split has {len(ids)}")
    count = min(max(round(fraction * len(ids)), 1), len(ids) - 1)
    picked = np.random.default_rng(seed).choice(len(ids), size=count, replace=False)
    return {ids[i] for i in picked}


def split_holdout(
    json_path: str | os.PathLike[str],
    fit_out: str | os.PathLike[str],
    holdout_out: str | os.PathLike[str],
    fraction: float,
    seed: int = 0,
) -> tuple[int, int]:
    """Write the ``fit`` and ``holdout`` JSONs of an annotated YouTube-VIS split.

    Returns (videos in fit, videos in holdout). A JSON without annotations is a
    :class:`~uvis.errors.DataError`: a holdout of it could not be evaluated.
    """
    json_path = Path(json_path)
    doc: Any = read_json(json_path)
    if not isinstance(doc, dict) or not isinstance(doc.get("videos"), list):
        raise DataError(json_path, "not in YouTube-VIS format: no 'videos' list")
    if not isinstance(doc.get("annotations"), list):
        raise DataError(json_path, "has no annotations: a held-out part could not be evaluated")
    try:
        ids = [int(v["id"]) for v in doc["videos"]]
    except (KeyError, TypeError, ValueError):
        raise DataError(json_path, "a video has no integer 'id'") from None
    held = holdout_video_ids(ids, fraction, seed)

    def part(keep_held: bool) -> dict[str, Any]:
        videos = [v for v in doc["videos"] if (int(v["id"]) in held) == keep_held]
        annotations = [
            a for a in doc["annotations"] if (int(a.get("video_id", -1)) in held) == keep_held
        ]
        return {**doc, "videos": videos, "annotations": annotations}

    atomic_write_json(fit_out, part(False))
    atomic_write_json(holdout_out, part(True))
    return len(ids) - len(held), len(held)
