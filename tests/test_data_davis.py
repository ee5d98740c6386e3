"""DAVIS reader and ``uvis data index --format davis``."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from uvis import masks
from uvis.cli import main
from uvis.data import load_davis
from uvis.errors import ConfigError, DataError


def test_load_imageset(tiny_davis):
    ds = load_davis(tiny_davis.root, imageset="2019/val")
    frames = tiny_davis.root.absolute() / "JPEGImages" / "480p"
    assert [(v.id, v.name, v.height, v.width, len(v.frame_paths)) for v in ds.videos] == [
        (1, "bear", 30, 40, 3),
        (2, "car", 10, 20, 2),
    ]
    assert ds.videos[1].frame_paths == (frames / "car/00000.jpg", frames / "car/00001.jpg")
    assert [(c.id, c.name) for c in ds.categories] == [(1, "object")]
    summary = [(i.id, i.video_id, i.category_id, i.areas) for i in ds.instances]
    # Hand-computed from the boxes drawn by the fixture; the void (255) region is no object.
    assert summary == [
        (1, 1, 1, [12.0, 6.0, None]),
        (2, 1, 1, [4.0, None, 9.0]),
        (3, 2, 1, [5.0, None]),
    ]
    bear_obj2_frame2 = tiny_davis.labels["bear"][2] == 2
    assert np.array_equal(masks.decode(ds.instances[1].segmentations[2]), bear_obj2_frame2)
    assert ds.instances[1].segmentations[1] is None


def test_all_sequences_and_no_annotations(tiny_davis):
    ds = load_davis(tiny_davis.root)
    assert [(v.id, v.name) for v in ds.videos] == [(1, "bear"), (2, "car"), (3, "dog")]
    assert len(ds.instances) == 3  # dog is background only
    assert load_davis(tiny_davis.root, annotations=False).instances is None
    rows = ds.subsample(2).frame_index().to_pylist()
    assert [(r["video_name"], r["frame_index"]) for r in rows] == [
        ("bear", 0),
        ("bear", 1),
        ("car", 0),
        ("dog", 0),
    ]
    assert rows[1]["path"].endswith("bear/00002.jpg")


def test_semi_supervised_reads_annotations_folder(tiny_davis):
    with pytest.raises(DataError, match=r"Annotations/480p: annotation folder of the semi"):
        load_davis(tiny_davis.root, task="semi-supervised")
    shutil.copytree(tiny_davis.root / "Annotations_unsupervised", tiny_davis.root / "Annotations")
    labels = np.zeros((10, 20), np.uint8)
    labels[0:2, 0:2] = 1  # object 1 in frame 1 of car, only in the semi-supervised folder
    Image.fromarray(labels).save(tiny_davis.root / "Annotations/480p/car/00001.png")
    ds = load_davis(tiny_davis.root, imageset="2019/val", task="semi-supervised")
    assert [(i.video_id, i.areas) for i in ds.instances if i.video_id == 2] == [
        (2, [None, 4.0]),
        (2, [5.0, None]),
    ]
    with pytest.raises(ConfigError, match="task"):
        load_davis(tiny_davis.root, task="supervised")


def test_missing_frame_folder(tmp_path):
    with pytest.raises(DataError, match=r"JPEGImages/480p: DAVIS frame folder does not exist"):
        load_davis(tmp_path)


def test_imageset_sequence_without_folder(tiny_davis):
    (tiny_davis.root / "ImageSets/2019/val.txt").write_text("bear\nowl\n")
    with pytest.raises(DataError, match=r"480p/owl: sequence 'owl' listed in ImageSets/2019/val"):
        load_davis(tiny_davis.root, imageset="2019/val")
    with pytest.raises(DataError, match=r"2017/val\.txt: image set '2017/val' does not exist"):
        load_davis(tiny_davis.root, imageset="2017/val")


def test_annotation_of_another_size(tiny_davis):
    png = tiny_davis.root / "Annotations_unsupervised/480p/car/00001.png"
    Image.fromarray(np.zeros((10, 21), np.uint8)).save(png)
    with pytest.raises(DataError) as info:
        load_davis(tiny_davis.root)
    assert info.value.path == str(png.absolute())
    assert "annotation is 21x10 but its frame 00001.jpg is 20x10" in str(info.value)


def test_frame_count_mismatch(tiny_davis):
    (tiny_davis.root / "Annotations_unsupervised/480p/bear/00002.png").unlink()
    with pytest.raises(DataError, match=r"480p/bear: 2 annotation PNGs but 3 JPEG frames"):
        load_davis(tiny_davis.root)


def test_rgb_annotation_rejected(tiny_davis):
    png = tiny_davis.root / "Annotations_unsupervised/480p/car/00000.png"
    Image.new("RGB", (20, 10)).save(png)
    with pytest.raises(DataError, match=r"car/00000\.png: expected a palette or grayscale PNG"):
        load_davis(tiny_davis.root)


def test_cli_index_davis(tiny_davis, tmp_path, capsys):
    out = tmp_path / "davis.parquet"
    argv = ["data", "index", "--format", "davis", "--root", str(tiny_davis.root)]
    argv += ["--imageset", "2019/val", "--out", str(out), "--verify", "decode"]
    assert main(argv) == 0
    table = pq.read_table(out)
    assert table.column("video_name").to_pylist() == ["bear"] * 3 + ["car"] * 2
    assert "indexed 2 videos, 5 frames, 0 videos skipped" in capsys.readouterr().out
