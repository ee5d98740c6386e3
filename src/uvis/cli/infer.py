"""``uvis infer``: run a trained bottom-up model over a split.

``uvis infer tagvis`` segments every video of a frame index with a tag-based model
(:mod:`uvis.tagvis.infer`): YouTube-VIS results for ``uvis eval ytvis``, DAVIS palette PNGs for
``uvis eval davis`` and the inference speed. torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from uvis.cli.types import add_device_option, add_set_option, positive_int
from uvis.presets import parse_overrides


def _tagvis(args: argparse.Namespace) -> int:
    import torch

    from uvis.devices import resolve_device
    from uvis.inference.videos import frame_index_videos
    from uvis.presets import config_from_dict
    from uvis.tagvis.checkpoint import load_tagvis_model
    from uvis.tagvis.infer import InferenceConfig, infer_videos

    cfg = config_from_dict(InferenceConfig, parse_overrides(args.set), what="tagvis inference")
    device = resolve_device(args.device, "tagvis inference")
    if device == "cpu":
        torch.set_num_threads(args.threads)
    model, meta = load_tagvis_model(args.checkpoint, device=device)
    videos = frame_index_videos(args.frames)
    summary = infer_videos(
        model,
        meta,
        videos,
        cfg,
        results_path=args.out,
        davis_dir=args.davis,
        speed_path=args.speed,
        tracks_path=args.tracks,
        progress=not args.no_progress,
    )
    speed = summary.speed
    print(
        f"infer tagvis: {summary.videos} videos, {summary.instances} instances, "
        f"{summary.results} results in {speed['seconds']:.1f} s ({speed['fps']} frames/s, "
        f"network {speed['model_fps']} frames/s on {speed['device']}) -> {args.out}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``uvis infer tagvis ...``."""
    p = sub.add_parser("infer", help="run a trained bottom-up model (tag-based) over a split")
    models = p.add_subparsers(dest="model_kind", metavar="MODEL")
    models.required = True
    t = models.add_parser(
        "tagvis",
        help="segment every video of a frame index with a tag-based model",
        description="Each video is one clip of T evenly spaced frames; tags are clustered "
        "into instances by 1-D mean-shift within the semantic foreground, classes and scores "
        "come from the semantic branch, masks of skipped frames are interpolated. Writes "
        "YouTube-VIS results (OUT), DAVIS palette PNGs (--davis) and the speed (--speed).",
    )
    t.add_argument("--checkpoint", type=Path, required=True, help="tag-based model .pth")
    t.add_argument("--frames", type=Path, required=True, help="frame index Parquet of the split")
    t.add_argument("--out", type=Path, required=True, help="YouTube-VIS results JSON to write")
    t.add_argument("--davis", type=Path, help="folder for DAVIS PNGs (<video>/<frame>.png)")
    t.add_argument("--speed", type=Path, help="JSON file for frames per second of inference")
    t.add_argument("--tracks", type=Path, help="also write the tracks Parquet here")
    add_set_option(
        t, "override an InferenceConfig field, e.g. --set bandwidth=0.5 --set min_area=0.002"
    )
    t.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    add_device_option(t)
    t.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    t.set_defaults(func=_tagvis)
