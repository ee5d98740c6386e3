"""Train the learned detector on a synthetic world and measure its proposals against ground truth.

Usage: ``python benchmarks/bench_detector.py WORLD [--preset default] [--set key=value ...]
[--drop-masks FRACTION] [--threads N] [--out DIR]``, with ``WORLD`` made by ``uvis synth WORLD --preset
default``.

The detector is trained on the ground-truth masks of the world's ``ytvis/train`` frames written
in the PROPOSALS layout, standing in for MaskCut's masks (so this measures what the learn step
can do with clean pseudo-masks, not MaskCut's quality). ``--drop-masks`` removes that share of
the training masks at random, as objects MaskCut misses, the case DropLoss is for (compare
``--set drop_loss=false``). Its proposals on ``ytvis/valid`` are
matched one-to-one to the visible ground-truth masks of each frame (Hungarian on mask IoU, pairs
with IoU >= 0.5). Printed: training and inference CPU seconds, and for the score floors 0.05
(everything the stage writes), 0.5 and 0.7 (the paper's objectness threshold): proposals per
frame, class-agnostic recall and precision; then how the scores of matched proposals (true
objects) and unmatched ones (false positives) are distributed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import yaml
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from uvis import masks
from uvis.data.frames import VideoDataset
from uvis.data.ytvis import load_ytvis
from uvis.proposals.detector import (
    DetectorConfig,
    detect_frames,
    load_detector,
    targets_from_proposals,
    train_detector,
)
from uvis.schemas import PROPOSALS

FLOORS = (0.05, 0.5, 0.7)


def ground_truth_proposals(dataset: VideoDataset) -> pa.Table:
    """The dataset's visible ground-truth masks as a PROPOSALS table (``source="maskcut"``)."""
    cols: dict[str, list[Any]] = {f.name: [] for f in PROPOSALS.schema}
    next_id: dict[tuple[int, int], int] = defaultdict(int)
    for inst in dataset.instances or ():
        for t, seg in enumerate(inst.segmentations):
            if seg is None:
                continue
            rle = masks.encode(masks.decode(seg))
            key = (inst.video_id, t)
            cols["video_id"].append(inst.video_id)
            cols["frame_index"].append(t)
            cols["proposal_id"].append(next_id[key])
            cols["box"].append(masks.bbox_xywh(rle))
            cols["area"].append(masks.area(rle))
            cols["height"].append(rle["size"][0])
            cols["width"].append(rle["size"][1])
            cols["rle"].append(rle["counts"])
            cols["objectness"].append(None)
            cols["source"].append("maskcut")
            next_id[key] += 1
    return pa.table(cols, schema=PROPOSALS.schema)


def _rles_by_frame(table: pa.Table) -> dict[tuple[int, int], list[tuple[dict, float]]]:
    out: dict[tuple[int, int], list[tuple[dict, float]]] = defaultdict(list)
    for row in table.to_pylist():
        rle = {"size": [row["height"], row["width"]], "counts": row["rle"].encode()}
        out[(row["video_id"], row["frame_index"])].append((rle, row["objectness"] or 0.0))
    return out


def evaluate(pred: pa.Table, gt: pa.Table, frames: int) -> dict[str, Any]:
    """Recall/precision at IoU 0.5 per score floor; scores of matched and unmatched proposals."""
    gt_by, pred_by = _rles_by_frame(gt), _rles_by_frame(pred)
    n_gt = gt.num_rows
    report: dict[str, Any] = {}
    true_scores, false_scores = [], []
    for floor in FLOORS:
        kept = matched = 0
        for key in set(gt_by) | set(pred_by):
            gts = [r for r, _ in gt_by.get(key, [])]
            props = [(r, s) for r, s in pred_by.get(key, []) if s >= floor]
            kept += len(props)
            hits: set[int] = set()
            if gts and props:
                iou = np.asarray(mask_utils.iou([r for r, _ in props], gts, [0] * len(gts)))
                iou = iou.reshape(len(props), len(gts))
                rows, cols = linear_sum_assignment(-iou)
                hits = {int(r) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= 0.5}
            matched += len(hits)
            if floor == FLOORS[0]:
                for i, (_, s) in enumerate(props):
                    (true_scores if i in hits else false_scores).append(s)
        report[f"score>={floor}"] = {
            "proposals_per_frame": round(kept / frames, 2),
            "recall": round(matched / n_gt, 3),
            "precision": round(matched / kept, 3) if kept else None,
        }
    for name, scores in (("true objects", true_scores), ("false positives", false_scores)):
        s = np.asarray(scores)
        report[f"scores of {name}"] = {
            "count": len(s),
            "mean": round(float(s.mean()), 3) if len(s) else None,
            "share>=0.7": round(float((s >= 0.7).mean()), 3) if len(s) else None,
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--drop-masks", type=float, default=0.0, metavar="FRACTION")
    parser.add_argument("--out", type=Path, default=None, help="keep the checkpoint here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = DetectorConfig.preset(args.preset, **overrides)
    ytvis = args.world / "ytvis"
    train = load_ytvis(ytvis / "train.json", ytvis / "train" / "JPEGImages")
    valid = load_ytvis(ytvis / "valid.json", ytvis / "valid" / "JPEGImages")
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bench_detector_"))
    pseudo = ground_truth_proposals(train)
    keep = np.random.default_rng(0).random(pseudo.num_rows) >= args.drop_masks
    targets = targets_from_proposals(train.frame_index(), pseudo.filter(pa.array(keep)))

    start = time.process_time()
    report = train_detector(targets, cfg, out_dir / "detector.pth", progress=False)
    train_cpu = time.process_time() - start
    model, cfg = load_detector(out_dir / "detector.pth")
    index = valid.frame_index()
    start = time.process_time()
    pred = detect_frames(model, index, cfg, progress=False)
    detect_cpu = time.process_time() - start

    print(
        f"preset {args.preset} {overrides}: {len(targets)} training frames, "
        f"{int(keep.sum())} of {len(keep)} ground-truth masks as pseudo-masks"
    )
    print(
        f"train: {train_cpu:.1f} CPU s ({report['seconds']:.1f} s wall, "
        f"{report['torch_threads']} threads), final loss {report['final_loss']:.3f}"
    )
    print(f"detect: {1000 * detect_cpu / index.num_rows:.1f} CPU ms/frame on {index.num_rows}")
    print(json.dumps(evaluate(pred, ground_truth_proposals(valid), index.num_rows), indent=1))


if __name__ == "__main__":
    main()
