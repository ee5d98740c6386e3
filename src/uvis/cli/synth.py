"""``uvis synth``: generate the embedded synthetic video world."""

from __future__ import annotations

import argparse
from pathlib import Path

from uvis.cli.types import add_set_option, nonnegative_int
from uvis.presets import parse_overrides


def _synth(args: argparse.Namespace) -> int:
    from uvis.synth import SynthParams, generate_world

    overrides = parse_overrides(args.set)
    if args.seed is not None:
        overrides["seed"] = args.seed
    params = SynthParams.preset(args.preset, **overrides)
    manifest = generate_world(args.out_dir, params, progress=not args.no_progress)
    counts = manifest["counts"]
    train, valid = counts["train"], counts["valid"]
    print(
        f"synth: wrote {train['videos']} train + {valid['videos']} valid videos "
        f"({train['frames'] + valid['frames']} frames, "
        f"{train['instances'] + valid['instances']} instances), "
        f"{counts['unlabeled_images']} unlabeled + {counts['captioned_images']} captioned images "
        f"to {args.out_dir} in {manifest['generation_seconds']:.1f} s"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``uvis synth OUT_DIR [--preset NAME] [--seed N] [--set key=value ...]``."""
    p = sub.add_parser(
        "synth",
        help="generate the synthetic video world (YouTube-VIS, DAVIS, mp4, image corpora)",
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write the world to")
    p.add_argument(
        "--preset", default="default", help="size preset: smoke (tiny, seconds) or default"
    )
    p.add_argument("--seed", type=nonnegative_int, help="root random seed (overrides the preset's)")
    add_set_option(
        p, "override a parameter, e.g. --set num_train_videos=10 --set frames_per_video=[6,8]"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_synth)
