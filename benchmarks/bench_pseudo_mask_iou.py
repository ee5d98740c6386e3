"""How close the pseudo-masks' outlines are to the objects', and what MaskCut's CRF does to them.

Usage::

    python benchmarks/bench_pseudo_mask_iou.py RESULTS [--split train] [--refine-frames 300]
        [--seed 0]

``RESULTS`` is a run's ``results/synth`` folder with ``pseudo/labels/<split>.parquet``. Each
pseudo-label is matched to the ground-truth mask of its frame it overlaps most; per filter
level (UVIS Table 2's, as :func:`uvis.pseudo.levels.select` keeps them) the script prints the
share of rows with IoU >= 0.5, and among those the mean IoU and the shares at >= 0.75 and
>= 0.9: AP averages IoU thresholds 0.5-0.95, so a model trained on masks that rarely pass 0.75
cannot score there. Then, on the PMF-level rows of ``--refine-frames`` random frames, the same
figures for the masks as stored, with holes filled, and refined by
:func:`uvis.proposals.refine.refine_mask` (the CRF ``proposals.refine_detections`` applies),
with the CPU time the refinement took. Measure on the **train** split (what UVIS trains on),
or on another world's, when choosing settings.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from uvis import masks
from uvis.data.ytvis import load_ytvis
from uvis.proposals.refine import mask_iou, refine_mask
from uvis.pseudo.levels import LEVELS, select


def ground_truth(results: Path, split: str) -> tuple[dict, dict]:
    """``(video_id, frame_index) -> [GT masks]`` and ``video_id -> frame paths``."""
    ytvis = results / "world" / "ytvis"
    data = load_ytvis(ytvis / f"{split}.json", ytvis / split / "JPEGImages")
    gt: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
    for inst in data.instances or ():
        for t, rle in enumerate(inst.segmentations):
            if rle is not None:
                gt[(inst.video_id, t)].append(masks.decode(rle).astype(bool))
    return gt, {v.id: v.frame_paths for v in data.videos}


def best_iou(mask: np.ndarray, truths: list[np.ndarray]) -> float:
    return max((mask_iou(mask, g) for g in truths), default=0.0)


def summary(name: str, ious: np.ndarray) -> str:
    hit = ious[ious >= 0.5]
    mean = hit.mean() if len(hit) else float("nan")
    return (
        f"{name:<28} {len(ious):>7} rows  IoU>=0.5 {np.mean(ious >= 0.5):6.1%}  "
        f"mean of those {mean:.3f}  >=0.75 {np.mean(hit >= 0.75):6.1%}  "
        f">=0.9 {np.mean(hit >= 0.9):6.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--refine-frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    gt, paths = ground_truth(args.results, args.split)
    table = pq.read_table(args.results / "pseudo" / "labels" / f"{args.split}.parquet")
    rows = table.select(["video_id", "frame_index", "height", "width", "rle"]).to_pylist()
    decoded = [
        masks.decode({"size": [r["height"], r["width"]], "counts": r["rle"]}).astype(bool)
        for r in rows
    ]
    ious = np.array(
        [
            best_iou(m, gt.get((r["video_id"], r["frame_index"]), []))
            for r, m in zip(rows, decoded, strict=True)
        ]
    )
    for level in LEVELS:
        keep = np.asarray(select(table, level)).astype(bool)
        print(summary(level, ious[keep]))

    keep = np.flatnonzero(np.asarray(select(table, "pmf")).astype(bool))
    by_frame: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in keep:
        by_frame[(rows[i]["video_id"], rows[i]["frame_index"])].append(int(i))
    frames = sorted(by_frame)
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(len(frames), size=min(args.refine_frames, len(frames)), replace=False)
    stored, filled, refined, seconds = [], [], [], 0.0
    for j in picked:
        video_id, t = frames[j]
        image = np.asarray(Image.open(paths[video_id][t]).convert("RGB"))
        coarse = np.stack([decoded[i] for i in by_frame[(video_id, t)]])
        start = time.process_time()
        crf = refine_mask(image, coarse, "bilateral", fill_holes=True)
        seconds += time.process_time() - start
        holes = refine_mask(image, coarse, "none", fill_holes=True)
        truths = gt.get((video_id, t), [])
        for k in range(len(coarse)):
            stored.append(best_iou(coarse[k], truths))
            filled.append(best_iou(holes[k], truths))
            refined.append(best_iou(crf[k], truths))
    print(f"PMF level, {len(picked)} random frames, refinement {seconds:.1f} CPU-s:")
    print(summary("  as stored", np.array(stored)))
    print(summary("  holes filled", np.array(filled)))
    print(summary("  CRF + holes filled", np.array(refined)))


if __name__ == "__main__":
    main()
