"""A straightforward reference implementation of the YouTube-VIS evaluation, and random cases.

``reference_evaluate`` follows the rules listed in :mod:`uvis.evaluation.ytvis`'s docstring in
the plainest possible way, independently of the fast implementation: masks are decoded to numpy
arrays and pixels are counted frame by frame and pair by pair, matching and accumulation are
loops over lists. It is slow and does no input validation; tests and the benchmark compare it
with the vectorised implementation.

``random_case`` builds small random ground truth + results with the awkward features the rules
care about: overlapping and duplicated masks, absent and empty frames, crowd instances, several
categories (some without ground truth), ``areas`` fields that differ from the masks and sit on
the area-range edges, tied scores and more than 100 results per (video, category).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from uvis import masks

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = [1, 10, 100]
AREA_RANGES = [(0.0, 1e10), (0.0, 128.0**2), (128.0**2, 256.0**2), (256.0**2, 1e10)]
EPS = 2.0**-52

SUMMARY = [  # key, AP (True) or AR, IoU threshold index or None, area index, max dets index
    ("AP", True, None, 0, 2),
    ("AP50", True, 0, 0, 2),
    ("AP75", True, 5, 0, 2),
    ("APs", True, None, 1, 2),
    ("APm", True, None, 2, 2),
    ("APl", True, None, 3, 2),
    ("AR1", False, None, 0, 0),
    ("AR10", False, None, 0, 1),
    ("AR100", False, None, 0, 2),
    ("ARs", False, None, 1, 2),
    ("ARm", False, None, 2, 2),
    ("ARl", False, None, 3, 2),
]


# ---------------------------------------------------------------------------------------------
# Reference evaluation


def decode_frame(seg: Any, height: int, width: int) -> np.ndarray | None:
    """A frame's mask as a boolean array, or None (null, or an empty polygon list)."""
    if seg is None or (isinstance(seg, list) and not seg):
        return None
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
        return mask_utils.decode(rle).astype(bool)
    return masks.decode(seg).astype(bool)


def sequence_iou(dt_frames: list, gt_frames: list) -> float:
    """Video IoU: summed intersections over summed unions, frames without masks on both sides
    skipped, 0 when nothing is in the union."""
    inter = union = 0
    for d, g in zip(dt_frames, gt_frames, strict=True):
        if d is None and g is None:
            continue
        if d is None:
            union += int(g.sum())
        elif g is None:
            union += int(d.sum())
        else:
            inter += int(np.logical_and(d, g).sum())
            union += int(np.logical_or(d, g).sum())
    return inter / union if union > 0 else 0.0


def mean_of_nonzero(values: list) -> float:
    """Average area: the mean of the entries that are neither None nor 0 (0 if none)."""
    kept = [v for v in values if v is not None and v != 0]
    return sum(kept) / len(kept) if kept else 0.0


def pick_gt(ious: list[float], available: list[bool], ignored: list[bool], thr: float) -> int:
    """The ground truth a result matches at threshold ``thr`` (-1 if none): among available
    instances with IoU >= thr, non-ignored ones first; highest IoU, last one among equals."""
    for want_ignored in (False, True):
        cands = [
            j
            for j in range(len(ious))
            if available[j] and ignored[j] == want_ignored and ious[j] >= thr
        ]
        if cands:
            best = max(ious[j] for j in cands)
            return [j for j in cands if ious[j] == best][-1]
    return -1


def agnostic_inputs(gt: dict, results: list[dict]) -> tuple[dict, list[dict]]:
    """Copies of ``gt`` and ``results`` with one category, -1 "object", in the order the
    official code joins them with ``useCats = 0``: by category id, then input order."""
    order = {c: i for i, c in enumerate(sorted(c["id"] for c in gt["categories"]))}
    anns = sorted(gt["annotations"], key=lambda a: order[a["category_id"]])
    res = sorted(results, key=lambda r: order[r["category_id"]])
    gt = {
        **gt,
        "categories": [{"id": -1, "name": "object"}],
        "annotations": [{**a, "category_id": -1} for a in anns],
    }
    return gt, [{**r, "category_id": -1} for r in res]


def reference_evaluate(
    gt: dict, results: list[dict], *, class_agnostic: bool = False
) -> dict[str, Any]:
    """The summary metrics (0-100, None if undefined) and per-category AP, the slow way;
    ``class_agnostic``: on :func:`agnostic_inputs` (per-category AP then under "object")."""
    if class_agnostic:
        gt, results = agnostic_inputs(gt, results)
    videos = {v["id"]: v for v in gt["videos"]}
    cat_ids = sorted(c["id"] for c in gt["categories"])
    names = {c["id"]: c["name"] for c in gt["categories"]}

    # dets_per_cat[cat, area]: per video, the (score, flag per threshold) of each kept result;
    # npig[cat, area]: number of non-ignored ground-truth instances
    dets_per_cat: dict[tuple[int, int], list] = {}
    npig: dict[tuple[int, int], int] = {}
    present: set[int] = set()
    for vid in sorted(videos):
        v = videos[vid]
        h, w = v["height"], v["width"]
        for cat in cat_ids:
            gts = [a for a in gt["annotations"] if a["video_id"] == vid and a["category_id"] == cat]
            dts = [r for r in results if r["video_id"] == vid and r["category_id"] == cat]
            if not gts and not dts:
                continue
            present.add(cat)
            dts = sorted(dts, key=lambda r: -r["score"])[:100]
            gt_frames = [[decode_frame(s, h, w) for s in a["segmentations"]] for a in gts]
            dt_frames = [[decode_frame(s, h, w) for s in r["segmentations"]] for r in dts]
            ious = [[sequence_iou(df, gf) for gf in gt_frames] for df in dt_frames]
            crowd = [bool(a["iscrowd"]) for a in gts]
            gt_avg = [mean_of_nonzero(a["areas"]) for a in gts]
            dt_avg = []
            for frames in dt_frames:
                dt_avg.append(
                    mean_of_nonzero([None if f is None else int(f.sum()) for f in frames])
                )
            for ai, (lo, hi) in enumerate(AREA_RANGES):
                ignored = [crowd[j] or not lo <= gt_avg[j] <= hi for j in range(len(gts))]
                npig[cat, ai] = npig.get((cat, ai), 0) + ignored.count(False)
                rows = []
                flags = [[None] * len(dts) for _ in IOU_THRESHOLDS]
                for ti, t in enumerate(IOU_THRESHOLDS):
                    available = [True] * len(gts)
                    for i in range(len(dts)):
                        j = pick_gt(ious[i], available, ignored, min(t, 1 - 1e-10))
                        if j >= 0:
                            if not crowd[j]:
                                available[j] = False
                            flags[ti][i] = "ignore" if ignored[j] else "tp"
                        else:
                            out = not lo <= dt_avg[i] <= hi
                            flags[ti][i] = "ignore" if out else "fp"
                for i, r in enumerate(dts):
                    rows.append((r["score"], [flags[ti][i] for ti in range(len(IOU_THRESHOLDS))]))
                dets_per_cat.setdefault((cat, ai), []).append(rows)

    T, R, K, A, M = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(cat_ids), 4, 3
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k, cat in enumerate(cat_ids):
        if cat not in present:
            continue
        for ai in range(A):
            if npig[cat, ai] == 0:
                continue
            for mi, maxdet in enumerate(MAX_DETS):
                pool = [row for rows in dets_per_cat[cat, ai] for row in rows[:maxdet]]
                pool = sorted(pool, key=lambda row: -row[0])
                for ti in range(T):
                    tp = fp = 0
                    prec, rec = [], []
                    for _, f in pool:  # an ignored result repeats the previous counts
                        tp += f[ti] == "tp"
                        fp += f[ti] == "fp"
                        prec.append(tp / (fp + tp + EPS))
                        rec.append(tp / npig[cat, ai])
                    recall[ti, k, ai, mi] = rec[-1] if rec else 0.0
                    for ri, r in enumerate(RECALL_THRESHOLDS):
                        first = next((n for n, x in enumerate(rec) if x >= r), None)
                        precision[ti, ri, k, ai, mi] = 0.0 if first is None else max(prec[first:])

    out: dict[str, Any] = {}
    for key, is_ap, ti, ai, mi in SUMMARY:
        arr = precision[:, :, :, ai, mi] if is_ap else recall[:, :, ai, mi]
        if ti is not None:
            arr = arr[ti : ti + 1]
        vals = [float(x) for x in arr.ravel() if x > -1]
        out[key] = 100.0 * sum(vals) / len(vals) if vals else None
    out["per_category"] = {}
    for k, cat in enumerate(cat_ids):
        vals = [float(x) for x in precision[:, :, k, 0, 2].ravel() if x > -1]
        out["per_category"][names[cat]] = 100.0 * sum(vals) / len(vals) if vals else None
    return out


# ---------------------------------------------------------------------------------------------
# Random cases

# GT ``areas`` values that put an instance on or next to the edges of the area ranges.
EDGE_AREAS = [128**2 - 1, 128**2, 128**2 + 1, 256**2 - 1, 256**2, 256**2 + 1, 100, 20000, 70000]


def _random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(4)
    m = np.zeros((h, w), dtype=np.uint8)
    if kind == 0:  # empty but present
        return m
    if kind == 1:  # random pixels
        return (rng.random((h, w)) < rng.uniform(0.1, 0.7)).astype(np.uint8)
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
    m[y0:y1, x0:x1] = 1
    if kind == 3:  # rectangle with holes
        m &= (rng.random((h, w)) < 0.8).astype(np.uint8)
    return m


def _perturb(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:
        return m.copy()
    if kind == 1:
        return np.roll(m, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    flip = (rng.random(m.shape) < rng.uniform(0.02, 0.2)).astype(np.uint8)
    return m ^ flip


def _decoded_track(segmentations: list, h: int, w: int) -> list[np.ndarray | None]:
    return [
        None if f is None else f.astype(np.uint8)
        for f in (decode_frame(s, h, w) for s in segmentations)
    ]


def _random_polygon(rng: np.random.Generator, h: int, w: int) -> list[list[float]]:
    """One or two random triangles, as a COCO polygon list."""
    return [
        [
            float(c)
            for xy in zip(rng.uniform(0, w, 3), rng.uniform(0, h, 3), strict=True)
            for c in xy
        ]
        for _ in range(int(rng.integers(1, 3)))
    ]


def _gt_segmentation(m: np.ndarray, style: str) -> Any:
    rle = masks.encode(m)
    if style == "uncompressed":
        flat = m.flatten(order="F")
        counts, value, run = [], 0, 0
        for px in flat:
            if px == value:
                run += 1
            else:
                counts.append(run)
                value, run = int(px), 1
        counts.append(run)
        return {"size": rle["size"], "counts": counts}
    return rle


def random_case(
    rng: np.random.Generator,
    *,
    num_videos: int = 3,
    num_categories: int = 4,
    max_frames: int = 4,
    size: tuple[int, int] = (8, 10),
    max_gts: int = 4,
    max_results: int = 10,
    crowd_rate: float = 0.15,
    many_results: bool = False,
    large_masks: bool = False,
) -> tuple[dict, list[dict]]:
    """A random YouTube-VIS ground truth and results list (JSON-ready, at least one result).

    ``large_masks`` uses frames big enough for masks to reach the medium/large area ranges;
    ``many_results`` adds one (video, category) with more than 100 results.
    """
    h0, w0 = size
    videos, annotations, results = [], [], []
    categories = [{"id": c + 1, "name": f"cat{c + 1}"} for c in range(num_categories)]
    used_cats = rng.choice(num_categories, size=max(1, num_categories - 1), replace=False) + 1
    ann_id = 1
    for v in range(num_videos):
        vid = v + 1
        h, w = (
            (int(rng.integers(130, 270)), int(rng.integers(130, 270)))
            if large_masks
            else (
                int(rng.integers(h0 // 2, h0 + 1)),
                int(rng.integers(w0 // 2, w0 + 1)),
            )
        )
        n_frames = int(rng.integers(1, max_frames + 1))
        videos.append(
            {
                "id": vid,
                "height": h,
                "width": w,
                "length": n_frames,
                "file_names": [f"v{vid}/{f:05d}.jpg" for f in range(n_frames)],
            }
        )
        gt_tracks = []
        for _ in range(int(rng.integers(0, max_gts + 1))):
            if gt_tracks and rng.random() < 0.15:  # duplicate an instance: equal IoUs
                frames = [None if f is None else f.copy() for f in gt_tracks[-1][0]]
            else:
                frames = [
                    None if rng.random() < 0.25 else _random_mask(rng, h, w)
                    for _ in range(n_frames)
                ]
            cat = int(rng.choice(used_cats))
            style = str(rng.choice(["compressed", "uncompressed", "polygon"], p=[0.6, 0.3, 0.1]))
            polygons = [None if f is None else _random_polygon(rng, h, w) for f in frames]
            if style == "polygon":
                frames = [
                    None if p is None else decode_frame(p, h, w).astype(np.uint8) for p in polygons
                ]
            areas: list[Any] = [None if f is None else int(f.sum()) for f in frames]
            r = rng.random()
            if r < 0.2:
                areas = [None if a is None else int(rng.choice(EDGE_AREAS)) for a in areas]
            elif r < 0.3:
                areas = [int(rng.choice(EDGE_AREAS))] * n_frames
            elif r < 0.4:
                areas = [None if a is None else a * 400 for a in areas]
            annotations.append(
                {
                    "id": ann_id,
                    "video_id": vid,
                    "category_id": cat,
                    "iscrowd": int(rng.random() < crowd_rate),
                    "segmentations": polygons
                    if style == "polygon"
                    else [None if f is None else _gt_segmentation(f, style) for f in frames],
                    "areas": areas,
                }
            )
            ann_id += 1
            gt_tracks.append((frames, cat))
        n_res = (
            int(rng.integers(0, max_results + 1)) if v else int(rng.integers(1, max_results + 1))
        )
        for _ in range(n_res):
            if gt_tracks and rng.random() < 0.7:
                frames, cat = gt_tracks[int(rng.integers(len(gt_tracks)))]
                frames = [
                    (None if rng.random() < 0.5 else _random_mask(rng, h, w))
                    if f is None
                    else (None if rng.random() < 0.1 else _perturb(rng, f))
                    for f in frames
                ]
                if rng.random() < 0.2:
                    cat = int(rng.integers(1, num_categories + 1))
            else:
                frames = [
                    None if rng.random() < 0.2 else _random_mask(rng, h, w) for _ in range(n_frames)
                ]
                cat = int(rng.integers(1, num_categories + 1))
            score = (
                float(rng.choice([0.25, 0.5, 0.75])) if rng.random() < 0.4 else float(rng.random())
            )
            results.append(
                {
                    "video_id": vid,
                    "category_id": cat,
                    "score": score,
                    "segmentations": [None if f is None else masks.encode(f) for f in frames],
                }
            )
    if many_results and annotations:
        target = annotations[int(rng.integers(len(annotations)))]
        v = videos[target["video_id"] - 1]
        for _ in range(105):
            frames = [
                None if mask is None else _perturb(rng, mask)
                for mask in _decoded_track(target["segmentations"], v["height"], v["width"])
            ]
            results.append(
                {
                    "video_id": v["id"],
                    "category_id": target["category_id"],
                    "score": float(rng.choice([0.1, 0.2, 0.3, 0.4])),
                    "segmentations": [None if f is None else masks.encode(f) for f in frames],
                }
            )
    gt = {"videos": videos, "categories": categories, "annotations": annotations}
    return gt, results


def case_for_seed(seed: int) -> tuple[dict, list[dict]]:
    """Random case number ``seed`` from a mix of families: mostly small cases of varied shape,
    every 10th with big masks (medium/large areas), with > 100 results, or crowd-heavy."""
    rng = np.random.default_rng([2024, seed])
    family = seed % 10
    if family == 7:
        return random_case(rng, num_videos=2, max_frames=2, large_masks=True, max_results=6)
    if family == 3:
        return random_case(rng, num_videos=2, many_results=True)
    return random_case(
        rng,
        num_videos=int(rng.integers(1, 6)),
        num_categories=int(rng.integers(1, 6)),
        max_gts=int(rng.integers(1, 7)),
        max_results=int(rng.integers(1, 15)),
        crowd_rate=0.6 if family in (1, 5) else 0.15,
    )
