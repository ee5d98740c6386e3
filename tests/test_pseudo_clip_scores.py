"""The clip_scores stage with a randomly initialised CLIP: alignment, schema, known embeddings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from uvis.data.frames import Category
from uvis.errors import DataError
from uvis.foundation.clip import (
    classify,
    create_clip,
    crop_regions,
    image_embeddings,
    text_embeddings,
)
from uvis.proposals.table import ProposalRows
from uvis.pseudo.clip_scores import score_proposals
from uvis.schemas import CLIP_SCORES, FRAME_INDEX

CATS = (Category(3, "circle"), Category(5, "star"), Category(9, "heart"))


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return create_clip("uvis-clip-smoke", weights=None)


def make_inputs(tmp_path, n_frames=3):
    rng = np.random.default_rng(0)
    index = {f.name: [] for f in FRAME_INDEX.schema}
    rows = ProposalRows()
    for t in range(n_frames):
        img = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
        path = tmp_path / f"{t}.png"
        Image.fromarray(img).save(path)
        for k, v in (
            ("video_id", 1),
            ("video_name", "v"),
            ("frame_index", t),
            ("path", str(path)),
            ("height", 40),
            ("width", 48),
        ):
            index[k].append(v)
        masks = []
        for j in range(t + 1):  # 1, 2, 3 proposals
            m = np.zeros((40, 48), bool)
            m[5 * j : 5 * j + 12, 4 + 6 * j : 20 + 6 * j] = True
            masks.append(m)
        rows.add_frame(1, t, masks, [0.9] * len(masks), "learned")
    fi = tmp_path / "frames.parquet"
    pq.write_table(pa.table(index, schema=FRAME_INDEX.schema), fi)
    props = tmp_path / "props.parquet"
    pq.write_table(rows.table(), props)
    return fi, props


def test_scores_are_eq1_on_each_proposal(tmp_path, bundle):
    fi, props = make_inputs(tmp_path)
    out = tmp_path / "clip.parquet"
    stats = score_proposals(fi, props, out, bundle, CATS, batch_size=4, progress=False)
    table = pq.read_table(out)
    CLIP_SCORES.check(table, str(out))
    assert stats["proposals"] == table.num_rows == 6
    p = pq.read_table(props)
    for key in ("video_id", "frame_index", "proposal_id"):
        assert table.column(key).equals(p.column(key))
    emb = np.asarray(table.column("embedding").to_pylist(), np.float32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=2e-3)
    # Independent recomputation for the last frame: crop, embed, classify.
    image = np.asarray(Image.open(tmp_path / "2.png").convert("RGB"))
    last = p.filter(pa.compute.equal(p.column("frame_index"), 2))
    boxes = np.asarray(last.column("box").to_pylist())
    expect = image_embeddings(bundle, crop_regions(image, boxes, context=0.1))
    np.testing.assert_allclose(emb[-3:], expect.numpy(), atol=2e-3)
    labels = classify(expect, text_embeddings(bundle, [c.name for c in CATS]), bundle.logit_scale)
    ids = np.array([c.id for c in CATS])
    assert table.column("class_id").to_pylist()[-3:] == list(ids[labels.class_index.numpy()])
    np.testing.assert_allclose(
        table.column("class_score").to_numpy()[-3:], labels.class_score.numpy(), atol=1e-5
    )


def test_flip_scores_the_mirror_averaged_embedding(tmp_path, bundle, monkeypatch):
    # An image tower that sees only the left half of its input, so a mirror changes everything.
    monkeypatch.setattr(
        bundle.model, "encode_image", lambda x: x[..., : x.shape[-1] // 2].flatten(1)[:, :64]
    )
    fi, props = make_inputs(tmp_path)
    out = tmp_path / "clip.parquet"
    score_proposals(fi, props, out, bundle, CATS, flip=True, progress=False)
    emb = np.asarray(pq.read_table(out).column("embedding").to_pylist(), np.float32)
    image = np.asarray(Image.open(tmp_path / "2.png").convert("RGB"))
    p = pq.read_table(props)
    last = p.filter(pa.compute.equal(p.column("frame_index"), 2))
    crops = crop_regions(image, np.asarray(last.column("box").to_pylist()), context=0.1)
    flipped = image_embeddings(bundle, crops, flip=True).numpy()
    np.testing.assert_allclose(emb[-3:], flipped, atol=2e-3)
    assert np.abs(image_embeddings(bundle, crops).numpy() - flipped).max() > 0.05


def test_proposal_for_unknown_frame_is_an_error(tmp_path, bundle):
    fi, props = make_inputs(tmp_path)
    table = pq.read_table(fi).slice(0, 2)  # drop frame 2 from the index
    pq.write_table(table, fi)
    with pytest.raises(DataError, match="frame 2 not in"):
        score_proposals(fi, props, tmp_path / "o.parquet", bundle, CATS, progress=False)


def test_empty_shard_gives_an_empty_valid_table(tmp_path, bundle):
    fi, _ = make_inputs(tmp_path)
    empty = tmp_path / "empty.parquet"
    pq.write_table(ProposalRows().table(), empty)
    out = tmp_path / "o.parquet"
    assert score_proposals(fi, empty, out, bundle, CATS, progress=False)["proposals"] == 0
    assert pq.read_table(out).num_rows == 0


def test_cli_runs_the_stage(tmp_path, bundle, capsys):
    from uvis.cli import main

    fi, props = make_inputs(tmp_path)
    weights = tmp_path / "clip.pt"
    torch.save(bundle.model.state_dict(), weights)
    out = tmp_path / "o.parquet"
    args = [
        "pseudo",
        "clip-scores",
        "--frames",
        str(fi),
        "--proposals",
        str(props),
        "--out",
        str(out),
    ]
    code = main(
        [
            *args,
            "--vocabulary",
            "circle,star,heart",
            "--model",
            "uvis-clip-smoke",
            "--weights",
            str(weights),
        ]
    )
    assert code == 0 and "6 proposals on 3 frames" in capsys.readouterr().out
    assert set(pq.read_table(out).column("class_id").to_pylist()) <= {1, 2, 3}


def test_cli_scores_with_an_ensemble_of_checkpoints(tmp_path, bundle):
    """Two --weights: the stored embeddings are the ensemble's (twice the width), and each
    proposal's class is the argmax of the members' mean cosine."""
    from uvis.cli import main

    fi, props = make_inputs(tmp_path)
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    torch.save(bundle.model.state_dict(), paths[0])
    torch.manual_seed(7)
    torch.save(create_clip("uvis-clip-smoke", weights=None).model.state_dict(), paths[1])
    out = tmp_path / "o.parquet"
    weights = [a for p in paths for a in ("--weights", str(p))]
    base = ["pseudo", "clip-scores", "--frames", str(fi), "--proposals", str(props)]
    voc = ["--vocabulary", "circle,star,heart", "--model", "uvis-clip-smoke"]
    assert main([*base, "--out", str(out), *voc, *weights]) == 0
    table = pq.read_table(out)
    emb = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert emb.shape[1] == 2 * bundle.embed_dim

    members = [create_clip("uvis-clip-smoke", weights=p) for p in paths]
    image = np.asarray(Image.open(tmp_path / "2.png").convert("RGB"))
    p = pq.read_table(props)
    last = p.filter(pa.compute.equal(p.column("frame_index"), 2))
    crops = crop_regions(image, np.asarray(last.column("box").to_pylist()), context=0.1)
    cos = sum(
        image_embeddings(m, crops) @ text_embeddings(m, ["circle", "star", "heart"]).T
        for m in members
    )
    assert table.column("class_id").to_pylist()[-3:] == (cos.argmax(1) + 1).tolist()
