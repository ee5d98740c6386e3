"""Run a VIS model over videos and track its queries (see the package docstring)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from uvis.data.frame_index import FrameIndex, VideoFrames
from uvis.data.frames import read_frame
from uvis.model import VisModel, predict_frames
from uvis.model.outputs import FrameQueries
from uvis.progress import progress_bar
from uvis.proposals.refine import BilateralParams, RefineMethod, refine_where_agreeing
from uvis.tracking.mask_encoding import MaskEncoder
from uvis.tracking.query_tracker import mask_confidence, write_vis_results

logger = logging.getLogger(__name__)

OUTPUT_REFINE_MIN_IOU = 0.5
"""A refined output mask replaces the model's only at this IoU with it (MaskCut's agreement)."""


def frame_index_videos(frame_index: str | os.PathLike[str]) -> list[VideoFrames]:
    """The videos of a frame index Parquet, in video-id order (:meth:`FrameIndex.videos`)."""
    return FrameIndex.read(frame_index).videos()


def refine_output_masks(
    image: np.ndarray,
    masks: np.ndarray,
    method: RefineMethod = "bilateral",
    params: BilateralParams | None = None,
) -> np.ndarray:
    """A model's output masks ``(K, H, W)`` snapped to the colour edges of ``image``.

    Not part of MinVIS, UVIS or the tag paper: the post-processing uvis offers for models whose
    masks are coarse. The CRF's ``params`` (CutLER's constants by default), no hole filling (a
    ring's hole is real), and a refined mask kept only where it agrees with its own (IoU >=
    :data:`OUTPUT_REFINE_MIN_IOU`, :func:`~uvis.proposals.refine.refine_where_agreeing`).
    Returns a new ``(K, H, W)`` bool array.
    """
    return refine_where_agreeing(
        image, masks, method, fill_holes=False, min_iou=OUTPUT_REFINE_MIN_IOU, params=params
    )


def refine_frame_queries(
    frame: FrameQueries,
    image: np.ndarray,
    method: RefineMethod = "bilateral",
    params: BilateralParams | None = None,
) -> FrameQueries:
    """``frame`` with its masks snapped to the colour edges of ``image`` (the frame, RGB uint8).

    Not part of MinVIS or UVIS: an output post-processing for models whose mask logits are
    coarse (Mask2Former predicts them at a quarter of its input size). Each query's mask is
    resized and binarised by the tracker's own rule (:meth:`MaskEncoder.resize`, logit > 0)
    and refined by :func:`refine_output_masks` with the CRF's ``params``. The returned frame's
    mask logits are +1 / -1 at the frame size, which tracking encodes unchanged; embeddings and
    class logits are the model's, and so are the mask confidences (``mask_scores``,
    :func:`~uvis.tracking.mask_confidence` of the model's logits unless the frame has them).
    ``method="none"`` returns ``frame`` itself.
    """
    if method == "none":
        return frame
    height, width = frame.frame_size
    if image.shape[:2] != (height, width):
        raise ValueError(f"image of size {image.shape[:2]} for a frame of size {(height, width)}")
    encoder = MaskEncoder(frame.mask_logits.shape[1:], frame.frame_size)
    masks = np.stack([encoder.resize(logits) > 0 for logits in frame.mask_logits])
    refined = refine_output_masks(image, masks, method, params)
    scores = frame.mask_scores
    if scores is None:
        scores = mask_confidence(frame.mask_logits)
    return dataclasses.replace(
        frame, mask_logits=np.where(refined, 1.0, -1.0).astype(np.float32), mask_scores=scores
    )


def image_queries(
    model: VisModel,
    images: Iterable[np.ndarray],
    *,
    batch_size: int = 8,
    refine: RefineMethod = "none",
    refine_params: BilateralParams | None = None,
) -> Iterator[FrameQueries]:
    """The model's :class:`FrameQueries` for each ``(H, W, 3)`` uint8 RGB image, in order, run
    ``batch_size`` images at a time as they come (a generator of frames keeps memory bounded).

    ``refine`` other than ``"none"`` post-processes each frame's masks
    (:func:`refine_frame_queries`, with the CRF's ``refine_params``).
    """
    window: list[np.ndarray] = []

    def run() -> Iterator[FrameQueries]:
        for frame, image in zip(
            predict_frames(model, window, batch_size=batch_size), window, strict=True
        ):
            yield refine_frame_queries(frame, image, refine, refine_params)

    for image in images:
        window.append(image)
        if len(window) == batch_size:
            yield from run()
            window = []
    if window:
        yield from run()


def iter_frame_queries(
    model: VisModel,
    video: VideoFrames,
    *,
    batch_size: int = 8,
    bar: Any = None,
    refine: RefineMethod = "none",
    refine_params: BilateralParams | None = None,
) -> Iterator[FrameQueries]:
    """The model's :class:`FrameQueries` for each frame of ``video`` (:func:`image_queries` of
    its frames, read at the video's size); ``bar`` advances a frame at a time."""

    def images() -> Iterator[np.ndarray]:
        for path in video.paths:
            yield read_frame(path, video.height, video.width)

    frames = image_queries(
        model, images(), batch_size=batch_size, refine=refine, refine_params=refine_params
    )
    for frame in frames:
        yield frame
        if bar is not None:
            bar.update(1)


def track_videos(
    model: VisModel,
    videos: Sequence[VideoFrames],
    results_path: str | os.PathLike[str],
    *,
    category_ids: Sequence[int],
    lam: float,
    top_k: int,
    batch_size: int = 8,
    tracks_path: str | os.PathLike[str] | None = None,
    zip_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    refine: RefineMethod = "none",
    refine_params: BilateralParams | None = None,
    mask_score: bool = False,
) -> int:
    """Track every video and write YouTube-VIS results (+ tracks Parquet, zip) atomically.

    ``lam`` is UVIS eq. 2's weight (1: plain MinVIS matching); ``top_k`` (query, class) pairs
    are kept per video; ``refine`` post-processes every frame's masks before tracking encodes
    them (:func:`refine_frame_queries` with the CRF's ``refine_params``; ``"none"``: the model's
    masks, as MinVIS); ``mask_score`` ranks results by class score times mask confidence
    (:class:`~uvis.tracking.QueryTracker`). Returns the number of results written.
    """
    bar = progress_bar(
        total=sum(len(v.paths) for v in videos), desc="track", unit="frame", disable=not progress
    )

    def streams() -> Iterable[tuple[int, Iterable[FrameQueries]]]:
        for video in videos:
            yield (
                video.video_id,
                iter_frame_queries(
                    model,
                    video,
                    batch_size=batch_size,
                    bar=bar,
                    refine=refine,
                    refine_params=refine_params,
                ),
            )

    with bar:
        n = write_vis_results(
            streams(),
            results_path,
            category_ids=category_ids,
            lam=lam,
            top_k=top_k,
            mask_score=mask_score,
            zip_path=zip_path,
            tracks_path=tracks_path,
        )
    logger.info("%d videos, %d results -> %s", len(videos), n, results_path)
    return n
