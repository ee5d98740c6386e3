"""Video sharding and weight resolution: known answers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from uvis.data.shards import select_shard, shard_video_ids
from uvis.foundation.weights import KNOWN_WEIGHTS, MissingWeightsError, resolve_weights


def test_shards_partition_videos_contiguously_and_evenly():
    ids = [3, 5, 8, 13, 21, 34, 55]
    shards = [shard_video_ids(ids, 3, k) for k in range(3)]
    assert shards == [[3, 5], [8, 13], [21, 34, 55]]
    assert shard_video_ids(ids, 1, 0) == ids
    # More shards than videos: the extra shards are empty, none is lost.
    many = [shard_video_ids(ids[:2], 4, k) for k in range(4)]
    assert [v for s in many for v in s] == [3, 5] and sum(1 for s in many if not s) == 2
    with pytest.raises(ValueError):
        shard_video_ids(ids, 3, 3)


def test_select_shard_keeps_whole_videos():
    table = pa.table(
        {
            "video_id": pa.array([7, 7, 7, 2, 2, 9], pa.int64()),
            "frame_index": pa.array([0, 1, 2, 0, 1, 0], pa.int32()),
        }
    )
    first, second = (select_shard(table, 2, k) for k in range(2))
    assert first.column("video_id").to_pylist() == [7, 7, 7]  # videos in index order: 7, 2, 9
    assert second.column("video_id").to_pylist() == [2, 2, 9]


def test_resolve_weights_paths_names_and_errors(tmp_path, monkeypatch):
    f = tmp_path / "my.pth"
    f.write_bytes(b"x")
    assert resolve_weights(f, "ssl_vit") == f
    monkeypatch.setenv("UVIS_WEIGHTS", str(tmp_path / "w"))
    spec = KNOWN_WEIGHTS["dino_vitb8"]
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights("dino_vitb8", "ssl_vit")
    msg = str(err.value)
    assert "dino_vitb8" in msg and spec.url in msg and str(tmp_path / "w") in msg
    placed = tmp_path / "w" / "dino_vitb8" / spec.filename
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"x")
    assert resolve_weights("dino_vitb8", "ssl_vit") == placed
    with pytest.raises(MissingWeightsError, match="ssl_vit weight"):
        resolve_weights("dino_vitb8", "clip")
    with pytest.raises(MissingWeightsError, match="not found"):
        resolve_weights(tmp_path / "missing.pth", "clip")
