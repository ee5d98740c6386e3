"""The ``cutler`` proposal backend (uvis.proposals.cutler).

Without detectron2: predictions built by hand (scores and masks whose boxes and areas are known)
become exact proposal rows; a frame without detections is counted; checkpoints that do not fit
are refused naming the file; the stage runs end to end with a stand-in predictor; a missing
detectron2 stops with one message saying how to install it. With detectron2 (skipped otherwise):
the stage's predictions equal detectron2's own ``DefaultPredictor`` on the same checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from uvis import masks
from uvis.cli import main
from uvis.data.frame_index import FrameIndex, FrameRef
from uvis.errors import ConfigError, DataError, UvisError
from uvis.proposals import cutler
from uvis.proposals.cutler import (
    METADATA_KEY,
    CutlerSettings,
    add_predictions,
    check_cutler_state,
    cutler_shard,
    detectron2_config,
    read_cutler_state,
)
from uvis.proposals.table import ProposalRows
from uvis.schemas import FRAME_INDEX, PROPOSALS

H, W = 6, 8
FRAME = FrameRef(video_id=4, frame_index=2, path="f.jpg", height=H, width=W)


def rect(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> torch.Tensor:
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def table_of(rows: ProposalRows) -> list[dict]:
    return rows.table().to_pylist()


# --------------------------------------------------------------------------------------------
# Predictions -> rows


def test_predictions_become_rows_ranked_by_score_with_mask_boxes():
    # score 0.3: rows 1-2, columns 2-4 -> box [2, 1, 3, 2], area 6
    # score 0.9: the single pixel (row 4, column 7) -> box [7, 4, 1, 1], area 1
    # score 0.6: empty mask -> left out and counted
    scores = torch.tensor([0.3, 0.9, 0.6])
    preds = torch.stack([rect(1, 3, 2, 5), rect(4, 5, 7, 8), rect(0, 0, 0, 0)])
    rows = ProposalRows()
    assert add_predictions(rows, FRAME, scores, preds) == 1
    got = table_of(rows)
    assert [(r["proposal_id"], r["box"], r["area"]) for r in got] == [
        (0, [7.0, 4.0, 1.0, 1.0], 1),
        (1, [2.0, 1.0, 3.0, 2.0], 6),
    ]
    assert [r["objectness"] for r in got] == pytest.approx([0.9, 0.3])
    for r, expected in zip(got, (rect(4, 5, 7, 8), rect(1, 3, 2, 5)), strict=True):
        assert (r["video_id"], r["frame_index"], r["height"], r["width"]) == (4, 2, H, W)
        assert r["source"] == "cutler"
        decoded = masks.decode({"size": [H, W], "counts": r["rle"]})
        np.testing.assert_array_equal(decoded, expected.numpy())
    assert (rows.frames, rows.empty_frames) == (1, 0)


def test_equal_scores_keep_the_predictor_order():
    scores = torch.tensor([0.5, 0.5, 0.7])
    preds = torch.stack([rect(0, 1, 0, 1), rect(0, 1, 1, 2), rect(0, 1, 2, 3)])
    rows = ProposalRows()
    add_predictions(rows, FRAME, scores, preds)
    assert [r["box"][0] for r in table_of(rows)] == [2.0, 0.0, 1.0]


def test_frame_without_detections_is_counted_not_dropped():
    rows = ProposalRows()
    assert add_predictions(rows, FRAME, torch.zeros(0), torch.zeros(0, H, W, dtype=torch.bool)) == 0
    # Only empty masks: the frame has no proposal either.
    assert add_predictions(rows, FRAME, torch.tensor([0.8]), rect(0, 0, 0, 0)[None]) == 1
    assert (rows.frames, rows.empty_frames, len(rows)) == (2, 2, 0)
    assert rows.table().schema.equals(PROPOSALS.schema)


@pytest.mark.parametrize(
    ("scores", "preds"),
    [
        (torch.tensor([0.5]), torch.zeros(1, H, W + 1, dtype=torch.bool)),  # not the frame's size
        (torch.tensor([0.5, 0.4]), torch.zeros(1, H, W, dtype=torch.bool)),  # counts differ
        (torch.tensor([float("nan")]), torch.ones(1, H, W, dtype=torch.bool)),
    ],
)
def test_predictions_that_do_not_fit_are_refused(scores, preds):
    with pytest.raises(ValueError, match="video 4 frame 2"):
        add_predictions(ProposalRows(), FRAME, scores, preds)


def frame_index_table(n: int) -> pa.Table:
    """``n`` frame rows: video 1 has frames 0-2, video 2 the rest."""
    return pa.table(
        {
            "video_id": [1] * 3 + [2] * (n - 3),
            "video_name": ["a"] * 3 + ["b"] * (n - 3),
            "frame_index": [0, 1, 2, *range(n - 3)],
            "path": [f"/x/{i}.jpg" for i in range(n)],
            "height": [H] * n,
            "width": [W] * n,
        },
        schema=FRAME_INDEX.schema,
    )


def test_frame_batches_keep_order_and_split_the_tail():
    batches = list(FrameIndex.of(frame_index_table(5)).batches(2, same_size=False))
    assert [[f.path for f in b] for b in batches] == [
        ["/x/0.jpg", "/x/1.jpg"],
        ["/x/2.jpg", "/x/3.jpg"],
        ["/x/4.jpg"],
    ]
    assert batches[1] == [
        FrameRef(1, 2, "/x/2.jpg", H, W),
        FrameRef(2, 0, "/x/3.jpg", H, W),
    ]


# --------------------------------------------------------------------------------------------
# Settings and config


def test_settings_reach_detectron2_test_time_keys():
    settings = CutlerSettings(
        score_threshold=0.25, nms_threshold=0.6, detections_per_image=7, min_size=96, max_size=128
    )
    values = detectron2_config(settings, "cpu")
    assert values["MODEL.ROI_HEADS.SCORE_THRESH_TEST"] == 0.25
    assert values["MODEL.ROI_HEADS.NMS_THRESH_TEST"] == 0.6
    assert values["TEST.DETECTIONS_PER_IMAGE"] == 7
    assert (values["INPUT.MIN_SIZE_TEST"], values["INPUT.MAX_SIZE_TEST"]) == (96, 128)
    assert values["MODEL.DEVICE"] == "cpu"
    # CutLER's detector: one class-agnostic class, RGB input.
    assert values["MODEL.ROI_HEADS.NUM_CLASSES"] == 1
    assert values["MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG"] is True
    assert values["INPUT.FORMAT"] == "RGB"


@pytest.mark.parametrize(
    "bad",
    [
        {"score_threshold": 1.0},
        {"nms_threshold": 0.0},
        {"detections_per_image": 0},
        {"min_size": 1400},  # above max_size
        {"batch_size": 0},
        {"device": "tpu"},
    ],
)
def test_invalid_settings_name_the_setting(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        CutlerSettings(**bad)


# --------------------------------------------------------------------------------------------
# Checkpoints

EXPECTED = {
    "backbone.conv.weight": torch.zeros(4, 3),
    "backbone.bn.num_batches_tracked": torch.zeros((), dtype=torch.long),
    "pixel_mean": torch.zeros(3, 1, 1),
    "pixel_std": torch.ones(3, 1, 1),
}


def test_checkpoint_may_lack_pixel_statistics_and_carry_old_anchors():
    state = {
        "backbone.conv.weight": torch.ones(4, 3),
        "proposal_generator.anchor_generator.cell_anchors.0": torch.zeros(3, 4),
    }
    assert list(check_cutler_state(state, EXPECTED, "ck.pth")) == ["backbone.conv.weight"]


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ({}, "1 missing keys"),
        ({"backbone.conv.weight": torch.ones(4, 4)}, "1 shape mismatches"),
        ({"backbone.conv.weight": torch.ones(4, 3), "head.x": torch.ones(1)}, "1 unexpected"),
    ],
)
def test_checkpoint_of_another_architecture_is_refused(state, problem):
    with pytest.raises(DataError, match=rf"ck\.pth: weights do not fit CutLER.*{problem}"):
        check_cutler_state(state, EXPECTED, "ck.pth")


def test_read_checkpoint_in_detectron2_or_bare_form(tmp_path: Path):
    state = {"a": torch.arange(3.0)}
    for i, obj in enumerate(({"model": state, "iteration": 5}, state)):
        path = tmp_path / f"{i}.pth"
        torch.save(obj, path)
        got = read_cutler_state(path)
        assert list(got) == ["a"]
        torch.testing.assert_close(got["a"], state["a"])


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not a checkpoint", "cannot read as a PyTorch checkpoint"),
        ({"model": {}}, "no 'model' state dict"),
        ({"model": {"a": 1.0}}, "not tensors"),
    ],
)
def test_unreadable_checkpoint_names_the_file(tmp_path: Path, content, problem):
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(DataError, match=rf"bad\.pth: .*{problem}"):
        read_cutler_state(path)


# --------------------------------------------------------------------------------------------
# The stage, with a stand-in predictor


def write_frames(tmp_path: Path) -> Path:
    """Video 1: two 6x8 frames with a white block at rows 1-2, columns 2-4 (frame 0) and rows
    3-5, columns 0-1 (frame 1); video 2: one black frame (no detection)."""
    blocks = {(1, 0): (1, 3, 2, 5), (1, 1): (3, 6, 0, 2), (2, 0): None}
    rows = {f.name: [] for f in FRAME_INDEX.schema}
    for (vid, t), block in blocks.items():
        img = np.zeros((H, W, 3), np.uint8)
        if block:
            y0, y1, x0, x1 = block
            img[y0:y1, x0:x1] = 255
        path = tmp_path / f"{vid}-{t}.png"
        Image.fromarray(img).save(path)
        for key, value in zip(rows, (vid, f"v{vid}", t, str(path), H, W), strict=True):
            rows[key].append(value)
    out = tmp_path / "frames.parquet"
    pq.write_table(pa.table(rows, schema=FRAME_INDEX.schema), out)
    return out


def bright_block_predictor(model, images, settings):
    """Stand-in for detectron2: one detection (score 0.8) per image, its bright pixels."""
    preds = []
    for img in images:
        bright = torch.from_numpy(img.mean(axis=2) > 127)
        found = bool(bright.any())
        preds.append((torch.tensor([0.8] * found), bright[None] if found else bright[None][:0]))
    return preds


def test_stage_writes_rows_counts_and_provenance(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cutler, "require_detectron2", lambda: None)
    monkeypatch.setattr(cutler, "load_cutler_model", lambda weights, settings: object())
    monkeypatch.setattr(cutler, "predict", bright_block_predictor)
    weights = tmp_path / "cutler.pth"
    weights.write_bytes(b"")
    out = tmp_path / "shard-0.parquet"
    settings = CutlerSettings(batch_size=2, device="cpu")
    summary = cutler_shard(
        write_frames(tmp_path), weights, out=out, settings=settings, progress=False
    )
    assert summary == {"frames": 3, "proposals": 2, "empty_frames": 1, "empty_masks": 0}
    table = PROPOSALS.read(out)
    assert [(r["video_id"], r["frame_index"], r["box"], r["area"]) for r in table.to_pylist()] == [
        (1, 0, [2.0, 1.0, 3.0, 2.0], 6),
        (1, 1, [0.0, 3.0, 2.0, 3.0], 6),
    ]
    provenance = json.loads(pq.read_schema(out).metadata[METADATA_KEY])
    assert provenance["weights"] == str(weights)
    assert provenance["settings"]["batch_size"] == 2
    assert not list(tmp_path.glob(".shard-0.parquet.*"))  # no temporary file left
    # Shard 1 of 2 holds video 2 alone: its one frame is counted though it has no proposal.
    summary = cutler_shard(
        tmp_path / "frames.parquet",
        weights,
        out=tmp_path / "shard-1.parquet",
        settings=settings,
        shard=1,
        num_shards=2,
        progress=False,
    )
    assert summary == {"frames": 1, "proposals": 0, "empty_frames": 1, "empty_masks": 0}
    assert PROPOSALS.read(tmp_path / "shard-1.parquet").num_rows == 0


# --------------------------------------------------------------------------------------------
# Without detectron2


@pytest.fixture
def no_detectron2(monkeypatch):
    """Make every ``import detectron2...`` fail, as on a machine without it."""
    for name in [m for m in sys.modules if m == "detectron2" or m.startswith("detectron2.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("detectron2", "detectron2.config", "detectron2.modeling"):
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_detectron2_says_how_to_install_it(no_detectron2, tmp_path: Path):
    with pytest.raises(UvisError) as err:
        # Stops before the (absent) frame index and weights are looked at.
        cutler_shard(
            tmp_path / "none.parquet",
            "cutler_cascade",
            out=tmp_path / "o.parquet",
            settings=CutlerSettings(),
        )
    message = str(err.value)
    assert "needs detectron2" in message
    assert "envs/detectron2.yaml" in message
    assert "--no-build-isolation" in message
    assert "proposals.backend to maskcut" in message
    assert not (tmp_path / "o.parquet").exists()


def test_cli_prints_the_missing_detectron2_message_as_one_line(no_detectron2, tmp_path, capsys):
    status = main(
        [
            "proposals",
            "cutler",
            "--frames",
            str(tmp_path / "frames.parquet"),
            "--out",
            str(tmp_path / "o.parquet"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1
    assert err[0].startswith("error: the cutler proposal backend needs detectron2")


# --------------------------------------------------------------------------------------------
# With detectron2


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """CutLER's architecture with random weights, the class logits spread so that scores differ
    (about 0.6-0.98 on the frames below), saved as detectron2 saves a model."""
    pytest.importorskip("detectron2")
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    values = detectron2_config(CutlerSettings(), "cpu")
    cfg.merge_from_list([item for pair in values.items() for item in pair])
    torch.manual_seed(0)
    model = build_model(cfg)
    for predictor in model.roi_heads.box_predictor:
        torch.nn.init.normal_(predictor.cls_score.weight, std=0.03)
    path = tmp_path_factory.mktemp("cutler") / "random.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return path


def test_stage_matches_detectron2_default_predictor(random_checkpoint: Path, tmp_path: Path):
    """Same detections as detectron2's reference predictor, fed one BGR image at a time, while
    the stage feeds RGB frames two at a time (frames 96x128 resized to 80x107)."""
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    frames = write_synthetic_frames(tmp_path)
    settings = CutlerSettings(
        score_threshold=0.5,
        detections_per_image=10,
        rpn_proposals=100,
        min_size=80,
        max_size=120,
        batch_size=2,
        device="cpu",
    )
    out = tmp_path / "shard.parquet"
    summary = cutler_shard(frames, random_checkpoint, out=out, settings=settings, progress=False)
    table = PROPOSALS.read(out).to_pylist()
    assert summary == {"frames": 2, "proposals": len(table), "empty_frames": 0, "empty_masks": 0}

    cfg = get_cfg()
    cfg.merge_from_list(
        [item for pair in detectron2_config(settings, "cpu").items() for item in pair]
    )
    cfg.MODEL.WEIGHTS = str(random_checkpoint)
    reference = DefaultPredictor(cfg)
    for row in FRAME_INDEX.read(frames).to_pylist():
        rgb = np.asarray(Image.open(row["path"]).convert("RGB"))
        instances = reference(rgb[:, :, ::-1].copy())["instances"]
        order = torch.argsort(instances.scores, descending=True)
        mine = [r for r in table if r["frame_index"] == row["frame_index"]]
        assert len(mine) == len(order) == settings.detections_per_image
        for r, i in zip(mine, order.tolist(), strict=True):
            assert r["objectness"] == pytest.approx(float(instances.scores[i]), abs=1e-5)
            ref_mask = instances.pred_masks[i].numpy()
            got = masks.decode({"size": [96, 128], "counts": r["rle"]}).astype(bool)
            assert (got != ref_mask).sum() <= 2  # float noise at the 0.5 mask threshold


def test_wrong_architecture_checkpoint_names_the_file(random_checkpoint: Path, tmp_path: Path):
    state = torch.load(random_checkpoint, weights_only=True)["model"]
    del state["roi_heads.mask_head.predictor.weight"]
    path = tmp_path / "broken.pth"
    torch.save({"model": state}, path)
    with pytest.raises(DataError, match=r"broken\.pth: weights do not fit.*1 missing keys"):
        cutler.load_cutler_model(path, CutlerSettings(device="cpu"))


def write_synthetic_frames(tmp_path: Path) -> Path:
    """Two 96x128 frames of one video: textured noise with a bright disc (seeded)."""
    rng = np.random.default_rng(0)
    rows = {f.name: [] for f in FRAME_INDEX.schema}
    yy, xx = np.mgrid[:96, :128]
    for t in range(2):
        img = rng.integers(0, 80, (96, 128, 3), dtype=np.uint8)
        img[(yy - 40 - 10 * t) ** 2 + (xx - 60) ** 2 < 400] = (230, 200, 40)
        path = tmp_path / f"{t}.png"
        Image.fromarray(img).save(path)
        for key, value in zip(rows, (7, "v", t, str(path), 96, 128), strict=True):
            rows[key].append(value)
    out = tmp_path / "frames.parquet"
    pq.write_table(pa.table(rows, schema=FRAME_INDEX.schema), out)
    return out
