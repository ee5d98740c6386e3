"""J and F of every (predicted object, ground-truth object) pair, and the unsupervised matching.

Scoring each pair with :func:`~uvis.evaluation._davis_metrics.jaccard` and
:func:`~uvis.evaluation._davis_metrics.boundary_f` would compute each object's boundary and its
dilation once per pair. Here one frame's label images are scored at once: J from a joint
histogram of (predicted id, ground-truth id), F from per-object boundaries and dilations computed
once, inside each object's bounding box. The numbers are the same (the tests check it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from uvis.evaluation._davis_metrics import (
    boundary_map,
    boundary_radius,
    dilate,
    disk_footprint,
    f_measure_from_counts,
    jaccard_from_counts,
)


@dataclass(frozen=True)
class _Patch:
    """A binary image patch whose top-left pixel is at ``(top, left)`` in the frame."""

    top: int
    left: int
    bits: NDArray[np.bool_]


@dataclass(frozen=True)
class _ObjectBoundary:
    """One object's boundary in one frame, and that boundary dilated by the tolerance disk."""

    count: int
    boundary: _Patch
    dilated: _Patch


def _overlap_count(a: _Patch, b: _Patch) -> int:
    """Number of pixels set in both patches."""
    top, left = max(a.top, b.top), max(a.left, b.left)
    bottom = min(a.top + a.bits.shape[0], b.top + b.bits.shape[0])
    right = min(a.left + a.bits.shape[1], b.left + b.bits.shape[1])
    if bottom <= top or right <= left:
        return 0
    a_bits = a.bits[top - a.top : bottom - a.top, left - a.left : right - a.left]
    b_bits = b.bits[top - b.top : bottom - b.top, left - b.left : right - b.left]
    return int(np.count_nonzero(a_bits & b_bits))


def _object_boundaries(
    labels: NDArray[np.integer], num_ids: int, footprint: NDArray[np.bool_]
) -> list[_ObjectBoundary | None]:
    """Boundary and dilated boundary of objects ``1..num_ids`` of a label frame (None: absent).

    Each object is cropped to its bounding box plus one pixel (clipped to the frame): the
    boundary (:func:`boundary_map`) reaches one pixel above and left of the object, and the
    extra background row and column below and right keep the crop's last row and column, which
    :func:`boundary_map` treats as the image border, free of boundary as in the full frame. The
    dilation is done in the crop grown by the footprint's reach, outside which it is empty.
    """
    height, width = labels.shape
    reach_y = max(footprint.shape[0] // 2, footprint.shape[0] - 1 - footprint.shape[0] // 2)
    reach_x = max(footprint.shape[1] // 2, footprint.shape[1] - 1 - footprint.shape[1] // 2)
    result: list[_ObjectBoundary | None] = [None] * num_ids
    for index, box in enumerate(ndimage.find_objects(labels, max_label=num_ids)):
        if box is None:
            continue
        y0, y1 = max(box[0].start - 1, 0), min(box[0].stop + 1, height)
        x0, x1 = max(box[1].start - 1, 0), min(box[1].stop + 1, width)
        bmap = boundary_map(labels[y0:y1, x0:x1] == index + 1)
        count = int(np.count_nonzero(bmap))
        if count == 0:
            continue
        dy0, dy1 = max(y0 - reach_y, 0), min(y1 + reach_y, height)
        dx0, dx1 = max(x0 - reach_x, 0), min(x1 + reach_x, width)
        grown = np.zeros((dy1 - dy0, dx1 - dx0), dtype=bool)
        grown[y0 - dy0 : y1 - dy0, x0 - dx0 : x1 - dx0] = bmap
        result[index] = _ObjectBoundary(
            count=count,
            boundary=_Patch(top=y0, left=x0, bits=bmap),
            dilated=_Patch(top=dy0, left=dx0, bits=dilate(grown, footprint)),
        )
    return result


def score_frame(
    gt: NDArray[np.integer],
    pred: NDArray[np.integer],
    void: NDArray[np.bool_],
    num_gt: int,
    num_pred: int,
    bound_th: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """J and F of every pair in one frame, each of shape ``(num_pred, num_gt)``.

    ``gt`` and ``pred`` are ``(H, W)`` id images; ground-truth ids above ``num_gt`` count as
    background, and so does everything under ``void``. Predicted ids ``1..num_pred`` are scored,
    including ids with no pixels (empty objects).
    """
    keep = ~void
    gt_ids = np.where(keep & (gt <= num_gt), gt, 0).astype(np.int64)
    pred_ids = np.where(keep, pred, 0).astype(np.int64)
    if pred_ids.max(initial=0) > num_pred:
        raise ValueError(f"predicted id {pred_ids.max()} above num_pred={num_pred}")

    joint = np.bincount(
        (pred_ids * (num_gt + 1) + gt_ids).ravel(), minlength=(num_pred + 1) * (num_gt + 1)
    ).reshape(num_pred + 1, num_gt + 1)
    inter = joint[1:, 1:]
    union = joint[1:, :].sum(axis=1)[:, None] + joint[:, 1:].sum(axis=0)[None, :] - inter

    footprint = disk_footprint(boundary_radius(gt.shape, bound_th))
    gt_bounds = _object_boundaries(gt_ids, num_gt, footprint)
    pred_bounds = _object_boundaries(pred_ids, num_pred, footprint)

    j = np.empty((num_pred, num_gt), dtype=np.float64)
    f = np.empty((num_pred, num_gt), dtype=np.float64)
    for p, pb in enumerate(pred_bounds):
        for g, gb in enumerate(gt_bounds):
            j[p, g] = jaccard_from_counts(int(inter[p, g]), int(union[p, g]))
            both = pb is not None and gb is not None
            f[p, g] = f_measure_from_counts(
                n_pred=0 if pb is None else pb.count,
                n_gt=0 if gb is None else gb.count,
                pred_matched=_overlap_count(pb.boundary, gb.dilated) if both else 0,
                gt_matched=_overlap_count(gb.boundary, pb.dilated) if both else 0,
            )
    return j, f


def score_pairs(
    gt: NDArray[np.integer],
    pred: NDArray[np.integer],
    void: NDArray[np.bool_],
    num_gt: int,
    num_pred: int,
    bound_th: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """J and F of every pair in every frame, each of shape ``(num_pred, num_gt, T)``.

    ``gt``, ``pred`` and ``void`` are ``(T, H, W)``; see :func:`score_frame`.
    """
    num_frames = gt.shape[0]
    j = np.empty((num_pred, num_gt, num_frames), dtype=np.float64)
    f = np.empty((num_pred, num_gt, num_frames), dtype=np.float64)
    for t in range(num_frames):
        j[:, :, t], f[:, :, t] = score_frame(gt[t], pred[t], void[t], num_gt, num_pred, bound_th)
    return j, f


@dataclass(frozen=True)
class Matching:
    """One-to-one assignment of predicted to ground-truth objects (0-based indices).

    ``pred_index[k]`` is matched to ``gt_index[k]``; pairs are listed in increasing
    ``pred_index``, the order in which the official code lists (and averages) objects.
    """

    pred_index: tuple[int, ...]
    gt_index: tuple[int, ...]


def match_unsupervised(j: NDArray[np.float64], f: NDArray[np.float64]) -> Matching:
    """The unsupervised-task assignment: Hungarian matching maximising mean (J + F) / 2.

    ``j`` and ``f`` have shape ``(P, G, T)``, from :func:`score_pairs`. Each pair's score is the
    average over frames of J plus that of F, halved; every ground-truth object is matched to a
    distinct prediction, so ``P >= G`` is required (pad with empty predictions first: the
    official code scores missing predictions as empty masks). Predictions left unmatched do not
    affect the metrics.
    """
    if j.shape != f.shape or j.ndim != 3:
        raise ValueError(f"j and f must both be (P, G, T), got {j.shape} and {f.shape}")
    if j.shape[0] < j.shape[1]:
        raise ValueError(f"need at least as many predictions as objects, got shape {j.shape}")
    score = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    rows, cols = linear_sum_assignment(-score)
    return Matching(pred_index=tuple(int(r) for r in rows), gt_index=tuple(int(c) for c in cols))
