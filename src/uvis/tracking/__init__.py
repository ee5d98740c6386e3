"""From per-frame predictions to video results: query tracking (UVIS §3.3) and DeepSORT.

- :mod:`uvis.tracking.matching`: MinVIS matching and the tracking memory (eqs. 2 and 3).
- :mod:`uvis.tracking.query_tracker`: online tracking of a model's per-frame
  :class:`~uvis.model.outputs.FrameQueries` with bounded memory (:func:`track_video`,
  :func:`write_vis_results`).
- :mod:`uvis.tracking.mask_encoding`, :mod:`uvis.tracking.spool`: mask logits -> RLE at the
  frame size, and the temporary file that holds them until the video ends.
- :mod:`uvis.tracking.results`: results containers and the streaming writer of the YouTube-VIS
  results JSON, its ``.zip`` and the tracks Parquet (:data:`uvis.schemas.TRACKS`).
- :mod:`uvis.tracking.deepsort`, :mod:`uvis.tracking.deepsort_run`: the DeepSORT baseline on
  pseudo-labels and their CLIP embeddings (UVIS Table 1).
"""

from uvis.tracking.deepsort import DeepSortConfig, DeepSortTracker
from uvis.tracking.deepsort_run import deepsort_files, load_pseudo_detections
from uvis.tracking.matching import (
    TrackingMemory,
    match_queries,
    memory_reference,
    update_memory_mean,
)
from uvis.tracking.query_tracker import (
    QueryTracker,
    mask_confidence,
    track_video,
    write_vis_results,
)
from uvis.tracking.results import ResultsWriter, TrackFrame, TrackResult, write_results

__all__ = [
    "DeepSortConfig",
    "DeepSortTracker",
    "QueryTracker",
    "ResultsWriter",
    "TrackFrame",
    "TrackResult",
    "TrackingMemory",
    "deepsort_files",
    "load_pseudo_detections",
    "mask_confidence",
    "match_queries",
    "memory_reference",
    "track_video",
    "update_memory_mean",
    "write_results",
    "write_vis_results",
]
