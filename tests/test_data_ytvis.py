"""YouTube-VIS/OVIS reader, frame index verification and writing, and ``uvis data index``."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from uvis import masks
from uvis.cli import main
from uvis.data import load_ytvis, write_frame_index
from uvis.errors import ConfigError, DataError
from uvis.schemas import FRAME_INDEX


def test_load_train_split(tiny_ytvis):
    ds = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)
    root = tiny_ytvis.image_root.absolute()
    assert [(v.id, v.name, v.height, v.width) for v in ds.videos] == [
        (3, "aaa", 24, 32),
        (7, "bbb", 16, 20),
    ]
    assert ds.videos[0].frame_paths == (
        root / "aaa/00000.jpg",
        root / "aaa/00005.jpg",
        root / "aaa/00010.jpg",
    )
    assert [(c.id, c.name) for c in ds.categories] == [(1, "person"), (2, "dog")]
    first, second = ds.instances
    assert (first.id, first.video_id, first.category_id, first.iscrowd) == (1, 3, 2, 0)
    assert first.segmentations[1] is None
    assert np.array_equal(masks.decode(first.segmentations[2]), tiny_ytvis.masks[1, 2])
    assert first.areas == [20.0, None, 6.0]
    assert second.areas == [10.0, 1.0]  # computed from the RLEs: no 'areas' key in the file


def test_frame_index_rows(tiny_ytvis):
    table = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root).frame_index()
    assert table.schema.equals(FRAME_INDEX.schema)
    rows = table.to_pylist()
    assert [(r["video_id"], r["video_name"], r["frame_index"]) for r in rows] == [
        (3, "aaa", 0),
        (3, "aaa", 1),
        (3, "aaa", 2),
        (7, "bbb", 0),
        (7, "bbb", 1),
    ]
    assert rows[2]["path"] == str(tiny_ytvis.image_root.absolute() / "aaa/00010.jpg")
    assert [(r["height"], r["width"]) for r in rows] == [(24, 32)] * 3 + [(16, 20)] * 2


def test_stride_subsamples_frames_and_masks(tiny_ytvis):
    ds = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root).subsample(2)
    rows = ds.frame_index().to_pylist()
    assert [(r["video_id"], r["frame_index"], Path(r["path"]).name) for r in rows] == [
        (3, 0, "00000.jpg"),
        (3, 1, "00010.jpg"),
        (7, 0, "00000.jpg"),
    ]
    first = ds.instances[0]
    assert first.areas == [20.0, 6.0]
    assert np.array_equal(masks.decode(first.segmentations[1]), tiny_ytvis.masks[1, 2])
    with pytest.raises(ConfigError, match="stride"):
        ds.subsample(0)


@pytest.mark.parametrize("annotations", ["absent", "null"])
def test_split_without_annotations(tiny_ytvis, annotations):
    doc = copy.deepcopy(tiny_ytvis.doc)
    if annotations == "absent":
        del doc["annotations"]
    else:
        doc["annotations"] = None
    ds = load_ytvis(tiny_ytvis.write(doc), tiny_ytvis.image_root)
    assert ds.instances is None
    assert len(ds.frame_index()) == 5


def test_uncompressed_rle_is_converted(tiny_ytvis):
    doc = copy.deepcopy(tiny_ytvis.doc)
    # Column-major runs of a 16x20 mask: 0 zeros, 3 ones, rest zeros -> pixels (0..2, 0).
    doc["annotations"][1]["segmentations"][0] = {"size": [16, 20], "counts": [0, 3, 16 * 20 - 3]}
    ds = load_ytvis(tiny_ytvis.write(doc), tiny_ytvis.image_root)
    seg = ds.instances[1].segmentations[0]
    assert isinstance(seg["counts"], str)
    expected = np.zeros((16, 20), np.uint8)
    expected[0:3, 0] = 1
    assert np.array_equal(masks.decode(seg), expected)
    assert ds.instances[1].areas[0] == 3.0


def _mutate(doc, case):
    """Apply one kind of damage to a copy of the JSON document; return (doc, expected text)."""
    doc = copy.deepcopy(doc)
    video3 = doc["videos"][1]
    ann1 = doc["annotations"][0]
    if case == "missing videos key":
        del doc["videos"]
        return doc, "missing top-level keys ['videos']"
    if case == "no file_names":
        del video3["file_names"]
        return doc, "video 3: missing 'file_names'"
    if case == "length mismatch":
        video3["length"] = 4
        return doc, "video 3: 'length' is 4"
    if case == "unknown video":
        ann1["video_id"] = 99
        return doc, "annotation 1: unknown video_id 99"
    if case == "unknown category":
        ann1["category_id"] = 5
        return doc, "annotation 1: unknown category_id 5"
    if case == "segmentations length":
        ann1["segmentations"].append(None)
        return doc, "annotation 1: 'segmentations' has 4 entries but video 3 has 3 frames"
    if case == "rle size":
        ann1["segmentations"][2] = masks.encode(np.zeros((24, 31), np.uint8))
        return doc, "annotation 1, frame 2: RLE size [24, 31] differs"
    if case == "annotation id 0":
        ann1["id"] = 0
        return doc, "annotation 0: annotation ids must be positive"
    if case == "duplicate annotation id":
        doc["annotations"][1]["id"] = 1
        return doc, "annotation 1: duplicate annotation id"
    if case == "areas length":
        ann1["areas"] = [1.0]
        return doc, "annotation 1: 'areas' must list one number or null per frame (3)"
    raise AssertionError(case)


BAD_CASES = [
    "missing videos key",
    "no file_names",
    "length mismatch",
    "unknown video",
    "unknown category",
    "segmentations length",
    "rle size",
    "annotation id 0",
    "duplicate annotation id",
    "areas length",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_json_names_file_and_problem(tiny_ytvis, case):
    doc, expected = _mutate(tiny_ytvis.doc, case)
    path = tiny_ytvis.write(doc)
    with pytest.raises(DataError) as info:
        load_ytvis(path, tiny_ytvis.image_root)
    assert info.value.path == str(path)
    assert expected in str(info.value)


def test_not_json(tiny_ytvis):
    tiny_ytvis.json_path.write_text("{not json")
    with pytest.raises(DataError, match=r"train\.json: not a JSON file"):
        load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)


def test_missing_frame_file(tiny_ytvis):
    gone = tiny_ytvis.image_root / "bbb" / "00005.jpg"
    gone.unlink()
    with pytest.raises(DataError) as info:
        load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)
    assert info.value.path == str(gone.absolute())
    assert "video 7" in str(info.value) and "1 missing frames in 1 videos" in str(info.value)
    # Without the check the file loads; the frame index verification then catches it.
    ds = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root, check_files=False)
    with pytest.raises(DataError, match=r"00005\.jpg: frame file does not exist"):
        write_frame_index(ds, tiny_ytvis.json_path.parent / "index.parquet")


def test_write_frame_index(tiny_ytvis, tmp_path):
    ds = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)
    out = tmp_path / "out" / "frames.parquet"
    summary = write_frame_index(ds, out, verify="decode")
    assert (summary.videos, summary.frames, summary.skipped) == (2, 5, ())
    table = pq.read_table(out)
    assert table.schema.equals(FRAME_INDEX.schema)
    assert table.equals(ds.frame_index())
    assert [p.name for p in out.parent.iterdir()] == ["frames.parquet"]  # no temp file left


def test_size_mismatch_fails_or_skips_video(tiny_ytvis, tmp_path, caplog):
    doc = copy.deepcopy(tiny_ytvis.doc)
    doc["videos"][0]["width"] = 21  # video 7's frames are 20 wide
    doc["annotations"] = None
    ds = load_ytvis(tiny_ytvis.write(doc), tiny_ytvis.image_root)
    out = tmp_path / "frames.parquet"
    with pytest.raises(DataError, match=r"bbb/00000\.jpg: frame is 20x16, expected 21x16"):
        write_frame_index(ds, out, verify="header")
    assert not out.exists()
    with caplog.at_level(logging.WARNING):
        summary = write_frame_index(ds, out, verify="header", on_error="skip")
    assert (summary.videos, summary.frames, len(summary.skipped)) == (1, 3, 1)
    assert "bbb/00000.jpg" in summary.skipped[0]
    assert "skipping video 7 'bbb'" in caplog.text
    assert set(pq.read_table(out).column("video_id").to_pylist()) == {3}


def test_truncated_jpeg_needs_decode(tiny_ytvis, tmp_path):
    frame = tiny_ytvis.image_root / "aaa" / "00005.jpg"
    data = frame.read_bytes()
    frame.write_bytes(data[: data.index(b"\xff\xda") + 20])  # keep headers, cut the scan data
    ds = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)
    out = tmp_path / "frames.parquet"
    assert write_frame_index(ds, out, verify="header").frames == 5  # header still readable
    with pytest.raises(DataError, match=r"aaa/00005\.jpg: cannot read image"):
        write_frame_index(ds, out, verify="decode")
    summary = write_frame_index(ds, out, verify="decode", on_error="skip")
    assert (summary.videos, summary.frames, len(summary.skipped)) == (1, 2, 1)


def test_cli_index(tiny_ytvis, tmp_path, capsys):
    out = tmp_path / "idx.parquet"
    argv = ["data", "index", "--format", "ytvis", "--json", str(tiny_ytvis.json_path)]
    argv += ["--images", str(tiny_ytvis.image_root), "--out", str(out), "--stride", "2"]
    assert main(argv) == 0
    assert pq.read_table(out).num_rows == 3
    assert "indexed 2 videos, 3 frames, 0 videos skipped" in capsys.readouterr().out


def test_cli_bad_json_is_one_line_error(tiny_ytvis, tmp_path, capsys):
    tiny_ytvis.json_path.write_text("[1, 2]")
    argv = ["data", "index", "--format", "ytvis", "--json", str(tiny_ytvis.json_path)]
    argv += ["--images", str(tiny_ytvis.image_root), "--out", str(tmp_path / "idx.parquet")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: {tiny_ytvis.json_path}: expected a JSON object")


def test_cli_info(tiny_ytvis, capsys):
    assert main(["data", "info", str(tiny_ytvis.json_path)]) == 0
    out = capsys.readouterr().out
    assert "videos: 2, frames: 5" in out
    assert "instances: 2" in out and "person: 1" in out and "dog: 1" in out


def test_objects_by_frame_groups_masks_per_frame():
    from uvis.data.frames import Category, Instance, VideoDataset, VideoRecord

    def rle(x0: int) -> masks.RLE:
        m = np.zeros((4, 6), np.uint8)
        m[1:3, x0 : x0 + 2] = 1
        return masks.encode(m)

    a, b, c = rle(0), rle(2), rle(4)
    frames = (Path("0.jpg"), Path("1.jpg"))
    ds = VideoDataset(
        name="t",
        categories=(Category(1, "circle"), Category(2, "star")),
        videos=(VideoRecord(5, "v", 4, 6, frames), VideoRecord(9, "w", 4, 6, frames)),
        instances=(
            Instance(1, 5, 1, 0, [a, None], [4.0, None]),  # only in frame 0
            Instance(2, 5, 2, 0, [b, c], [4.0, 4.0]),
            Instance(3, 5, 2, 1, [c, c], [4.0, 4.0]),  # crowd: left out
            Instance(4, 9, 1, 0, [None, a], [None, 4.0]),
        ),
        root=Path("."),
    )
    got = ds.objects_by_frame()
    assert sorted(got) == [(5, 0), (5, 1), (9, 1)]
    assert got[(5, 0)] == [(a, 1), (b, 2)]
    assert got[(5, 1)] == [(c, 2)]
    assert got[(9, 1)] == [(a, 1)]
    assert sorted(ds.objects_by_frame({9})) == [(9, 1)]
    assert ds.drop_videos({5, 9}).objects_by_frame() == {}
    unannotated = VideoDataset("u", ds.categories, ds.videos, None, Path("."))
    assert unannotated.objects_by_frame() == {}
