"""Merged masks: how often a predicted track or a pseudo-label covers two objects at once.

Usage::

    python benchmarks/bench_merges.py RESULTS_DIR [--runs uvis-memory deepsort ...]
        [--split valid] [--label-split train] [--video-stride 20]

``RESULTS_DIR`` is a finished run's ``results/<dataset>`` folder with ground truth (the
synthetic world). A mask *merges* in a frame when it covers at least half of each of two
ground-truth objects of that frame.

* For each run in ``--runs`` (``predictions/<run>/<split>/results.json``): how many of its
  tracks merge in at least 30 % of the frames where they are present, their mean score against
  the other tracks', and how often a merging track is a video's top-scoring one.
* For the pseudo-labels of ``--label-split`` (every ``--video-stride``-th video), per filter
  level of UVIS Table 2: the fraction of labels that merge, and the fraction that match one
  object (IoU >= 0.5).
* With ``--merge-test INSIDE PART OVERLAP``: how well a label-only test finds the merged
  labels. It flags a label whose mask holds two other proposals of its frame, each at least
  INSIDE of it inside the label, PART to 0.8 of the label's area, overlapping each other by at
  most OVERLAP of the smaller one.

Read the eval split only to describe a finished run, never to choose settings.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from uvis import masks
from uvis.data.frames import VideoDataset
from uvis.data.ytvis import load_ytvis
from uvis.pseudo.levels import LEVELS, select

MERGE_COVER = 0.5  # an object is covered when the mask holds this fraction of it
MERGE_TRACK = 0.3  # a track merges when it does so in this fraction of its frames


def load_split(path: Path) -> VideoDataset:
    """A YouTube-VIS file's videos and ground truth (frames not checked on disk)."""
    return load_ytvis(path, path.parent, check_files=False)


def ground_truth(
    dataset: VideoDataset, videos: set[int] | None = None
) -> dict[tuple[int, int], list[tuple[np.ndarray, int]]]:
    """``{(video, frame): [(object mask, category id)]}`` of ``dataset``, for ``videos`` (all
    when ``None``); crowd objects and empty masks left out."""
    objects: dict[tuple[int, int], list[tuple[np.ndarray, int]]] = defaultdict(list)
    for key, found in dataset.objects_by_frame(videos).items():
        for seg, category in found:
            mask = masks.decode(seg).astype(bool)
            if mask.any():
                objects[key].append((mask, category))
    return objects


def object_masks(objects: dict) -> dict[tuple[int, int], list[np.ndarray]]:
    """:func:`ground_truth`'s mapping without the categories."""
    return {key: [mask for mask, _ in found] for key, found in objects.items()}


def merges(mask: np.ndarray, objects: list[np.ndarray]) -> bool:
    """Whether ``mask`` covers at least :data:`MERGE_COVER` of two of ``objects``."""
    covered = sum((mask & o).sum() >= MERGE_COVER * o.sum() for o in objects)
    return covered >= 2


def track_report(results: Path, objects) -> str:
    rows = []
    for pred in json.loads(results.read_text()):
        vid, present, merged = pred["video_id"], 0, 0
        for t, seg in enumerate(pred["segmentations"]):
            mask = None if seg is None else masks.decode(seg).astype(bool)
            if mask is None or not mask.any():
                continue
            present += 1
            merged += merges(mask, objects.get((vid, t), []))
        rows.append((vid, pred["score"], merged / max(present, 1) >= MERGE_TRACK))
    flagged = [r for r in rows if r[2]]
    others = [r for r in rows if not r[2]]
    top: dict[int, tuple[float, bool]] = {}
    for vid, score, flag in rows:
        if vid not in top or score > top[vid][0]:
            top[vid] = (score, flag)
    mean = lambda rs: np.mean([r[1] for r in rs]) if rs else float("nan")  # noqa: E731
    return (
        f"| {results.parent.parent.name} | {len(rows)} | {len(flagged)} | {mean(flagged):.3f} | "
        f"{mean(others):.3f} | {sum(flag for _, flag in top.values())} of {len(top)} |"
    )


def label_report(
    labels: Path, objects, videos: set[int], merge_test: tuple[float, float, float] | None
) -> list[str]:
    table = pq.read_table(labels)
    keep_video = np.isin(table["video_id"].to_numpy(), sorted(videos))
    table = table.filter(keep_video)
    merged, single, decoded = [], [], []
    for vid, t, h, w, counts in zip(
        *(table[c].to_pylist() for c in ("video_id", "frame_index", "height", "width", "rle")),
        strict=True,
    ):
        mask = masks.decode({"size": [h, w], "counts": counts}).astype(bool)
        decoded.append(mask)
        found = objects.get((vid, t), [])
        merged.append(merges(mask, found))
        ious = [(mask & o).sum() / (mask | o).sum() for o in found]
        single.append(max(ious, default=0.0) >= 0.5)
    merged_a, single_a = np.array(merged), np.array(single)
    flagged = None if merge_test is None else flag_merges(table, decoded, *merge_test)
    rows = []
    for level in LEVELS:
        kept = select(table, level)
        row = f"| {level} | {kept.sum()} | {merged_a[kept].mean():.1%} | {single_a[kept].mean():.1%} |"
        if flagged is not None:
            hits = (flagged & merged_a)[kept].sum()
            row += f" {flagged[kept].sum()} | {hits / max(merged_a[kept].sum(), 1):.0%} | "
            row += f"{hits / max(flagged[kept].sum(), 1):.0%} |"
        rows.append(row)
    return rows


def flag_merges(
    table, decoded: list[np.ndarray], inside: float, part: float, overlap: float
) -> np.ndarray:
    """The label-only merge test of ``--merge-test`` on every row of ``table`` (its masks
    already ``decoded``)."""
    frames: dict[tuple[int, int], list[int]] = defaultdict(list)
    keys = zip(table["video_id"].to_pylist(), table["frame_index"].to_pylist(), strict=True)
    for i, key in enumerate(keys):
        frames[key].append(i)
    flagged = np.zeros(len(decoded), bool)
    for members in frames.values():
        for i in members:
            label, area = decoded[i], decoded[i].sum()
            parts = [
                decoded[j]
                for j in members
                if j != i
                and (decoded[j] & label).sum() >= inside * decoded[j].sum()
                and part * area <= decoded[j].sum() <= 0.8 * area
            ]
            flagged[i] = any(
                (a & b).sum() <= overlap * min(a.sum(), b.sum())
                for k, a in enumerate(parts)
                for b in parts[k + 1 :]
            )
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument(
        "--runs", nargs="*", default=["uvis-memory", "deepsort", "supervised-memory"]
    )
    parser.add_argument("--split", default="valid")
    parser.add_argument("--label-split", default="train")
    parser.add_argument("--video-stride", type=int, default=20)
    parser.add_argument("--merge-test", type=float, nargs=3, metavar=("INSIDE", "PART", "OVERLAP"))
    args = parser.parse_args()

    ytvis = args.results / "world" / "ytvis"
    objects = object_masks(ground_truth(load_split(ytvis / f"{args.split}.json")))
    print(
        "| run | tracks | merging tracks | their mean score | others' mean score | top track merges |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for run in args.runs:
        results = args.results / "predictions" / run / args.split / "results.json"
        if results.is_file():
            print(track_report(results, objects))
    label_split = load_split(ytvis / f"{args.label_split}.json")
    videos = set(sorted(v.id for v in label_split.videos)[:: args.video_stride])
    label_objects = object_masks(ground_truth(label_split, videos))
    print(f"\n{args.label_split} pseudo-labels, every {args.video_stride}th video:\n")
    header = "| level | labels | merged | match one object (IoU >= 0.5) |"
    rule = "|---|---:|---:|---:|"
    if args.merge_test:
        header += " flagged | merged found | flagged that merge |"
        rule += "---:|---:|---:|"
    print(header + "\n" + rule)
    labels = args.results / "pseudo" / "labels" / f"{args.label_split}.parquet"
    merge_test = tuple(args.merge_test) if args.merge_test else None
    print("\n".join(label_report(labels, label_objects, videos, merge_test)))


if __name__ == "__main__":
    main()
