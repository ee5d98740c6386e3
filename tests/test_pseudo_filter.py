"""The filter stage on constructed shards: join, flags, errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uvis import masks
from uvis.cli import main
from uvis.errors import DataError
from uvis.prototypes import PMFConfig
from uvis.pseudo.filtering import filter_files
from uvis.pseudo.levels import select
from uvis.schemas import CLIP_SCORES, PROPOSALS, PSEUDO_LABELS


def _unit(v: list[float]) -> list[float]:
    a = np.asarray(v, np.float64)
    return list(a / np.linalg.norm(a))


def write_shards(tmp_path, rows, split_at=2):
    """rows: (objectness, class_id, class_score, embedding). Two shards of each artefact."""
    m = np.zeros((8, 8), np.uint8)
    m[2:5, 2:6] = 1
    rle = masks.encode(m)
    paths = {"proposals": [], "clip": []}
    for k, chunk in enumerate((rows[:split_at], rows[split_at:])):
        base = k * split_at
        n = len(chunk)
        keys = {
            "video_id": [1] * n,
            "frame_index": [base + i for i in range(n)],
            "proposal_id": [0] * n,
        }
        prop = pa.table(
            {
                **keys,
                "box": [masks.bbox_xywh(rle)] * n,
                "area": [12] * n,
                "height": [8] * n,
                "width": [8] * n,
                "rle": [rle["counts"]] * n,
                "objectness": [r[0] for r in chunk],
                "source": ["learned"] * n,
            },
            schema=PROPOSALS.schema,
        )
        clip = pa.table(
            {
                **keys,
                "class_id": [r[1] for r in chunk],
                "class_score": [r[2] for r in chunk],
                "embedding": pa.array([r[3] for r in chunk], pa.list_(pa.float16())),
            },
            schema=CLIP_SCORES.schema,
        )
        for name, table in (("proposals", prop), ("clip", clip)):
            path = tmp_path / f"{name}-{k}.parquet"
            pq.write_table(table, path)
            paths[name].append(path)
    return paths


ROWS = [
    # class 1 cluster around e0 (3 good rows) + an outlier labelled 1 pointing along e2
    (0.9, 1, 0.9, _unit([1, 0.05, 0, 0])),
    (0.9, 1, 0.9, _unit([1, 0, 0.05, 0])),
    (0.9, 1, 0.8, _unit([1, 0.02, 0.02, 0])),
    (0.9, 1, 0.9, _unit([0, 0, 1, 0])),
    # low objectness, low CLIP score: still stored, flagged
    (0.1, 2, 0.3, _unit([0, 1, 0, 0])),
    # NaN objectness (raw MaskCut mask): fails objectness
    (float("nan"), 2, 0.95, _unit([0, 1, 0, 0.1])),
]


def test_filter_stage_flags_every_row(tmp_path):
    paths = write_shards(tmp_path, ROWS)
    out = tmp_path / "labels.parquet"
    cfg = PMFConfig(tau=0.7, k_ratio=1.0, k_min=1, k_max=1, seed=0)
    counts = filter_files(paths["proposals"], paths["clip"], out, cfg)
    table = pq.read_table(out)
    assert table.schema.equals(PSEUDO_LABELS.schema)
    assert table.num_rows == 6
    assert table.column("pass_objectness").to_pylist() == [True, True, True, True, False, False]
    assert table.column("pass_clip").to_pylist() == [True, True, True, True, False, True]
    # k = 1: class 1's prototype is the normalised mean of its 4 passing rows (mostly e0); the
    # outlier along e2 has cosine ~0.34 with it and fails tau=0.7; the cluster rows pass.
    emb = np.array([r[3] for r in ROWS[:4]], np.float16).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    proto = emb.mean(axis=0) / np.linalg.norm(emb.mean(axis=0))
    sim = table.column("pmf_similarity").to_numpy()
    np.testing.assert_allclose(sim[:4], emb @ proto, atol=1e-4)
    assert table.column("pass_pmf").to_pylist()[:4] == [True, True, True, False]
    # Class 2 has no row passing objectness+CLIP, so no prototype: -inf, fails.
    assert np.isneginf(sim[4]) and np.isneginf(sim[5])
    assert counts == {
        "none": 6,
        "objectness": 4,
        "clip": 4,
        "pmf": 3,
        "classes_with_prototypes": 1,
        "invalid_embeddings": 0,
    }
    assert select(table, "pmf", tau=0.3).sum() == 4  # Table 3 sweep from the stored column


def test_shards_that_do_not_belong_together_are_an_error(tmp_path):
    paths = write_shards(tmp_path, ROWS)
    with pytest.raises(DataError, match="do not match row for row"):
        filter_files(paths["proposals"][:1], paths["clip"], tmp_path / "o.parquet", PMFConfig())


def test_unreadable_shard_is_named(tmp_path, capsys):
    paths = write_shards(tmp_path, ROWS)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    code = main(
        [
            "pseudo",
            "filter",
            "--proposals",
            str(bad),
            "--clip",
            *map(str, paths["clip"]),
            "--out",
            str(tmp_path / "o.parquet"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot read proposals" in err


def test_cli_prototype_fraction_builds_from_the_top_scores(tmp_path, capsys):
    paths = write_shards(tmp_path, ROWS)
    out = tmp_path / "labels.parquet"
    args = ["pseudo", "filter", "--proposals", *map(str, paths["proposals"])]
    args += ["--clip", *map(str, paths["clip"]), "--k-max", "1", "--out", str(out)]
    # Class 1's members score 0.9, 0.9, 0.8, 0.9: a quarter of four is one row, the first 0.9,
    # so the prototype is row 0's own embedding.
    assert main([*args, "--prototype-fraction", "0.25"]) == 0
    emb = np.array([r[3] for r in ROWS[:4]], np.float16).astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sim = pq.read_table(out).column("pmf_similarity").to_numpy()
    np.testing.assert_allclose(sim[:4], emb @ emb[0], atol=1e-4)

    assert main([*args, "--prototype-fraction", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prototype_fraction" in err[0]
