"""Where UVIS's pseudo-labels cost AP: the train split's labels with one kind of noise removed.

Usage::

    python benchmarks/bench_label_oracles.py RESULTS_DIR ORACLE OUT.parquet [--level pmf]

``RESULTS_DIR`` is a finished run's ``results/<dataset>`` folder of the synthetic world (its
train split has ground truth). The script reads ``pseudo/labels/train.parquet`` and writes a
copy to ``OUT.parquet`` in which the labels of ``--level`` (UVIS Table 2's filter levels) are
corrected with the ground truth in one way, ``ORACLE``:

* ``merged``: labels that cover at least half of each of two objects (``bench_merges.py``'s
  test) leave the level;
* ``recall``: every object no label of the level matches (IoU >= 0.5) is added with its true
  mask and class;
* ``class``: labels that match an object (IoU >= 0.5) take its class;
* ``mask``: labels that match an object take its mask.

It prints how many labels it changed. Training UVIS on the copy (``uvis train vis --labels
OUT.parquet --level pmf ...``) and evaluating as the run did gives the AP that kind of noise
costs. An analysis of the train split's ground truth, never a setting: nothing in the pipeline
reads these files.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_merges import ground_truth, load_split, merges

from uvis import masks
from uvis.proposals.refine import mask_iou
from uvis.pseudo.levels import LEVELS, select

MATCH_IOU = 0.5
ORACLES = ("merged", "recall", "class", "mask")


def best_match(mask: np.ndarray, objects: list[tuple[np.ndarray, int]]):
    """``(IoU, object mask, category)`` of the object ``mask`` overlaps most (IoU 0 if none)."""
    best: tuple[float, np.ndarray | None, int | None] = (0.0, None, None)
    for obj, category in objects:
        iou = mask_iou(mask, obj)
        if iou > best[0]:
            best = (iou, obj, category)
    return best


def correct(table: pa.Table, level: str, oracle: str, objects) -> tuple[pa.Table, str]:
    """``table`` with ``level``'s labels corrected by ``oracle``, and a one-line summary."""
    chosen = np.flatnonzero(select(table, level))
    cols = {c: table[c].to_pylist() for c in ("video_id", "frame_index", "height", "width")}
    rle = table["rle"].to_pylist()
    class_id = table["class_id"].to_numpy().copy()
    keep = np.ones(table.num_rows, bool)
    decoded: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
    changed = matched = 0
    for i in chosen:
        key = (cols["video_id"][i], cols["frame_index"][i])
        size = [cols["height"][i], cols["width"][i]]
        mask = masks.decode({"size": size, "counts": rle[i]}).astype(bool)
        decoded[key].append(mask)
        frame_objects = objects.get(key, [])
        if oracle == "merged":
            if merges(mask, [o for o, _ in frame_objects]):
                keep[i] = False
                changed += 1
            continue
        iou, obj, category = best_match(mask, frame_objects)
        if iou < MATCH_IOU or oracle == "recall":
            continue
        matched += 1
        if oracle == "class" and category != class_id[i]:
            class_id[i] = category
            changed += 1
        elif oracle == "mask":
            rle[i] = masks.encode(obj)["counts"]
            changed += 1
    out = table.set_column(
        table.schema.get_field_index("rle"), "rle", pa.array(rle, table.schema.field("rle").type)
    )
    out = out.set_column(
        out.schema.get_field_index("class_id"),
        "class_id",
        pa.array(class_id, out.schema.field("class_id").type),
    )
    if oracle == "merged":
        # Leaving the level: the last filter of the level stops passing the label.
        flag = f"pass_{level}" if f"pass_{level}" in out.column_names else "pass_objectness"
        passed = out[flag].to_numpy(zero_copy_only=False) & keep
        out = out.set_column(out.schema.get_field_index(flag), flag, pa.array(passed))
        return out, f"{changed} of {len(chosen)} {level}-level labels merge two objects: removed"
    if oracle == "recall":
        added = _missing_objects(out, objects, decoded)
        summary = f"{added.num_rows} objects no {level}-level label matches: added"
        return pa.concat_tables([out, added]).sort_by(
            [("video_id", "ascending"), ("frame_index", "ascending")]
        ), summary
    return (
        out,
        f"{matched} of {len(chosen)} {level}-level labels match an object; {changed} changed",
    )


def _missing_objects(table: pa.Table, objects, decoded) -> pa.Table:
    """Rows for the objects of the table's frames that none of ``decoded`` matches."""
    frames = sorted(
        set(zip(table["video_id"].to_pylist(), table["frame_index"].to_pylist(), strict=True))
    )
    template = table.slice(0, 1).to_pylist()[0]
    next_id = int(max(table["proposal_id"].to_pylist(), default=0)) + 1
    rows = []
    for key in frames:
        labels = decoded.get(key, [])
        for obj, category in objects.get(key, []):
            if any(mask_iou(obj, m) >= MATCH_IOU for m in labels):
                continue
            rle = masks.encode(obj)
            row = dict(template)
            row.update(
                video_id=key[0],
                frame_index=key[1],
                proposal_id=next_id,
                box=masks.bbox_xywh(rle),
                area=int(obj.sum()),
                rle=rle["counts"],
                class_id=category,
                **{f"pass_{lv}": True for lv in LEVELS if f"pass_{lv}" in table.column_names},
            )
            rows.append(row)
            next_id += 1
    return pa.Table.from_pylist(rows, schema=table.schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("oracle", choices=ORACLES)
    parser.add_argument("out", type=Path)
    parser.add_argument("--level", default="pmf", choices=[lv for lv in LEVELS if lv != "none"])
    args = parser.parse_args()
    objects = ground_truth(load_split(args.results / "world" / "ytvis" / "train.json"))
    table = pq.read_table(args.results / "pseudo" / "labels" / "train.parquet")
    out, summary = correct(table, args.level, args.oracle, objects)
    pq.write_table(out, args.out)
    print(f"{args.oracle}: {summary}; wrote {args.out} ({out.num_rows} rows)")


if __name__ == "__main__":
    main()
