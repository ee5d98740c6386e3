"""Sharding by video: a dataset of thousands of videos becomes a bounded number of jobs.

A shard is a contiguous block of the frame index's videos (in index order), so every frame
of a video lands in the same shard and shards differ in size by at most one video.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def shard_video_ids(video_ids: list[int], num_shards: int, shard: int) -> list[int]:
    """The videos of shard ``shard`` (0-based) out of ``num_shards`` contiguous blocks.

    Shards beyond the number of videos are empty (a valid, empty job).
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
    n = len(video_ids)
    start = shard * n // num_shards
    stop = (shard + 1) * n // num_shards
    return list(video_ids[start:stop])


def select_shard(frame_index: pa.Table, num_shards: int, shard: int) -> pa.Table:
    """Rows of a frame index (schema ``FRAME_INDEX``) that belong to one shard."""
    videos = list(dict.fromkeys(frame_index.column("video_id").to_pylist()))
    keep = shard_video_ids(videos, num_shards, shard)
    return frame_index.filter(pc.is_in(frame_index.column("video_id"), pa.array(keep, pa.int64())))
