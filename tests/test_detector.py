"""The learned detector (uvis.proposals.detector): DropLoss, targets, training, checkpoints, output.

DropLoss is checked on boxes whose IoUs are computed by hand, and inside the ROI heads with a
constant box predictor, where the classification loss is ``log 2`` per region and the share of
regions that keep it is known. Training is checked on bright squares on a dark background.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import torchvision
from PIL import Image
from pycocotools import mask as mask_utils
from torch import nn

from conftest import noisy_square
from uvis import masks
from uvis.data.frames import read_frame
from uvis.errors import ConfigError, DataError
from uvis.proposals import detector
from uvis.proposals.detector import (
    Detection,
    DetectorConfig,
    MaskTargets,
    build_detector,
    detect,
    detect_frames,
    drop_loss_weights,
    load_detector,
    merge_self_training_targets,
    proposals_table,
    save_detector,
    targets_from_proposals,
    train_detector,
)
from uvis.proposals.refine import BilateralParams, mask_iou, refine_mask
from uvis.schemas import FRAME_INDEX, PROPOSALS

SIZE = 64


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Run torch on one thread, as the command line does by default: on this shared 2-core
    machine two threads made ResNet training steps about 10x slower, not faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(**overrides: object) -> DetectorConfig:
    """The smoke preset on CPU at the squares' native 64 x 64 size."""
    values = {"min_size": SIZE, "max_size": SIZE, "device": "cpu"}
    return DetectorConfig.preset("smoke", **{**values, **overrides})


# --------------------------------------------------------------------------------------------
# DropLoss


def test_drop_loss_weights_on_hand_computed_ious() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor(
        [
            [20.0, 20.0, 30.0, 30.0],  # overlaps no pseudo-box: IoU 0 -> dropped
            [9.0, 0.0, 10.0, 2.0],  # inside it, area 2 of 100: IoU 0.02 -> kept
            [9.5, 9.5, 10.0, 10.0],  # area 0.25: IoU 0.0025 <= 0.01 -> dropped
            [0.0, 0.0, 10.0, 10.0],  # the pseudo-box itself -> kept
        ]
    )
    assert drop_loss_weights(boxes, gt).tolist() == [0.0, 1.0, 0.0, 1.0]
    # The largest IoU over pseudo-boxes counts: a second box covering the first region keeps it.
    two = torch.cat([gt, torch.tensor([[18.0, 18.0, 30.0, 30.0]])])
    assert drop_loss_weights(boxes, two).tolist() == [1.0, 1.0, 0.0, 1.0]
    assert drop_loss_weights(boxes, torch.zeros((0, 4))).tolist() == [0.0] * 4


class ConstantPredictor(nn.Module):
    """Box predictor with zero logits (cross-entropy log 2 everywhere) and zero box deltas."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        return torch.zeros(n, 2), torch.zeros(n, 8)


def test_droploss_heads_drop_only_regions_that_overlap_no_pseudo_box() -> None:
    torch.manual_seed(0)
    model = build_detector(tiny_cfg(roi_batch_size=64)).train()
    heads = model.roi_heads
    heads.box_predictor = ConstantPredictor()
    features = model.backbone(torch.zeros(1, 3, SIZE, SIZE))
    gt_box = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    gt_mask = torch.zeros(1, SIZE, SIZE, dtype=torch.uint8)
    gt_mask[0, 10:30, 10:30] = 1
    # Background regions (IoU < 0.5) touching the pseudo-box: IoU 1/3 and 1/7.
    near = torch.tensor([[20.0, 10.0, 40.0, 30.0], [25.0, 10.0, 45.0, 30.0]])
    # Background regions overlapping nothing.
    far = torch.tensor([[40.0, 40.0, 60.0, 60.0], [44.0, 40.0, 64.0, 60.0], [0.0, 40.0, 8.0, 60.0]])
    targets = [{"boxes": gt_box, "labels": torch.ones(1, dtype=torch.int64), "masks": gt_mask}]
    # Sampled: the pseudo-box itself (added as a proposal, foreground) + 2 near + 3 far regions;
    # with zero deltas the regressed boxes are the regions, so 3 of 6 keep their loss.
    heads.drop_loss_iou = None
    _, plain = heads(features, [torch.cat([near, far])], [(SIZE, SIZE)], targets)
    heads.drop_loss_iou = 0.01
    _, dropped = heads(features, [torch.cat([near, far])], [(SIZE, SIZE)], targets)
    assert plain["loss_classifier"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert dropped["loss_classifier"].item() == pytest.approx(math.log(2) * 3 / 6, rel=1e-6)
    assert dropped["loss_mask"].item() == pytest.approx(plain["loss_mask"].item(), rel=1e-6)


# --------------------------------------------------------------------------------------------
# Targets


def frame_index(paths: list[Path], keys: list[tuple[int, int]], h: int, w: int) -> pa.Table:
    return pa.table(
        {
            "video_id": [k[0] for k in keys],
            "video_name": [f"v{k[0]}" for k in keys],
            "frame_index": [k[1] for k in keys],
            "path": [str(p) for p in paths],
            "height": [h] * len(keys),
            "width": [w] * len(keys),
        },
        schema=FRAME_INDEX.schema,
    )


def proposals_of(rows: list[tuple[int, int, np.ndarray]]) -> pa.Table:
    """A PROPOSALS table of raw masks (``source="maskcut"``, no objectness)."""
    cols: dict[str, list] = {f.name: [] for f in PROPOSALS.schema}
    for pid, (vid, t, mask) in enumerate(rows):
        rle = masks.encode(mask)
        cols["video_id"].append(vid)
        cols["frame_index"].append(t)
        cols["proposal_id"].append(pid)
        cols["box"].append(masks.bbox_xywh(rle))
        cols["area"].append(masks.area(rle))
        cols["height"].append(mask.shape[0])
        cols["width"].append(mask.shape[1])
        cols["rle"].append(rle["counts"])
        cols["objectness"].append(None)
        cols["source"].append("maskcut")
    return pa.table(cols, schema=PROPOSALS.schema)


def rect(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def test_targets_from_proposals_known_masks(tmp_path: Path) -> None:
    h, w = 20, 30
    keys = [(1, 0), (1, 1), (2, 0)]
    index = frame_index([tmp_path / f"{i}.png" for i in range(3)], keys, h, w)
    a, b = rect(h, w, 2, 3, 7, 10), rect(h, w, 10, 20, 20, 30)
    table = proposals_of([(2, 0, b), (1, 0, a), (2, 0, np.zeros((h, w), np.uint8))])
    targets = targets_from_proposals(index, table)
    assert [t.path.name for t in targets] == ["0.png", "1.png", "2.png"]  # frame-index order
    assert targets[0].boxes.tolist() == [[3.0, 2.0, 10.0, 7.0]]  # x1, y1, x2, y2
    np.testing.assert_array_equal(targets[0].masks(), a[None])
    assert targets[1].rles == () and targets[1].masks().shape == (0, h, w)  # negative frame
    assert targets[2].boxes.tolist() == [[20.0, 10.0, 30.0, 20.0]]  # the empty mask is skipped
    assert targets[2].masks().dtype == np.uint8


def test_targets_from_proposals_bad_input(tmp_path: Path) -> None:
    index = frame_index([tmp_path / "0.png"], [(1, 0)], 20, 30)
    stray = proposals_of([(3, 5, rect(20, 30, 0, 0, 5, 5))])
    with pytest.raises(DataError, match=r"shard\.parquet: .*video 3 frame 5: not in the frame"):
        targets_from_proposals(index, stray, proposals_path="shard.parquet")
    wrong_size = proposals_of([(1, 0, rect(10, 30, 0, 0, 5, 5))])
    with pytest.raises(DataError, match=r"is 10x30 .* but the frame is 20x30"):
        targets_from_proposals(index, wrong_size, proposals_path="shard.parquet")
    with pytest.raises(DataError, match="missing columns"):
        targets_from_proposals(index, stray.drop(["rle"]), proposals_path="shard.parquet")


def test_read_frame_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_frame(tmp_path / "missing.png", 4, 4)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "f.png")
    with pytest.raises(DataError, match=r"f\.png: frame is 6x4 \(WxH\), the frame index says 6x5"):
        read_frame(tmp_path / "f.png", 5, 6)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match="cannot read image"):
        read_frame(tmp_path / "bad.png", 4, 4)


def test_self_training_merge() -> None:
    h, w = 20, 20
    p1, p2 = rect(h, w, 0, 0, 10, 10), rect(h, w, 12, 12, 20, 20)
    previous = MaskTargets.from_rles(Path("f.png"), h, w, [masks.encode(p1), masks.encode(p2)])
    # d1 is confident and has IoU 81/100 with p1, which it replaces; p2 overlaps no confident
    # detection and stays; d2 scores below 0.7 and is ignored.
    d1 = rect(h, w, 1, 1, 10, 10).astype(bool)
    d2 = rect(h, w, 0, 12, 5, 20).astype(bool)
    detections = [Detection((0, 12, 20, 5), 0.5, d2), Detection((1, 1, 10, 10), 0.95, d1)]
    merged = merge_self_training_targets(previous, detections, tiny_cfg())
    np.testing.assert_array_equal(merged.masks(), np.stack([d1, p2]).astype(np.uint8))
    assert merged.boxes.tolist() == [[1.0, 1.0, 10.0, 10.0], [12.0, 12.0, 20.0, 20.0]]
    unchanged = merge_self_training_targets(previous, detections[:1], tiny_cfg())
    assert unchanged.rles == previous.rles
    # A frame without pseudo-masks gains the confident detections.
    empty = MaskTargets.from_rles(Path("g.png"), h, w, [])
    assert len(merge_self_training_targets(empty, detections, tiny_cfg()).rles) == 1


# --------------------------------------------------------------------------------------------
# Output


def test_proposals_table_schema_order_and_boxes() -> None:
    h, w = 12, 16
    frames = frame_index([Path("a.png"), Path("b.png")], [(7, 0), (7, 1)], h, w)
    low = Detection((0.0, 0.0, 5.0, 5.0), 0.2, rect(h, w, 1, 2, 4, 6).astype(bool))
    high = Detection((3.0, 3.0, 9.0, 9.0), 0.9, rect(h, w, 5, 8, 11, 16).astype(bool))
    empty = Detection((1.0, 1.0, 2.0, 2.0), 0.95, np.zeros((h, w), bool))
    table = proposals_table(frames, [[low, empty, high], []])
    assert table.schema.equals(PROPOSALS.schema)
    rows = table.to_pylist()
    assert [(r["frame_index"], r["proposal_id"]) for r in rows] == [(0, 0), (0, 1)]
    assert [r["objectness"] for r in rows] == pytest.approx([0.9, 0.2])
    assert [r["box"] for r in rows] == [[8.0, 5.0, 8.0, 6.0], [2.0, 1.0, 4.0, 3.0]]  # from mask
    assert [r["area"] for r in rows] == [48, 12]
    assert {r["source"] for r in rows} == {"learned"}
    decoded = masks.decode({"size": [h, w], "counts": rows[0]["rle"]})
    np.testing.assert_array_equal(decoded, high.mask)


# --------------------------------------------------------------------------------------------
# Checkpoints and backbone weights


def test_checkpoint_round_trip_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(3)
    cfg = tiny_cfg()
    model = build_detector(cfg).eval()
    save_detector(model, cfg, tmp_path / "det.pth")
    loaded, loaded_cfg = load_detector(tmp_path / "det.pth")
    assert loaded_cfg == cfg
    images = [np.random.default_rng(i).integers(0, 255, (SIZE, SIZE, 3), np.uint8) for i in (0, 1)]
    ours, theirs = detect(model, images, cfg), detect(loaded, images, cfg)
    assert sum(len(d) for d in ours) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert [d.score for d in a] == [d.score for d in b]
        assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a, b, strict=True))


def test_wrong_checkpoints_raise_data_error(tmp_path: Path) -> None:
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(DataError, match=r"text\.pth: cannot read"):
        load_detector(tmp_path / "text.pth")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(DataError, match=r"resnet\.pth: not a learned-detector checkpoint"):
        load_detector(tmp_path / "resnet.pth")
    cfg = tiny_cfg()
    save_detector(build_detector(cfg), cfg, tmp_path / "det.pth")
    ckpt = torch.load(tmp_path / "det.pth", weights_only=True)
    ckpt["config"]["fpn_channels"] = 2 * cfg.fpn_channels  # the weights are of a narrower FPN
    torch.save(ckpt, tmp_path / "other.pth")
    with pytest.raises(DataError, match=r"other\.pth: weights do not fit .*shape mismatches"):
        load_detector(tmp_path / "other.pth")


def test_backbone_weights_loaded_or_rejected(tmp_path: Path) -> None:
    resnet = torchvision.models.resnet18()
    torch.save(resnet.state_dict(), tmp_path / "r18.pth")
    model = build_detector(tiny_cfg(backbone_weights=str(tmp_path / "r18.pth")))
    torch.testing.assert_close(model.backbone.body.conv1.weight, resnet.conv1.weight)
    with pytest.raises(DataError, match=r"r18\.pth: not a torchvision resnet50 state dict: .*"):
        build_detector(tiny_cfg(backbone="resnet50", backbone_weights=str(tmp_path / "r18.pth")))


def test_config_presets_and_validation() -> None:
    assert DetectorConfig.preset("real").backbone == "resnet50"
    with pytest.raises(ConfigError, match="unknown detector preset"):
        DetectorConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown detector setting 'lr_max'"):
        DetectorConfig.preset("smoke", lr_max=1.0)
    with pytest.raises(ConfigError, match="anchor_sizes"):
        DetectorConfig(anchor_sizes=(8, 16))


def test_detect_cli_rejects_a_colour_bandwidth_of_zero(capsys) -> None:
    from uvis.cli import main

    with pytest.raises(SystemExit) as exit_info:
        args = ["--frames", "f.parquet", "--out", "o.parquet", "--detector", "d.pth"]
        main(["proposals", "detect", *args, "--refine-sigma-rgb", "0"])
    assert exit_info.value.code == 2
    assert "--refine-sigma-rgb" in capsys.readouterr().err


def test_detection_settings_change_without_the_training_ones(capsys) -> None:
    from uvis.cli import main
    from uvis.proposals.detector import INFERENCE_SETTINGS

    with pytest.raises(SystemExit):
        main(["proposals", "detect", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in INFERENCE_SETTINGS)
    cfg = DetectorConfig.preset("smoke")
    tuned = cfg.for_detection(score_floor=0.3, detections_per_img=2)
    assert (tuned.score_floor, tuned.detections_per_img) == (0.3, 2)
    assert dataclasses.replace(tuned, score_floor=cfg.score_floor, detections_per_img=10) == (
        dataclasses.replace(cfg, detections_per_img=10)
    )
    with pytest.raises(ConfigError, match="'lr' cannot change at detection"):
        cfg.for_detection(lr=0.1)
    with pytest.raises(ConfigError, match=r"invalid detector setting score_floor=1\.5"):
        cfg.for_detection(score_floor=1.5)


# --------------------------------------------------------------------------------------------
# Training on squares


def squares_image(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A dark noisy image with ``n`` bright, non-overlapping squares (sides 12-22 px)."""
    image = rng.normal(30, 8, (SIZE, SIZE, 3))
    found: list[np.ndarray] = []
    while len(found) < n:
        side = int(rng.integers(12, 23))
        y, x = rng.integers(0, SIZE - side, 2)
        mask = rect(SIZE, SIZE, y, x, y + side, x + side)
        if any((mask & m).any() for m in found):
            continue
        image[mask > 0] = rng.normal(220, 8, 3)
        found.append(mask)
    return np.clip(image, 0, 255).astype(np.uint8), found


def write_squares(folder: Path, count: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """``count`` square images as PNG files; their frame index and ground-truth proposals."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    paths, rows = [], []
    for i in range(count):
        image, found = squares_image(rng, 1 + i % 2)
        Image.fromarray(image).save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
        rows += [(1, i, m) for m in found]
    return frame_index(paths, [(1, i) for i in range(count)], SIZE, SIZE), proposals_of(rows)


def recall_at_half(pred: pa.Table, gt: pa.Table, top: int) -> float:
    """Share of ground-truth masks matched (IoU >= 0.5) by one of the frame's top detections."""
    hits = 0
    for g in gt.to_pylist():
        frame = [
            p
            for p in pred.to_pylist()
            if p["frame_index"] == g["frame_index"] and p["proposal_id"] < top
        ]
        rles = [{"size": [SIZE, SIZE], "counts": p["rle"].encode()} for p in frame]
        target = [{"size": [SIZE, SIZE], "counts": g["rle"].encode()}]
        hits += bool(rles) and float(np.max(mask_utils.iou(rles, target, [0]))) >= 0.5
    return hits / gt.num_rows


@pytest.mark.slow
@pytest.mark.parametrize("copy_paste_rate", [0.0, 1.0])
def test_training_on_squares_finds_them(tmp_path: Path, copy_paste_rate: float) -> None:
    index, gt = write_squares(tmp_path / "train", 20, seed=0)
    cfg = tiny_cfg(
        iterations=60, warmup_iterations=10, self_training_rounds=1, copy_paste_rate=copy_paste_rate
    )
    path = tmp_path / "det.pth"
    report = train_detector(targets_from_proposals(index, gt), cfg, path, progress=False)
    log = report["rounds"][0]["log"]
    # Last window of steps against the first (pasted squares keep the loss higher).
    assert log[-1]["loss"] < (0.5 if copy_paste_rate == 0 else 0.7) * log[0]["loss"]
    assert [r["drop_loss"] for r in report["rounds"]] == [True, False]  # self-training: off
    assert path.with_suffix(".json").is_file()
    model, cfg = load_detector(path)
    index, gt = write_squares(tmp_path / "held_out", 10, seed=1)
    pred = detect_frames(model, index, cfg, progress=False)
    assert pred.schema.equals(PROPOSALS.schema)
    # Each held-out image holds one or two squares; its two best detections must find them.
    assert recall_at_half(pred, gt, top=2) >= 0.8
    # Detection-time settings act on the trained model as it is.
    one = detect_frames(model, index, cfg.for_detection(detections_per_img=1), progress=False)
    per_frame = np.bincount(one.column("frame_index").to_numpy())
    assert one.num_rows > 0 and per_frame.max() == 1


def test_refine_detections_snaps_confident_masks_to_the_object_and_keeps_the_rest() -> None:
    # A red 12 x 12 square on grey; the detector's mask is the square grown by 2 px on every
    # side (what a coarse mask head gives): refined, it is the square again.
    image = np.full((32, 40, 3), 120, np.uint8)
    image[8:20, 10:22] = (200, 30, 30)
    square = np.zeros((32, 40), bool)
    square[8:20, 10:22] = True
    coarse = np.zeros_like(square)
    coarse[6:22, 8:24] = True
    box = (8.0, 6.0, 24.0, 22.0)
    confident = detector.Detection(box, 0.9, coarse)
    doubtful = detector.Detection(box, 0.3, coarse)
    out = detector.refine_detections(image, [confident, doubtful], "bilateral", min_score=0.5)
    assert np.array_equal(out[0].mask, square)
    assert out[0].score == 0.9 and out[0].box == box
    assert out[1] is doubtful  # below min_score: left as the detector gave it
    assert detector.refine_detections(image, [confident], "none", 0.5)[0] is confident


def test_refine_detections_colour_bandwidth_reaches_noisy_edges() -> None:
    image, square, coarse = noisy_square()
    det = detector.Detection((8.0, 6.0, 24.0, 22.0), 0.9, coarse)
    cutler = detector.refine_detections(image, [det], "bilateral", 0.5)[0].mask
    wide = BilateralParams(bilateral_sigma_rgb=20.0)
    snapped = detector.refine_detections(image, [det], "bilateral", 0.5, wide)[0].mask
    assert np.array_equal(snapped, square)
    assert mask_iou(cutler, square) < 0.95 and cutler.sum() > square.sum()


def test_refine_detections_keeps_the_detector_mask_when_refinement_disagrees() -> None:
    # A 4 x 4 mask inside the 12 x 12 square: the CRF either grows it to the square or erases
    # it, either way far from the detector's mask (IoU < 0.5), so the detector's mask stays.
    image = np.full((32, 40, 3), 120, np.uint8)
    image[8:20, 10:22] = (200, 30, 30)
    stray = np.zeros((32, 40), bool)
    stray[12:16, 14:18] = True
    det = detector.Detection((14.0, 12.0, 18.0, 16.0), 0.95, stray)
    refined = refine_mask(image, stray[None], "bilateral", fill_holes=True)[0]
    assert mask_iou(stray, refined) < detector.MIN_REFINED_IOU  # the premise
    assert detector.refine_detections(image, [det], "bilateral", 0.5)[0] is det


def _box_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((20, 30), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _det(mask: np.ndarray, score: float) -> detector.Detection:
    ys, xs = np.nonzero(mask) if mask.any() else ([0], [0])
    return detector.Detection(
        (float(min(xs)), float(min(ys)), float(max(xs) + 1), float(max(ys) + 1)), score, mask
    )


def test_a_detection_holding_two_more_confident_ones_is_a_group() -> None:
    left, right = _box_mask(2, 8, 2, 8), _box_mask(2, 8, 20, 26)
    both = _det(left | right, 0.6)  # a MaskCut-style union of two objects
    dets = [_det(left, 0.9), _det(right, 0.5), both]
    assert detector.group_flags(dets) == [False, False, True]
    assert detector.suppress_groups(dets) == dets[:2]
    # Above everything inside it, it may be one object whose parts were also found: kept.
    top = dataclasses.replace(both, score=0.95)
    assert detector.group_flags([dets[0], dets[1], top]) == [False, False, False]


def test_a_group_needs_two_members_each_mostly_inside() -> None:
    left, right = _box_mask(2, 8, 2, 8), _box_mask(2, 8, 20, 26)
    union = left | right
    # One member only: not a group.
    assert detector.group_flags([_det(left, 0.9), _det(union, 0.5)]) == [False, False]
    # The second candidate sticks out: columns 22-27 against the union's 20-25, 4/6 inside.
    sticking_out = _box_mask(2, 8, 22, 28)
    dets = [_det(left, 0.9), _det(sticking_out, 0.9), _det(union, 0.5)]
    assert detector.group_flags(dets) == [False, False, False]
    # 80 % inside is enough (GROUP_INSIDE): columns 21-26, 5/6 inside.
    mostly = _box_mask(2, 8, 21, 27)
    dets = [_det(left, 0.9), _det(mostly, 0.9), _det(union, 0.5)]
    assert detector.group_flags(dets) == [False, False, True]
    # An empty mask is inside everything and counts as no member.
    empty = np.zeros((20, 30), bool)
    dets = [_det(left, 0.9), detector.Detection((0.0, 0.0, 1.0, 1.0), 0.9, empty), _det(union, 0.5)]
    assert detector.group_flags(dets) == [False, False, False]
