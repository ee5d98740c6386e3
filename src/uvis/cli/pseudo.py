"""``uvis pseudo``: the pseudo-label stages (CLIP scores, filtering, quality report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uvis.cli.types import (
    add_device_option,
    finite_float,
    fraction,
    nonnegative_int,
    positive_float,
    positive_int,
    unit_float,
)
from uvis.devices import resolve_device


def vocabulary_from_args(args: argparse.Namespace):
    """Categories from ``--categories-json`` (a YouTube-VIS JSON) or ``--vocabulary``."""
    from uvis.data.frames import Category
    from uvis.data.videos import vocabulary_option
    from uvis.errors import DataError

    if args.categories_json is not None:
        try:
            cats = json.loads(Path(args.categories_json).read_text())["categories"]
            return tuple(Category(int(c["id"]), str(c["name"])) for c in cats)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                args.categories_json, f"no YouTube-VIS 'categories' list: {exc}"
            ) from exc
    return vocabulary_option(args.vocabulary)


def _clip_scores(args: argparse.Namespace) -> int:
    import torch

    from uvis.foundation.clip import create_clip
    from uvis.pseudo.clip_scores import score_proposals

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device, "clip-scores")
    bundle = create_clip(
        args.model, weights=args.weights, device=device, resize_mode=args.resize_mode
    )
    stats = score_proposals(
        args.frames,
        args.proposals,
        args.out,
        bundle,
        vocabulary_from_args(args),
        templates=args.template or ["a photo of a {}."],
        context=args.context,
        mask_background=args.mask_background,
        flip=args.flip,
        batch_size=args.batch_size,
    )
    print(
        f"clip-scores: {stats['proposals']} proposals on {stats['frames']} frames "
        f"({stats['nan_embeddings']} NaN embeddings) -> {args.out}"
    )
    return 0


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
        prototype_fraction=args.prototype_fraction,
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
    from uvis.data import load_ytvis
    from uvis.pseudo.quality import measure_quality, quality_records, write_quality
    from uvis.schemas import PSEUDO_LABELS

    gt = load_ytvis(args.gt_json, args.images, check_files=False)
    if args.stride > 1:
        gt = gt.subsample(args.stride)
    rows = measure_quality(PSEUDO_LABELS.read(args.labels), gt, iou_threshold=args.iou)
    write_quality(rows, args.out, title=args.title or f"Pseudo-label quality: {args.labels}")
    print(json.dumps(quality_records(rows)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pseudo", help="pseudo-label stages (UVIS §3.1)")
    ps = p.add_subparsers(dest="stage", metavar="STAGE")
    ps.required = True

    c = ps.add_parser("clip-scores", help="label proposals with CLIP (UVIS eq. 1)")
    c.add_argument("--frames", type=Path, required=True, help="frame index Parquet")
    c.add_argument("--proposals", type=Path, required=True, help="proposals shard")
    c.add_argument("--out", type=Path, required=True, help="CLIP-scores shard")
    voc = c.add_mutually_exclusive_group(required=True)
    voc.add_argument("--categories-json", type=Path, help="vocabulary of a YouTube-VIS JSON")
    voc.add_argument("--vocabulary", help="file with one name per line, or a comma-separated list")
    c.add_argument("--model", required=True, help="open_clip model name")
    c.add_argument(
        "--weights",
        required=True,
        action="append",
        help="open_clip checkpoint file or known name; repeat it to score with the ensemble of "
        "several checkpoints of the architecture",
    )
    c.add_argument("--template", action="append", help="prompt template with {} (repeatable)")
    c.add_argument(
        "--context", type=finite_float, default=0.1, help="crop margin, fraction of box size"
    )
    c.add_argument("--mask-background", choices=["mean", "blur"], help="fill outside the mask")
    c.add_argument(
        "--flip",
        action="store_true",
        help="average each crop's embedding with its horizontal mirror's (twice the cost)",
    )
    c.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="crops per CLIP forward pass (default 256)",
    )
    c.add_argument(
        "--resize-mode",
        choices=["shortest", "longest", "squash"],
        help="how crops are fitted to the model's input (default: the model's own)",
    )
    c.add_argument(
        "--threads", type=positive_int, default=1, help="CPU threads for torch (default 1)"
    )
    add_device_option(c)
    c.set_defaults(func=_clip_scores)

    f = ps.add_parser(
        "filter", help="CLIP score / objectness thresholds and prototype memory filtering"
    )
    f.add_argument("--proposals", type=Path, nargs="+", required=True, help="proposal shards")
    f.add_argument("--clip", type=Path, nargs="+", required=True, help="CLIP-score shards")
    f.add_argument("--out", type=Path, required=True, help="pseudo-label Parquet")
    f.add_argument(
        "--objectness-threshold",
        type=unit_float,
        default=0.7,
        help="smallest objectness a proposal keeps (filter 1; paper 0.7)",
    )
    f.add_argument(
        "--clip-threshold",
        type=unit_float,
        default=0.7,
        help="smallest CLIP class score a proposal keeps (filter 2; paper 0.7)",
    )
    f.add_argument("--tau", type=finite_float, default=0.7, help="PMF similarity threshold")
    f.add_argument(
        "--k-ratio", type=positive_float, default=0.05, help="prototypes per class instance"
    )
    f.add_argument(
        "--k-min", type=positive_int, default=1, help="fewest prototypes per class (default 1)"
    )
    f.add_argument(
        "--k-max", type=positive_int, default=64, help="most prototypes per class (default 64)"
    )
    f.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of the k-means (default 0)"
    )
    f.add_argument(
        "--prototype-fraction",
        type=unit_float,
        default=1.0,
        help="share of a class's members, highest CLIP score first, that build its prototypes "
        "(default 1.0: all, the paper's rule)",
    )
    f.set_defaults(func=_filter)

    q = ps.add_parser("quality", help="measure pseudo-labels against ground truth")
    q.add_argument("labels", type=Path, help="pseudo-label Parquet (filter output)")
    q.add_argument(
        "--gt-json", type=Path, required=True, help="the split's YouTube-VIS ground truth"
    )
    q.add_argument("--images", type=Path, required=True, help="JPEGImages folder of the split")
    q.add_argument(
        "--stride", type=positive_int, default=1, help="frame stride used by the frame index"
    )
    q.add_argument(
        "--iou", type=fraction, default=0.5, help="mask IoU to count as a match (default 0.5)"
    )
    q.add_argument("--title", help="title of the table (default: one naming the split)")
    q.add_argument("--out", type=Path, required=True, help="Markdown table (.csv/.json beside)")
    q.set_defaults(func=_quality)
