"""The report's pictures: loss curves, per-category AP charts, qualitative strips and GIFs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from uvis import masks
from uvis.errors import DataError
from uvis.report.plots import (
    DEEP_SUPERVISION_NOTE,
    DPI,
    WIDTH_IN,
    loss_figure,
    loss_note,
    per_category_ap,
    read_loss_curves,
    write_loss_curves,
    write_per_category_ap,
)
from uvis.schemas import FRAME_INDEX, TRACKS

WIDTH_PX = round(WIDTH_IN * DPI)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
        return image.size


def test_loss_curves_read_every_loss_column_against_the_step(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss,loss_tag,lr\n10,4.0,2.0,0.1\n20,3.0,,0.1\n30,2.5,1.0,0.1\n")
    curves = read_loss_curves(path)
    assert curves.step_name == "step"
    assert curves.steps.tolist() == [10.0, 20.0, 30.0]
    assert list(curves.losses) == ["loss", "loss_tag"]
    assert np.isnan(curves.losses["loss_tag"][1])  # not logged at step 20: a gap, not 0
    write_loss_curves(path, tmp_path / "loss.png", "Training loss")
    assert png_size(tmp_path / "loss.png") == (WIDTH_PX, 450)
    assert loss_note(curves) is None  # a tag-based training: nothing to explain


def test_a_mask2former_loss_figure_says_why_the_total_is_far_above_its_terms(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "iteration,loss,loss_cross_entropy,loss_mask,loss_dice,lr\n20,42.5,4.4,2.4,3.8,0.1\n"
    )
    curves = read_loss_curves(path)
    assert loss_note(curves) == DEEP_SUPERVISION_NOTE
    figure = loss_figure(curves, "t")
    assert figure.get_supxlabel() == DEEP_SUPERVISION_NOTE
    without_total = read_loss_curves(
        _csv(tmp_path, "iteration,loss_mask,loss_dice,loss_cross_entropy\n1,1,1,1\n")
    )
    assert loss_note(without_total) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("iteration,lr\n1,0.1\n", "no loss column"),
        ("time,loss\n1,0.5\n", "no step column"),
        ("iteration,loss\n1,high\n", "'loss' has a value that is not a number"),
        ("iteration,loss\n", "has no rows"),
    ],
)
def test_bad_loss_csv_is_a_data_error(tmp_path, text, problem):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=problem):
        read_loss_curves(path)


def test_per_category_ap_chart_grows_with_the_categories(tmp_path):
    def metrics(name: str, categories: int) -> Path:
        per_category = {f"class{k}": float(k) for k in range(categories)}
        per_category["class0"] = None  # no ground truth: drawn as n/a
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"AP": 1.0, "per_category": per_category}))
        return path

    small, large = metrics("small", 3), metrics("large", 12)
    assert per_category_ap(small) == {"class0": None, "class1": 1.0, "class2": 2.0}
    write_per_category_ap([("A", small), ("B", small)], tmp_path / "small.png", "t")
    write_per_category_ap([("A", large), ("B", large)], tmp_path / "large.png", "t")
    (w_small, h_small), (w_large, h_large) = (
        png_size(tmp_path / "small.png"),
        png_size(tmp_path / "large.png"),
    )
    assert w_small == w_large == WIDTH_PX
    assert h_large > h_small
    no_categories = tmp_path / "bare.json"
    no_categories.write_text(json.dumps({"AP": 1.0}))
    with pytest.raises(DataError, match="no 'per_category'"):
        per_category_ap(no_categories)


# --------------------------------------------------------------------------------------------
# Strips

H, W, T = 24, 32, 4
BACKGROUND = (90, 120, 150)


def _box(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


OBJECT = _box(4, 16, 4, 16)  # the only ground-truth object of each video (class "circle")


def _world(tmp_path: Path) -> dict[str, Path]:
    """Two videos of T solid-colour frames; one object each; a run whose track 7 finds the
    object in video 1 with the wrong class ("square") and whose track 3 in video 2 is right."""
    rows = {f.name: [] for f in FRAME_INDEX.schema}
    videos, annotations = [], []
    for vid in (1, 2):
        names = [f"v{vid}/{t:05d}.jpg" for t in range(T)]
        for t, name in enumerate(names):
            path = tmp_path / "JPEGImages" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (W, H), BACKGROUND).save(path, quality=95)
            for key, value in zip(
                ("video_id", "video_name", "frame_index", "path", "height", "width"),
                (vid, f"v{vid}", t, str(path), H, W),
                strict=True,
            ):
                rows[key].append(value)
        videos.append({"id": vid, "height": H, "width": W, "file_names": names})
        annotations.append(
            {
                "id": vid,
                "video_id": vid,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": [masks.encode(OBJECT)] * T,
            }
        )
    gt = tmp_path / "valid.json"
    gt.write_text(
        json.dumps(
            {
                "videos": videos,
                "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
                "annotations": annotations,
            }
        )
    )
    frames = tmp_path / "frames.parquet"
    pq.write_table(pa.table(rows, schema=FRAME_INDEX.schema), frames)
    track_rows = {f.name: [] for f in TRACKS.schema}
    for vid, track_id, category in ((1, 7, 2), (2, 3, 1)):
        for t in range(T):
            for key, value in (
                ("video_id", vid),
                ("result_id", 0),
                ("track_id", track_id),
                ("category_id", category),
                ("score", 0.8),
                ("frame_index", t),
                ("source_id", None),
                ("height", H),
                ("width", W),
                ("rle", masks.encode(OBJECT)["counts"]),
            ):
                track_rows[key].append(value)
    tracks = tmp_path / "tracks.parquet"
    pq.write_table(pa.table(track_rows, schema=TRACKS.schema), tracks)
    return {"gt": gt, "frames": frames, "tracks": tracks}


def test_strips_and_gifs_of_samples_and_failures(tmp_path):
    from uvis.inference.overlay import track_colour
    from uvis.report.failures import write_failures
    from uvis.report.strips import BAND, GAP, StripSettings, write_run_strips

    files = _world(tmp_path)
    failures = tmp_path / "failures.json"
    doc = write_failures(files["gt"], files["tracks"], failures, per_kind=1)
    assert doc["picks"] == {"wrong_class": [1], "merged": [], "flicker": []}
    out = tmp_path / "strips"
    settings = StripSettings(frames=3, height=48, gif_frames=10, gif_fps=5.0)
    written = write_run_strips(
        files["gt"],
        files["frames"],
        files["tracks"],
        failures,
        out,
        run="uvis-memory",
        samples=1,
        settings=settings,
        progress=False,
    )
    names = sorted(p.name for p in written)
    assert names == [
        "animations.html",
        "v1.sample.gif",
        "v1.sample.png",
        "v1.wrong_class.gif",
        "v1.wrong_class.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == names

    panel_w = round(W * 48 / H)  # frames scaled to 48 pixels high: 64 wide
    strip = out / "v1.wrong_class.png"
    assert png_size(strip) == (3 * panel_w + 2 * GAP, BAND + 2 * (BAND + 48) + BAND)
    # The track matched to ground-truth object 0 is tinted in object 0's colour (alpha 0.5),
    # in the prediction row (second row), first frame, inside the object.
    pixel = np.asarray(Image.open(strip).convert("RGB"))[BAND + (BAND + 48) + BAND + 20, 20]
    expected = (np.asarray(BACKGROUND) + np.asarray(track_colour(0))) / 2
    assert np.abs(pixel - expected).max() <= 4

    with Image.open(out / "v1.sample.gif") as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == T
        assert gif.size == (2 * panel_w + GAP, BAND + BAND + 48)
        assert gif.info["duration"] == 200
    page = (out / "animations.html").read_text()
    assert page.count('<img src="data:image/gif;base64,') == 2
    assert "v1: wrong class: 1 object(s) with the wrong class" in page


def test_the_periodic_validation_beside_the_losses_is_drawn(tmp_path):
    (tmp_path / "metrics.csv").write_text("iteration,loss\n10,4.0\n20,3.0\n")
    assert read_loss_curves(tmp_path / "metrics.csv").validation is None
    (tmp_path / "validation.csv").write_text(
        "iteration,AP,AP50,seconds\n10,5.0,12.5,1.0\n20,7.5,nan,1.0\n"
    )
    curves = read_loss_curves(tmp_path / "metrics.csv")
    assert curves.validation["AP"].tolist() == [5.0, 7.5]
    assert np.isnan(curves.validation["AP50"][1])
    figure = loss_figure(curves, "t")
    assert len(figure.axes) == 2 and figure.axes[1].get_ylabel().startswith("validation AP")
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == ["loss", "validation AP", "validation AP50"]
    (tmp_path / "validation.csv").write_text("iteration,AP\n10,x\n")
    with pytest.raises(DataError, match=r"validation\.csv"):
        read_loss_curves(tmp_path / "metrics.csv")


def _csv(folder, text):
    path = folder / "other.csv"
    path.write_text(text)
    return path
