"""``uvis report``: the papers' tables, figures, failure cases and qualitative strips."""

from __future__ import annotations

import argparse
from pathlib import Path

from uvis.cli.types import nonnegative_int, positive_float


def _pairs(items: list[str] | None, what: str) -> list[tuple[str, str]]:
    """``KEY=VALUE`` arguments as pairs, in the order given; ConfigError on a malformed one."""
    from uvis.errors import ConfigError

    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"expected {what}, got {item!r}")
        out.append((key, value))
    return out


def _table(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from uvis.errors import ConfigError
    from uvis.report.tables import (
        Provenance,
        RunFiles,
        build_table,
        failed_runs,
        partial_path,
        table_markdown,
        table_spec,
        write_table,
    )

    if args.out.suffix != ".md":
        raise ConfigError(f"--out must name the .md file (got {args.out})")
    spec = table_spec(args.table, _pairs(args.row, "ROLE=RUN"), args.dataset)
    metrics = dict(_pairs(args.metrics, "RUN=METRICS.json"))
    speed = dict(_pairs(args.speed, "RUN=SPEED.json"))
    logs: dict[str, list[Path]] = {}
    for run, log in _pairs(args.log, "RUN=LOG"):
        logs.setdefault(run, []).append(Path(log))
    files = {
        run: RunFiles(
            metrics=Path(path),
            speed=Path(speed[run]) if run in speed else None,
            logs=tuple(logs.get(run, ())),
        )
        for run, path in metrics.items()
    }
    provenance = Provenance(
        config_name=args.config_name,
        config_digest=args.config_digest,
        built=datetime.now(timezone.utc),
        dataset=args.dataset,
        split=args.split,
    )
    table = build_table(spec, files, provenance, fallback_log=args.fallback_log)
    failed = failed_runs(table)
    partial = partial_path(args.out)
    if args.partial:
        if failed:
            write_table(table, partial)
            print(f"{args.table}: {len(failed)} run(s) failed ({', '.join(failed)}): {partial}")
        else:
            print(f"{args.table}: every run finished, no partial table written")
        return 0
    write_table(table, args.out)
    for stale in (partial, partial.with_suffix(".csv"), partial.with_suffix(".html")):
        stale.unlink(missing_ok=True)
    print(table_markdown(table), end="")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}")
    return 0


def _html(args: argparse.Namespace) -> int:
    from uvis.errors import DataError
    from uvis.io import atomic_write_text
    from uvis.report.html import markdown_html

    try:
        text = args.markdown.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(args.markdown, f"cannot read Markdown: {exc}") from None
    atomic_write_text(args.out, markdown_html(text, title=args.title))
    return 0


def _per_category_ap(args: argparse.Namespace) -> int:
    from uvis.report.plots import write_per_category_ap

    write_per_category_ap(_pairs(args.runs, "LABEL=METRICS.json"), args.out, args.title)
    return 0


def _loss(args: argparse.Namespace) -> int:
    from uvis.report.plots import write_loss_curves

    curves = write_loss_curves(args.csv, args.out, args.title)
    print(f"{len(curves.steps)} steps, losses {', '.join(curves.losses)} -> {args.out}")
    return 0


def _failures(args: argparse.Namespace) -> int:
    from uvis.report.failures import write_failures

    document = write_failures(
        args.gt_json,
        args.tracks,
        args.out,
        per_kind=args.per_kind,
        iou_threshold=args.iou,
        cover=args.cover,
        title=args.title,
        progress=not args.no_progress,
    )
    print(f"totals {document['totals']}, picks {document['picks']} -> {args.out}")
    return 0


def _strips(args: argparse.Namespace) -> int:
    from uvis.report.strips import StripSettings, write_run_strips

    settings = StripSettings(
        frames=args.strip_frames,
        height=args.height,
        gif_frames=args.gif_frames,
        gif_fps=args.gif_fps,
    )
    written = write_run_strips(
        args.gt_json,
        args.frames,
        args.tracks,
        args.failures,
        args.out,
        run=args.run,
        samples=args.samples,
        settings=settings,
        progress=not args.no_progress,
    )
    print(f"{len(written)} files -> {args.out}")
    return 0


def _costs(args: argparse.Namespace) -> int:
    from uvis.io import atomic_write_text
    from uvis.report.costs import costs_markdown, read_costs, summarise

    table = costs_markdown(summarise(read_costs(args.results / "benchmarks")))
    if args.out is None:
        print(table, end="")
    else:
        atomic_write_text(args.out, table)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the papers' tables, figures and qualitative strips")
    rep = p.add_subparsers(dest="report_command", metavar="WHAT")
    rep.required = True

    t = rep.add_parser(
        "table",
        help="one paper table (Markdown, CSV, HTML) from metrics JSONs",
        description="Rows whose run has no readable metrics are kept and marked failed, with "
        "the newest existing --log of that run (or --fallback-log) to read.",
    )
    t.add_argument(
        "table",
        help="uvis_table1..uvis_table4, tag_table1..tag_table3 (see uvis.report.tables)",
    )
    t.add_argument(
        "--row",
        action="append",
        metavar="ROLE=RUN",
        help="which run fills a row (repeat; τ values and variants keep the order given)",
    )
    t.add_argument("--metrics", action="append", metavar="RUN=METRICS.json", help="repeat")
    t.add_argument("--speed", action="append", metavar="RUN=SPEED.json", help="fps (Table II)")
    t.add_argument("--log", action="append", metavar="RUN=LOG", help="stage logs of a run")
    t.add_argument("--fallback-log", type=Path, help="log to cite for a failed run without one")
    t.add_argument("--dataset", required=True, help="dataset name shown in the table")
    t.add_argument("--split", required=True, help="evaluated split shown in the table")
    t.add_argument("--config-name", required=True, help="config file(s) that produced the runs")
    t.add_argument("--config-digest", required=True, help="digest of the resolved config")
    t.add_argument(
        "--out", type=Path, required=True, help="the .md file; .csv and .html are written beside"
    )
    t.add_argument(
        "--partial",
        action="store_true",
        help="after a failed workflow run: write <name>.partial.{md,csv,html} instead, and only "
        "if a run failed (writing the complete table removes them)",
    )
    t.set_defaults(func=_table)

    h = rep.add_parser("html", help="a Markdown table document as an HTML page (for the report)")
    h.add_argument("markdown", type=Path, help="a Markdown table file (e.g. tables/x.md)")
    h.add_argument("--title", help="page title (default: the first heading)")
    h.add_argument("--out", type=Path, required=True, help="HTML file to write")
    h.set_defaults(func=_html)

    c = rep.add_parser("per-category-ap", help="per-category AP bar chart of runs (PNG)")
    c.add_argument("runs", nargs="+", metavar="LABEL=METRICS.json", help="YouTube-VIS metrics")
    c.add_argument("--title", default="Per-category AP", help="figure title")
    c.add_argument("--out", type=Path, required=True, help="PNG file to write")
    c.set_defaults(func=_per_category_ap)

    lo = rep.add_parser("loss", help="training loss curves of a metrics.csv (PNG)")
    lo.add_argument("csv", type=Path, help="metrics.csv with a step column and loss columns")
    lo.add_argument("--title", default="Training loss", help="figure title")
    lo.add_argument("--out", type=Path, required=True, help="PNG file to write")
    lo.set_defaults(func=_loss)

    f = rep.add_parser(
        "failures",
        help="per-video errors of a run against ground truth and the failure cases to show",
    )
    f.add_argument("--gt-json", type=Path, required=True, help="YouTube-VIS ground truth")
    f.add_argument("--tracks", type=Path, required=True, help="the run's tracks.parquet")
    f.add_argument("--per-kind", type=_positive_int, default=2, help="videos picked per kind")
    f.add_argument("--iou", type=_fraction, default=0.5, help="IoU to count as found")
    f.add_argument("--cover", type=_fraction, default=0.5, help="object fraction a merge covers")
    f.add_argument("--title", default="Failure cases", help="title of the .md summary")
    f.add_argument("--no-progress", action="store_true", help="no progress output")
    f.add_argument("--out", type=Path, required=True, help="JSON (+ .md summary beside)")
    f.set_defaults(func=_failures)

    s = rep.add_parser("strips", help="qualitative strips (PNG) and animations (GIF) of a run")
    s.add_argument("--gt-json", type=Path, required=True, help="YouTube-VIS ground truth")
    s.add_argument("--frames", type=Path, required=True, help="frame index Parquet of the split")
    s.add_argument("--tracks", type=Path, required=True, help="the run's tracks.parquet")
    s.add_argument("--failures", type=Path, required=True, help="from `uvis report failures`")
    s.add_argument("--run", required=True, help="run name shown on the strips")
    s.add_argument(
        "--samples", type=nonnegative_int, default=2, help="evenly spaced videos besides failures"
    )
    s.add_argument("--strip-frames", type=_positive_int, default=6, help="frames per strip")
    s.add_argument("--height", type=_positive_int, default=160, help="pixel height of a frame")
    s.add_argument("--gif-frames", type=_positive_int, default=48, help="most frames per GIF")
    s.add_argument(
        "--gif-fps", type=positive_float, default=4.0, help="GIF frames per second (default 4)"
    )
    s.add_argument("--no-progress", action="store_true", help="no progress output")
    s.add_argument("--out", type=Path, required=True, help="output folder (replaced)")
    s.set_defaults(func=_strips)

    co = rep.add_parser(
        "costs",
        help="CPU time, wall time and peak memory of a run's jobs, summed per stage",
        description="Reads the Snakemake benchmark file every rule writes under "
        "RESULTS/benchmarks/ (RESULTS: e.g. results/synth).",
    )
    co.add_argument("results", type=Path, help="a run's results folder (results/<dataset>)")
    co.add_argument("--out", type=Path, help="write the Markdown table here (default: stdout)")
    co.set_defaults(func=_costs)
