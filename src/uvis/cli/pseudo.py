"""``uvis pseudo``: the pseudo-label stages (CLIP scores, filtering, quality report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _filter(args: argparse.Namespace) -> int:
    from uvis.prototypes import PMFConfig
    from uvis.pseudo.filtering import filter_files

    cfg = PMFConfig(
        objectness_threshold=args.objectness_threshold,
        clip_threshold=args.clip_threshold,
        tau=args.tau,
        k_ratio=args.k_ratio,
        k_min=args.k_min,
        k_max=args.k_max,
        seed=args.seed,
    )
    counts = filter_files(args.proposals, args.clip, args.out, cfg)
    print(
        f"filter: {counts['none']} pseudo-labels; kept {counts['objectness']} (+mask score), "
        f"{counts['clip']} (+CLIP score), {counts['pmf']} (+PMF, tau={args.tau}); "
        f"{counts['classes_with_prototypes']} classes with prototypes; "
        f"{counts['invalid_embeddings']} unusable embeddings -> {args.out}"
    )
    return 0


def _quality(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from uvis.data import load_ytvis
    from uvis.pseudo.quality import measure_quality, quality_records, write_quality

    gt = load_ytvis(args.gt_json, args.images, check_files=False)
    if args.stride > 1:
        gt = gt.subsample(args.stride)
    rows = measure_quality(pq.read_table(args.labels), gt, iou_threshold=args.iou)
    write_quality(rows, args.out, title=args.title or f"Pseudo-label quality: {args.labels}")
    print(json.dumps(quality_records(rows)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pseudo", help="pseudo-label stages (UVIS §3.1)")
    ps = p.add_subparsers(dest="stage", metavar="STAGE")
    ps.required = True

    f = ps.add_parser(
        "filter", help="CLIP score / objectness thresholds and prototype memory filtering"
    )
    f.add_argument("--proposals", type=Path, nargs="+", required=True, help="proposal shards")
    f.add_argument("--clip", type=Path, nargs="+", required=True, help="CLIP-score shards")
    f.add_argument("--out", type=Path, required=True, help="pseudo-label Parquet")
    f.add_argument("--objectness-threshold", type=float, default=0.7)
    f.add_argument("--clip-threshold", type=float, default=0.7)
    f.add_argument("--tau", type=float, default=0.7, help="PMF similarity threshold")
    f.add_argument("--k-ratio", type=float, default=0.05, help="prototypes per class instance")
    f.add_argument("--k-min", type=int, default=1)
    f.add_argument("--k-max", type=int, default=64)
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=_filter)

    q = ps.add_parser("quality", help="measure pseudo-labels against ground truth")
    q.add_argument("labels", type=Path, help="pseudo-label Parquet (filter output)")
    q.add_argument("--gt-json", type=Path, required=True)
    q.add_argument("--images", type=Path, required=True, help="JPEGImages folder of the split")
    q.add_argument("--stride", type=int, default=1, help="frame stride used by the frame index")
    q.add_argument("--iou", type=float, default=0.5)
    q.add_argument("--title")
    q.add_argument("--out", type=Path, required=True, help="Markdown table (.csv/.json beside)")
    q.set_defaults(func=_quality)
