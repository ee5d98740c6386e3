"""uvis.data.frame_index: the frame index as every stage reads it, on tables with known rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uvis.data.frame_index import FrameIndex, FrameRef, VideoFrames
from uvis.errors import DataError
from uvis.schemas import FRAME_INDEX


def table(rows: list[tuple[int, int, int, int]]) -> pa.Table:
    """Rows of (video_id, frame_index, height, width); paths v<id>/<t>.jpg."""
    cols = {
        "video_id": [r[0] for r in rows],
        "video_name": [f"v{r[0]}" for r in rows],
        "frame_index": [r[1] for r in rows],
        "path": [f"v{r[0]}/{r[1]}.jpg" for r in rows],
        "height": [r[2] for r in rows],
        "width": [r[3] for r in rows],
    }
    return pa.table(cols, schema=FRAME_INDEX.schema)


# Video 7: 3 frames of 4x6 listed out of order; video 2: 2 frames of 8x8; video 5: 4 frames.
ROWS = [(7, 1, 4, 6), (7, 0, 4, 6), (7, 2, 4, 6), (2, 0, 8, 8), (2, 1, 8, 8)]
ROWS += [(5, t, 4, 6) for t in range(4)]


def test_read_checks_the_schema_and_names_the_file(tmp_path):
    path = tmp_path / "frames.parquet"
    pq.write_table(table(ROWS), path)
    index = FrameIndex.read(path)
    assert index.num_frames == 9 and index.source == str(path)
    pq.write_table(pa.table({"video_id": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match=r"bad\.parquet"):
        FrameIndex.read(tmp_path / "bad.parquet")


def test_videos_sorted_with_frames_in_order():
    videos = FrameIndex.of(table(ROWS)).videos()
    assert [v.video_id for v in videos] == [2, 5, 7]
    assert videos[2] == VideoFrames(7, "v7", ("v7/0.jpg", "v7/1.jpg", "v7/2.jpg"), 4, 6)


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([(1, 0, 4, 6), (1, 2, 4, 6)], r"video 1: frame indices are not 0..1: \[0, 2\]"),
        ([(1, 0, 4, 6), (1, 1, 4, 8)], "video 1: frames of different sizes"),
    ],
)
def test_videos_refuse_gaps_and_mixed_sizes(rows, problem):
    with pytest.raises(DataError, match=problem) as err:
        FrameIndex.of(table(rows), "my.parquet").videos()
    assert "my.parquet" in str(err.value)


def test_video_sizes_keep_index_order_and_refuse_mixed_sizes():
    assert FrameIndex.of(table(ROWS)).video_sizes() == {7: (3, 4, 6), 2: (2, 8, 8), 5: (4, 4, 6)}
    with pytest.raises(DataError, match="video 1 has frames of different sizes"):
        FrameIndex.of(table([(1, 0, 4, 6), (1, 1, 4, 8)])).video_sizes()


def test_shards_keep_whole_videos_and_strides_keep_every_nth_position():
    index = FrameIndex.of(table(ROWS))
    first, second = index.shard(2, 0), index.shard(2, 1)
    assert {r.video_id for r in first.refs()} == {7}
    assert {r.video_id for r in second.refs()} == {2, 5}
    every_other = index.every_nth_frame(2)
    assert sorted((r.video_id, r.frame_index) for r in every_other.refs()) == [
        (2, 0),
        (5, 0),
        (5, 2),
        (7, 0),
        (7, 2),
    ]
    assert index.every_nth_frame(1) is index


def test_batches_split_on_count_and_optionally_on_size():
    index = FrameIndex.of(table(ROWS))
    by_count = [[(r.video_id, r.frame_index) for r in b] for b in index.batches(4, same_size=False)]
    assert by_count == [
        [(7, 1), (7, 0), (7, 2), (2, 0)],
        [(2, 1), (5, 0), (5, 1), (5, 2)],
        [(5, 3)],
    ]
    by_size = [[(r.video_id, r.frame_index) for r in b] for b in index.batches(4, same_size=True)]
    assert by_size == [[(7, 1), (7, 0), (7, 2)], [(2, 0), (2, 1)], [(5, 0), (5, 1), (5, 2), (5, 3)]]
    assert next(index.refs()) == FrameRef(7, 1, "v7/1.jpg", 4, 6)


def test_frame_files_by_video_and_frame():
    files = FrameIndex.of(table(ROWS)).frame_files()
    assert len(files) == 9 and files[(2, 1)] == ("v2/1.jpg", 8, 8)
