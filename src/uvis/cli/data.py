"""``uvis data``: build frame indexes, extract frames from videos, summarise datasets.

::

    uvis data index --format ytvis --json J --images DIR --out OUT.parquet
    uvis data index --format davis --root DIR [--imageset 2019/val] --out OUT.parquet
    uvis data extract VIDEO_DIR OUT_ROOT --vocabulary FILE_OR_LIST --index-out OUT.parquet
    uvis data info PATH
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from uvis.cli.types import fraction, nonnegative_int, positive_int
from uvis.errors import ConfigError

if TYPE_CHECKING:
    from uvis.data import VideoDataset


def vocabulary_argument(value: str) -> list[str] | Path:
    """``--vocabulary``: a text file if the value is an existing file or looks like a path
    (contains ``/`` or ends in ``.txt``), so a mistyped file name is an error rather than a
    one-word vocabulary; otherwise a comma-separated list of names.
    """
    path = Path(value)
    if path.is_file() or "/" in value or path.suffix == ".txt":
        return path
    return value.split(",")


def _index(args: argparse.Namespace) -> int:
    from uvis.data import load_davis, load_ytvis, write_frame_index

    if args.format == "ytvis":
        for option in ("json", "images"):
            if getattr(args, option) is None:
                raise ConfigError(f"--{option}: required with --format ytvis")
        # Without verification, the loader's own (cheap) existence check is the only file check.
        dataset = load_ytvis(args.json, args.images, check_files=args.verify == "none")
    else:
        if args.root is None:
            raise ConfigError("--root: required with --format davis")
        dataset = load_davis(
            args.root,
            imageset=args.imageset,
            resolution=args.resolution,
            task=args.task,
            annotations=not args.no_annotations,
        )
    dataset = dataset.subsample(args.stride)
    summary = write_frame_index(
        dataset, args.out, verify=args.verify, on_error=args.on_error, progress=True
    )
    print(
        f"indexed {summary.videos} videos, {summary.frames} frames, "
        f"{len(summary.skipped)} videos skipped -> {args.out}"
    )
    return 0


def _extract(args: argparse.Namespace) -> int:
    from uvis.data import extract_video_folder, write_frame_index

    dataset, skipped = extract_video_folder(
        args.video_dir,
        args.out_root,
        args.vocabulary,
        stride=args.stride,
        resize_short=args.resize_short,
        max_frames=args.max_frames,
        jpeg_quality=args.jpeg_quality,
        on_error=args.on_error,
        progress=True,
    )
    summary = write_frame_index(dataset, args.index_out, verify="none")
    print(
        f"extracted {summary.videos} videos, {summary.frames} frames, "
        f"{len(skipped)} videos skipped -> {args.index_out}"
    )
    return 0


def describe(dataset: VideoDataset) -> list[str]:
    """Summary lines of a dataset: videos, frames, frame sizes, categories, instances."""
    frames = sum(len(v.frame_paths) for v in dataset.videos)
    sizes = Counter((v.width, v.height) for v in dataset.videos)
    lines = [
        f"dataset {dataset.name}",
        f"videos: {len(dataset.videos)}, frames: {frames}",
        "frame sizes (WxH: videos): "
        + ", ".join(f"{w}x{h}: {n}" for (w, h), n in sizes.most_common()),
        f"categories: {len(dataset.categories)}",
    ]
    if dataset.instances is None:
        lines.append("instances: no annotations")
        return lines
    per_category = Counter(inst.category_id for inst in dataset.instances)
    lines.append(f"instances: {len(dataset.instances)}")
    lines += [f"  {c.id:>4} {c.name}: {per_category[c.id]}" for c in dataset.categories]
    return lines


def _info(args: argparse.Namespace) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from uvis.data import load_davis, load_ytvis
    from uvis.errors import DataError
    from uvis.schemas import FRAME_INDEX

    path: Path = args.path
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise DataError(path, f"cannot read Parquet: {exc}") from None
        table = FRAME_INDEX.check(table, str(path))
        videos = len(pc.unique(table["video_id"]))
        print(f"frame index {path}: {videos} videos, {table.num_rows} frames")
        return 0
    if path.suffix == ".json":
        dataset = load_ytvis(path, path.parent, check_files=False)
    elif path.is_dir():
        has_masks = (path / "Annotations_unsupervised").is_dir()
        dataset = load_davis(path, imageset=args.imageset, annotations=has_masks)
    else:
        raise DataError(
            path, "expected a YouTube-VIS .json, a DAVIS folder or a frame index .parquet"
        )
    print("\n".join(describe(dataset)))
    return 0


def _holdout(args: argparse.Namespace) -> int:
    from uvis.data.holdout import split_holdout

    fit, held = split_holdout(
        args.json, args.fit_out, args.holdout_out, args.fraction, seed=args.seed
    )
    print(f"{fit} videos in {args.fit_out}, {held} held out in {args.holdout_out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``uvis data index | extract | info``."""
    parser = sub.add_parser("data", help="frame indexes, frame extraction, dataset summaries")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True

    def add_common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--stride", type=positive_int, default=1, help="keep every N-th frame (default 1)"
        )
        p.add_argument(
            "--on-error",
            choices=("fail", "skip"),
            default="fail",
            help="on a bad video: stop with an error, or skip the video and count it",
        )

    p = actions.add_parser(
        "index", help="verify the frames of a JPEG dataset and write its frame index"
    )
    p.add_argument(
        "--format", choices=("ytvis", "davis"), required=True, help="the dataset's format"
    )
    p.add_argument("--json", type=Path, help="YouTube-VIS/OVIS annotation JSON (ytvis)")
    p.add_argument(
        "--images", type=Path, help="folder the JSON's file_names are relative to (ytvis)"
    )
    p.add_argument("--root", type=Path, help="DAVIS root folder (davis)")
    p.add_argument("--imageset", help="DAVIS image set, e.g. 2019/val (default: all sequences)")
    p.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default 480p)")
    p.add_argument(
        "--task",
        choices=("unsupervised", "semi-supervised"),
        default="unsupervised",
        help="DAVIS task",
    )
    p.add_argument("--no-annotations", action="store_true", help="DAVIS split without masks")
    p.add_argument("--out", type=Path, required=True, help="frame index to write (.parquet)")
    p.add_argument(
        "--verify",
        choices=("none", "header", "decode"),
        default="header",
        help="check frames: image header and size (default), full decode, or not at all",
    )
    add_common(p)
    p.set_defaults(func=_index)

    p = actions.add_parser(
        "extract", help="extract JPEG frames from a folder of videos and index them"
    )
    p.add_argument("video_dir", type=Path, help="folder of .mp4/.avi/.mov/.mkv/.webm files")
    p.add_argument("out_root", type=Path, help="frames go to OUT_ROOT/<video name>/00000.jpg ...")
    p.add_argument(
        "--vocabulary",
        type=vocabulary_argument,
        required=True,
        help="category names: a text file (one per line) or a comma-separated list",
    )
    p.add_argument(
        "--index-out",
        "--out",
        dest="index_out",
        type=Path,
        required=True,
        help="frame index to write (.parquet)",
    )
    p.add_argument(
        "--resize-short", type=positive_int, help="resize so the short side is N pixels (even)"
    )
    p.add_argument("--max-frames", type=positive_int, help="keep at most N frames per video")
    p.add_argument(
        "--jpeg-quality", type=positive_int, default=95, help="JPEG quality 1-100 (default 95)"
    )
    add_common(p)
    p.set_defaults(func=_extract)

    p = actions.add_parser(
        "holdout",
        help="cut an annotated YouTube-VIS split into fit and held-out JSONs, by video",
    )
    p.add_argument("json", type=Path, help="annotated YouTube-VIS/OVIS JSON (e.g. train.json)")
    p.add_argument("--fraction", type=fraction, default=0.1, help="share of videos held out")
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of the video draw (default 0)"
    )
    p.add_argument("--fit-out", type=Path, required=True, help="JSON of the remaining videos")
    p.add_argument("--holdout-out", type=Path, required=True, help="JSON of the held-out videos")
    p.set_defaults(func=_holdout)

    p = actions.add_parser(
        "info", help="summarise a dataset (.json, DAVIS folder or .parquet index)"
    )
    p.add_argument(
        "path", type=Path, help="a YouTube-VIS JSON, a DAVIS folder or a frame index Parquet"
    )
    p.add_argument("--imageset", help="DAVIS image set, e.g. 2019/val (default: all sequences)")
    p.set_defaults(func=_info)
