"""``uvis proposals``: class-agnostic mask proposals (MaskCut, and the detector trained on them)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uvis.cli.types import (
    CUTLER_SIGMA_RGB,
    REFINE_CHOICES,
    add_device_option,
    add_set_option,
    finite_float,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_float,
)
from uvis.devices import resolve_device


def _json_dict(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _maskcut(args: argparse.Namespace) -> int:
    import torch

    from uvis.foundation.ssl import create_ssl_vit
    from uvis.proposals.maskcut import MaskCutConfig
    from uvis.proposals.stage import maskcut_shard

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "maskcut")
    model = create_ssl_vit(args.arch, weights=args.weights, arch_kwargs=args.arch_kwargs).to(device)
    cfg = MaskCutConfig(
        tau=args.tau,
        num_masks=args.num_masks,
        refine=args.refine,
        min_area_frac=args.min_area_frac,
        max_area_frac=args.max_area_frac,
        split_area_frac=args.split_area_frac,
        device=device,
    )
    stats = maskcut_shard(
        args.frames,
        args.out,
        model,
        cfg,
        shard=args.shard,
        num_shards=args.num_shards,
        batch_size=args.batch_size,
        input_short=args.input_short or None,
        frame_stride=args.frame_stride,
    )
    print(
        f"maskcut shard {args.shard}/{args.num_shards}: {stats['proposals']} masks on "
        f"{stats['frames']} frames ({stats['empty_frames']} without a mask) -> {args.out}"
    )
    return 0


def _train_detector(args: argparse.Namespace) -> int:
    import torch

    from uvis.data.frame_index import FrameIndex
    from uvis.presets import parse_overrides
    from uvis.proposals.detector import DetectorConfig, targets_from_proposals, train_detector
    from uvis.pseudo.filtering import read_shards
    from uvis.schemas import PROPOSALS

    torch.set_num_threads(args.threads)
    cfg = DetectorConfig.preset(args.preset, **parse_overrides(args.set))
    frames = FrameIndex.read(args.frames).table
    masks = read_shards(args.masks, PROPOSALS)
    targets = targets_from_proposals(frames, masks, proposals_path=str(args.masks[0].parent))
    report = train_detector(targets, cfg, args.out)
    print(
        f"train-detector: {report['frames'] - report['frames_without_masks']} frames, "
        f"{report['masks']} masks, final loss {report['final_loss']:.3f}, "
        f"{report['seconds']:.0f} s -> {args.out}"
    )
    return 0


def _detect(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq
    import torch

    from uvis.data.frame_index import FrameIndex
    from uvis.io import atomic_path
    from uvis.presets import parse_overrides
    from uvis.proposals.detector import detect_frames, load_detector
    from uvis.proposals.refine import BilateralParams

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "detect")
    model, cfg = load_detector(args.detector, device=device)
    cfg = cfg.for_detection(**parse_overrides(args.set))
    frames = FrameIndex.read(args.frames).shard(args.num_shards, args.shard).table
    table = detect_frames(
        model,
        frames,
        cfg,
        refine=args.refine,
        refine_min_score=args.refine_min_score,
        refine_params=BilateralParams(bilateral_sigma_rgb=args.refine_sigma_rgb),
        drop_groups=args.drop_groups,
    )
    with atomic_path(args.out) as tmp:
        pq.write_table(table, tmp)
    print(
        f"detect shard {args.shard}/{args.num_shards}: {table.num_rows} proposals on "
        f"{frames.num_rows} frames -> {args.out}"
    )
    return 0


def _cutler(args: argparse.Namespace) -> int:
    import torch

    from uvis.proposals.cutler import CutlerSettings, cutler_shard

    torch.set_num_threads(args.threads)
    settings = CutlerSettings(
        score_threshold=args.score_threshold,
        nms_threshold=args.nms_threshold,
        detections_per_image=args.detections_per_image,
        rpn_proposals=args.rpn_proposals,
        min_size=args.min_size,
        max_size=args.max_size,
        batch_size=args.batch_size,
    )
    stats = cutler_shard(
        args.frames,
        args.weights,
        out=args.out,
        settings=settings,
        shard=args.shard,
        num_shards=args.num_shards,
    )
    print(
        f"cutler shard {args.shard}/{args.num_shards}: {stats['proposals']} proposals on "
        f"{stats['frames']} frames ({stats['empty_frames']} without one) -> {args.out}"
    )
    return 0


def _shard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=Path, required=True, help="frame index Parquet")
    p.add_argument(
        "--shard", type=nonnegative_int, default=0, help="which shard (0-based; default 0)"
    )
    p.add_argument(
        "--num-shards",
        type=positive_int,
        default=1,
        help="shards the split is cut into, by whole videos (default 1)",
    )
    p.add_argument("--out", type=Path, required=True, help="proposals Parquet of this shard")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("proposals", help="class-agnostic mask proposals (UVIS §3.1)")
    ps = p.add_subparsers(dest="backend", metavar="STEP")
    ps.required = True

    m = ps.add_parser("maskcut", help="MaskCut on the last-block keys of a self-supervised ViT")
    _shard_args(m)
    m.add_argument("--arch", required=True, help="timm architecture, e.g. vit_base_patch8_224")
    m.add_argument("--arch-kwargs", type=_json_dict, default={}, help="JSON constructor overrides")
    m.add_argument("--weights", required=True, help="DINO checkpoint file or known weight name")
    m.add_argument("--tau", type=finite_float, default=0.15, help="affinity threshold")
    m.add_argument("--num-masks", type=positive_int, default=3, help="masks per frame (N)")
    m.add_argument(
        "--refine",
        choices=REFINE_CHOICES,
        default="bilateral",
        help="MaskCut's post-processing of its masks (default bilateral: its CRF)",
    )
    m.add_argument(
        "--batch-size", type=positive_int, default=8, help="frames per forward pass (default 8)"
    )
    m.add_argument(
        "--input-short",
        type=nonnegative_int,
        default=0,
        help="resize frames so the short side is this (0, the default: as stored)",
    )
    m.add_argument(
        "--min-area-frac",
        type=unit_float,
        default=0.01,
        help="drop a later mask covering at most this fraction of the patch grid",
    )
    m.add_argument(
        "--max-area-frac",
        type=unit_float,
        default=1.0,
        help="drop a mask covering more than this fraction of the image (1, the default: off)",
    )
    m.add_argument(
        "--split-area-frac",
        type=unit_float,
        default=1.0,
        help="cut a patch mask covering more than this fraction of the grid into its parts "
        "(1, the default: off)",
    )
    m.add_argument(
        "--frame-stride",
        type=positive_int,
        default=1,
        help="MaskCut on every N-th frame of each video only (the detector trained on the "
        "masks generalises to the others; default 1: every frame)",
    )
    add_device_option(m)
    m.set_defaults(func=_maskcut)

    t = ps.add_parser(
        "train-detector",
        help="CutLER's learn step: class-agnostic Mask R-CNN trained on MaskCut masks",
    )
    t.add_argument("--frames", type=Path, required=True, help="frame index of the masks' split")
    t.add_argument("--masks", type=Path, nargs="+", required=True, help="MaskCut proposal shards")
    t.add_argument("--preset", default="default", help="smoke, default or real")
    add_set_option(t, "override a DetectorConfig field, e.g. --set iterations=500")
    t.add_argument("--out", type=Path, required=True, help="checkpoint (+ .json report)")
    t.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch")
    t.set_defaults(func=_train_detector)

    d = ps.add_parser("detect", help="proposals with objectness from the trained detector")
    _shard_args(d)
    d.add_argument("--detector", type=Path, required=True, help="train-detector checkpoint")
    d.add_argument(
        "--refine",
        choices=REFINE_CHOICES,
        default="none",
        help="snap the masks of detections scoring >= --refine-min-score to colour edges with "
        "MaskCut's CRF (default none: the mask head's masks as they are)",
    )
    d.add_argument(
        "--refine-min-score",
        type=unit_float,
        default=0.5,
        help="smallest score of a detection --refine snaps (default 0.5)",
    )
    d.add_argument(
        "--refine-sigma-rgb",
        type=positive_float,
        default=CUTLER_SIGMA_RGB,
        help="colour bandwidth of the CRF's appearance kernel, on 0-255 RGB (default "
        f"{CUTLER_SIGMA_RGB:g}, CutLER's)",
    )
    d.add_argument(
        "--drop-groups",
        action="store_true",
        help="leave out detections that hold two or more other detections of the frame, one of "
        "them scoring higher (masks of several objects at once; default: keep them, as CutLER)",
    )
    add_set_option(
        d,
        "a detection-time setting instead of the checkpoint's (repeatable): "
        "detections_per_img, score_floor, nms_thresh, mask_threshold or batch_size",
    )
    add_device_option(d)
    d.set_defaults(func=_detect)

    c = ps.add_parser("cutler", help="CutLER's released Cascade Mask R-CNN (needs detectron2)")
    _shard_args(c)
    c.add_argument(
        "--weights", default="cutler_cascade", help="CutLER checkpoint file or known weight name"
    )
    c.add_argument(
        "--score-threshold", type=unit_float, default=0.05, help="keep scores above this"
    )
    c.add_argument("--nms-threshold", type=unit_float, default=0.5, help="box NMS IoU")
    c.add_argument(
        "--detections-per-image",
        type=positive_int,
        default=100,
        help="most detections kept per frame (default 100, detectron2's)",
    )
    c.add_argument(
        "--rpn-proposals", type=positive_int, default=1000, help="RPN proposals per image"
    )
    c.add_argument("--min-size", type=positive_int, default=800, help="test-time short side")
    c.add_argument("--max-size", type=positive_int, default=1333, help="test-time long-side limit")
    c.add_argument(
        "--batch-size", type=positive_int, default=4, help="frames per forward pass (default 4)"
    )
    c.set_defaults(func=_cutler)
