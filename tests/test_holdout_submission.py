"""Held-out splits of annotated JSONs, and server submissions for splits without ground truth."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from uvis import masks
from uvis.cli import main
from uvis.data.holdout import holdout_video_ids, split_holdout
from uvis.errors import ConfigError, DataError
from uvis.evaluation.submission import write_submission

H, W, T = 6, 8, 3


def _split(n_videos: int, annotated: bool = True) -> dict:
    videos = [
        {
            "id": v,
            "width": W,
            "height": H,
            "length": T,
            "file_names": [f"v{v}/{t:05d}.jpg" for t in range(T)],
        }
        for v in range(1, n_videos + 1)
    ]
    doc = {"videos": videos, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    if annotated:
        square = np.zeros((H, W), bool)
        square[1:3, 1:3] = True
        doc["annotations"] = [
            {
                "id": 10 * v + k,
                "video_id": v,
                "category_id": 1 + k,
                "iscrowd": 0,
                "segmentations": [masks.encode(square)] * T,
                "areas": [4.0] * T,
                "bboxes": [[1, 1, 2, 2]] * T,
            }
            for v in range(1, n_videos + 1)
            for k in range(2)
        ]
    return doc


def test_holdout_partitions_videos_and_their_annotations(tmp_path: Path) -> None:
    src = tmp_path / "train.json"
    src.write_text(json.dumps(_split(10)))
    fit_p, held_p = tmp_path / "fit.json", tmp_path / "holdout.json"
    assert split_holdout(src, fit_p, held_p, fraction=0.3, seed=1) == (7, 3)
    fit, held = json.loads(fit_p.read_text()), json.loads(held_p.read_text())
    fit_ids = {v["id"] for v in fit["videos"]}
    held_ids = {v["id"] for v in held["videos"]}
    assert fit_ids.isdisjoint(held_ids) and fit_ids | held_ids == set(range(1, 11))
    assert {a["video_id"] for a in fit["annotations"]} == fit_ids
    assert {a["video_id"] for a in held["annotations"]} == held_ids
    assert len(held["annotations"]) == 2 * 3
    assert fit["categories"] == held["categories"] == _split(1)["categories"]
    # Same seed, same videos; the choice does not depend on the order of the list.
    assert holdout_video_ids(list(range(10, 0, -1)), 0.3, 1) == held_ids


def test_holdout_keeps_at_least_one_video_on_each_side() -> None:
    assert len(holdout_video_ids([1, 2], 0.01, 0)) == 1
    assert len(holdout_video_ids([1, 2], 0.99, 0)) == 1
    with pytest.raises(ConfigError, match="at least 2 videos"):
        holdout_video_ids([1], 0.5, 0)
    with pytest.raises(ConfigError, match="fraction"):
        holdout_video_ids([1, 2, 3], 1.0, 0)


def test_holdout_of_a_split_without_annotations_names_the_file(tmp_path: Path) -> None:
    src = tmp_path / "valid.json"
    src.write_text(json.dumps(_split(4, annotated=False)))
    with pytest.raises(DataError, match=r"valid\.json.*no annotations"):
        split_holdout(src, tmp_path / "a.json", tmp_path / "b.json", 0.5)
    assert not (tmp_path / "a.json").exists()


def _results(video_id: int = 1, size: tuple[int, int] = (H, W)) -> list[dict]:
    mask = np.zeros(size, bool)
    mask[0:2, 0:2] = True
    return [
        {
            "video_id": video_id,
            "category_id": 2,
            "score": 0.5,
            "segmentations": [masks.encode(mask), None, masks.encode(mask)],
        }
    ]


def test_submission_zips_validated_results(tmp_path: Path) -> None:
    split = tmp_path / "valid.json"
    split.write_text(json.dumps(_split(2, annotated=False)))
    results = tmp_path / "results.json"
    results.write_text(json.dumps(_results()))
    out = tmp_path / "sub" / "submission.zip"
    assert main(["eval", "submission", str(split), str(results), "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["results.json"]
        assert json.loads(archive.read("results.json")) == _results()
    # A zip is accepted as input too, and re-zipped unchanged.
    again = tmp_path / "again.zip"
    assert write_submission(split, out, again) == 1
    with zipfile.ZipFile(again) as archive:
        assert json.loads(archive.read("results.json")) == _results()


@pytest.mark.parametrize(
    ("results", "problem"),
    [
        (_results(video_id=7), "video_id 7"),
        (_results(size=(H + 1, W)), "size"),
    ],
)
def test_submission_rejects_bad_results_before_writing(
    tmp_path: Path, results: list, problem: str, capsys: pytest.CaptureFixture
) -> None:
    split = tmp_path / "valid.json"
    split.write_text(json.dumps(_split(2, annotated=False)))
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "submission.zip"
    assert main(["eval", "submission", str(split), str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "results.json" in err and problem in err
    assert not out.exists()
