"""Periodic validation of a VIS model under training: AP on a few held-out videos.

:class:`HeldOutVideos` is the ``validate`` callback of :func:`uvis.train.train_vis`: it tracks
the first ``num_videos`` videos of a split with the model as it is (MinVIS matching, the
model's own masks) and evaluates them with the official YouTube-VIS metrics against that
split's ground truth, restricted to those videos. It shows how a training progresses; it is
not used to choose anything.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from uvis.data.frame_index import FrameIndex, VideoFrames
from uvis.errors import DataError
from uvis.evaluation.ytvis import evaluate
from uvis.inference.videos import iter_frame_queries
from uvis.io import read_json
from uvis.model import VisModel
from uvis.tracking.query_tracker import track_video


@dataclass(frozen=True, eq=False)
class HeldOutVideos:
    """``videos`` with their ground truth ``gt`` (YouTube-VIS, those videos only) and the
    dataset category ids of the model's classes, in class order."""

    videos: tuple[VideoFrames, ...]
    gt: Mapping[str, Any]
    category_ids: tuple[int, ...]
    top_k: int = 10
    batch_size: int = 8

    @classmethod
    def from_files(
        cls,
        frames: str | os.PathLike[str],
        gt_json: str | os.PathLike[str],
        num_videos: int,
        category_ids: Sequence[int],
    ) -> HeldOutVideos:
        """The first ``num_videos`` videos (by id) of a frame index and their ground truth.

        Raises:
            DataError: naming the file when the ground truth lacks a chosen video, or its
                categories are not the model's.
        """
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        videos = FrameIndex.read(frames).videos()[:num_videos]
        full = read_json(os.fspath(gt_json))
        if not isinstance(full, dict) or not {"videos", "annotations", "categories"} <= full.keys():
            raise DataError(gt_json, "not a YouTube-VIS ground truth with annotations")
        ids = {v.video_id for v in videos}
        known = {v["id"] for v in full["videos"]}
        if ids - known:
            raise DataError(gt_json, f"has no video {sorted(ids - known)[0]} of {frames}")
        missing = set(category_ids) - {c["id"] for c in full["categories"]}
        if missing:
            raise DataError(gt_json, f"has no category {sorted(missing)[0]} of the model")
        gt = {
            "videos": [v for v in full["videos"] if v["id"] in ids],
            "categories": full["categories"],
            "annotations": [a for a in full["annotations"] if a["video_id"] in ids],
        }
        return cls(tuple(videos), gt, tuple(category_ids))

    def __call__(self, model: VisModel, iteration: int) -> dict[str, Any]:
        """The official metrics of ``model``'s tracks on the videos (``iteration`` unused)."""
        results = []
        for video in self.videos:
            tracked = track_video(
                iter_frame_queries(model, video, batch_size=self.batch_size),
                video_id=video.video_id,
                category_ids=self.category_ids,
                lam=1.0,
                top_k=self.top_k,
            )
            results += [r.ytvis() for r in tracked]
        return evaluate(dict(self.gt), results, gt_name="validation ground truth")
