"""Bad inputs of the kinds a hostile user gives: each is a one-line error naming the file and the
problem (exit status 2), never a hang, a traceback or a silently wrong number.

Masks: compressed RLEs that are garbage, truncated, of the wrong size or covering the wrong
number of pixels, in every reader (evaluation, submission, dataset index, Parquet artefacts).
Parquet: wrong column types, nulls, values outside their range, numbers stored as strings.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_pseudo_filter import ROWS, write_shards
from uvis import masks
from uvis.cli import main
from uvis.errors import ConfigError, DataError
from uvis.prototypes import PMFConfig
from uvis.schemas import PROPOSALS, PSEUDO_LABELS
from ytvis_reference import _gt_segmentation

# ---------------------------------------------------------------------------------------------
# The RLE checker against masks with known run lengths


def column_major_runs(mask: np.ndarray) -> list[int]:
    """Run lengths of a binary mask read column by column, starting with a run of zeros (the
    reference implementation's uncompressed RLE)."""
    return _gt_segmentation(mask, "uncompressed")["counts"]


@pytest.mark.parametrize("seed", range(5))
def test_counts_from_string_gives_the_masks_runs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        counts = masks.encode(mask)["counts"]
        runs = masks.counts_from_string(counts)
        assert runs.tolist() == column_major_runs(mask)
        assert masks.rle_problem({"size": [h, w], "counts": counts}, h, w) is None


def test_large_runs_and_negative_deltas_decode() -> None:
    mask = np.zeros((720, 1280), np.uint8)
    mask[100:400, 200:900] = 1
    mask[500:501, 0:3] = 1  # short runs after long ones: negative deltas in the string
    counts = masks.encode(mask)["counts"]
    assert masks.counts_from_string(counts).tolist() == column_major_runs(mask)


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [4, 4], "counts": ""}, "cover 0 pixels, not height*width = 4*4 = 16"),
        ({"size": [4, 4], "counts": "zz"}, "character b'z' at position 0 is not an RLE digit"),
        ({"size": [4, 4], "counts": "0P"}, "truncated"),
        ({"size": [4, 4], "counts": "a0"}, "cover 17 pixels"),
        ({"size": [4, 4], "counts": "5"}, "cover 5 pixels"),
        ({"size": [4, 4], "counts": "é"}, "must be an ASCII string"),
        ({"size": [4, 4], "counts": [16, -1, 1]}, "negative run length"),
        ({"size": [4, 4], "counts": [1.5, 14.5]}, "must be integers"),
        ({"size": [4, 4], "counts": 7}, "must be a string or a list"),
        ({"size": [4], "counts": "<"}, "two integers"),
        ({"size": [2, 8], "counts": "`0"}, "differs from the frame size [4, 4]"),
        ({"counts": "<"}, "with 'size' and 'counts'"),
        ({"size": [4, 4], "counts": "o" * 13 + "0"}, "more digits than any 64-bit count"),
    ],
)
def test_rle_problem_names_each_fault(rle: dict[str, Any], message: str) -> None:
    problem = masks.rle_problem(rle, 4, 4)
    assert problem is not None and message in problem


def test_garbage_that_hangs_pycocotools_is_refused() -> None:
    # 16 pixels claimed, runs adding to far more: pycocotools would decode this without
    # complaint into a wrong mask (or run for a very long time on larger claims).
    rle = {"size": [4, 4], "counts": "oooooooooo0"}
    assert "pixels" in (masks.rle_problem(rle, 4, 4) or "")


# ---------------------------------------------------------------------------------------------
# Readers of YouTube-VIS JSON


def _video_gt(counts: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    m = np.zeros((8, 8), np.uint8)
    m[1:4, 1:4] = 1
    rle = masks.encode(m)
    gt = {
        "videos": [{"id": 1, "height": 8, "width": 8, "length": 2}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {
                "id": 1,
                "video_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": [rle, None],
                "areas": [9, None],
            }
        ],
    }
    res = [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [dict(rle), None]}]
    if counts is not None:
        res[0]["segmentations"][0]["counts"] = counts
    return gt, res


BAD_COUNTS = [
    ("garbage characters", "~~~~", "not an RLE digit"),
    ("over-long", masks.encode(np.ones((16, 16), np.uint8))["counts"], "cover 256 pixels"),
    ("empty", "", "cover 0 pixels"),
    ("truncated", "0P", "truncated"),
]


@pytest.mark.parametrize(("kind", "counts", "message"), BAD_COUNTS)
def test_eval_ytvis_refuses_bad_result_rles(
    tmp_path: Path, capsys: Any, kind: str, counts: str, message: str
) -> None:
    gt, res = _video_gt(counts)
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(res))
    assert main(["eval", "ytvis", str(gt_path), str(res_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {res_path}: result #0")
    assert "frame 0" in err[0] and message in err[0]
    # The same results are not zipped for a server either.
    assert (
        main(["eval", "submission", str(gt_path), str(res_path), "--out", str(tmp_path / "s.zip")])
        == 2
    )
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.zip").exists()


@pytest.mark.parametrize(("kind", "counts", "message"), BAD_COUNTS)
def test_eval_ytvis_refuses_bad_ground_truth_rles(
    tmp_path: Path, capsys: Any, kind: str, counts: str, message: str
) -> None:
    gt, res = _video_gt()
    gt["annotations"][0]["segmentations"][0]["counts"] = counts
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(res))
    assert main(["eval", "ytvis", str(gt_path), str(res_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {gt_path}: annotation 1, frame 0")
    assert message in err[0]


@pytest.mark.parametrize(("kind", "counts", "message"), BAD_COUNTS)
def test_dataset_index_and_info_refuse_bad_rles(
    tiny_ytvis: Any, tmp_path: Path, capsys: Any, kind: str, counts: str, message: str
) -> None:
    doc = copy.deepcopy(tiny_ytvis.doc)
    doc["annotations"][0]["segmentations"][0]["counts"] = counts
    path = tiny_ytvis.write(doc)
    out = tmp_path / "frames.parquet"
    code = main(
        ["data", "index", "--format", "ytvis", "--json", str(path), "--images",
         str(tiny_ytvis.image_root), "--out", str(out)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: ") and message in err[0]
    assert "frame 0" in err[0] and not out.exists()
    assert main(["data", "info", str(path)]) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Parquet artefacts


def _rewrite(path: Path, name: str, values: pa.Array) -> None:
    table = pq.read_table(path)
    table = table.set_column(table.column_names.index(name), name, values)
    pq.write_table(table, path)


def _filter(paths: dict[str, list[Path]], out: Path, *extra: str) -> list[str]:
    argv = ["pseudo", "filter", "--proposals", *map(str, paths["proposals"])]
    argv += ["--clip", *map(str, paths["clip"]), "--out", str(out), *extra]
    return argv


@pytest.mark.parametrize(
    ("artefact", "column", "values", "message"),
    [
        ("clip", "class_id", pa.array([-1, 1], pa.int32()), "'class_id' has 1 values outside [0, inf]"),
        ("clip", "class_score", pa.array([1.5, 0.9], pa.float32()), "outside [0.0, 1.0]"),
        ("clip", "class_score", pa.array([float("nan"), 0.9], pa.float32()), "value nan"),
        ("clip", "class_score", pa.array(["0.9", "0.8"]), "'class_score' has type string, expected float"),
        ("proposals", "objectness", pa.array([2.0, 0.9], pa.float32()), "outside [0.0, 1.0]"),
        ("proposals", "video_id", pa.array(["1", "1"]), "'video_id' has type string"),
        ("proposals", "rle", pa.array(["~~", "~~"]), "row 0 (video_id 1, frame_index 0): RLE"),
        ("proposals", "rle", pa.array([None, "~~"], pa.string()), "'rle' has 1 null values"),
        ("proposals", "height", pa.array([0, 8], pa.int32()), "'height' has 1 values outside [1, inf]"),
        ("proposals", "area", pa.array([12.5, 12.0]), "does not fit int64"),
    ],
)  # fmt: skip
def test_filter_refuses_bad_parquet_values(
    tmp_path: Path, capsys: Any, artefact: str, column: str, values: pa.Array, message: str
) -> None:
    paths = write_shards(tmp_path, ROWS)
    bad = paths[artefact][0]
    _rewrite(bad, column, values)
    out = tmp_path / "labels.parquet"
    assert main(_filter(paths, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: ") and message in err[0], err
    assert not out.exists()


def test_integer_widths_that_hold_the_values_are_accepted(tmp_path: Path) -> None:
    paths = write_shards(tmp_path, ROWS)
    _rewrite(paths["clip"][0], "class_id", pa.array([1, 1], pa.int64()))
    out = tmp_path / "labels.parquet"
    assert main(_filter(paths, out)) == 0
    assert pq.read_table(out).schema.equals(PSEUDO_LABELS.schema)


@pytest.mark.parametrize("field", ["objectness_threshold", "clip_threshold"])
def test_filter_thresholds_outside_their_range_are_refused_by_the_library(field: str) -> None:
    # The CLI refuses them first (test_numbers_outside_their_range_...); callers of the library
    # get the same range check.
    with pytest.raises(ConfigError, match=rf"{field} is a score threshold in \[0, 1\], got 5"):
        PMFConfig(**{field: 5.0})
    with pytest.raises(ConfigError, match=r"in \[0, 1\], got -0.1"):
        PMFConfig(**{field: -0.1})


def test_shard_mismatch_names_the_inputs_not_the_output(tmp_path: Path, capsys: Any) -> None:
    paths = write_shards(tmp_path, ROWS)
    out = tmp_path / "labels.parquet"
    argv = _filter({"proposals": paths["proposals"][:1], "clip": paths["clip"]}, out)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(paths["proposals"][0]) in err and str(out) not in err


def test_artefact_read_names_file_column_and_row(tmp_path: Path) -> None:
    m = np.zeros((4, 4), np.uint8)
    rle = masks.encode(m)
    table = pa.table(
        {
            "video_id": [3],
            "frame_index": [2],
            "proposal_id": [0],
            "box": [[0.0, 0.0, 0.0, 0.0]],
            "area": [0],
            "height": [4],
            "width": [5],  # the RLE covers 16 pixels, the frame 20
            "rle": [rle["counts"]],
            "objectness": [None],
            "source": ["maskcut"],
        },
        schema=PROPOSALS.schema,
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataError) as info:
        PROPOSALS.read(path)
    assert str(info.value) == (
        f"{path}: proposals: row 0 (video_id 3, frame_index 2): RLE counts cover 16 pixels, "
        "not height*width = 4*5 = 20"
    )


# ---------------------------------------------------------------------------------------------
# Checkpoints and weights files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty (0 bytes), not a PyTorch checkpoint: an interrupted write?"),
        (
            bytes(range(256)) * 4,
            "cannot read as a PyTorch checkpoint (not a PyTorch pickle: Unsupported operand",
        ),
        (b"PK\x03\x04" + b"\x00" * 60, "cannot read as a PyTorch checkpoint ("),
        (None, "is a folder, not a PyTorch checkpoint"),
    ],
)
def test_checkpoint_readers_say_what_is_wrong(tmp_path: Path, content: Any, message: str) -> None:
    from uvis.checkpoints import read_checkpoint
    from uvis.foundation.ssl import read_dino_state_dict
    from uvis.proposals.cutler import read_cutler_state

    path = tmp_path / "model.pth"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    for read in (
        lambda: read_checkpoint(path, fmt="x", what="x", required=[]),
        lambda: read_dino_state_dict(path),
        lambda: read_cutler_state(path),
    ):
        with pytest.raises(DataError) as info:
            read()
        text = str(info.value)
        assert text.startswith(f"{path}: ") and message in text and "\n" not in text


# ---------------------------------------------------------------------------------------------
# Video files


def _faststart_video(path: Path, frames: int = 40) -> Path:
    """An H.264 mp4 with its index at the front (as web videos are), frames of random noise so
    that each frame takes many bytes: cutting the file loses the frames after the cut."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for t in range(frames):
            rgb = np.random.default_rng(t).integers(0, 255, (48, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def test_truncated_video_is_an_error_or_a_counted_skip(tmp_path: Path) -> None:
    from uvis.data.frames import extract_frames, partial_dir
    from uvis.data.videos import extract_video_folder

    folder = tmp_path / "videos"
    good = _faststart_video(folder / "a.mp4")
    data = _faststart_video(tmp_path / "whole.mp4").read_bytes()
    cut = folder / "b.mp4"
    cut.write_bytes(data[: len(data) * 4 // 10])
    out = tmp_path / "frames" / "b"
    with pytest.raises(DataError) as info:
        extract_frames(cut, out)
    assert info.value.path == str(cut)
    assert "truncated or damaged: decoded" in str(info.value)
    assert "of the 40 frames the container declares" in str(info.value)
    assert not out.exists() and not partial_dir(out).exists()
    ds, skipped = extract_video_folder(
        folder, tmp_path / "frames", ["x"], on_error="skip", progress=False
    )
    assert [v.name for v in ds.videos] == ["a"] and len(ds.videos[0].frame_paths) == 40
    assert len(skipped) == 1 and skipped[0].startswith(f"{cut}: truncated or damaged")
    assert good.exists()


def test_replaced_source_video_is_extracted_again(
    tmp_path: Path, make_video: Any, identify_frame: Any
) -> None:
    from uvis.data.frames import extract_frames

    video = make_video(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "clip"
    first = extract_frames(video, out)
    assert len(first) == 4
    # Same name, other content (and size): the old frames must not be reused.
    make_video(video, frames=6)
    os.utime(video, ns=(10**18, 10**18))
    second = extract_frames(video, out)
    assert len(second) == 6 and [identify_frame(p, 6)[0] for p in second] == list(range(6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip", "clip.mp4"]
    # Unchanged source: reused as it is.
    mtimes = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert extract_frames(video, out) == second
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


# ---------------------------------------------------------------------------------------------
# Numbers on the command line


@pytest.mark.parametrize(
    ("argv", "option", "message"),
    [
        (["pseudo", "filter", "--objectness-threshold", "5"], "--objectness-threshold", "must lie in [0.0, 1.0], got 5"),
        (["pseudo", "filter", "--tau", "nan"], "--tau", "expected a finite number, got 'nan'"),
        (["pseudo", "filter", "--k-min", "0"], "--k-min", "must lie in [1, inf], got 0"),
        (["pseudo", "quality", "--iou", "0"], "--iou", "must lie in (0.0, 1.0], got 0"),
        (["track", "vis", "--lam", "1.5"], "--lam", "must lie in [0.0, 1.0], got 1.5"),
        (["track", "vis", "--batch-size", "0"], "--batch-size", "must lie in [1, inf], got 0"),
        (["proposals", "maskcut", "--num-shards", "-2"], "--num-shards", "must lie in [1, inf], got -2"),
        (["data", "extract", "--jpeg-quality", "x"], "--jpeg-quality", "expected an integer, got 'x'"),
        (["data", "holdout", "--fraction", "inf"], "--fraction", "expected a finite number"),
        (["baseline", "ytvis", "--drop-rate", "-0.1"], "--drop-rate", "must lie in [0.0, 1.0], got -0.1"),
        (["report", "strips", "--gif-fps", "0"], "--gif-fps", "must lie in (0.0, inf], got 0"),
    ],
)  # fmt: skip
def test_numbers_outside_their_range_are_refused_before_any_work(
    capsys: Any, argv: list[str], option: str, message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {message}" in err
