"""YouTube-VIS / OVIS video instance segmentation metrics, identical to the official evaluation.

The numbers are those of the official ``YTVOSeval`` (youtubevos/cocoapi
``PythonAPI/pycocotools/ytvos.py`` + ``ytvoseval.py``, ``iouType='segm'``, as used by
MinVIS / Mask2Former / the evaluation servers), reimplemented with vectorised RLE operations.
Keys of :func:`evaluate`'s result, on the 0-100 scale, ``None`` where the official code reports
-1 (no category has a non-ignored ground-truth instance in that setting):

* ``AP``: precision averaged over IoU thresholds 0.50:0.05:0.95, 101 recall points and all
  categories with ground truth (area "all", 100 detections per video and category);
  ``AP50`` / ``AP75`` at a single threshold; ``APs`` / ``APm`` / ``APl`` for the area ranges.
* ``AR1`` / ``AR10`` / ``AR100``: the maximum recall with at most 1 / 10 / 100 detections per
  video and category, averaged over thresholds and categories; ``ARs`` / ``ARm`` / ``ARl``.
* ``per_category``: {category name: AP or None}; plus counts (``num_videos``, ...).

Official rules reproduced (each in one function below):

* Video IoU (:func:`video_iou`): sum over frames of the intersection divided by the sum over
  frames of the union -- not a mean of per-frame IoUs. A frame where one side has no mask
  (``null``) adds the other side's area to the union; frames where both are ``null`` add
  nothing; a pair whose total union is 0 has IoU 0. The crowd IoU rule of image COCO is *not*
  used: crowd ground truth is compared with the plain IoU, as the official code does.
* Average area (:func:`average_area`): the mean of the per-frame areas that are neither ``null``
  nor 0, or 0 when there are none. For ground truth it comes from the annotation's ``areas``
  field (not from its masks), for results from the result masks.
* Area ranges (:data:`AREA_RANGES`, :func:`outside_area_range`): [0, 1e10], [0, 128²],
  [128², 256²], [256², 1e10], both ends inclusive (an average area of exactly 128² is both
  small and medium).
* Ignore flags: a ground-truth instance is ignored when it is a crowd (``iscrowd``; the
  annotation's own ``ignore`` field is overridden by ``iscrowd`` in the official code and so
  has no effect) or outside the area range. An unmatched result outside the area range is
  ignored; a result matched to an ignored instance is ignored.
* Detections (:func:`rank_detections`): per (video, category), results are sorted by
  decreasing score with a stable sort (ties keep their order in the results list) and only the
  first 100 are evaluated; the others are dropped (counted in ``num_results_beyond_max_dets``).
* Matching (:func:`greedy_match`): per IoU threshold t, results in score order take the
  ground-truth instance with the highest IoU >= min(t, 1 - 1e-10) among those not yet taken,
  preferring non-ignored instances; among equal IoUs the *last* instance in annotation order
  wins. Crowd instances may absorb any number of results. Matching is done once with 100
  detections; AR1 and AR10 use the first 1 / 10 results of each (video, category).
* Accumulation (:func:`interpolated_precision_recall`): per (category, area range, max
  detections), the kept results of all videos are concatenated in increasing video id order and
  stably sorted by decreasing score; precision = tp / (tp + fp + eps) with eps = 2^-52, made
  monotone from the right and read at the first rank whose recall reaches each of the 101
  recall thresholds (0 beyond the last). Recall is the final recall (0 without results).
  Categories with no non-ignored ground truth are left out of every mean (-1 officially).

Deliberate differences, only where the official code crashes or is silently wrong (documented
choices, never a traceback):

* An empty results list gives AP 0 for every category with ground truth (official: crash).
* Ground-truth annotation id 0 is handled correctly. The official code stores matched ids in a
  float array where 0 means "unmatched", so a result matched to annotation 0 is silently
  counted as a false positive there.
* Errors (:class:`~uvis.errors.DataError`, naming the file) instead of an assertion, crash or
  silently dropped or truncated data: a result for a video not in the ground truth (official:
  assertion); a result or annotation whose category is not in ``categories`` (official:
  silently dropped); ``segmentations`` / ``areas`` whose length differs from the video's frame
  count (official: silently truncated by ``zip``); masks whose size differs from the video
  (official: a frame where both masks exist then adds nothing to the intersection or union);
  duplicate annotation ids (official: the last annotation with that id is evaluated twice and
  the earlier one never), video or category ids, or category names; a missing
  ``iscrowd`` / ``areas`` field (official: crash); non-finite scores; polygons in results
  (official: crash) or ground-truth polygons of fewer than 3 points (pycocotools would read 4
  numbers as a box); a video with neither ``file_names`` nor ``length``.
* Results may use uncompressed RLEs (official: crash); they are converted.
* The inputs are not modified (the official code writes into the loaded annotations).

Class-agnostic mode (``evaluate(..., class_agnostic=True)``) is the official code with
``params.useCats = 0``, the protocol of the class-agnostic unsupervised VIS papers (VideoCutLER,
AutoQ-VIS): every (video, category) group above becomes one group per video
(:func:`agnostic_groups`). Its ground truth is the video's annotations of all categories, in
increasing category id and then annotation order; its results are the video's results in the
same category order, stably sorted by score (so equal scores keep category, then results-list
order), and at most 100 per video are evaluated. The means run over the one pseudo-category;
``per_category`` is empty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from uvis.evaluation._ytvis_format import (
    RESULTS_MEMBER,
    Category,
    Detection,
    GroundTruth,
    GtInstance,
    load_ground_truth,
    load_results,
    read_results_file,
)
from uvis.io import read_json

__all__ = [
    "AGNOSTIC_SUFFIX",
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "MAX_DETS",
    "PROTOCOLS",
    "RECALL_THRESHOLDS",
    "RESULTS_MEMBER",
    "SUMMARY_METRICS",
    "agnostic_groups",
    "average_area",
    "evaluate",
    "evaluate_files",
    "format_summary",
    "greedy_match",
    "interpolated_precision_recall",
    "outside_area_range",
    "rank_detections",
    "summarize",
    "video_intersections",
    "video_iou",
    "with_agnostic",
]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
"""The ten IoU thresholds 0.50:0.05:0.95, built with ``linspace`` exactly as officially."""

RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
"""The 101 recall points 0:0.01:1 at which precision is read."""

MAX_DETS = (1, 10, 100)
"""Maximum detections per (video, category); the last one bounds the evaluated results."""

AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 128.0**2),
    "medium": (128.0**2, 256.0**2),
    "large": (256.0**2, 1e5**2),
}
"""Inclusive ranges of the average area (pixels), in the official order."""

AGNOSTIC_CATEGORY = Category(id=-1, name="object")
"""The one pseudo-category of class-agnostic evaluation (the official code's catId -1)."""

_MAX_MATCH_IOU = 1 - 1e-10
"""The official matcher's threshold is min(t, 1 - 1e-10) (it only matters for a t of 1)."""


@dataclass(frozen=True, slots=True)
class SummaryMetric:
    """One summary number: AP or AR at a threshold (None: averaged), area range and max dets."""

    key: str
    kind: Literal["AP", "AR"]
    iou: float | None
    area: str
    max_dets: int


SUMMARY_METRICS: tuple[SummaryMetric, ...] = (
    SummaryMetric("AP", "AP", None, "all", 100),
    SummaryMetric("AP50", "AP", 0.5, "all", 100),
    SummaryMetric("AP75", "AP", 0.75, "all", 100),
    SummaryMetric("APs", "AP", None, "small", 100),
    SummaryMetric("APm", "AP", None, "medium", 100),
    SummaryMetric("APl", "AP", None, "large", 100),
    SummaryMetric("AR1", "AR", None, "all", 1),
    SummaryMetric("AR10", "AR", None, "all", 10),
    SummaryMetric("AR100", "AR", None, "all", 100),
    SummaryMetric("ARs", "AR", None, "small", 100),
    SummaryMetric("ARm", "AR", None, "medium", 100),
    SummaryMetric("ARl", "AR", None, "large", 100),
)
"""The twelve official summary statistics, in the official order."""


# ---------------------------------------------------------------------------------------------
# Rules


def average_area(frame_areas: Sequence[float | None] | np.ndarray) -> float:
    """The official ``avg_area``: mean of the frame areas that are neither null nor 0, else 0."""
    kept = [a for a in frame_areas if a]
    return float(np.mean(np.asarray(kept, dtype=np.float64))) if kept else 0.0


def outside_area_range(avg_areas: np.ndarray, area_range: tuple[float, float]) -> np.ndarray:
    """Whether each average area lies outside the inclusive ``area_range``."""
    low, high = area_range
    return (avg_areas < low) | (avg_areas > high)


def rank_detections(detections: Sequence[Detection]) -> list[Detection]:
    """The evaluated results of one (video, category): stably sorted by decreasing score (ties
    keep results-list order), at most ``MAX_DETS[-1]``."""
    return sorted(detections, key=lambda d: -d.score)[: MAX_DETS[-1]]


def agnostic_groups(
    instances: Sequence[GtInstance], detections: Sequence[Detection]
) -> tuple[dict[int, list[GtInstance]], dict[int, list[Detection]]]:
    """Per video id, the ground truth and results of all categories as the official code joins
    them with ``useCats = 0``: concatenated in increasing category id, each category's in its
    input order (annotation order, results-list order)."""
    gts: dict[int, list[GtInstance]] = defaultdict(list)
    for inst in sorted(instances, key=lambda g: g.category_id):  # stable: annotation order
        gts[inst.video_id].append(inst)
    dets: dict[int, list[Detection]] = defaultdict(list)
    for det in sorted(detections, key=lambda d: (d.category_id, d.index)):
        dets[det.video_id].append(det)
    return gts, dets


def video_intersections(
    detections: Sequence[Detection], instances: Sequence[GtInstance], num_frames: int
) -> np.ndarray:
    """Sum over frames of the mask intersections, ``(num_detections, num_instances)`` pixels.

    One pycocotools call per frame computes all pairs: with every ground truth flagged as a
    crowd, pycocotools returns ``|d ∩ g| / |d|``, which times ``|d|`` gives the intersection
    exactly (both are integers far below 2^52, so rounding recovers them).
    """
    inter = np.zeros((len(detections), len(instances)), dtype=np.int64)
    if not detections or not instances:
        return inter
    det_area = np.stack([d.mask_areas for d in detections])  # (D, F)
    gt_area = np.stack([g.mask_areas for g in instances])  # (G, F)
    for f in np.flatnonzero((det_area > 0).any(axis=0) & (gt_area > 0).any(axis=0)):
        d_idx = np.flatnonzero(det_area[:, f])
        g_idx = np.flatnonzero(gt_area[:, f])
        over_det = mask_utils.iou(
            [detections[i].masks[f] for i in d_idx],
            [instances[j].masks[f] for j in g_idx],
            np.ones(len(g_idx), dtype=np.uint8),
        )
        inter[d_idx[:, None], g_idx] += np.rint(over_det * det_area[d_idx, f, None]).astype(
            np.int64
        )
    return inter


def video_iou(intersections: np.ndarray, det_areas: np.ndarray, gt_areas: np.ndarray) -> np.ndarray:
    """The official video IoU: Σ_frames |d ∩ g| / Σ_frames |d ∪ g| (0 where the union is 0).

    ``det_areas`` / ``gt_areas`` are each track's mask area summed over frames (absent masks
    count 0), so the summed union is ``det_area + gt_area - intersection``.
    """
    union = det_areas[:, None] + gt_areas[None, :] - intersections
    ious = np.zeros(intersections.shape, dtype=np.float64)
    np.divide(intersections, union, out=ious, where=union > 0)
    return ious


def greedy_match(
    ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The official greedy matching, for every area range and IoU threshold at once.

    ``ious`` is ``(D, G)`` with results in score order, ``gt_ignore`` ``(A, G)``, ``gt_crowd``
    ``(G,)``. Each result, in order, takes among the instances not yet taken (crowds are never
    used up) and with IoU >= min(t, 1 - 1e-10): the non-ignored ones if any, else the ignored
    ones; the highest IoU, the last in annotation order among equals. Returns ``matched`` and
    ``matched_ignored`` (matched to an ignored instance), both ``(A, T, D)`` booleans.
    """
    num_dets, num_gts = ious.shape
    shape = (gt_ignore.shape[0], len(IOU_THRESHOLDS), num_dets)
    matched = np.zeros(shape, dtype=bool)
    matched_ignored = np.zeros(shape, dtype=bool)
    if num_gts == 0:
        return matched, matched_ignored
    thresholds = np.minimum(IOU_THRESHOLDS, _MAX_MATCH_IOU)[None, :, None]
    ignore = gt_ignore[:, None, :]
    taken = np.zeros((shape[0], shape[1], num_gts), dtype=bool)
    for d in range(num_dets):
        row = ious[d]
        if row.max() < thresholds.min():
            continue
        eligible = (row >= thresholds) & ~taken
        regular = eligible & ~ignore
        pool = np.where(regular.any(axis=2, keepdims=True), regular, eligible)
        best = np.where(pool, row, -np.inf).max(axis=2, keepdims=True)
        hit = pool & (row == best)
        a_idx, t_idx = np.nonzero(hit.any(axis=2))
        g_idx = num_gts - 1 - np.argmax(hit[a_idx, t_idx, ::-1], axis=1)
        matched[a_idx, t_idx, d] = True
        matched_ignored[a_idx, t_idx, d] = gt_ignore[a_idx, g_idx]
        used_up = ~gt_crowd[g_idx]
        taken[a_idx[used_up], t_idx[used_up], g_idx[used_up]] = True
    return matched, matched_ignored


def interpolated_precision_recall(
    tp: np.ndarray, fp: np.ndarray, num_gt: int
) -> tuple[np.ndarray, np.ndarray]:
    """Precision at the 101 recall points ``(T, R)`` and final recall ``(T,)``.

    ``tp`` / ``fp`` are ``(T, N)`` booleans for non-ignored results sorted by decreasing score.
    Precision is ``tp / (tp + fp + 2^-52)`` (the official epsilon, which shifts the values of
    the first ranks in the last bit), made non-increasing from the right, and read at the first
    rank whose recall reaches each recall point (0 if none does).
    """
    tp_sum = np.cumsum(tp, axis=1).astype(np.float64)
    fp_sum = np.cumsum(fp, axis=1).astype(np.float64)
    num_ranks = tp.shape[1]
    precision = np.zeros((tp.shape[0], len(RECALL_THRESHOLDS)), dtype=np.float64)
    if num_ranks == 0:
        return precision, np.zeros(tp.shape[0], dtype=np.float64)
    recall_curve = tp_sum / num_gt
    precision_curve = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    envelope = np.maximum.accumulate(precision_curve[:, ::-1], axis=1)[:, ::-1]
    for t in range(tp.shape[0]):
        ranks = np.searchsorted(recall_curve[t], RECALL_THRESHOLDS, side="left")
        reached = ranks < num_ranks
        precision[t, reached] = envelope[t, ranks[reached]]
    return precision, recall_curve[:, -1]


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float | None]:
    """The twelve summary metrics (0-100, None if undefined) from the official arrays.

    ``precision`` is ``(T, R, K, A, M)`` and ``recall`` ``(T, K, A, M)``, -1 where a category
    has no non-ignored ground truth; those entries are left out of the means.
    """
    areas = list(AREA_RANGES)
    out: dict[str, float | None] = {}
    for metric in SUMMARY_METRICS:
        a, m = areas.index(metric.area), MAX_DETS.index(metric.max_dets)
        values = precision[:, :, :, a, m] if metric.kind == "AP" else recall[:, :, a, m]
        if metric.iou is not None:
            values = values[IOU_THRESHOLDS == metric.iou]
        out[metric.key] = _mean_defined(values)
    return out


def _mean_defined(values: np.ndarray) -> float | None:
    defined = values[values > -1]
    return float(np.mean(defined)) * 100.0 if defined.size else None


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True, slots=True)
class _VideoCategoryEval:
    """The evaluated results of one (video, category), ``D`` results in score order."""

    scores: np.ndarray  # (D,)
    tp: np.ndarray  # (A, T, D) bool
    fp: np.ndarray  # (A, T, D) bool
    num_gt: np.ndarray  # (A,) non-ignored ground-truth instances


def _evaluate_video_category(
    ious: np.ndarray,
    detections: Sequence[Detection],
    instances: Sequence[GtInstance],
) -> _VideoCategoryEval:
    """Match one (video, category) for every area range and IoU threshold, and flag each
    result as true positive, false positive or (neither) ignored."""
    crowd = np.array([g.iscrowd for g in instances], dtype=bool)
    gt_area = np.array([average_area(g.area_field) for g in instances], dtype=np.float64)
    det_area = np.array([average_area(d.mask_areas) for d in detections], dtype=np.float64)
    gt_ignore = np.stack([crowd | outside_area_range(gt_area, r) for r in AREA_RANGES.values()])
    det_outside = np.stack([outside_area_range(det_area, r) for r in AREA_RANGES.values()])
    matched, matched_ignored = greedy_match(ious, gt_ignore, crowd)
    ignored = np.where(matched, matched_ignored, det_outside[:, None, :])
    return _VideoCategoryEval(
        scores=np.array([d.score for d in detections], dtype=np.float64),
        tp=matched & ~ignored,
        fp=~matched & ~ignored,
        num_gt=(~gt_ignore).sum(axis=1),
    )


def _category_ious(
    dets_by_category: dict[int, list[Detection]],
    gts_by_category: dict[int, list[GtInstance]],
    num_frames: int,
) -> dict[int, np.ndarray]:
    """The video IoU matrix of each category of one video, from one pass over its frames
    (the categories are concatenated, so each category's matrix is a block of the whole)."""
    cats = list(dets_by_category)
    dets = [d for c in cats for d in dets_by_category[c] if gts_by_category[c]]
    gts = [g for c in cats for g in gts_by_category[c] if dets_by_category[c]]
    ious = video_iou(
        video_intersections(dets, gts, num_frames),
        np.array([d.mask_areas.sum() for d in dets], dtype=np.int64),
        np.array([g.mask_areas.sum() for g in gts], dtype=np.int64),
    )
    out, d0, g0 = {}, 0, 0
    for c in cats:
        num_d, num_g = len(dets_by_category[c]), len(gts_by_category[c])
        if num_d and num_g:
            out[c] = ious[d0 : d0 + num_d, g0 : g0 + num_g]
            d0, g0 = d0 + num_d, g0 + num_g
        else:
            out[c] = np.zeros((num_d, num_g), dtype=np.float64)
    return out


def _accumulate(
    categories: Sequence[Category], evals: dict[int, list[_VideoCategoryEval]]
) -> tuple[np.ndarray, np.ndarray]:
    """The official ``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M) arrays."""
    num_t, num_r, num_a, num_m = (
        len(IOU_THRESHOLDS),
        len(RECALL_THRESHOLDS),
        len(AREA_RANGES),
        len(MAX_DETS),
    )
    precision = -np.ones((num_t, num_r, len(categories), num_a, num_m))
    recall = -np.ones((num_t, len(categories), num_a, num_m))
    for k, category in enumerate(categories):
        blocks = evals.get(category.id, [])  # in increasing video id order
        if not blocks:
            continue
        num_gt = np.sum([b.num_gt for b in blocks], axis=0)
        scores = np.concatenate([b.scores for b in blocks])
        ranks = np.concatenate([np.arange(len(b.scores)) for b in blocks])
        tp = np.concatenate([b.tp for b in blocks], axis=2)
        fp = np.concatenate([b.fp for b in blocks], axis=2)
        for m, max_dets in enumerate(MAX_DETS):
            kept = np.flatnonzero(ranks < max_dets)
            order = kept[np.argsort(-scores[kept], kind="mergesort")]
            for a in range(num_a):
                if num_gt[a] == 0:
                    continue
                precision[:, :, k, a, m], recall[:, k, a, m] = interpolated_precision_recall(
                    tp[a][:, order], fp[a][:, order], int(num_gt[a])
                )
    return precision, recall


def evaluate(
    gt: dict[str, Any],
    results: list[dict[str, Any]],
    *,
    gt_name: str = "ground truth",
    res_name: str = "results",
    class_agnostic: bool = False,
) -> dict[str, Any]:
    """Evaluate loaded YouTube-VIS results against loaded ground truth (see module docstring).

    ``gt_name`` / ``res_name`` name the inputs in error messages. Neither input is modified.
    ``class_agnostic`` ignores the categories (the official ``useCats = 0``).
    Returns the summary metrics (0-100 or None), ``per_category`` AP (empty when class-agnostic),
    ``class_agnostic`` and counts; the dict is JSON-serialisable.
    """
    truth = load_ground_truth(gt, gt_name)
    detections = load_results(results, truth, res_name)

    gts_by_key: dict[tuple[int, int], list[GtInstance]] = defaultdict(list)
    dets_by_key: dict[tuple[int, int], list[Detection]] = defaultdict(list)
    categories = truth.categories
    if class_agnostic:
        categories = (AGNOSTIC_CATEGORY,)
        gts_by_video, dets_by_video = agnostic_groups(truth.instances, detections)
        for video_id, insts in gts_by_video.items():
            gts_by_key[video_id, AGNOSTIC_CATEGORY.id] = insts
        for video_id, dets in dets_by_video.items():
            dets_by_key[video_id, AGNOSTIC_CATEGORY.id] = dets
    else:
        for inst in truth.instances:
            gts_by_key[inst.video_id, inst.category_id].append(inst)
        for det in detections:
            dets_by_key[det.video_id, det.category_id].append(det)
    ranked = {key: rank_detections(dets) for key, dets in dets_by_key.items()}
    categories_of_video: dict[int, set[int]] = defaultdict(set)
    for video_id, category_id in (*gts_by_key, *ranked):
        categories_of_video[video_id].add(category_id)

    evals: dict[int, list[_VideoCategoryEval]] = defaultdict(list)
    for video in truth.videos.values():  # in increasing id order, as the accumulation needs
        cats = sorted(categories_of_video[video.id])
        dets = {c: ranked.get((video.id, c), []) for c in cats}
        gts = {c: gts_by_key.get((video.id, c), []) for c in cats}
        ious = _category_ious(dets, gts, video.num_frames)
        for c in cats:
            evals[c].append(_evaluate_video_category(ious[c], dets[c], gts[c]))

    precision, recall = _accumulate(categories, evals)
    metrics: dict[str, Any] = summarize(precision, recall)
    per_category = {
        c.name: _mean_defined(precision[:, :, k, 0, MAX_DETS.index(100)])
        for k, c in enumerate(categories)
    }
    metrics["per_category"] = {} if class_agnostic else per_category
    metrics["class_agnostic"] = class_agnostic
    with_gt = (
        len({g.category_id for g in truth.instances if not g.iscrowd})
        if class_agnostic
        else sum(v is not None for v in per_category.values())
    )
    metrics.update(_counts(truth, detections, ranked, with_gt))
    return metrics


def _counts(
    truth: GroundTruth,
    detections: Sequence[Detection],
    ranked: dict[tuple[int, int], list[Detection]],
    num_categories_with_gt: int,
) -> dict[str, int]:
    evaluated = sum(len(v) for v in ranked.values())
    return {
        "num_videos": len(truth.videos),
        "num_categories": len(truth.categories),
        "num_categories_with_gt": num_categories_with_gt,
        "num_gt_instances": len(truth.instances),
        "num_results": len(detections),
        "num_results_beyond_max_dets": len(detections) - evaluated,
    }


PROTOCOLS = ("class-aware", "class-agnostic", "both")
"""What :func:`evaluate_files` computes: the official metrics with categories (UVIS, the
evaluation servers), without them (``useCats = 0``), or both in one dict (:func:`with_agnostic`)."""

AGNOSTIC_SUFFIX = "_agnostic"
"""Suffix of the class-agnostic summary metrics in a ``"both"`` result (``AP_agnostic``, ...)."""


def with_agnostic(class_aware: dict[str, Any], class_agnostic: dict[str, Any]) -> dict[str, Any]:
    """The class-aware metrics plus every class-agnostic summary metric as ``<key>_agnostic``."""
    out = dict(class_aware)
    out.update({m.key + AGNOSTIC_SUFFIX: class_agnostic[m.key] for m in SUMMARY_METRICS})
    return out


def evaluate_files(
    gt_json: Path, results_json: Path, *, protocol: str = "class-aware"
) -> dict[str, Any]:
    """Evaluate a results file (JSON list, or ``.zip`` holding ``results.json``) against a
    YouTube-VIS ground-truth JSON file, with one of :data:`PROTOCOLS`. Bad input raises
    :class:`~uvis.errors.DataError`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    gt = read_json(Path(gt_json))
    results = read_results_file(Path(results_json))
    names = {"gt_name": str(gt_json), "res_name": str(results_json)}
    if protocol == "both":
        return with_agnostic(
            evaluate(gt, results, **names), evaluate(gt, results, **names, class_agnostic=True)
        )
    return evaluate(gt, results, **names, class_agnostic=protocol == "class-agnostic")


def format_summary(metrics: dict[str, Any]) -> str:
    """A human-readable table of the metrics returned by :func:`evaluate`."""
    mode = ", class-agnostic" if metrics.get("class_agnostic") else ""
    head = (
        f"YouTube-VIS evaluation{mode}: {metrics['num_videos']} videos, "
        f"{metrics['num_categories']} categories ({metrics['num_categories_with_gt']} with "
        f"ground truth), {metrics['num_results']} results"
    )
    if metrics["num_results_beyond_max_dets"]:
        per = "video" if metrics.get("class_agnostic") else "video and category"
        head += f" ({metrics['num_results_beyond_max_dets']} beyond {MAX_DETS[-1]} per {per}, "
        head += "ignored)"
    both = "AP" + AGNOSTIC_SUFFIX in metrics
    extra = f"{'agnostic':>10}" if both else ""
    lines = [head, f"  {'metric':<8}{'IoU':<11}{'area':<8}{'maxDets':>7}{'value':>9}{extra}"]
    for metric in SUMMARY_METRICS:
        iou = "0.50:0.95" if metric.iou is None else f"{metric.iou:.2f}"
        extra = f"{_fmt(metrics.get(metric.key + AGNOSTIC_SUFFIX)):>10}" if both else ""
        lines.append(
            f"  {metric.key:<8}{iou:<11}{metric.area:<8}{metric.max_dets:>7}"
            f"{_fmt(metrics.get(metric.key)):>9}{extra}"
        )
    per_category = metrics.get("per_category", {})
    if per_category:
        lines.append("per-category AP (IoU 0.50:0.95, area all, maxDets 100):")
        width = max(len(name) for name in per_category) + 2
        cells = [f"{name:<{width}}{_fmt(ap):>7}" for name, ap in per_category.items()]
        for start in range(0, len(cells), 3):
            lines.append("  " + "    ".join(cells[start : start + 3]))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
