"""``uvis track``: video results from a VIS model's per-frame queries, or from DeepSORT."""

from __future__ import annotations

import argparse
from pathlib import Path

from uvis.cli.types import (
    CUTLER_SIGMA_RGB,
    REFINE_CHOICES,
    add_device_option,
    add_set_option,
    finite_float,
    positive_float,
    positive_int,
    unit_float,
)


def _clip_files(paths: list[Path]) -> list[Path]:
    """CLIP-score shards: the files given, and the ``*.parquet`` files of folders given."""
    from uvis.errors import DataError

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.parquet"))
            if not found:
                raise DataError(path, "folder holds no CLIP-score .parquet files")
            files += found
        else:
            files.append(path)
    return files


def _deepsort(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from uvis.presets import config_from_dict, parse_overrides
    from uvis.tracking.deepsort import DeepSortConfig
    from uvis.tracking.deepsort_run import deepsort_files

    config = config_from_dict(DeepSortConfig, parse_overrides(args.set), what="deepsort")
    counts = deepsort_files(
        args.labels,
        _clip_files(args.clip_scores),
        args.frames,
        args.categories_json,
        args.out,
        config=config,
        level=args.level,
        tau=args.tau,
        zip_path=args.out.with_suffix(".zip") if args.zip else None,
        tracks_path=args.tracks,
    )
    print(
        f"deepsort: {counts['detections']} detections in {counts['videos']} videos -> "
        f"{counts['results']} tracks in {args.out} ({asdict(config)})"
    )
    return 0


def _vis(args: argparse.Namespace) -> int:
    import torch

    from uvis.devices import resolve_device
    from uvis.inference import frame_index_videos, track_videos
    from uvis.model import load_vis_model
    from uvis.proposals.refine import BilateralParams

    torch.set_num_threads(args.threads)
    model, meta = load_vis_model(args.checkpoint, device=resolve_device(args.device, "track"))
    n = track_videos(
        model,
        frame_index_videos(args.frames),
        args.out,
        category_ids=meta.category_ids,
        lam=args.lam,
        top_k=args.top_k,
        batch_size=args.batch_size,
        tracks_path=args.tracks,
        zip_path=args.out.with_suffix(".zip") if args.zip else None,
        progress=not args.no_progress,
        refine=args.refine,
        refine_params=BilateralParams(bilateral_sigma_rgb=args.refine_sigma_rgb),
        mask_score=args.mask_score,
    )
    print(
        f"track vis: {n} results (lambda={args.lam}, top-k={args.top_k}, "
        f"refine={args.refine}, mask-score={args.mask_score}) -> {args.out}"
    )
    return 0


def add_tracking_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``uvis track vis`` and ``uvis segment``."""
    p.add_argument(
        "--lam",
        type=unit_float,
        default=0.5,
        help="tracking memory weight, UVIS eq. 2 (paper: 0.5); 1 = plain MinVIS matching",
    )
    p.add_argument(
        "--top-k", type=positive_int, default=10, help="(query, class) pairs kept per video"
    )
    p.add_argument(
        "--refine",
        choices=REFINE_CHOICES,
        default="none",
        help="snap each frame's masks to colour edges before tracking (bilateral: CutLER's CRF "
        "on the output, not in MinVIS/UVIS; none: the model's masks, as the papers)",
    )
    p.add_argument(
        "--refine-sigma-rgb",
        type=positive_float,
        default=CUTLER_SIGMA_RGB,
        help="colour bandwidth of --refine's appearance kernel, on 0-255 RGB (default "
        f"{CUTLER_SIGMA_RGB:g}, CutLER's)",
    )
    p.add_argument(
        "--mask-score",
        action="store_true",
        help="rank (query, class) pairs by class score times the mask's mean foreground "
        "probability, averaged over frames (Mask2Former's instance score; MinVIS and UVIS rank "
        "by class score alone)",
    )
    p.add_argument("--batch-size", type=positive_int, default=8, help="frames per model forward")
    add_device_option(p)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="video results from per-frame predictions")
    ts = p.add_subparsers(dest="tracker", metavar="TRACKER")
    ts.required = True

    v = ts.add_parser(
        "vis",
        help="run a trained VIS model on a split and track its queries (UVIS section 3.3)",
        description="Per-frame queries of the model, matched frame to frame by Hungarian "
        "matching on cosine similarity against the tracking memory (UVIS eqs. 2-3); top-k "
        "(query, class) pairs per video as YouTube-VIS results.",
    )
    v.add_argument("--checkpoint", type=Path, required=True, help="model_final.pth of training")
    v.add_argument("--frames", type=Path, required=True, help="frame index Parquet of the split")
    v.add_argument("--out", type=Path, required=True, help="results JSON")
    v.add_argument("--tracks", type=Path, help="also write the tracks Parquet here")
    v.add_argument(
        "--zip", action="store_true", help="also write OUT with suffix .zip (results.json inside)"
    )
    add_tracking_options(v)
    v.set_defaults(func=_vis)

    d = ts.add_parser(
        "deepsort",
        help="DeepSORT baseline on pseudo-labels and their CLIP embeddings (UVIS Table 1)",
        description="Tracks the eval split's per-frame pseudo-labels with DeepSORT (Kalman "
        "motion gate, CLIP appearance, matching cascade) and writes YouTube-VIS results.",
    )
    d.add_argument("--labels", type=Path, required=True, help="pseudo-label Parquet")
    d.add_argument(
        "--clip-scores",
        type=Path,
        nargs="+",
        required=True,
        help="CLIP-score shards, or folders of them",
    )
    d.add_argument("--frames", type=Path, required=True, help="frame index Parquet")
    d.add_argument(
        "--categories-json",
        type=Path,
        required=True,
        help="YouTube-VIS JSON whose categories the class ids refer to",
    )
    d.add_argument(
        "--level",
        choices=("none", "objectness", "clip", "pmf"),
        default="pmf",
        help="pseudo-label filter level (UVIS Table 2's rows; uvis.pseudo.levels.LEVELS)",
    )
    d.add_argument("--tau", type=finite_float, help="PMF threshold (level pmf; default: as stored)")
    d.add_argument("--out", type=Path, required=True, help="results JSON")
    d.add_argument("--tracks", type=Path, help="also write the tracks Parquet here")
    d.add_argument(
        "--zip", action="store_true", help="also write OUT with suffix .zip (results.json inside)"
    )
    add_set_option(
        d,
        "override a DeepSortConfig field (uvis.tracking.deepsort), e.g. --set max_age=30 "
        "--set max_cosine_distance=0.3",
    )
    d.set_defaults(func=_deepsort)
