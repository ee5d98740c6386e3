"""How good are the pseudo-labels? Measured against ground truth, per filter level.

For every frame, proposals are matched one-to-one to the visible ground-truth masks of that
frame by maximum total IoU (Hungarian), keeping pairs with IoU >= ``iou_threshold`` (0.5).
Per filter level (the selections of UVIS Table 2: no filter, + mask score, + CLIP score,
+ PMF):

- ``proposals``: number of pseudo-labels kept;
- ``recall``: matched ground-truth masks / ground-truth masks (class-agnostic);
- ``precision``: matched proposals / proposals (class-agnostic);
- ``label_accuracy``: matched proposals whose CLIP class equals the ground-truth category /
  matched proposals;
- ``class_precision``: matched proposals with the right class / proposals — the fraction of
  pseudo-labels that are entirely right, mask and class, which is what filtering should raise;
- ``class_recall``: ground-truth masks matched by a proposal of the right class / GT masks.

Matching is done once on all proposals of a frame at the *no filter* level and each level
counts the pairs whose proposal it keeps: a stricter level can only lose matches, so the
levels' numbers are directly comparable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from uvis.data.frames import VideoDataset
from uvis.masks import to_coco
from uvis.pseudo.levels import select

LEVELS = ("none", "objectness", "clip", "pmf")


@dataclass(frozen=True)
class LevelQuality:
    """Quality figures of one filter level (see the module docstring)."""

    level: str
    proposals: int
    gt_masks: int
    recall: float
    precision: float
    label_accuracy: float
    class_precision: float
    class_recall: float


def match_frame(gt_rles: list, prop_rles: list, iou_threshold: float) -> list[tuple[int, int]]:
    """One-to-one ``(gt, proposal)`` index pairs of one frame with IoU >= ``iou_threshold``,
    maximising the total IoU (Hungarian). Both lists hold pycocotools RLE dicts."""
    if not gt_rles or not prop_rles:
        return []
    iou = np.asarray(mask_utils.iou(prop_rles, gt_rles, [0] * len(gt_rles)), dtype=np.float64)
    iou = iou.reshape(len(prop_rles), len(gt_rles))
    rows, cols = linear_sum_assignment(-iou)
    return [(int(c), int(r)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= iou_threshold]


def match_rows(
    labels: pa.Table,
    gt_by_frame: Mapping[tuple[int, int], Sequence[dict[str, Any]]],
    iou_threshold: float = 0.5,
) -> list[tuple[tuple[int, int], int, int]]:
    """Each frame's pseudo-labels matched one-to-one to its ground-truth masks (as
    :func:`match_frame` matches one frame).

    ``gt_by_frame`` maps ``(video_id, frame_index)`` to that frame's ground-truth masks as
    pycocotools RLE dicts. Returns ``(frame, index into the frame's masks, row of labels)`` for
    every matched pair; rows of frames absent from ``gt_by_frame`` are never matched.
    """
    data = labels.select(["video_id", "frame_index", "rle", "height", "width"]).to_pydict()
    rows_by_frame: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(data["video_id"], data["frame_index"], strict=True)):
        rows_by_frame[key].append(i)
    pairs = []
    for key, gts in gt_by_frame.items():
        rows = rows_by_frame.get(key, [])
        props = [
            {"size": [data["height"][i], data["width"][i]], "counts": data["rle"][i].encode()}
            for i in rows
        ]
        pairs += [(key, g, rows[p]) for g, p in match_frame(list(gts), props, iou_threshold)]
    return pairs


def measure_quality(
    labels: pa.Table, gt: VideoDataset, *, iou_threshold: float = 0.5
) -> list[LevelQuality]:
    """Quality of a pseudo-label table (schema ``PSEUDO_LABELS``) against ``gt`` per level.

    Only videos present in both are measured; crowd ground truth is left out.
    """
    if gt.instances is None:
        raise ValueError(f"{gt.name}: the split has no ground truth to measure against")
    video_ids = labels.column("video_id").to_numpy()
    videos = set(video_ids.tolist()) & {v.id for v in gt.videos}
    gt_by_frame = {
        key: [(to_coco(seg), category) for seg, category in objects]
        for key, objects in gt.objects_by_frame(videos).items()
    }
    class_ids = labels.column("class_id").to_pylist()
    keep = {lvl: select(labels, lvl) for lvl in LEVELS}
    in_videos = np.isin(video_ids, list(videos))

    n_gt = sum(len(v) for v in gt_by_frame.values())
    matched = {lvl: 0 for lvl in LEVELS}
    matched_right = {lvl: 0 for lvl in LEVELS}
    masks_by_frame = {key: [rle for rle, _ in gts] for key, gts in gt_by_frame.items()}
    for key, g, row in match_rows(labels, masks_by_frame, iou_threshold):
        right = class_ids[row] == gt_by_frame[key][g][1]
        for lvl in LEVELS:
            if keep[lvl][row]:
                matched[lvl] += 1
                matched_right[lvl] += int(right)

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else float("nan")

    out = []
    for lvl in LEVELS:
        kept = int((keep[lvl] & in_videos).sum())
        out.append(
            LevelQuality(
                level=lvl,
                proposals=kept,
                gt_masks=n_gt,
                recall=ratio(matched[lvl], n_gt),
                precision=ratio(matched[lvl], kept),
                label_accuracy=ratio(matched_right[lvl], matched[lvl]),
                class_precision=ratio(matched_right[lvl], kept),
                class_recall=ratio(matched_right[lvl], n_gt),
            )
        )
    return out


_NAMES = {
    "none": "no filter",
    "objectness": "+ mask score",
    "clip": "+ CLIP score",
    "pmf": "+ PMF",
}


def quality_markdown(rows: list[LevelQuality], *, title: str, note: str = "") -> str:
    """The quality table as Markdown (percentages)."""

    def pct(x: float) -> str:
        return "–" if x != x else f"{100 * x:.1f}"

    lines = [f"# {title}", ""]
    if note:
        lines += [note, ""]
    lines += [
        "| filter | pseudo-labels | recall | precision | label acc. | class precision | class recall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {_NAMES[r.level]} | {r.proposals} | {pct(r.recall)} | {pct(r.precision)} | "
            f"{pct(r.label_accuracy)} | {pct(r.class_precision)} | {pct(r.class_recall)} |"
        )
    lines += [
        "",
        f"IoU >= 0.5, one-to-one per frame; {rows[0].gt_masks if rows else 0} ground-truth masks. "
        "Recall/precision are class-agnostic; label accuracy is over matched pseudo-labels; "
        "class precision/recall also require the right class.",
        "",
    ]
    return "\n".join(lines)


def quality_records(rows: list[LevelQuality]) -> list[dict]:
    """The rows as JSON/CSV-ready dicts (NaN as None)."""
    return [{k: (None if v != v else v) for k, v in asdict(r).items()} for r in rows]


def write_quality(rows: list[LevelQuality], out_md: Path, *, title: str, note: str = "") -> None:
    """Write ``out_md`` and, next to it, the same numbers as ``.csv`` and ``.json``."""
    import csv
    import io

    from uvis.io import atomic_write_json, atomic_write_text

    out_md = Path(out_md)
    atomic_write_text(out_md, quality_markdown(rows, title=title, note=note))
    records = quality_records(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]) if records else ["level"])
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(out_md.with_suffix(".csv"), buf.getvalue())
    atomic_write_json(out_md.with_suffix(".json"), records, indent=2)
