"""Video inference: a trained VIS model's per-frame queries, tracked into video results.

The one place where the model (:mod:`uvis.model`), the frames (:mod:`uvis.data`) and query
tracking (:mod:`uvis.tracking`) meet; both the ``track`` rule (``uvis track vis``, a whole
split from its frame index, :func:`frame_index_videos`) and ``uvis segment`` (one video file, outside Snakemake) run
:func:`track_videos`. Frames are read and run through the model a window (``batch_size``
frames) at a time and handed to the tracker as they come, so memory does not grow with video
length.
"""

from uvis.inference.videos import (
    VideoFrames,
    frame_index_videos,
    iter_frame_queries,
    refine_frame_queries,
    track_videos,
)

__all__ = [
    "VideoFrames",
    "frame_index_videos",
    "iter_frame_queries",
    "refine_frame_queries",
    "track_videos",
]
