"""``uvis segment VIDEO --checkpoint CKPT --vocab a,b,c``: one video, outside Snakemake."""

from __future__ import annotations

import argparse
from pathlib import Path

from uvis.cli.types import positive_int, unit_float


def _segment(args: argparse.Namespace) -> int:
    import torch

    from uvis.data.videos import vocabulary_option
    from uvis.devices import resolve_device
    from uvis.inference.predictor import VideoPredictor
    from uvis.inference.segment import segment_video
    from uvis.proposals.refine import BilateralParams

    torch.set_num_threads(args.threads)
    vocab = [c.name for c in vocabulary_option(args.vocab)] if args.vocab else None
    predictor = VideoPredictor.from_checkpoint(
        args.checkpoint,
        vocabulary=vocab,
        device=resolve_device(args.device, "segment"),
        lam=args.lam,
        refine=args.refine,
        refine_params=BilateralParams(bilateral_sigma_rgb=args.refine_sigma_rgb),
        mask_score=args.mask_score,
        top_k=args.top_k,
        batch_size=args.batch_size,
    )
    out_dir = args.out or Path(args.video).with_suffix("")
    out = segment_video(
        args.video,
        predictor,
        out_dir,
        stride=args.stride,
        resize_short=args.resize_short,
        overlay=not args.no_overlay,
        min_score=args.min_score,
        progress=not args.no_progress,
    )
    print(
        f"segment: {out.frames} frames, {out.tracks} tracks -> {out.results}"
        + (f", {out.overlay}" if out.overlay else "")
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from uvis.cli.track import add_tracking_options

    p = sub.add_parser(
        "segment",
        help="segment, classify and track the objects of one video file (results + overlay)",
        description="Decodes VIDEO, runs a trained VIS model with query tracking and writes "
        "OUT/results.json (YouTube-VIS format), OUT/categories.json and OUT/overlay.mp4.",
    )
    p.add_argument("video", type=Path, metavar="VIDEO", help="a video file (.mp4, .avi, ...)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a trained model_final.pth")
    p.add_argument(
        "--vocabulary",
        "--vocab",
        dest="vocab",
        help="class names the model must have been trained on, comma-separated or a file with "
        "one per line (checked against the checkpoint; default: the checkpoint's)",
    )
    p.add_argument("--out", type=Path, help="output folder (default: VIDEO without its suffix)")
    p.add_argument("--stride", type=positive_int, default=1, help="keep every N-th frame")
    p.add_argument(
        "--resize-short", type=positive_int, help="resize frames so the short side is this"
    )
    p.add_argument(
        "--min-score", type=unit_float, default=0.3, help="overlay: smallest score shown"
    )
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    add_tracking_options(p)
    p.set_defaults(func=_segment)
