"""Frame extraction from video files, video folders, vocabularies and ``uvis data extract``."""

from __future__ import annotations

import logging

import pyarrow.parquet as pq
import pytest
from PIL import Image

from uvis.cli import main
from uvis.data import (
    extract_frames,
    extract_video_folder,
    load_video_folder,
    read_vocabulary,
    resized_shape,
)
from uvis.data.frames import MANIFEST_NAME, partial_dir
from uvis.errors import ConfigError, DataError

# JPEG of H.264 of a solid colour: a few levels of error per channel at most.
COLOR_TOLERANCE = 8


@pytest.mark.parametrize(
    ("height", "width", "short", "expected"),
    [
        (48, 64, 24, (24, 32)),  # exact halving
        (48, 64, 34, (34, 46)),  # 64 * 34/48 = 45.33 -> nearest even 46
        (64, 48, 34, (46, 34)),  # portrait: the width is the short side
        (1080, 1920, 480, (480, 854)),  # 853.33 -> 854
        (4, 10, 2, (2, 6)),  # 10 * 2/4 = 5: tie between 4 and 6 rounds up
    ],
)
def test_resized_shape(height, width, short, expected):
    assert resized_shape(height, width, short) == expected


@pytest.mark.parametrize("short", [0, 33, -2])
def test_resized_shape_rejects_odd_or_nonpositive(short):
    with pytest.raises(ConfigError, match="resize_short"):
        resized_shape(48, 64, short)


def test_extract_all_frames(make_video, identify_frame, tmp_path):
    video = make_video(tmp_path / "clip.mp4", frames=12)
    out = tmp_path / "frames" / "clip"
    paths = extract_frames(video, out)
    assert [p.name for p in paths] == [f"{t:05d}.jpg" for t in range(12)]
    assert sorted(p.name for p in out.iterdir()) == [*(p.name for p in paths), MANIFEST_NAME]
    for t, path in enumerate(paths):
        frame, error = identify_frame(path, 12)
        assert frame == t and error <= COLOR_TOLERANCE
        with Image.open(path) as image:
            assert image.size == (64, 48)


def test_extract_stride_max_frames_resize(make_video, identify_frame, tmp_path):
    video = make_video(tmp_path / "clip.mp4", frames=12)
    strided = extract_frames(video, tmp_path / "s3", stride=3)
    assert [identify_frame(p, 12)[0] for p in strided] == [0, 3, 6, 9]
    capped = extract_frames(video, tmp_path / "cap", stride=5, max_frames=2)
    assert [identify_frame(p, 12)[0] for p in capped] == [0, 5]
    small = extract_frames(video, tmp_path / "small", resize_short=34)
    assert len(small) == 12
    with Image.open(small[0]) as image:
        assert image.size == (46, 34)  # (W, H) from resized_shape(48, 64, 34)
    assert identify_frame(small[7], 12)[0] == 7


def test_interrupted_extraction_is_replaced(make_video, tmp_path):
    video = make_video(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "frames" / "clip"
    leftover = partial_dir(out)
    leftover.mkdir(parents=True)
    (leftover / "00000.jpg").write_bytes(b"half-written")
    (leftover / "00017.jpg").write_bytes(b"from an older run")
    paths = extract_frames(video, out)
    assert not leftover.exists()
    assert sorted(p.name for p in out.iterdir()) == [*(p.name for p in paths), MANIFEST_NAME]
    with Image.open(paths[0]) as image:
        image.load()


def test_finished_extraction_is_not_rewritten(make_video, tmp_path):
    video = make_video(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "clip"
    first = extract_frames(video, out, stride=2)
    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert extract_frames(video, out, stride=2) == first
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    with pytest.raises(DataError, match=r"was extracted with other settings: stride=2 \(now 1\)"):
        extract_frames(video, out, stride=1)
    first[1].unlink()
    with pytest.raises(DataError, match=r"00001\.jpg: extracted frame is missing"):
        extract_frames(video, out, stride=2)


def test_folder_without_manifest_is_not_trusted(make_video, tmp_path):
    video = make_video(tmp_path / "clip.mp4", frames=2)
    out = tmp_path / "clip"
    out.mkdir()
    with pytest.raises(DataError, match="not a finished frame extraction"):
        extract_frames(video, out)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_undecodable_video(make_video, tmp_path, damage):
    video = tmp_path / "bad.mp4"
    if damage == "garbage":
        video.write_bytes(bytes(range(256)) * 40)
    elif damage == "truncated":
        data = make_video(tmp_path / "good.mp4", frames=12).read_bytes()
        video.write_bytes(data[: len(data) // 2])
    else:
        video.write_bytes(b"")
    out = tmp_path / "frames" / "bad"
    with pytest.raises(DataError) as info:
        extract_frames(video, out)
    assert info.value.path == str(video)
    assert "cannot decode" in str(info.value)
    assert not out.exists() and not partial_dir(out).exists()


def _video_folder(make_video, root):
    """Videos a (4 frames), b (corrupt), c (3 frames, 32x16); sorted ids a=1, b=2, c=3."""
    folder = root / "videos"
    make_video(folder / "a.mp4", frames=4)
    (folder / "b.mkv").parent.mkdir(parents=True, exist_ok=True)
    (folder / "b.mkv").write_bytes(b"not a video")
    make_video(folder / "c.MOV", frames=3, width=32, height=16)
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_extract_video_folder_fail_and_skip(make_video, tmp_path, caplog):
    folder = _video_folder(make_video, tmp_path)
    with pytest.raises(DataError, match=r"b\.mkv: cannot decode"):
        extract_video_folder(folder, tmp_path / "frames", ["cat"], progress=False)
    with caplog.at_level(logging.WARNING):
        ds, skipped = extract_video_folder(
            folder, tmp_path / "frames", ["cat", "dog"], on_error="skip", progress=False
        )
    assert len(skipped) == 1 and "b.mkv: cannot decode" in skipped[0]
    assert "skipping video b.mkv" in caplog.text
    assert [(v.id, v.name, v.height, v.width, len(v.frame_paths)) for v in ds.videos] == [
        (1, "a", 48, 64, 4),
        (3, "c", 16, 32, 3),
    ]
    assert ds.instances is None
    assert [(c.id, c.name) for c in ds.categories] == [(1, "cat"), (2, "dog")]
    # Loading needs every video extracted; after removing the corrupt one it matches.
    with pytest.raises(DataError, match=r"b\.mkv: frames not extracted"):
        load_video_folder(folder, ["cat", "dog"], frames_root=tmp_path / "frames")
    (folder / "b.mkv").unlink()
    loaded = load_video_folder(folder, ["cat", "dog"], frames_root=tmp_path / "frames")
    assert [(v.id, v.name) for v in loaded.videos] == [(1, "a"), (2, "c")]
    assert loaded.videos[1].frame_paths == ds.videos[1].frame_paths


def test_read_vocabulary(tmp_path):
    vocab = tmp_path / "vocabulary.txt"
    vocab.write_text("person\n\n  dog \ncar\n")
    assert [(c.id, c.name) for c in read_vocabulary(vocab)] == [
        (1, "person"),
        (2, "dog"),
        (3, "car"),
    ]
    assert [c.name for c in read_vocabulary(["a", "b"])] == ["a", "b"]
    vocab.write_text("dog\ncat\ndog\n")
    with pytest.raises(DataError, match=r"vocabulary\.txt: names listed twice: \['dog'\]"):
        read_vocabulary(vocab)
    with pytest.raises(DataError, match=r"missing\.txt: vocabulary file does not exist"):
        read_vocabulary(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="vocabulary: the vocabulary is empty"):
        read_vocabulary([" "])


def test_cli_extract(make_video, tmp_path, capsys):
    folder = _video_folder(make_video, tmp_path)
    index = tmp_path / "index.parquet"
    argv = ["data", "extract", str(folder), str(tmp_path / "frames"), "--vocabulary", "cat,dog"]
    argv += ["--index-out", str(index), "--on-error", "skip", "--stride", "2"]
    assert main(argv) == 0
    rows = pq.read_table(index).to_pylist()
    assert [(r["video_id"], r["frame_index"], r["height"]) for r in rows] == [
        (1, 0, 48),
        (1, 1, 48),
        (3, 0, 16),
        (3, 1, 16),
    ]
    assert "extracted 2 videos, 4 frames, 1 videos skipped" in capsys.readouterr().out


def test_cli_extract_missing_vocabulary_file(make_video, tmp_path, capsys):
    folder = _video_folder(make_video, tmp_path)
    argv = ["data", "extract", str(folder), str(tmp_path / "frames")]
    argv += [
        "--vocabulary",
        str(tmp_path / "vocab.txt"),
        "--index-out",
        str(tmp_path / "i.parquet"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'vocab.txt'}: vocabulary file does not exist"]
