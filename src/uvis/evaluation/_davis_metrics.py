"""DAVIS per-object metrics: region J, boundary F and their temporal statistics.

These are the measures of davis2017-evaluation (``davis2017/metrics.py`` and
``davis2017/utils.py``), re-implemented on NumPy arrays; :mod:`uvis.evaluation.davis` documents
the protocol around them. Masks are boolean (or 0/1) arrays of shape ``(H, W)`` for one frame or
``(T, H, W)`` for a video; ``void`` marks pixels that neither measure looks at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

#: Default boundary tolerance of the benchmark, as a fraction of the frame diagonal.
DEFAULT_BOUND_TH = 0.008
#: Per-frame scores above this count as a success for the "recall" statistic.
RECALL_THRESHOLD = 0.5
#: Number of temporal bins of the "decay" statistic.
DECAY_BINS = 4


def _as_masks(
    gt: ArrayLike, pred: ArrayLike, void: ArrayLike | None
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Cast the three inputs to boolean arrays of one shape, ``(H, W)`` or ``(T, H, W)``."""
    gt_b = np.asarray(gt).astype(bool)
    pred_b = np.asarray(pred).astype(bool)
    void_b = np.zeros_like(gt_b) if void is None else np.asarray(void).astype(bool)
    if gt_b.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (T, H, W), got shape {gt_b.shape}")
    if pred_b.shape != gt_b.shape or void_b.shape != gt_b.shape:
        raise ValueError(
            f"shapes differ: gt {gt_b.shape}, pred {pred_b.shape}, void {void_b.shape}"
        )
    return gt_b, pred_b, void_b


def jaccard_from_counts(intersection: int, union: int) -> float:
    """Region similarity J = |gt ∩ pred| / |gt ∪ pred|, counted outside void pixels.

    An empty union (the object is absent and nothing is predicted) scores 1, as in the official
    ``db_eval_iou``.
    """
    return 1.0 if union == 0 else intersection / union


def jaccard(gt: ArrayLike, pred: ArrayLike, void: ArrayLike | None = None) -> NDArray[np.float64]:
    """Region similarity J of one object, per frame.

    ``gt``, ``pred`` and ``void`` are ``(H, W)`` or ``(T, H, W)`` masks; the result has the
    leading shape (``()`` or ``(T,)``). Void pixels count neither in the intersection nor in the
    union; see :func:`jaccard_from_counts` for the empty case.
    """
    gt_b, pred_b, void_b = _as_masks(gt, pred, void)
    keep = ~void_b
    inter = np.count_nonzero(gt_b & pred_b & keep, axis=(-2, -1))
    union = np.count_nonzero((gt_b | pred_b) & keep, axis=(-2, -1))
    out = [
        jaccard_from_counts(int(i), int(u))
        for i, u in zip(np.ravel(inter), np.ravel(union), strict=True)
    ]
    return np.asarray(out, dtype=np.float64).reshape(np.shape(inter))


def boundary_map(mask: ArrayLike) -> NDArray[np.bool_]:
    """One-pixel-wide boundary of a binary mask (``seg2bmap`` of the Berkeley benchmark).

    A pixel is on the boundary when it differs from its east, south or south-east neighbour, so
    the boundary sits half a pixel towards the origin from the true contour. In the last row only
    the east neighbour is compared, in the last column only the south one, and the bottom-right
    pixel is never a boundary: the image border itself is not a contour.
    """
    seg = np.asarray(mask).astype(bool)
    if seg.ndim != 2:
        raise ValueError(f"boundary_map needs a 2-D mask, got shape {seg.shape}")
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def boundary_radius(shape: tuple[int, int], bound_th: float = DEFAULT_BOUND_TH) -> float:
    """Boundary matching tolerance in pixels for a frame of ``shape = (H, W)``.

    ``bound_th >= 1`` is a radius in pixels; below 1 it is a fraction of the frame diagonal,
    rounded up: ``ceil(bound_th * sqrt(H² + W²))`` (8 px for 480x854 frames).
    """
    if not bound_th >= 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    if bound_th >= 1:
        return float(bound_th)
    height, width = shape
    return float(math.ceil(bound_th * math.sqrt(height * height + width * width)))


def disk_footprint(radius: float) -> NDArray[np.bool_]:
    """Disk structuring element, identical to ``skimage.morphology.disk(radius)``.

    Offsets ``-radius, -radius + 1, ...`` up to ``radius`` along both axes (so a non-integer
    radius gives an even-sized footprint), keeping those with ``dx² + dy² <= radius²``.
    """
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2


def dilate(mask: ArrayLike, footprint: ArrayLike) -> NDArray[np.bool_]:
    """Binary dilation with the semantics of ``cv2.dilate(mask, footprint)`` (default anchor).

    ``out[y, x]`` is set when some ``footprint[i, j]`` is set with
    ``mask[y + i - kh // 2, x + j - kw // 2]`` set; pixels outside the image count as unset.
    Each footprint row must be empty or one contiguous run through the anchor column (true of
    disks), so that each row is a 1-D running maximum, shifted vertically.
    """
    src = np.asarray(mask).astype(np.uint8)
    fp = np.asarray(footprint).astype(bool)
    if src.ndim != 2 or fp.ndim != 2:
        raise ValueError("dilate needs a 2-D mask and a 2-D footprint")
    height = src.shape[0]
    anchor_y, anchor_x = fp.shape[0] // 2, fp.shape[1] // 2
    out = np.zeros(src.shape, dtype=bool)
    rows: dict[tuple[int, int], NDArray[np.bool_]] = {}
    for i, row in enumerate(fp):
        cols = np.flatnonzero(row)
        if cols.size == 0:
            continue
        lo, hi = int(cols[0]) - anchor_x, int(cols[-1]) - anchor_x
        if cols.size != hi - lo + 1 or not lo <= 0 <= hi:
            raise ValueError("dilate needs footprint rows that are runs through the anchor")
        if (lo, hi) not in rows:
            # Running maximum over columns x + lo .. x + hi (scipy's origin shifts the window).
            size = hi - lo + 1
            window_max = ndimage.maximum_filter1d(
                src, size, axis=1, mode="constant", cval=0, origin=-(size // 2) - lo
            )
            rows[lo, hi] = window_max.astype(bool)
        hits = rows[lo, hi]
        dy = i - anchor_y
        if dy >= 0:
            out[: height - dy] |= hits[dy:]
        else:
            out[-dy:] |= hits[: height + dy]
    return out


def f_measure_from_counts(n_pred: int, n_gt: int, pred_matched: int, gt_matched: int) -> float:
    """Boundary F-measure from boundary pixel counts, with the official special cases.

    ``n_pred``/``n_gt`` are the boundary pixels of prediction and ground truth, ``pred_matched``
    the predicted ones within tolerance of the ground-truth boundary and ``gt_matched`` the
    converse. No predicted boundary: precision 1, recall 0 (F = 0) when the ground truth has one,
    F = 1 when neither has. A predicted boundary with none in the ground truth: precision 0,
    recall 1 (F = 0).
    """
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = pred_matched / n_pred
        recall = gt_matched / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _frame_boundary_f(
    gt: NDArray[np.bool_], pred: NDArray[np.bool_], void: NDArray[np.bool_], bound_th: float
) -> float:
    """Boundary F of one frame: boundaries of the masks with void pixels removed, then matched."""
    keep = ~void
    gt_bound = boundary_map(gt & keep)
    pred_bound = boundary_map(pred & keep)
    footprint = disk_footprint(boundary_radius(gt.shape, bound_th))
    return f_measure_from_counts(
        n_pred=int(np.count_nonzero(pred_bound)),
        n_gt=int(np.count_nonzero(gt_bound)),
        pred_matched=int(np.count_nonzero(pred_bound & dilate(gt_bound, footprint))),
        gt_matched=int(np.count_nonzero(gt_bound & dilate(pred_bound, footprint))),
    )


def boundary_f(
    gt: ArrayLike,
    pred: ArrayLike,
    void: ArrayLike | None = None,
    bound_th: float = DEFAULT_BOUND_TH,
) -> NDArray[np.float64]:
    """Boundary accuracy F of one object, per frame (the official ``db_eval_boundary``).

    Boundaries (:func:`boundary_map`) of ``gt`` and ``pred`` outside ``void`` are matched within
    :func:`boundary_radius` pixels using a :func:`disk_footprint` dilation; precision and recall
    combine as in :func:`f_measure_from_counts`. Shapes as for :func:`jaccard`.
    """
    gt_b, pred_b, void_b = _as_masks(gt, pred, void)
    if gt_b.ndim == 2:
        return np.asarray(_frame_boundary_f(gt_b, pred_b, void_b, bound_th), dtype=np.float64)
    return np.asarray(
        [
            _frame_boundary_f(g, p, v, bound_th)
            for g, p, v in zip(gt_b, pred_b, void_b, strict=True)
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class TemporalStats:
    """Statistics of one object's per-frame scores (0-1 scale).

    ``mean``: average over frames. ``recall``: fraction of frames scoring above 0.5.
    ``decay``: mean of the first temporal quarter minus mean of the last (positive = worse later).
    """

    mean: float
    recall: float
    decay: float


def decay_bins(num_frames: int) -> list[slice]:
    """The four frame ranges whose first and last give the decay statistic.

    Bin edges are ``round(linspace(1, T, 5)) - 1`` with halves rounded up, and each bin includes
    its right edge, so consecutive bins share a frame (as in the official ``db_statistics``).
    """
    if num_frames < 1:
        raise ValueError("decay_bins needs at least one frame")
    edges = np.round(np.linspace(1, num_frames, DECAY_BINS + 1) + 1e-10).astype(np.int64) - 1
    return [slice(int(edges[i]), int(edges[i + 1]) + 1) for i in range(DECAY_BINS)]


def temporal_statistics(per_frame: ArrayLike) -> TemporalStats:
    """Mean, recall and decay of one object's per-frame J or F values (official ``db_statistics``)."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"temporal_statistics needs a non-empty 1-D array, got {values.shape}")
    bins = decay_bins(values.size)
    return TemporalStats(
        mean=float(np.mean(values)),
        recall=float(np.mean(values > RECALL_THRESHOLD)),
        decay=float(np.mean(values[bins[0]]) - np.mean(values[bins[-1]])),
    )
