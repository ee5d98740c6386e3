"""The papers' tables from fixed metric files with known numbers (uvis.report.tables)."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from uvis.cli import main
from uvis.errors import ConfigError
from uvis.report.html import markdown_html
from uvis.report.tables import (
    Provenance,
    RunFiles,
    build_table,
    table_csv,
    table_markdown,
    table_spec,
)

PROVENANCE = Provenance(
    config_name="config.yaml",
    config_digest="0123456789ab",
    built=datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc),
    dataset="synth",
    split="valid",
)

#: UVIS Table 2's published AP values (YouTube-VIS 2019), used as fixed inputs.
TABLE2_AP = {
    "deepsort": 12.5,
    "uvis_none-minvis": 16.6,
    "uvis_objectness-minvis": 18.4,
    "uvis_clip-minvis": 19.8,
    "uvis-minvis": 20.7,
    "uvis-memory": 21.4,
    "supervised-minvis": 30.3,
}

TABLE2_ROWS = [
    ("A1", "deepsort"),
    ("A2", "uvis_none-minvis"),
    ("A3", "uvis_objectness-minvis"),
    ("A4", "uvis_clip-minvis"),
    ("A5", "uvis-minvis"),
    ("A6", "uvis-memory"),
    ("upper", "supervised-minvis"),
]


AGN = {"AP_agnostic": 0.0, "AP50_agnostic": 0.0}  # the class-agnostic metrics of Table 1


def write_metrics(folder: Path, run: str, **values) -> Path:
    path = folder / f"{run}.valid.ytvis.json"
    path.write_text(json.dumps(values))
    return path


def markdown_rows(text: str) -> list[list[str]]:
    """Body rows of the first Markdown table in ``text`` (cells stripped)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def table2_files(tmp_path: Path, skip: str | None = None) -> dict[str, RunFiles]:
    files = {}
    for run, ap in TABLE2_AP.items():
        path = tmp_path / f"{run}.valid.ytvis.json"
        if run != skip:
            write_metrics(tmp_path, run, AP=ap)
        files[run] = RunFiles(metrics=path)
    return files


def test_uvis_table2_cells_and_delta_column(tmp_path):
    spec = table_spec("uvis_table2", TABLE2_ROWS, "synth")
    table = build_table(spec, table2_files(tmp_path), PROVENANCE)
    rows = {r[0]: r for r in markdown_rows(table_markdown(table))}
    assert list(rows) == ["MinVIS (upper bound)", "A1", "A2", "A3", "A4", "A5", "A6"]
    # AP and Δ = AP - AP(A1), as in the paper (16.6 - 12.5 = 4.1, ..., 21.4 - 12.5 = 8.9).
    assert [rows[f"A{k}"][-2:] for k in range(1, 7)] == [
        ["12.5", "–"],
        ["16.6", "+4.1"],
        ["18.4", "+5.9"],
        ["19.8", "+7.3"],
        ["20.7", "+8.2"],
        ["21.4", "+8.9"],
    ]
    assert rows["MinVIS (upper bound)"][-2:] == ["30.3", "–"]
    # Component ticks: A2 adds video training, A6 the tracking memory.
    assert rows["A2"][1:7] == ["✓", "✓", "–", "–", "–", "–"]
    assert rows["A5"][6] == "–" and rows["A6"][6] == "✓"

    lines = csv_rows(table_csv(table))
    a4 = next(r for r in lines if r["Model ID"] == "A4")
    assert float(a4["Δ"]) == pytest.approx(19.8 - 12.5)
    assert a4["runs"] == "uvis_clip-minvis deepsort"
    assert a4["status"] == "ok"
    assert {r["config_digest"] for r in lines} == {"0123456789ab"}
    assert {r["built"] for r in lines} == {"2024-05-17T09:30:00+00:00"}


def test_failed_run_keeps_its_row_and_names_the_newest_log(tmp_path):
    files = table2_files(tmp_path, skip="uvis_clip-minvis")
    old, new = tmp_path / "train.log", tmp_path / "track.log"
    old.write_text("trained\n")
    new.write_text("Traceback ...\n")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))
    os.utime(new, ns=(2_000_000_000, 2_000_000_000))
    files["uvis_clip-minvis"] = RunFiles(
        metrics=files["uvis_clip-minvis"].metrics,
        logs=(old, new, tmp_path / "never-written.log"),
    )
    table = build_table(table_spec("uvis_table2", TABLE2_ROWS, "synth"), files, PROVENANCE)
    text = table_markdown(table)
    rows = {r[0]: r for r in markdown_rows(text)}
    assert rows["A4"][-2:] == ["failed", "failed"]
    assert rows["A5"][-2:] == ["20.7", "+8.2"]  # other rows unaffected
    assert f"- `uvis_clip-minvis` failed — see `{new}`" in text
    a4 = next(r for r in csv_rows(table_csv(table)) if r["Model ID"] == "A4")
    assert a4["AP"] == "" and a4["Δ"] == ""
    assert a4["status"] == f"uvis_clip-minvis: failed — see {new}"


def test_failed_baseline_fails_every_delta(tmp_path):
    table = build_table(
        table_spec("uvis_table2", TABLE2_ROWS, "synth"),
        table2_files(tmp_path, skip="deepsort"),
        PROVENANCE,
        fallback_log=Path("/logs/snakemake.log"),
    )
    rows = {r[0]: r for r in markdown_rows(table_markdown(table))}
    assert rows["A3"][-2:] == ["18.4", "failed"]
    assert rows["MinVIS (upper bound)"][-2:] == ["30.3", "–"]
    assert "`deepsort` failed — see `/logs/snakemake.log`" in table_markdown(table)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"error": "no ground truth"}, "records an error: no ground truth"),
        ({"AP50": 1.0}, "has no metric 'AP'"),
        ({"AP": "12.5"}, "metric 'AP' is not a number: '12.5'"),
        ("[1, 2]", "is not a JSON object"),
        ("{not json", "unreadable"),
    ],
    ids=["error-key", "missing-metric", "text-metric", "not-object", "corrupt"],
)
def test_metrics_that_record_a_failure(tmp_path, content, reason):
    path = tmp_path / "uvis-minvis.valid.ytvis.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    spec = table_spec("uvis_table3", [("0.7", "uvis-minvis")], "synth")
    table = build_table(spec, {"uvis-minvis": RunFiles(metrics=path)}, PROVENANCE)
    outcome = table.outcomes["uvis-minvis"]
    assert outcome.failure is not None and reason in outcome.failure
    assert "no log: the run has not started" in table_markdown(table)


def test_undefined_metric_is_a_dash_not_zero(tmp_path):
    files = {
        run: RunFiles(write_metrics(tmp_path, run, AP=ap))
        for run, ap in (("uvis_tau0.0-minvis", None), ("uvis-minvis", 3.25))
    }
    spec = table_spec(
        "uvis_table3", [("0.0", "uvis_tau0.0-minvis"), ("0.7", "uvis-minvis")], "synth"
    )
    table = build_table(spec, files, PROVENANCE)
    # Transposed as in the paper: one column per τ.
    lines = [ln for ln in table_markdown(table).splitlines() if ln.startswith("|")]
    assert lines[0] == "| τ | 0.0 | 0.7 |"
    assert lines[2] == "| AP | – | 3.2 |"
    assert [r["AP"] for r in csv_rows(table_csv(table))] == ["", "3.25"]


def test_uvis_table4_gain_of_the_tracking_memory(tmp_path):
    aps = {
        "uvis-minvis": 20.7,
        "uvis-memory": 21.4,
        "supervised-minvis": 47.3,
        "supervised-memory": 50.7,
    }
    files = {run: RunFiles(write_metrics(tmp_path, run, AP=ap)) for run, ap in aps.items()}
    rows = [
        ("uvis", "uvis-minvis"),
        ("uvis_memory", "uvis-memory"),
        ("supervised", "supervised-minvis"),
        ("supervised_memory", "supervised-memory"),
    ]
    table = build_table(table_spec("uvis_table4", rows, "ytvis2019"), files, PROVENANCE)
    md = markdown_rows(table_markdown(table))
    assert md == [
        ["C0 (UVIS)", "–", "ytvis2019", "20.7", "21.4", "+0.7"],
        ["C2 (supervised)", "V-M", "ytvis2019", "47.3", "50.7", "+3.4"],
    ]


def test_uvis_table1_supervision_columns_and_metrics(tmp_path):
    values = {"AP": 21.4, "AP50": 42.3, "AP75": 19.4, "AR1": 22.5, "AR10": 28.2}
    values |= {"AP_agnostic": 30.1, "AP50_agnostic": 55.6}
    files = {
        "uvis-memory": RunFiles(write_metrics(tmp_path, "uvis-memory", **values)),
        "deepsort": RunFiles(write_metrics(tmp_path, "deepsort", **dict.fromkeys(values, 1.0))),
    }
    rows = [("deepsort", "deepsort"), ("uvis", "uvis-memory")]
    table = build_table(table_spec("uvis_table1", rows, "synth"), files, PROVENANCE)
    assert markdown_rows(table_markdown(table))[1] == [
        "UVIS",
        "synth",
        "✗",
        "–",
        "–",
        "21.4",
        "42.3",
        "19.4",
        "22.5",
        "28.2",
        "30.1",
        "55.6",
    ]
    header = table_markdown(table).splitlines()
    columns = [c.strip() for c in next(ln for ln in header if ln.startswith("|")).split("|")]
    assert columns[-3:-1] == ["AP (class-agnostic)", "AP50 (class-agnostic)"]


def test_uvis_table1_deepsort_on_filtered_labels_is_an_extra_row_after_a1(tmp_path):
    files = {
        run: RunFiles(write_metrics(tmp_path, run, AP=ap, AP50=0, AP75=0, AR1=0, AR10=0, **AGN))
        for run, ap in (("deepsort", 3.0), ("deepsort_pmf", 5.0), ("uvis-memory", 9.0))
    }
    rows = [("deepsort", "deepsort"), ("deepsort_pmf", "deepsort_pmf"), ("uvis", "uvis-memory")]
    table = build_table(table_spec("uvis_table1", rows, "synth"), files, PROVENANCE)
    got = [(r[0], r[5]) for r in markdown_rows(table_markdown(table))]
    assert got == [
        ("DeepSORT", "3.0"),
        ("DeepSORT (PMF-level pseudo-labels)", "5.0"),
        ("UVIS", "9.0"),
    ]


def test_tag_tables_read_davis_metrics_and_fps(tmp_path):
    davis = {"full": (74.3, 72.2, 76.4), "no_tag_attention": (65.9, 63.5, 68.3)}
    files = {}
    for variant, (jf, j, f) in davis.items():
        path = tmp_path / f"tagvis-{variant}.valid.davis.json"
        path.write_text(json.dumps({"JF": jf, "J": j, "F": f}))
        files[f"tagvis-{variant}"] = RunFiles(metrics=path)
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"fps": 17.04, "frames": 120, "seconds": 7.04, "device": "cpu"}))
    table2 = build_table(
        table_spec("tag_table2", [("ours", "tagvis-full")], "davis2019"),
        {"tagvis-full": RunFiles(files["tagvis-full"].metrics, speed=speed)},
        PROVENANCE,
    )
    text = table_markdown(table2)
    assert markdown_rows(text) == [
        ["Ours (tag-based)", "–", "–", "–", "74.3", "72.2", "76.4", "17.0"]
    ]
    assert "fps of `tagvis-full` measured on cpu." in text

    # Table III: config order, the full model last.
    rows = [("full", "tagvis-full"), ("no_tag_attention", "tagvis-no_tag_attention")]
    table3 = build_table(table_spec("tag_table3", rows, "davis2019"), files, PROVENANCE)
    assert markdown_rows(table_markdown(table3)) == [
        ["no_tag_attention", "65.9", "63.5", "68.3"],
        ["Ours (full model)", "74.3", "72.2", "76.4"],
    ]


def test_speed_file_without_fps_fails_the_run(tmp_path):
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"JF": 1.0, "J": 1.0, "F": 1.0}))
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"frames": 3}))
    table = build_table(
        table_spec("tag_table2", [("ours", "tagvis-full")], "d"),
        {"tagvis-full": RunFiles(metrics, speed=speed)},
        PROVENANCE,
    )
    assert "has no number 'fps'" in table.outcomes["tagvis-full"].failure


@pytest.mark.parametrize(
    ("name", "rows", "message"),
    [
        ("uvis_table2", [("A1", "deepsort")], "no run given for row 'A2'"),
        ("uvis_table1", [("deepsort", "a"), ("uvis", "b"), ("A7", "c")], "unknown row 'A7'"),
        ("uvis_table4", [("uvis", "a"), ("uvis_memory", "b"), ("supervised", "c")], "both"),
        ("tag_table3", [("no_loss", "tagvis-no_loss")], "'full'"),
        ("uvis_table9", [], "unknown table"),
    ],
)
def test_bad_table_requests_are_config_errors(name, rows, message):
    with pytest.raises(ConfigError, match=message):
        table_spec(name, rows, "synth")


def test_cli_writes_markdown_csv_and_html(tmp_path, capsys):
    write_metrics(tmp_path, "uvis-minvis", AP=20.7)
    log = tmp_path / "eval.log"
    log.write_text("error: bad results\n")
    out = tmp_path / "tables" / "uvis_table3.md"
    status = main(
        [
            "report",
            "table",
            "uvis_table3",
            "--row",
            "0.7=uvis-minvis",
            "--row",
            "0.9=uvis_tau0.9-minvis",
            "--metrics",
            f"uvis-minvis={tmp_path / 'uvis-minvis.valid.ytvis.json'}",
            "--metrics",
            f"uvis_tau0.9-minvis={tmp_path / 'missing.json'}",
            "--log",
            f"uvis_tau0.9-minvis={log}",
            "--dataset",
            "synth",
            "--split",
            "valid",
            "--config-name",
            "config.yaml + smoke.yaml",
            "--config-digest",
            "feedface0000",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    md = out.read_text()
    assert "from config `config.yaml + smoke.yaml` (resolved config digest `feedface0000`)" in md
    assert "| AP | 20.7 | failed |" in md
    assert f"`uvis_tau0.9-minvis` failed — see `{log}`" in md
    assert [r["status"] for r in csv_rows(out.with_suffix(".csv").read_text())] == [
        "ok",
        f"uvis_tau0.9-minvis: failed — see {log}",
    ]
    assert "1 run(s) failed: uvis_tau0.9-minvis" in capsys.readouterr().out
    cells = table_cells(out.with_suffix(".html").read_text())
    assert cells[0] == [("th", "", "τ"), ("th", "num", "0.7"), ("th", "num", "0.9")]
    assert cells[1] == [("td", "", "AP"), ("td", "num", "20.7"), ("td", "num", "failed")]


def test_cli_bad_row_is_one_line_error(tmp_path, capsys):
    status = main(
        [
            "report",
            "table",
            "uvis_table3",
            "--row",
            "0.7",
            "--dataset",
            "s",
            "--split",
            "v",
            "--config-name",
            "c",
            "--config-digest",
            "d",
            "--out",
            str(tmp_path / "t.md"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "expected ROLE=RUN, got '0.7'" in err


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, str, str]]] = []
        self._cell: tuple[str, str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = (tag, dict(attrs).get("class") or "")
            self.rows[-1].append((*self._cell, ""))

    def handle_data(self, data):
        if self._cell is not None:
            tag, cls, text = self.rows[-1][-1]
            self.rows[-1][-1] = (tag, cls, text + data)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None


def table_cells(page: str) -> list[list[tuple[str, str, str]]]:
    """(tag, class, text) of every cell of every table row of an HTML page."""
    parser = _Cells()
    parser.feed(page)
    return parser.rows


def test_markdown_html_renders_headings_tables_lists_and_escapes():
    page = markdown_html(
        "# Pseudo-label quality\n\n| filter | n |\n|---|---:|\n| a <b> | 3 |\n| x \\| y | 4 |\n\n"
        "Some `code` and **bold**\ntext.\n\n- one\n- two\n"
    )
    assert "<title>Pseudo-label quality</title>" in page
    assert "<h1>Pseudo-label quality</h1>" in page
    assert table_cells(page) == [
        [("th", "", "filter"), ("th", "num", "n")],
        [("td", "", "a <b>"), ("td", "num", "3")],
        [("td", "", "x | y"), ("td", "num", "4")],
    ]
    assert "a &lt;b&gt;" in page
    assert "<p>Some <code>code</code> and <strong>bold</strong> text.</p>" in page
    assert "<ul>\n<li>one</li>\n<li>two</li>\n</ul>" in page


def test_partial_tables_only_when_a_run_failed_and_removed_by_the_complete_one(tmp_path):
    metrics = tmp_path / "uvis-minvis.valid.ytvis.json"
    out = tmp_path / "tables" / "uvis_table3.md"

    def run(*extra: str) -> int:
        return main(
            [
                "report",
                "table",
                "uvis_table3",
                "--row",
                "0.7=uvis-minvis",
                "--metrics",
                f"uvis-minvis={metrics}",
                "--dataset",
                "synth",
                "--split",
                "valid",
                "--config-name",
                "config.yaml",
                "--config-digest",
                "0",
                "--out",
                str(out),
                *extra,
            ]
        )

    def files() -> list[str]:
        return sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []

    assert run("--partial") == 0  # the metrics file is missing: a partial table
    assert files() == [
        "uvis_table3.partial.csv",
        "uvis_table3.partial.html",
        "uvis_table3.partial.md",
    ]
    assert "| AP | failed |" in (out.parent / "uvis_table3.partial.md").read_text()
    write_metrics(tmp_path, "uvis-minvis", AP=20.7)
    assert run("--partial") == 0  # every run finished: no partial table is written
    assert (out.parent / "uvis_table3.partial.md").read_text().count("failed") > 0  # untouched
    assert run() == 0  # the complete table replaces the partial one
    assert files() == ["uvis_table3.csv", "uvis_table3.html", "uvis_table3.md"]
    assert "| AP | 20.7 |" in out.read_text()
