"""``uvis baseline``: trivial reference predictions (ground truth with noise)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uvis.cli.types import nonnegative_int, unit_float
from uvis.errors import DataError
from uvis.io import atomic_write_json


def _params(args: argparse.Namespace):
    from uvis.baselines import NoiseParams

    return NoiseParams(
        seed=args.seed,
        jitter_px=args.jitter_px,
        drop_rate=args.drop_rate,
        class_flip_rate=args.class_flip_rate,
        false_positives=args.false_positives,
    )


def _ytvis(args: argparse.Namespace) -> int:
    from uvis.baselines import noisy_ytvis_results

    try:
        gt = json.loads(Path(args.gt_json).read_text())
    except FileNotFoundError as exc:
        raise DataError(args.gt_json, "file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(args.gt_json, f"not valid JSON: {exc}") from exc
    results = noisy_ytvis_results(gt, _params(args))
    atomic_write_json(args.out, results)
    print(f"wrote {len(results)} results for {len(gt.get('videos', []))} videos to {args.out}")
    return 0


def _davis(args: argparse.Namespace) -> int:
    from uvis.baselines import noisy_davis_predictions

    n = noisy_davis_predictions(args.gt_dir, args.out_dir, _params(args))
    print(f"wrote {n} frames to {args.out_dir}")
    return 0


def _noise_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the noise (default 0)")
    p.add_argument(
        "--jitter-px",
        type=nonnegative_int,
        default=2,
        help="masks eroded or dilated by up to this many pixels (default 2)",
    )
    p.add_argument(
        "--drop-rate",
        type=unit_float,
        default=0.1,
        help="share of frame masks dropped (default 0.1)",
    )
    p.add_argument(
        "--class-flip-rate",
        type=unit_float,
        default=0.1,
        help="share of instances given a wrong class (default 0.1)",
    )
    p.add_argument(
        "--false-positives",
        type=nonnegative_int,
        default=1,
        help="spurious tracks added per video (default 1)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="trivial baseline predictions: ground truth with noise")
    bs = p.add_subparsers(dest="kind", metavar="KIND")
    bs.required = True
    y = bs.add_parser("ytvis", help="YouTube-VIS results JSON from a ground-truth JSON")
    y.add_argument("gt_json", type=Path, help="YouTube-VIS ground truth")
    y.add_argument("out", type=Path, help="results JSON to write")
    _noise_args(y)
    y.set_defaults(func=_ytvis)
    d = bs.add_parser("davis", help="DAVIS id PNGs from a ground-truth annotation folder")
    d.add_argument("gt_dir", type=Path, help="DAVIS annotation folder (<sequence>/<frame>.png)")
    d.add_argument("out_dir", type=Path, help="folder to write the noisy PNGs to")
    _noise_args(d)
    d.set_defaults(func=_davis)
