"""Pseudo-label quality against ground truth, on a constructed frame with known answers."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from uvis import masks
from uvis.data.frames import Category, Instance, VideoDataset, VideoRecord
from uvis.pseudo.levels import select
from uvis.pseudo.quality import match_rows, measure_quality, quality_markdown
from uvis.schemas import PSEUDO_LABELS

H, W = 20, 20


def box_mask(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def gt_dataset() -> VideoDataset:
    a = masks.encode(box_mask(0, 0, 10, 10))  # category 1
    b = masks.encode(box_mask(10, 10, 20, 20))  # category 2
    video = VideoRecord(id=1, name="v", height=H, width=W, frame_paths=(Path("f0.jpg"),))
    return VideoDataset(
        name="gt",
        categories=(Category(1, "circle"), Category(2, "star")),
        videos=(video,),
        instances=(
            Instance(1, 1, 1, 0, [a], [100.0]),
            Instance(2, 1, 2, 0, [b], [100.0]),
        ),
        root=Path("."),
    )


def labels(rows: list[dict]) -> pa.Table:
    cols: dict[str, list] = {f.name: [] for f in PSEUDO_LABELS.schema}
    for i, r in enumerate(rows):
        rle = masks.encode(r["mask"])
        cols["video_id"].append(1)
        cols["frame_index"].append(0)
        cols["proposal_id"].append(i)
        cols["box"].append(masks.bbox_xywh(rle))
        cols["area"].append(int(r["mask"].sum()))
        cols["height"].append(H)
        cols["width"].append(W)
        cols["rle"].append(rle["counts"])
        cols["class_id"].append(r["cls"])
        cols["objectness"].append(r["obj"])
        cols["class_score"].append(r["score"])
        cols["pmf_similarity"].append(r["sim"])
        cols["pass_objectness"].append(r["obj"] >= 0.7)
        cols["pass_clip"].append(r["score"] >= 0.7)
        cols["pass_pmf"].append(r["sim"] >= 0.7)
        cols["valid_embedding"].append(True)
    return pa.table(cols, schema=PSEUDO_LABELS.schema)


def test_quality_per_level_matches_hand_counts():
    table = labels(
        [
            # exact match of GT a, right class, passes everything
            {"mask": box_mask(0, 0, 10, 10), "cls": 1, "obj": 0.9, "score": 0.9, "sim": 0.9},
            # IoU with GT b = 80/100 = 0.8, wrong class, fails the CLIP score
            {"mask": box_mask(10, 10, 20, 18), "cls": 1, "obj": 0.8, "score": 0.5, "sim": 0.9},
            # background blob: no match, fails objectness
            {"mask": box_mask(0, 12, 5, 20), "cls": 2, "obj": 0.2, "score": 0.95, "sim": 0.1},
            # right class for b but IoU 20/100 < 0.5: unmatched; passes objectness+clip, fails PMF
            {"mask": box_mask(18, 10, 20, 20), "cls": 2, "obj": 0.75, "score": 0.8, "sim": 0.3},
        ]
    )
    q = {r.level: r for r in measure_quality(table, gt_dataset())}
    # no filter: 4 proposals, 2 matched (rows 0 and 1), 1 with the right class (row 0)
    assert (q["none"].proposals, q["none"].gt_masks) == (4, 2)
    assert q["none"].recall == 1.0 and q["none"].precision == 0.5
    assert q["none"].label_accuracy == 0.5 and q["none"].class_precision == 0.25
    # + mask score keeps rows 0, 1, 3
    assert q["objectness"].proposals == 3 and math.isclose(q["objectness"].precision, 2 / 3)
    # + CLIP score keeps rows 0, 3
    assert q["clip"].proposals == 2 and q["clip"].precision == 0.5 and q["clip"].recall == 0.5
    assert q["clip"].label_accuracy == 1.0 and q["clip"].class_precision == 0.5
    # + PMF keeps row 0 only: everything it keeps is right
    assert q["pmf"].proposals == 1 and q["pmf"].class_precision == 1.0
    assert q["pmf"].class_recall == 0.5
    md = quality_markdown(list(q.values()), title="t")
    assert "+ PMF" in md and "100.0" in md


def test_levels_are_nested_selections():
    rng = np.random.default_rng(0)
    rows = [
        {"mask": box_mask(0, 0, 5, 5), "cls": 1, "obj": o, "score": s, "sim": m}
        for o, s, m in rng.uniform(0, 1, size=(30, 3))
    ]
    table = labels(rows)
    sel = [select(table, lvl) for lvl in ("none", "objectness", "clip", "pmf")]
    for wider, narrower in itertools.pairwise(sel):
        assert not (narrower & ~wider).any()
    assert sel[0].sum() == 30 and sel[3].sum() < sel[1].sum()


def test_frames_without_proposals_or_without_gt_count_correctly():
    table = labels([])
    q = {r.level: r for r in measure_quality(table, gt_dataset())}
    # no video in common: nothing measured, numbers undefined rather than invented
    assert q["none"].proposals == 0 and q["none"].gt_masks == 0
    assert math.isnan(q["none"].recall)


def test_match_rows_pairs_each_frame_one_to_one():
    table = labels(
        [
            {"mask": box_mask(10, 10, 20, 18), "cls": 1, "obj": 0.8, "score": 0.5, "sim": 0.9},
            {"mask": box_mask(0, 0, 10, 10), "cls": 1, "obj": 0.9, "score": 0.9, "sim": 0.9},
            {"mask": box_mask(0, 0, 10, 9), "cls": 1, "obj": 0.9, "score": 0.9, "sim": 0.9},
        ]
    )
    a, b = (
        masks.to_coco(masks.encode(box_mask(0, 0, 10, 10))),
        masks.to_coco(masks.encode(box_mask(10, 10, 20, 20))),
    )
    # frame (1, 0) holds b then a: row 1 is a exactly (index 1), row 0 overlaps b at 0.8 (index 0);
    # row 2 overlaps a at 0.9 but a is taken by the better row 1
    assert sorted(match_rows(table, {(1, 0): [b, a]})) == [((1, 0), 0, 0), ((1, 0), 1, 1)]
    assert match_rows(table, {(1, 0): [b, a]}, iou_threshold=0.85) == [((1, 0), 1, 1)]
    # a frame the table has no rows for matches nothing
    assert match_rows(table, {(1, 5): [a]}) == []
