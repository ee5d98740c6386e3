"""Online video inference by query tracking (MinVIS, UVIS §3.3): frames in, video results out.

A per-frame query model hands over one :class:`~uvis.model.outputs.FrameQueries` per frame.
:class:`QueryTracker` consumes them one at a time, in order:

1. the frame's query embeddings are matched to the tracks (:class:`TrackingMemory`: Hungarian
   matching on cosine similarity against the tracking memory, eqs. 2 and 3);
2. the class logits are added to per-track sums, for the track class "softmax of the
   time-averaged logits" (:func:`time_averaged_class_scores`), and, with ``mask_score``, the
   masks' confidences (:func:`mask_confidence`) to per-track sums too;
3. every track's mask is resized to the frame size, thresholded and written as RLE to a spool
   file (:class:`MaskSpool`), then the frame is dropped.

The state kept in memory is a few (Q, D) and (Q, C + 1) arrays, whatever the video length. At
the end of the video the top-k (track, class) pairs by score (:func:`top_k_pairs`, k = 10 as in
MinVIS) become the video's results (with ``mask_score``, ranked by class score times the mean
mask confidence, Mask2Former's per-image instance score over time); their masks are read back
from the spool. A track's frame whose mask is empty is ``null`` in the results.

:func:`track_video` does this for one video and returns the results; :func:`write_vis_results`
streams many videos into the results JSON, its ``.zip`` and the tracks Parquet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit, softmax

from uvis.errors import ConfigError, DataError
from uvis.io import Closing
from uvis.tracking.mask_encoding import MaskEncoder, binarise_logits
from uvis.tracking.matching import TrackingMemory, check_lambda, normalise_queries
from uvis.tracking.results import ResultsWriter, TrackFrame, TrackResult, materialise
from uvis.tracking.spool import MaskSpool

if TYPE_CHECKING:  # only the container's fields are used; uvis.model imports torch
    from uvis.model.outputs import FrameQueries

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 10
"""Results per video (MinVIS keeps the 10 best (query, class) pairs)."""

DEFAULT_LAMBDA = 0.5
"""Weight of the last frame against the memory in eq. 2 (the paper's value)."""


@dataclass(frozen=True)
class Selection:
    """One (track, class) pair chosen as a result: class index into the model's vocabulary."""

    track_id: int
    class_index: int
    score: float


def time_averaged_class_scores(logit_sum: np.ndarray, num_frames: int) -> np.ndarray:
    """Per-track class scores (Q, C): softmax of the track's class logits averaged over time.

    ``logit_sum`` (Q, C + 1) is the sum over the video's frames of each track's class logits,
    the last column "no object". The softmax runs over all C + 1 columns (so a track that is
    mostly "no object" scores low in every class) and the no-object column is dropped. This is
    MinVIS's and UVIS's rule: averaging logits, not per-frame probabilities.
    """
    if num_frames < 1:
        raise ValueError("class scores need at least one frame")
    return softmax(logit_sum / num_frames, axis=1)[:, :-1]


def mask_confidence(mask_logits: np.ndarray) -> np.ndarray:
    """Each query's mask confidence (Q,): the mean foreground probability inside its mask.

    ``mask_logits`` (Q, h, w); the mask is where the logit is > 0 (tracking's own rule), the
    probability its sigmoid; an empty mask scores 0. Mask2Former multiplies its per-image
    instance scores by this factor; MinVIS ranks by class scores alone.
    """
    inside = binarise_logits(mask_logits)
    prob = np.where(inside, expit(mask_logits.astype(np.float64)), 0.0)
    return prob.sum(axis=(1, 2)) / np.maximum(inside.sum(axis=(1, 2)), 1)


def top_k_pairs(scores: np.ndarray, k: int) -> list[Selection]:
    """The ``k`` (track, class) pairs of highest score in ``scores`` (Q, C), best first.

    A track can be chosen with several classes. Ties keep the order of the flattened
    (track, class) index, so the choice is deterministic; fewer than ``k`` pairs give them all.
    """
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    num_classes = scores.shape[1]
    order = np.argsort(-scores.ravel(), kind="stable")[:k]
    return [
        Selection(
            track_id=int(i // num_classes),
            class_index=int(i % num_classes),
            score=float(scores.flat[i]),
        )
        for i in order
    ]


class QueryTracker(Closing):
    """Track the queries of one video, frame by frame, with bounded memory.

    ``category_ids[c]`` is the dataset category id of the model's class ``c`` (a model with
    another number of classes is a :class:`ConfigError` at the first frame). ``lam`` is eq. 2's
    weight (1: plain MinVIS). ``mask_score`` ranks the (track, class) pairs by class score times
    the track's mask confidence averaged over the frames (:func:`mask_confidence`, a frame's
    ``mask_scores`` where given; not MinVIS's rule, which ranks by class score alone). The spool
    file lives in ``spool_dir`` (default: the system's temporary folder) and is deleted by :meth:`close` (or the ``with``
    block). Problems with the model's outputs (NaN, a changing number of queries or classes,
    a changing frame size) raise :class:`DataError` naming the video and frame.
    """

    def __init__(
        self,
        *,
        video_id: int,
        category_ids: Sequence[int],
        lam: float = DEFAULT_LAMBDA,
        mask_score: bool = False,
        spool_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        check_lambda(lam)
        self.mask_score = mask_score
        self.video_id = video_id
        self.category_ids = [int(c) for c in category_ids]
        self.num_frames = 0
        self._memory = TrackingMemory(lam)
        self._spool_dir = spool_dir
        self._spool: MaskSpool | None = None
        self._encoder: MaskEncoder | None = None
        self._logit_sum: np.ndarray | None = None
        self._confidence_sum: np.ndarray | None = None

    def update(self, frame: FrameQueries) -> np.ndarray:
        """Add the next frame; returns its permutation into track order (``perm[track]``)."""
        self._check(frame)
        try:
            perm = self._memory.match(normalise_queries(frame.embeddings))
        except ValueError as exc:
            raise self._error(str(exc)) from None
        logits = frame.class_logits[perm].astype(np.float64)
        if self._logit_sum is None:
            self._logit_sum = logits
        else:
            self._logit_sum += logits
        if self.mask_score:
            scores = frame.mask_scores
            if scores is None:
                scores = mask_confidence(frame.mask_logits)
            if not np.isfinite(scores).all():
                raise self._error("mask scores contain NaN or inf")
            confidence = scores[perm].astype(np.float64)
            if self._confidence_sum is None:
                self._confidence_sum = confidence
            else:
                self._confidence_sum += confidence
        if self._encoder is None or self._encoder.logits_size != frame.mask_logits.shape[1:]:
            self._encoder = MaskEncoder(frame.mask_logits.shape[1:], frame.frame_size)
        if self._spool is None:
            self._spool = MaskSpool(frame.frame_size, self._spool_dir)
        counts = self._encoder.encode(frame.mask_logits)  # in query order: no permuted copy
        self._spool.append(perm, [counts[q] for q in perm])
        self.num_frames += 1
        return perm

    def class_scores(self) -> np.ndarray:
        """Current per-track class scores (Q, C) (:func:`time_averaged_class_scores`), times
        the tracks' mean mask confidence with ``mask_score``."""
        if self._logit_sum is None:
            raise ValueError(f"video {self.video_id}: no frames yet")
        scores = time_averaged_class_scores(self._logit_sum, self.num_frames)
        if self._confidence_sum is not None:
            scores = scores * (self._confidence_sum / self.num_frames)[:, None]
        return scores

    def select(self, top_k: int = DEFAULT_TOP_K) -> list[Selection]:
        """The video's top-k (track, class) pairs; none for a video without frames."""
        if self.num_frames == 0:
            return []
        return top_k_pairs(self.class_scores(), top_k)

    def results(self, top_k: int = DEFAULT_TOP_K) -> Iterator[TrackResult]:
        """The video's results, best first; each one's frames are read lazily from the spool.

        Consume each result's frames before closing the tracker.
        """
        if self.num_frames == 0:
            logger.warning("video %s: no frames, no results", self.video_id)
            return
        assert self._spool is not None
        for sel in self.select(top_k):
            yield TrackResult(
                video_id=int(self.video_id),
                track_id=sel.track_id,
                category_id=self.category_ids[sel.class_index],
                score=sel.score,
                frame_size=self._spool.frame_size,
                frames=(TrackFrame(s, rle) for s, rle in self._spool.track(sel.track_id)),
            )

    def close(self) -> None:
        """Delete the spool."""
        if self._spool is not None:
            self._spool.close()

    def _check(self, frame: FrameQueries) -> None:
        """DataError unless ``frame`` is consistent with the video's earlier frames."""
        if frame.num_classes != len(self.category_ids):
            raise ConfigError(
                f"video {self.video_id}: the model has {frame.num_classes} classes but "
                f"{len(self.category_ids)} category ids were given: the vocabulary does not "
                "match the model"
            )
        if not np.isfinite(frame.class_logits).all():
            raise self._error("class logits contain NaN or inf")
        if not np.isfinite(frame.mask_logits).all():
            raise self._error("mask logits contain NaN or inf")
        if self._logit_sum is not None and frame.class_logits.shape != self._logit_sum.shape:
            raise self._error(
                f"class logits of shape {frame.class_logits.shape} after frames of shape "
                f"{self._logit_sum.shape}"
            )
        if self._spool is not None and tuple(frame.frame_size) != self._spool.frame_size:
            raise self._error(
                f"frame size {tuple(frame.frame_size)} after frames of size "
                f"{self._spool.frame_size}"
            )

    def _error(self, problem: str) -> DataError:
        return DataError(None, f"video {self.video_id}, frame {self.num_frames}: {problem}")


def track_video(
    frames: Iterable[FrameQueries],
    *,
    video_id: int,
    category_ids: Sequence[int],
    lam: float = DEFAULT_LAMBDA,
    top_k: int = DEFAULT_TOP_K,
    mask_score: bool = False,
    spool_dir: str | os.PathLike[str] | None = None,
) -> list[TrackResult]:
    """Track one video's frames and return its top-k results, best first (frames as tuples).

    ``frames`` is consumed one at a time (a generator running the model window by window
    keeps memory bounded). ``result.ytvis()`` is the YouTube-VIS result object. A video with
    no frames has no results. ``mask_score``: see :class:`QueryTracker`.
    """
    with QueryTracker(
        video_id=video_id,
        category_ids=category_ids,
        lam=lam,
        mask_score=mask_score,
        spool_dir=spool_dir,
    ) as tracker:
        for frame in frames:
            tracker.update(frame)
        return [materialise(r) for r in tracker.results(top_k)]


def write_vis_results(
    videos: Iterable[tuple[int, Iterable[FrameQueries]]],
    results_path: str | os.PathLike[str],
    *,
    category_ids: Sequence[int],
    lam: float = DEFAULT_LAMBDA,
    top_k: int = DEFAULT_TOP_K,
    mask_score: bool = False,
    zip_path: str | os.PathLike[str] | None = None,
    tracks_path: str | os.PathLike[str] | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Track many videos and stream their results to the results JSON (+ zip, tracks Parquet).

    ``videos`` yields ``(video_id, frames)``; each video's frames are consumed before the next
    video is asked for, and its results are written before the next starts, so memory holds
    one frame and one video's tracking state at a time. Returns the number of results.
    """
    with ResultsWriter(results_path, zip_path=zip_path, tracks_path=tracks_path) as writer:
        for video_id, frames in videos:
            with QueryTracker(
                video_id=video_id,
                category_ids=category_ids,
                lam=lam,
                mask_score=mask_score,
                spool_dir=spool_dir,
            ) as tracker:
                for frame in frames:
                    tracker.update(frame)
                for result in tracker.results(top_k):
                    writer.add(result)
            logger.debug("video %s: %d frames tracked", video_id, tracker.num_frames)
    return writer.num_results
