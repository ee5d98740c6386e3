"""Side-by-side tables of metrics JSONs (`uvis eval compare`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uvis.cli import main
from uvis.evaluation.compare import comparison_markdown, comparison_rows


def _metrics(ap: float | None, **extra: float) -> dict:
    return {"AP": ap, "AP50": 50.0, "AP75": 25.25, "AR1": 10.0, "AR10": 12.0, **extra}


def test_rows_keep_order_and_undefined_values() -> None:
    rows = comparison_rows([("b", _metrics(3.14)), ("a", _metrics(None))])
    assert [r["run"] for r in rows] == ["b", "a"]
    md = comparison_markdown(rows, title="T")
    lines = md.splitlines()
    assert lines[0] == "# T"
    assert lines[2] == "| run | AP | AP50 | AP75 | AR1 | AR10 |"
    assert lines[4] == "| b | 3.1 | 50.0 | 25.2 | 10.0 | 12.0 |"
    assert lines[5] == "| a | – | 50.0 | 25.2 | 10.0 | 12.0 |"  # undefined is not 0


def test_missing_metric_is_an_error() -> None:
    with pytest.raises(ValueError, match="run 'x' has no metric 'AR10'"):
        comparison_rows([("x", {"AP": 1, "AP50": 1, "AP75": 1, "AR1": 1})])


def test_cli_writes_table_and_rows(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_metrics(10.0)))
    b.write_text(json.dumps(_metrics(20.0)))
    out = tmp_path / "cmp.md"
    assert (
        main(["eval", "compare", f"base={a}", f"ours={b}", "--columns", "AP", "--out", str(out)])
        == 0
    )
    assert out.read_text().splitlines()[2:] == ["| base | 10.0 |", "| ours | 20.0 |"]
    assert json.loads(out.with_suffix(".json").read_text()) == [
        {"run": "base", "AP": 10.0},
        {"run": "ours", "AP": 20.0},
    ]
    capsys.readouterr()
    assert main(["eval", "compare", f"x={tmp_path / 'none.json'}"]) == 2
    assert "none.json: metrics file does not exist" in capsys.readouterr().err
    assert main(["eval", "compare", f"x={a}", "--columns", "mAP"]) == 2
    assert "a.json: has no metric 'mAP'" in capsys.readouterr().err
    assert main(["eval", "compare", "just-a-path.json"]) == 2
    assert "expected NAME=METRICS.json" in capsys.readouterr().err
