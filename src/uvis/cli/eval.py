"""``uvis eval ytvis`` and ``uvis eval davis``: the official metrics, as one JSON line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from uvis.cli.types import positive_int
from uvis.errors import ConfigError, DataError
from uvis.evaluation.ytvis import PROTOCOLS
from uvis.io import atomic_write_json, atomic_write_text


def _emit(metrics: dict, out: Path | None) -> int:
    if out is not None:
        atomic_write_json(out, metrics, indent=2)
    # The last stdout line is always the metrics as one JSON object.
    print(json.dumps(metrics, allow_nan=False))
    return 0


def _ytvis(args: argparse.Namespace) -> int:
    from uvis.evaluation.ytvis import evaluate_files, format_summary

    metrics = evaluate_files(args.gt_json, args.results_json, protocol=args.protocol)
    if not args.quiet:
        print(format_summary(metrics))
    return _emit(metrics, args.out)


def read_imageset(path: Path) -> list[str]:
    """Sequence names of a DAVIS ImageSets file (one per line)."""
    try:
        names = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise DataError(path, f"cannot read image set: {exc.strerror or exc}") from exc
    if not names:
        raise DataError(path, "image set lists no sequences")
    return names


def _davis(args: argparse.Namespace) -> int:
    from uvis.evaluation.davis import evaluate_folders, format_summary

    sequences = args.sequences
    if args.imageset is not None:
        sequences = (sequences or []) + read_imageset(args.imageset)
    metrics = evaluate_folders(
        args.gt_dir, args.pred_dir, sequences=sequences, max_objects=args.max_objects
    )
    if not args.quiet:
        print(format_summary(metrics))
    return _emit(metrics, args.out)


def _compare(args: argparse.Namespace) -> int:
    from uvis.evaluation.compare import comparison_markdown, comparison_rows, read_metrics

    columns = args.columns.split(",")
    runs = []
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"expected NAME=METRICS.json, got {item!r}")
        metrics = read_metrics(path)
        missing = [c for c in columns if c not in metrics]
        if missing:
            raise DataError(path, f"has no metric {missing[0]!r}")
        runs.append((name, metrics))
    rows = comparison_rows(runs, columns)
    table = comparison_markdown(rows, columns, title=args.title or "")
    if args.out is not None:
        atomic_write_text(args.out, table)
        atomic_write_json(args.out.with_suffix(".json"), rows, indent=2)
    print(table, end="")
    return 0


def _submission(args: argparse.Namespace) -> int:
    from uvis.evaluation.submission import write_submission

    count = write_submission(args.videos_json, args.results_json, args.out)
    print(f"{count} results checked and written to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate predictions (YouTube-VIS AP/AR, DAVIS J&F)")
    ev = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    ev.required = True

    y = ev.add_parser(
        "ytvis",
        help="YouTube-VIS / OVIS video AP and AR, identical to the official ytvoseval",
        description="Prints a table, then the metrics as one JSON object on the last line "
        "(0-100 scale, null where undefined).",
    )
    y.add_argument("gt_json", type=Path, help="ground truth in YouTube-VIS JSON format")
    y.add_argument(
        "results_json", type=Path, help="results JSON (list, or a .zip with results.json)"
    )
    y.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="class-aware",
        help="class-aware (default: UVIS, the evaluation servers), class-agnostic (the official "
        "code with useCats=0, as VideoCutLER and AutoQ-VIS report), or both (the class-agnostic "
        "metrics added as AP_agnostic, AP50_agnostic, ...)",
    )
    y.add_argument("--out", type=Path, help="also write the metrics JSON here (atomically)")
    y.add_argument("-q", "--quiet", action="store_true", help="print only the JSON line")
    y.set_defaults(func=_ytvis)

    d = ev.add_parser(
        "davis",
        help="DAVIS 2017/2019 unsupervised J&F, identical to davis2017-evaluation",
        description="GT_DIR and PRED_DIR hold <sequence>/<frame>.png (palette or id PNGs). "
        "Prints a table, then the metrics as one JSON object on the last line (0-100 scale).",
    )
    d.add_argument("gt_dir", type=Path, help="e.g. DAVIS/Annotations_unsupervised/480p")
    d.add_argument("pred_dir", type=Path, help="predicted id PNGs, same layout")
    d.add_argument("--sequences", nargs="+", help="evaluate only these sequences")
    d.add_argument(
        "--imageset",
        type=Path,
        help="evaluate the sequences listed in this file (e.g. DAVIS/ImageSets/2019/val.txt)",
    )
    d.add_argument(
        "--max-objects",
        type=positive_int,
        default=20,
        help="largest predicted object id allowed; larger ids are an error (official: 20)",
    )
    d.add_argument("--out", type=Path, help="also write the metrics JSON here (atomically)")
    d.add_argument("-q", "--quiet", action="store_true", help="print only the JSON line")
    d.set_defaults(func=_davis)

    s = ev.add_parser(
        "submission",
        help="check a results JSON against the split's videos and zip it for an eval server",
    )
    s.add_argument("videos_json", type=Path, help="the split's YouTube-VIS JSON (no GT needed)")
    s.add_argument("results_json", type=Path, help="results JSON (list, or a .zip)")
    s.add_argument("--out", type=Path, required=True, help="zip to write (results.json inside)")
    s.set_defaults(func=_submission)

    c = ev.add_parser(
        "compare",
        help="a side-by-side Markdown table of metrics JSONs (one row per run)",
    )
    c.add_argument("runs", nargs="+", metavar="NAME=METRICS.json", help="runs, in row order")
    c.add_argument("--columns", default="AP,AP50,AP75,AR1,AR10", help="comma-separated metrics")
    c.add_argument("--title", help="a heading for the table")
    c.add_argument("--out", type=Path, help="write the table here (+ the rows as .json)")
    c.set_defaults(func=_compare)
