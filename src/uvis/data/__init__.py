"""Dataset readers and frame extraction: every dataset format becomes one frame index.

YouTube-VIS/OVIS (:func:`load_ytvis`), DAVIS (:func:`load_davis`) and folders of raw videos
(:func:`extract_video_folder`, :func:`load_video_folder`) all load into a :class:`VideoDataset`,
whose frames :func:`write_frame_index` verifies and writes as the frame index artefact; every
stage reads it back as a :class:`FrameIndex`.
"""

from uvis.data.davis import load_davis
from uvis.data.frame_index import FrameIndex, FrameRef, VideoFrames
from uvis.data.frames import (
    Category,
    IndexSummary,
    Instance,
    VideoDataset,
    VideoRecord,
    extract_frames,
    resized_shape,
    write_frame_index,
)
from uvis.data.videos import extract_video_folder, load_video_folder, read_vocabulary
from uvis.data.ytvis import load_ytvis

__all__ = [
    "Category",
    "FrameIndex",
    "FrameRef",
    "IndexSummary",
    "Instance",
    "VideoDataset",
    "VideoFrames",
    "VideoRecord",
    "extract_frames",
    "extract_video_folder",
    "load_davis",
    "load_video_folder",
    "load_ytvis",
    "read_vocabulary",
    "resized_shape",
    "write_frame_index",
]
