"""Shared core: atomic writes, RLE helpers, artefact schema docs, CLI error handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uvis import masks
from uvis.cli import main
from uvis.io import atomic_path, atomic_write_json
from uvis.schemas import render_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_path_keeps_old_content_when_the_writer_fails(tmp_path):
    dest = tmp_path / "out.json"
    atomic_write_json(dest, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed mid-write")
    assert dest.read_text() == '{"v": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_atomic_path_keeps_the_suffix_for_format_sniffing_libraries(tmp_path):
    with atomic_path(tmp_path / "a.parquet") as tmp:
        assert tmp.suffix == ".parquet" and tmp.parent == tmp_path


def test_atomic_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"AP": float("nan")})
    assert not (tmp_path / "x.json").exists()


def test_rle_round_trip_area_and_box():
    m = np.zeros((7, 9), np.uint8)
    m[2:5, 3:8] = 1
    rle = masks.encode(m)
    assert rle["size"] == [7, 9] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(masks.decode(rle), m)
    assert masks.area(rle) == 15
    assert masks.bbox_xywh(rle) == [3.0, 2.0, 5.0, 3.0]


def test_uncompressed_rle_is_accepted():
    # Column-major runs for a 3x2 mask: [0,1,1 | 0,0,1] -> counts 1 zero, 2 ones, 2 zeros, 1 one.
    rle = {"size": [3, 2], "counts": [1, 2, 2, 1]}
    np.testing.assert_array_equal(masks.decode(rle), np.array([[0, 0], [1, 0], [1, 1]], np.uint8))
    assert masks.area(rle) == 3


def test_artefact_docs_are_generated_from_the_schemas():
    assert (ROOT / "docs" / "ARTEFACTS.md").read_text() == render_markdown(), (
        "docs/ARTEFACTS.md is stale: run `uvis schemas --out docs/ARTEFACTS.md`"
    )


def test_cli_reports_bad_input_in_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "gt.json"
    bad.write_text("{not json")
    code = main(["baseline", "ytvis", str(bad), str(tmp_path / "out.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and str(bad) in err and "not valid JSON" in err
    assert "Traceback" not in err
