"""What leaving out detection groups (``proposals.drop_groups``) does to the pseudo-labels.

Usage::

    python benchmarks/bench_detection_groups.py RESULTS [--split train] [--frames 600]
        [--seed 0]

``RESULTS`` is a run's ``results/synth`` folder whose ``detect`` jobs ran *without*
``--drop-groups`` (``proposals.drop_groups: false``), so that its pseudo-labels still hold the
groups. On ``--frames`` random frames of the split, the script matches each filter level's
pseudo-labels one-to-one to the ground truth at IoU 0.5 (with ``uvis pseudo quality``'s own
matching) and prints recall and precision as stored and with
:func:`uvis.proposals.detector.group_flags` applied to each frame's detections (every row of the frame, the level ``none``, as rule ``detect`` applies
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
from bench_pseudo_mask_iou import best_iou, ground_truth

from uvis import masks
from uvis.proposals.detector import Detection, group_flags
from uvis.pseudo.levels import LEVELS, select
from uvis.pseudo.quality import match_frame


def kind(mask: np.ndarray, truths: list[np.ndarray]) -> str:
    """What an unmatched row is."""
    best = best_iou(mask, truths)
    covers = [(mask & g).sum() / max(1, g.sum()) for g in truths]
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
        coco = {
            i: masks.to_coco(
                {"size": [rows[i]["height"], rows[i]["width"]], "counts": rows[i]["rle"]}
            )
            for i in idx
        }
        found = {i: masks.decode(coco[i]).astype(bool) for i in idx}
        dets = [Detection((0.0, 0.0, 1.0, 1.0), rows[i]["objectness"], found[i]) for i in idx]
        groups = {i for i, g in zip(idx, group_flags(dets), strict=True) if g}
        truths = gt.get(key, [])
        truth_rles = [masks.to_coco(masks.encode(g)) for g in truths]
        num_gt += len(truths)
        for level in LEVELS:
            for drop in (False, True):
                kept = [i for i in idx if keep[level][i] and not (drop and i in groups)]
                pairs = match_frame(truth_rles, [coco[i] for i in kept], 0.5)
                hits = {kept[p] for _, p in pairs}
                totals[(level, drop)][0] += len(hits)
                totals[(level, drop)][1] += len(kept)
                if level == "objectness" and not drop:
                    kinds.update(kind(found[i], truths) for i in kept if i not in hits)

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
