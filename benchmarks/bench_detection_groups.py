"""What leaving out detection groups (``proposals.drop_groups``) does to the pseudo-labels.

Usage::

    python benchmarks/bench_detection_groups.py RESULTS [--split train] [--frames 600]
        [--seed 0]

``RESULTS`` is a run's ``results/synth`` folder whose ``detect`` jobs ran *without*
``--drop-groups`` (``proposals.drop_groups: false``), so that its pseudo-labels still hold the
groups. On ``--frames`` random frames of the split, the script matches each filter level's
pseudo-labels one-to-one to the ground truth at IoU 0.5 (as ``uvis pseudo quality``) and prints
recall and precision as stored and with :func:`uvis.proposals.detector.group_flags` applied to
each frame's detections (every row of the frame, the level ``none``, as rule ``detect`` applies
it). It then sorts the unmatched rows at the objectness level by what they are: a *merge*
(covering at least 30 % of two or more objects), a *duplicate* of a matched object, *coarse*
(best IoU 0.3-0.5) or *background*. Choose settings on the **train** split.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from bench_pseudo_mask_iou import ground_truth
from scipy.optimize import linear_sum_assignment

from uvis import masks
from uvis.proposals.detector import Detection, group_flags
from uvis.prototypes import LEVELS, select


def iou_matrix(found: list[np.ndarray], truths: list[np.ndarray]) -> np.ndarray:
    """``(len(found), len(truths))`` mask IoUs."""
    if not found or not truths:
        return np.zeros((len(found), len(truths)))
    a = np.stack(found).reshape(len(found), -1).astype(np.float32)
    b = np.stack(truths).reshape(len(truths), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1)


def matched_rows(iou: np.ndarray) -> set[int]:
    """Rows matched one-to-one at IoU >= 0.5 (maximum total IoU, as the quality report)."""
    if iou.size == 0:
        return set()
    rows, cols = linear_sum_assignment(-iou)
    return {int(r) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= 0.5}


def kind(i: int, found: list[np.ndarray], truths: list[np.ndarray], iou: np.ndarray) -> str:
    """What an unmatched row is."""
    best = iou[i].max() if iou.shape[1] else 0.0
    covers = [(found[i] & g).sum() / max(1, g.sum()) for g in truths]
    if best >= 0.5:
        return "duplicate of a matched object"
    if sum(c >= 0.3 for c in covers) >= 2:
        return "merge (>= 30 % of two or more objects)"
    if best >= 0.3:
        return "coarse (best IoU 0.3-0.5)"
    return "background or part (best IoU < 0.3)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gt, _ = ground_truth(args.results, args.split)
    table = pq.read_table(args.results / "pseudo" / "labels" / f"{args.split}.parquet")
    keep = {level: np.asarray(select(table, level)).astype(bool) for level in LEVELS}
    rows = table.select(["video_id", "frame_index", "height", "width", "rle", "objectness"])
    rows = rows.to_pylist()
    by_frame: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_frame[(r["video_id"], r["frame_index"])].append(i)
    frames = sorted(by_frame)
    rng = np.random.default_rng(args.seed)
    frames = [frames[j] for j in rng.choice(len(frames), min(args.frames, len(frames)), False)]

    totals = {(level, drop): [0, 0] for level in LEVELS for drop in (False, True)}
    kinds: Counter[str] = Counter()
    num_gt = 0
    for key in frames:
        idx = by_frame[key]
        found = {
            i: masks.decode(
                {"size": [rows[i]["height"], rows[i]["width"]], "counts": rows[i]["rle"]}
            ).astype(bool)
            for i in idx
        }
        dets = [Detection((0.0, 0.0, 1.0, 1.0), rows[i]["objectness"], found[i]) for i in idx]
        groups = {i for i, g in zip(idx, group_flags(dets), strict=True) if g}
        truths = gt.get(key, [])
        num_gt += len(truths)
        for level in LEVELS:
            for drop in (False, True):
                kept = [i for i in idx if keep[level][i] and not (drop and i in groups)]
                iou = iou_matrix([found[i] for i in kept], truths)
                hits = matched_rows(iou)
                totals[(level, drop)][0] += len(hits)
                totals[(level, drop)][1] += len(kept)
                if level == "objectness" and not drop:
                    for j in set(range(len(kept))) - hits:
                        kinds[kind(j, [found[i] for i in kept], truths, iou)] += 1

    print(f"{args.results} {args.split}: {len(frames)} frames, {num_gt} ground-truth masks")
    print("| level | groups | pseudo-labels | recall | precision |")
    print("|---|---|---:|---:|---:|")
    for level in LEVELS:
        for drop in (False, True):
            hits, n = totals[(level, drop)]
            print(
                f"| {level} | {'left out' if drop else 'kept'} | {n} | {hits / max(1, num_gt):.1%} "
                f"| {hits / max(1, n):.1%} |"
            )
    unmatched = sum(kinds.values())
    print(f"\nunmatched objectness-level rows, groups kept: {unmatched}")
    for name, count in kinds.most_common():
        print(f"  {name}: {count} ({count / max(1, unmatched):.0%})")


if __name__ == "__main__":
    main()
