"""The DeepSORT baseline stage end to end: pseudo-label + CLIP + frame-index files -> results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uvis import masks
from uvis.cli import main
from uvis.evaluation.ytvis import evaluate_files
from uvis.schemas import CLIP_SCORES, FRAME_INDEX, PSEUDO_LABELS, TRACKS
from uvis.tracking.deepsort_run import load_pseudo_detections

H, W, T = 40, 60, 6


@dataclass
class Inputs:
    labels: Path
    clip_dir: Path
    frames: Path
    gt: Path


def _box_mask(y: int, x: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y : y + 8, x : x + 10] = 1
    return m


def _objects() -> dict[str, dict]:
    """Video 3, 6 frames: A (category 1) moves right on top, B (category 2) moves left below,
    3 px per frame (10x8 boxes: IoU 0.54 between frames, enough for DeepSORT's IoU stage that
    confirms new tracks); C is a spurious object (frames 1-3) whose CLIP score fails the CLIP
    filter."""
    return {
        "A": {"cat": 1, "emb": 0, "frames": range(T), "at": lambda t: (4, 4 + 3 * t)},
        "B": {"cat": 2, "emb": 1, "frames": range(T), "at": lambda t: (25, 46 - 3 * t)},
        "C": {"cat": 1, "emb": 2, "frames": range(1, 4), "at": lambda t: (14, 30), "bad": True},
    }


def write_inputs(tmp_path: Path, *, drop_clip_row: bool = False, class_id: int | None = None):
    rows: dict[str, list] = {f.name: [] for f in PSEUDO_LABELS.schema}
    clip: dict[str, list] = {f.name: [] for f in CLIP_SCORES.schema}
    annotations = []
    for ann_id, (_name, obj) in enumerate(_objects().items(), start=1):
        segs = [None] * T
        for t in obj["frames"]:
            m = _box_mask(*obj["at"](t))
            rle = masks.encode(m)
            segs[t] = rle
            proposal = rows["frame_index"].count(t)  # one video: ids count up per frame
            values = {
                "video_id": 3,
                "frame_index": t,
                "proposal_id": proposal,
                "box": masks.bbox_xywh(rle),
                "area": int(m.sum()),
                "height": H,
                "width": W,
                "rle": rle["counts"],
                "class_id": obj["cat"] if class_id is None else class_id,
                "objectness": 0.9,
                "class_score": 0.3 if obj.get("bad") else 0.9,
                "pmf_similarity": 0.9,
                "pass_objectness": True,
                "pass_clip": not obj.get("bad"),
                "pass_pmf": True,
                "valid_embedding": True,
            }
            for k, v in values.items():
                rows[k].append(v)
            for k in ("video_id", "frame_index", "proposal_id", "class_id", "class_score"):
                clip[k].append(values[k])
            clip["embedding"].append(np.eye(8, dtype=np.float16)[obj["emb"]].tolist())
        if not obj.get("bad"):
            annotations.append(
                {
                    "id": ann_id,
                    "video_id": 3,
                    "category_id": obj["cat"],
                    "iscrowd": 0,
                    "segmentations": segs,
                    "areas": [None if s is None else masks.area(s) for s in segs],
                }
            )
    if drop_clip_row:
        clip = {k: v[1:] for k, v in clip.items()}
    labels = tmp_path / "labels.parquet"
    pq.write_table(pa.table(rows, schema=PSEUDO_LABELS.schema), labels)
    clip_dir = tmp_path / "clip"
    clip_dir.mkdir()
    half = len(clip["video_id"]) // 2  # two shards
    for k, part in enumerate((slice(0, half), slice(half, None))):
        shard = {name: values[part] for name, values in clip.items()}
        pq.write_table(pa.table(shard, schema=CLIP_SCORES.schema), clip_dir / f"shard-{k}.parquet")
    frames = tmp_path / "frames.parquet"
    index = [(3, "v3", t) for t in range(T)] + [(4, "v4", t) for t in range(2)]
    pq.write_table(
        pa.table(
            {
                "video_id": [v for v, _, _ in index],
                "video_name": [n for _, n, _ in index],
                "frame_index": [t for _, _, t in index],
                "path": [f"/x/{n}/{t}.jpg" for _, n, t in index],
                "height": [H] * len(index),
                "width": [W] * len(index),
            },
            schema=FRAME_INDEX.schema,
        ),
        frames,
    )
    gt = tmp_path / "gt.json"
    gt.write_text(
        json.dumps(
            {
                "videos": [
                    {"id": v, "height": H, "width": W, "file_names": [f"{n}/{t}.jpg" for t in ts]}
                    for v, n, ts in ((3, "v3", range(T)), (4, "v4", range(2)))
                ],
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                "annotations": annotations,
            }
        )
    )
    return Inputs(labels, clip_dir, frames, gt)


def cli(inputs: Inputs, out: Path, *extra: str) -> int:
    return main(
        [
            "track",
            "deepsort",
            "--labels",
            str(inputs.labels),
            "--clip-scores",
            str(inputs.clip_dir),
            "--frames",
            str(inputs.frames),
            "--categories-json",
            str(inputs.gt),
            "--out",
            str(out),
            *extra,
        ]
    )


def test_deepsort_stage_tracks_pseudo_labels_into_perfect_results(tmp_path):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out" / "results.json"
    tracks_path = tmp_path / "out" / "tracks.parquet"
    assert cli(inputs, out, "--level", "clip", "--tracks", str(tracks_path), "--zip") == 0
    results = json.loads(out.read_text())
    assert [(r["video_id"], r["category_id"]) for r in results] == [(3, 1), (3, 2)]
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.9])
    assert evaluate_files(inputs.gt, out)["AP"] == pytest.approx(100.0)
    assert evaluate_files(inputs.gt, out.with_suffix(".zip"))["AP"] == pytest.approx(100.0)
    rows = TRACKS.read(tracks_path).to_pylist()
    assert len(rows) == 2 * T
    a_rows = [r for r in rows if r["result_id"] == 0]
    assert [r["frame_index"] for r in a_rows] == list(range(T))
    assert {r["track_id"] for r in a_rows} == {1}
    # A is proposal 0 in every frame; C (frames 1-3, filtered out) never shows up.
    assert [r["source_id"] for r in a_rows] == [0] * T


def test_filter_level_selects_the_detections(tmp_path):
    inputs = write_inputs(tmp_path)
    clip_files = sorted(inputs.clip_dir.iterdir())
    kept = {
        level: sum(
            len(f)
            for v in load_pseudo_detections(inputs.labels, clip_files, inputs.frames, level=level)
            for f in v.frames
        )
        for level in ("none", "clip")
    }
    assert kept == {"none": 2 * T + 3, "clip": 2 * T}
    out = tmp_path / "all.json"
    assert cli(inputs, out, "--level", "none") == 0
    results = json.loads(out.read_text())
    # C (3 frames, confirmed at n_init = 3) is a third track, scored by its low CLIP score.
    assert sorted(r["score"] for r in results) == pytest.approx([0.3, 0.9, 0.9])
    present = [s is not None for s in results[-1]["segmentations"]]
    assert present == [False, True, True, True, False, False]


def test_settings_come_with_set_as_in_every_other_command(tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "r.json"
    # C (3 frames) needs 3 associations to be confirmed; with n_init 4 it never is.
    assert cli(inputs, out, "--level", "none", "--set", "n_init=4") == 0
    assert len(json.loads(out.read_text())) == 2
    assert "'n_init': 4" in capsys.readouterr().out
    assert cli(inputs, out, "--set", "max_agee=3") == 2
    assert "unknown deepsort setting 'max_agee'" in capsys.readouterr().err


def test_missing_clip_embedding_is_a_clear_error(tmp_path, capsys):
    inputs = write_inputs(tmp_path, drop_clip_row=True)
    assert cli(inputs, tmp_path / "r.json") == 2
    err = capsys.readouterr().err
    assert "shard-0.parquet" in err and "have no CLIP embedding" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_unknown_category_is_a_clear_error(tmp_path, capsys):
    inputs = write_inputs(tmp_path, class_id=9)
    assert cli(inputs, tmp_path / "r.json") == 2
    assert "labels.parquet: class ids [9] are not dataset categories" in capsys.readouterr().err


def test_label_outside_its_video_is_a_clear_error(tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    table = pq.read_table(inputs.labels)
    frame_index = np.array(table.column("frame_index").to_pylist())
    frame_index[0] = 99
    table = table.set_column(1, "frame_index", pa.array(frame_index, pa.int32()))
    pq.write_table(table, inputs.labels)
    assert cli(inputs, tmp_path / "r.json") == 2
    assert "video 3 has 6 frames, not frame 99" in capsys.readouterr().err


def test_tau_outside_the_pmf_level_is_a_clear_error(tmp_path, capsys):
    inputs = write_inputs(tmp_path)
    assert cli(inputs, tmp_path / "r.json", "--level", "clip", "--tau", "0.5") == 2
    assert "tau only applies to level 'pmf'" in capsys.readouterr().err
