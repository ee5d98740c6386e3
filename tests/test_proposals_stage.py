"""The MaskCut proposal stage on a tiny frame index: shapes, schema, shards, errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from uvis import masks
from uvis.errors import ConfigError, DataError
from uvis.foundation.ssl import create_ssl_vit
from uvis.proposals.maskcut import MaskCutConfig
from uvis.proposals.stage import maskcut_shard, model_input_size
from uvis.schemas import FRAME_INDEX, PROPOSALS


def test_model_input_size_rounds_to_patch_multiples():
    assert model_input_size(96, 128, 8, None) == (96, 128)
    assert model_input_size(100, 130, 8, None) == (96, 128)  # 12.5 -> 12, 16.25 -> 16 patches
    assert model_input_size(480, 854, 8, 480) == (480, 856)
    assert model_input_size(3, 3, 8, None) == (8, 8)  # at least one patch


def write_index(tmp_path, sizes):
    rows = {f.name: [] for f in FRAME_INDEX.schema}
    for vid, (h, w, n) in enumerate(sizes, start=1):
        for t in range(n):
            img = np.full((h, w, 3), 30, np.uint8)
            img[h // 4 : h // 2, w // 4 : w // 2] = (250, 40, 40)
            path = tmp_path / f"v{vid}_{t}.jpg"
            Image.fromarray(img).save(path)
            for k, v in (
                ("video_id", vid),
                ("video_name", f"v{vid}"),
                ("frame_index", t),
                ("path", str(path)),
                ("height", h),
                ("width", w),
            ):
                rows[k].append(v)
    out = tmp_path / "frames.parquet"
    pq.write_table(pa.table(rows, schema=FRAME_INDEX.schema), out)
    return out


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    kwargs = {"patch_size": 8, "img_size": 32, "depth": 1, "embed_dim": 32, "num_heads": 2}
    return create_ssl_vit("vit_tiny_patch16_224", weights=None, arch_kwargs=kwargs)


def test_maskcut_stage_writes_proposals_for_each_shard(tmp_path, tiny_vit):
    index = write_index(tmp_path, [(32, 40, 2), (24, 24, 1), (32, 40, 1)])
    cfg = MaskCutConfig(refine="none", num_masks=2)
    seen = []
    for shard in range(2):
        out = tmp_path / f"shard-{shard}.parquet"
        stats = maskcut_shard(index, out, tiny_vit, cfg, shard=shard, num_shards=2, progress=False)
        table = pq.read_table(out)
        assert table.schema.equals(PROPOSALS.schema)
        assert stats["proposals"] == table.num_rows and stats["frames"] == 2  # videos [1], [2, 3]
        for row in table.to_pylist():
            m = masks.decode({"size": [row["height"], row["width"]], "counts": row["rle"]})
            assert m.sum() == row["area"] > 0
            assert row["objectness"] is None and row["source"] == "maskcut"
            seen.append((row["video_id"], row["frame_index"], (row["height"], row["width"])))
    sizes = {1: (32, 40), 2: (24, 24), 3: (32, 40)}
    assert all(hw == sizes[v] for v, _, hw in seen)  # masks at each frame's own size


def test_frame_of_wrong_size_is_named(tmp_path, tiny_vit):
    index = write_index(tmp_path, [(32, 40, 1)])
    table = pq.read_table(index)
    bad = table.column("path")[0].as_py()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(bad)
    with pytest.raises(DataError, match="index says 40x32") as err:
        maskcut_shard(
            index, tmp_path / "o.parquet", tiny_vit, MaskCutConfig(refine="none"), progress=False
        )
    assert bad in str(err.value)
    assert not (tmp_path / "o.parquet").exists()


def test_frame_stride_segments_every_nth_frame_of_each_video(tmp_path, tiny_vit):
    index = write_index(tmp_path, [(32, 40, 5), (24, 24, 3)])  # frames 0-4 and 0-2
    out = tmp_path / "strided.parquet"
    cfg = MaskCutConfig(refine="none")
    stats = maskcut_shard(index, out, tiny_vit, cfg, frame_stride=2, progress=False)
    assert stats["frames"] == 5  # video 1: 0, 2, 4; video 2: 0, 2
    kept = {(r["video_id"], r["frame_index"]) for r in pq.read_table(out).to_pylist()}
    assert kept <= {(1, 0), (1, 2), (1, 4), (2, 0), (2, 2)}
    with pytest.raises(ConfigError, match="frame_stride must be >= 1"):
        maskcut_shard(index, out, tiny_vit, cfg, frame_stride=0, progress=False)
