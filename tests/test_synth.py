"""The synthetic world (`uvis synth`): formats, ground-truth exactness, determinism, params.

Most tests share one smoke-preset world generated once per session (plus a second generation
for the determinism test). Geometric expectations are computed by hand in the docstrings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from uvis import masks
from uvis.cli import main
from uvis.errors import ConfigError, DataError
from uvis.synth import (
    CAPTION_TEMPLATES,
    CATEGORIES,
    COLOUR_NAMES,
    Pillar,
    Pose,
    Scene,
    SynthParams,
    Track,
    caption,
    generate_world,
    pillar_across,
    rasterise,
    render_video,
    sample_scene,
    video_scene,
)
from uvis.synth.appearance import sample_appearance
from uvis.synth.writers import davis_palette, ytvis_annotation, ytvis_frame_name

SMOKE = SynthParams.preset("smoke")


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The smoke world, generated once: (root, manifest)."""
    root = tmp_path_factory.mktemp("synth") / "world"
    return root, generate_world(root, SMOKE, progress=False)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# --------------------------------------------------------------------------------------------
# Parameters


def test_unknown_override_key_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'num_videos'"):
        SynthParams.preset("smoke", num_videos=3)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("height", 63),  # odd: yuv420p needs even sizes
        ("frames_per_video", [8, 6]),  # low > high
        ("frames_per_video", 7),  # not a pair
        ("occlusion_rate", 1.5),
        ("pillar_rate", -0.1),
        ("num_train_videos", "4"),
        ("jpeg_quality", 100),
    ],
)
def test_invalid_values_raise_config_error_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=repr(key)):
        SynthParams.preset("smoke", **{key: value})


def test_unknown_preset_raises() -> None:
    with pytest.raises(ConfigError, match="'huge'"):
        SynthParams.preset("huge")


def test_params_round_trip_through_json() -> None:
    params = SynthParams.preset("default", seed=7, frames_per_video=[5, 9])
    assert params.frames_per_video == (5, 9)
    again = SynthParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert again == params


# --------------------------------------------------------------------------------------------
# Shapes and rendering, on constructed inputs


def test_square_rasterisation_by_hand() -> None:
    """Square half-side is 0.7 r: r = 10 at (20, 20) covers pixel centres x + 0.5 in [13, 27],
    i.e. columns (and rows) 13..26: a 14 x 14 block."""
    square = next(c.id for c in CATEGORIES if c.name == "square")
    mask = rasterise(square, Pose(cx=20.0, cy=20.0, radius=10.0, angle=0.0), 40, 48)
    expected = np.zeros((40, 48), bool)
    expected[13:27, 13:27] = True
    np.testing.assert_array_equal(mask, expected)


def test_categories_stay_distinct_under_rotation() -> None:
    """At 24 px diameter no two shapes overlap with IoU >= 0.8 at any of 24 relative rotations
    (IoU of the disc 0.9 r with the ring 0.55..1 r is 0.51; of the square with the disc ~0.7)."""
    size = 32
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    masks_at = {
        c.id: [rasterise(c.id, Pose(16.0, 16.0, 12.0, a), size, size) for a in angles]
        for c in CATEGORIES
    }
    for a in CATEGORIES:
        for b in CATEGORIES:
            if a.id >= b.id:
                continue
            first = masks_at[a.id][0]
            best = max((first & m).sum() / (first | m).sum() for m in masks_at[b.id])
            assert best < 0.8, (a.name, b.name, best)


def _square_track(category_id: int, cx: float, cy: float) -> Track:
    rng = np.random.default_rng(0)
    one = np.ones(1)
    return Track(
        category_id=category_id,
        appearance=sample_appearance(rng),
        cx=one * cx,
        cy=one * cy,
        radius=one * 10.0,
        angle=np.zeros(1),
    )


def test_occluded_object_loses_exactly_the_overlap() -> None:
    """Two 14x14 squares (see the hand computation above) at columns 13..26 (back) and
    20..33 (front), same rows: the back one keeps 7 of its 14 columns, 98 of 196 pixels."""
    square = next(c.id for c in CATEGORIES if c.name == "square")
    scene = Scene(
        height=40,
        width=48,
        tracks=(_square_track(square, 20.0, 20.0), _square_track(square, 27.0, 20.0)),
        background=np.full((40, 48, 3), 100.0),
        pan=np.zeros((1, 2), np.int64),
        noise_std=0.0,
        noise_seed=0,
    )
    out = render_video(scene)
    back_full, back_visible = out.full[0, 0], out.visible[0, 0]
    assert back_full.sum() == 196
    assert back_visible.sum() == 98
    assert out.visible[1, 0].sum() == 196
    assert not (back_visible & out.visible[1, 0]).any()
    assert back_visible[13:27, 13:20].all()
    # The background keeps its colour outside both squares (no noise here).
    outside = ~(out.full[0, 0] | out.full[1, 0])
    assert (out.frames[0][outside] == 100).all()


def test_enter_leave_produces_null_frames() -> None:
    """With enter_leave_rate 1 and no crossings, every object starts or ends outside the
    frame, so its annotation has a null at the first or last frame."""
    params = SynthParams.preset("smoke", enter_leave_rate=1.0, occlusion_rate=0.0)
    for index in range(5):
        scene = sample_scene(np.random.default_rng([0, 9, index]), params)
        rendered = render_video(scene)
        for k, track in enumerate(scene.tracks):
            ann = ytvis_annotation(1, 1, track.category_id, rendered.visible[k])
            segs = ann["segmentations"]
            assert segs[0] is None or segs[-1] is None
            assert ann["areas"][0] is None or ann["areas"][-1] is None
            assert any(s is not None for s in segs)  # it does get into the frame


def test_crossing_paths_occlude() -> None:
    """occlusion_rate 1: every video has two objects sharing a centre at one frame, so some
    object loses pixels to another in some frame."""
    params = SynthParams.preset("smoke", occlusion_rate=1.0, objects_per_video=[2, 2])
    for index in range(5):
        rendered = render_video(sample_scene(np.random.default_rng([1, 0, index]), params))
        assert (rendered.visible.sum(axis=(2, 3)) < rendered.full.sum(axis=(2, 3))).any()


def test_pillar_hides_the_object_it_stands_across_for_the_asked_frames() -> None:
    """A square (radius 6, angle 0: half-side 0.7 * 6 = 4.2) moving right at 2 px per frame,
    cx = 8 + 2 t over 16 frames, on a flat background. At t = 7 (cx 22) it covers the columns
    whose centres lie within 4.2 of 22: 18..25. The pillar hiding it for 4 frames
    widens that by 2 * 4 / 2 = 4 px each side: columns 14..29. The square fits in it while it
    has moved at most 4 px, i.e. for t = 5..9 exactly: 4 + 1 frames."""
    square = next(c.id for c in CATEGORIES if c.name == "square")
    t = np.arange(16, dtype=float)
    track = Track(
        category_id=square,
        appearance=sample_appearance(np.random.default_rng(0)),
        cx=8.0 + 2.0 * t,
        cy=np.full(16, 20.0),
        radius=np.full(16, 6.0),
        angle=np.zeros(16),
    )
    pillar = pillar_across(track, 7, 4.0, np.array([10.0, 200.0, 30.0]), 40, 64)
    assert (pillar.axis, pillar.start, pillar.stop) == (1, 14, 30)
    scene = Scene(
        height=40,
        width=64,
        tracks=(track,),
        background=np.full((40, 64, 3), 100.0),
        pan=np.zeros((16, 2), np.int64),
        noise_std=0.0,
        noise_seed=0,
        pillar=pillar,
    )
    out = render_video(scene)
    # Painted over everything, in its colour, and nowhere else.
    assert (out.frames[:, :, 14:30] == [10, 200, 30]).all()
    assert (out.frames[:, :, :14] != [10, 200, 30]).any(axis=-1).all()
    visible = out.visible[0].sum(axis=(1, 2))
    full = out.full[0].sum(axis=(1, 2))
    assert (full == 64).all()  # the 8 x 8 square is in the frame throughout
    assert np.flatnonzero(visible == 0).tolist() == [5, 6, 7, 8, 9]
    assert visible[0] == full[0] and visible[15] == full[15]  # clear of the band at the ends
    # The visible mask is the full shape minus the band.
    band = np.zeros((40, 64), bool)
    band[:, 14:30] = True
    assert (out.visible[0] == (out.full[0] & ~band)).all()


def test_horizontal_motion_gets_a_vertical_pillar_and_vertical_a_horizontal_one() -> None:
    """A square of radius 5 (half-side 3.5) moving up 3 px per frame, cy = 40.2 - 3 t: at t = 3
    (cy 31.2) it covers the rows whose centres lie within 3.5 of 31.2, 28..34; hidden for 2
    frames, the band adds 3 rows each side: 25..37."""
    square = next(c.id for c in CATEGORIES if c.name == "square")
    t = np.arange(8, dtype=float)
    look = sample_appearance(np.random.default_rng(0))
    up = Track(square, look, np.full(8, 30.0), 40.2 - 3.0 * t, np.full(8, 5.0), np.zeros(8))
    pillar = pillar_across(up, 3, 2.0, np.zeros(3), 50, 60)
    assert (pillar.axis, pillar.start, pillar.stop) == (0, 25, 38)
    mask = Pillar(0, 25, 38, (0.0, 0.0, 0.0)).mask(50, 60)
    assert mask[25:38].all() and mask.sum() == 13 * 60


def test_pillars_are_drawn_last_and_change_nothing_else_in_the_world() -> None:
    """pillar_rate 1 gives every video a pillar (its objects are small and in the frame
    mid-video); the tracks, background and noise equal those of the same video without
    pillars (the pillar's draws come last), so worlds without pillars are the ones generated
    before the option existed. In every video some object in the frame is hidden whole by the
    pillar at a frame of the middle third: the frame it stands at."""
    # Objects small enough that a pillar hiding one stays under 30 % of the frame.
    shape = {"frames_per_video": [12, 16], "object_size": [0.1, 0.2]}
    with_pillars = SynthParams.preset("smoke", pillar_rate=1.0, **shape)
    without = SynthParams.preset("smoke", **shape)
    for index in range(5):
        scene = sample_scene(np.random.default_rng([3, 1, index]), with_pillars)
        plain = sample_scene(np.random.default_rng([3, 1, index]), without)
        assert plain.pillar is None and isinstance(scene.pillar, Pillar)
        across = scene.width if scene.pillar.axis == 1 else scene.height
        assert scene.pillar.stop - scene.pillar.start <= 0.3 * across
        assert scene.noise_seed == plain.noise_seed
        assert (scene.background == plain.background).all() and (scene.pan == plain.pan).all()
        for a, b in zip(scene.tracks, plain.tracks, strict=True):
            assert a.category_id == b.category_id and (a.cx == b.cx).all()
        rendered = render_video(scene)
        num_frames = scene.num_frames
        middle = range(round((num_frames - 1) / 3), round(2 * (num_frames - 1) / 3) + 1)
        full = rendered.full.sum(axis=(2, 3))[:, middle]
        visible = rendered.visible.sum(axis=(2, 3))[:, middle]
        assert ((full > 0) & (visible == 0)).any(), index


# --------------------------------------------------------------------------------------------
# The generated world


def test_smoke_world_counts_match(world: tuple[Path, dict[str, Any]]) -> None:
    # Generation time is recorded (manifest["generation_seconds"]) but not asserted: a timed
    # test fails on a loaded machine (3.3 s beside two trainings); speed is for benchmarks.
    root, manifest = world
    assert manifest["generation_seconds"] > 0
    assert manifest["counts"]["train"]["videos"] == SMOKE.num_train_videos
    assert manifest["counts"]["valid"]["videos"] == SMOKE.num_valid_videos
    assert SynthParams.from_dict(manifest["params"]) == SMOKE
    assert load_json(root / "manifest.json")["files"] == manifest["files"]
    for rel in manifest["files"]:
        assert (root / rel).is_file(), rel


@pytest.mark.parametrize("split", ["train", "valid"])
def test_ytvis_json_is_well_formed(world: tuple[Path, dict[str, Any]], split: str) -> None:
    root, _ = world
    doc = load_json(root / "ytvis" / f"{split}.json")
    assert set(doc) == {"info", "licenses", "videos", "categories", "annotations"}
    assert [c["id"] for c in doc["categories"]] == list(range(1, len(CATEGORIES) + 1))
    videos = {v["id"]: v for v in doc["videos"]}
    assert sorted(videos) == list(range(1, len(videos) + 1))
    ann_ids = [a["id"] for a in doc["annotations"]]
    assert sorted(ann_ids) == list(range(1, len(ann_ids) + 1))
    for video in doc["videos"]:
        assert len(video["file_names"]) == video["length"]
        for t, name in enumerate(video["file_names"]):
            assert name == f"synth_{split}_{video['id'] - 1:04d}/{5 * t:05d}.jpg"
            with Image.open(root / "ytvis" / split / "JPEGImages" / name) as image:
                assert image.size == (video["width"], video["height"])
    for ann in doc["annotations"]:
        video = videos[ann["video_id"]]
        assert 1 <= ann["category_id"] <= len(CATEGORIES)
        assert ann["iscrowd"] == 0
        assert (ann["height"], ann["width"]) == (video["height"], video["width"])
        for key in ("segmentations", "bboxes", "areas"):
            assert len(ann[key]) == video["length"]
        assert any(s is not None for s in ann["segmentations"])  # never-visible: no annotation
        for rle, box, area in zip(ann["segmentations"], ann["bboxes"], ann["areas"], strict=True):
            assert (rle is None) == (box is None) == (area is None)
            if rle is None:
                continue
            assert rle["size"] == [video["height"], video["width"]]
            mask = masks.decode(rle)
            assert area == int(mask.sum()) > 0
            ys, xs = np.nonzero(mask)
            assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def _masks_by_frame(doc: dict[str, Any], video_id: int) -> list[list[np.ndarray]]:
    """Per frame, the decoded masks of the video's annotations (empty where null), in order."""
    anns = [a for a in doc["annotations"] if a["video_id"] == video_id]
    video = next(v for v in doc["videos"] if v["id"] == video_id)
    empty = np.zeros((video["height"], video["width"]), np.uint8)
    return [
        [
            empty if a["segmentations"][t] is None else masks.decode(a["segmentations"][t])
            for a in anns
        ]
        for t in range(video["length"])
    ]


def test_ytvis_masks_equal_the_rerendered_scene(world: tuple[Path, dict[str, Any]]) -> None:
    """Re-render each train video from its seed: the visible masks match the RLEs pixel for
    pixel, and the JPEG frames are close to the rendered pixels."""
    root, _ = world
    doc = load_json(root / "ytvis" / "train.json")
    for video in doc["videos"]:
        rendered = render_video(video_scene(SMOKE, "train", video["id"] - 1))
        shown = [k for k in range(len(rendered.visible)) if rendered.visible[k].any()]
        per_frame = _masks_by_frame(doc, video["id"])
        for t in range(video["length"]):
            assert len(per_frame[t]) == len(shown)
            for mask, k in zip(per_frame[t], shown, strict=True):
                np.testing.assert_array_equal(mask, rendered.visible[k, t])
            jpeg = root / "ytvis" / "train" / "JPEGImages" / video["file_names"][t]
            diff = np.abs(np.asarray(Image.open(jpeg), float) - rendered.frames[t])
            assert diff.mean() < 6.0  # q90 4:2:0 JPEG of noisy frames: about 4


def test_valid_masks_disjoint_and_davis_agrees(world: tuple[Path, dict[str, Any]]) -> None:
    """DAVIS: palette PNG whose id k+1 is exactly the k-th YouTube-VIS instance of the video;
    frames renumbered densely and byte-identical to the YouTube-VIS JPEGs."""
    root, _ = world
    doc = load_json(root / "ytvis" / "valid.json")
    davis = root / "davis"
    names = [v["file_names"][0].split("/")[0] for v in doc["videos"]]
    for year in ("2017", "2019"):
        assert (davis / "ImageSets" / year / "val.txt").read_text().split() == names
    palette = davis_palette()
    for video, name in zip(doc["videos"], names, strict=True):
        per_frame = _masks_by_frame(doc, video["id"])
        for t in range(video["length"]):
            stack = np.stack(per_frame[t]) if per_frame[t] else np.zeros((0, 1, 1))
            assert stack.sum(axis=0).max(initial=0) <= 1  # masks of one frame never overlap
            expected = np.zeros((video["height"], video["width"]), np.uint8)
            for k, mask in enumerate(per_frame[t]):
                expected[mask > 0] = k + 1
            with Image.open(
                davis / "Annotations_unsupervised" / "480p" / name / f"{t:05d}.png"
            ) as png:
                assert png.mode == "P"
                assert png.getpalette()[:12] == palette[:12]
                np.testing.assert_array_equal(np.asarray(png), expected)
            ytvis_jpeg = root / "ytvis" / "valid" / "JPEGImages" / video["file_names"][t]
            davis_jpeg = davis / "JPEGImages" / "480p" / name / f"{t:05d}.jpg"
            assert davis_jpeg.read_bytes() == ytvis_jpeg.read_bytes()


def test_ytvis_frame_names_step_by_five() -> None:
    assert [ytvis_frame_name(t) for t in (0, 1, 3)] == ["00000", "00005", "00015"]


def test_davis_palette_by_hand() -> None:
    """PASCAL/DAVIS colours: 0 black, 1 (128,0,0), 2 (0,128,0), 3 (128,128,0), 4 (0,0,128),
    8 (64,0,0)."""
    p = davis_palette()
    assert len(p) == 768
    rgb = [tuple(p[3 * i : 3 * i + 3]) for i in (0, 1, 2, 3, 4, 8)]
    assert rgb == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (64, 0, 0)]


@pytest.mark.parametrize("split", ["train", "valid"])
def test_mp4_decodes_to_the_jpeg_frames(world: tuple[Path, dict[str, Any]], split: str) -> None:
    root, _ = world
    doc = load_json(root / "ytvis" / f"{split}.json")
    for video in doc["videos"]:
        name = video["file_names"][0].split("/")[0]
        frames = decoded_frames(root / "videos" / split / f"{name}.mp4")
        assert len(frames) == video["length"]
        for frame, file_name in zip(frames, video["file_names"], strict=True):
            assert frame.shape == (video["height"], video["width"], 3)
            jpeg = np.asarray(Image.open(root / "ytvis" / split / "JPEGImages" / file_name), float)
            assert np.abs(frame - jpeg).mean() < 6.0


def test_vocabulary_and_corpora(world: tuple[Path, dict[str, Any]]) -> None:
    root, _ = world
    names = [c.name for c in CATEGORIES]
    assert (root / "videos" / "vocabulary.txt").read_text().splitlines() == names
    index = load_json(root / "corpora" / "unlabeled" / "index.json")
    assert len(index["images"]) == SMOKE.num_unlabeled_images
    for entry in index["images"]:
        assert names[entry["category_id"] - 1] == entry["category"]
        assert entry["colour"] in COLOUR_NAMES
        with Image.open(root / "corpora" / "unlabeled" / entry["file"]) as image:
            assert image.size == (SMOKE.corpus_image_size, SMOKE.corpus_image_size)
    lines = (root / "corpora" / "captioned" / "captions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == SMOKE.num_captioned_images
    used = set()
    for record in records:
        shape = names[record["category_id"] - 1]
        options = [caption(t, shape, record["colour"]) for t in CAPTION_TEMPLATES]
        assert record["caption"] in options
        used.add(options.index(record["caption"]))
    assert len(used) >= 4  # the templates vary
    side = SMOKE.corpus_image_size
    for record in records:  # the object's mask: the image's size, its object near the centre
        mask = masks.decode(record["segmentation"])
        assert mask.shape == (side, side) and mask.any()
        ys, xs = np.nonzero(mask)
        assert abs(ys.mean() - side / 2) < 0.25 * side and abs(xs.mean() - side / 2) < 0.25 * side
    for record in records:
        words = record["caption"].replace(",", "").split()
        assert names[record["category_id"] - 1] in words and record["colour"] in words
        assert (root / "corpora" / "captioned" / record["file"]).is_file()


def test_caption_articles() -> None:
    assert caption(CAPTION_TEMPLATES[0], "star", "red") == "a photo of a red star"
    assert caption(CAPTION_TEMPLATES[0], "arrow", "orange") == "a photo of an orange arrow"
    assert (
        caption("a picture of {a_shape}, {colour}", "arrow", "red") == "a picture of an arrow, red"
    )


def test_generation_is_deterministic(world: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """A second generation gives identical JSON (but the timing), PNG, JPEG and mp4 pixels."""
    root, manifest = world
    again = generate_world(tmp_path / "again", SMOKE, progress=False)
    assert {k: v for k, v in again.items() if k != "generation_seconds"} == {
        k: v for k, v in manifest.items() if k != "generation_seconds"
    }
    for rel in manifest["files"]:
        a, b = root / rel, tmp_path / "again" / rel
        if rel.endswith(".mp4"):
            for fa, fb in zip(decoded_frames(a), decoded_frames(b), strict=True):
                np.testing.assert_array_equal(fa, fb)
        else:
            assert a.read_bytes() == b.read_bytes(), rel


def test_videos_do_not_depend_on_the_video_count() -> None:
    """Video i draws from its own generator: the same scene whatever the number of videos."""
    more = SynthParams.preset("smoke", num_train_videos=9)
    a, b = video_scene(SMOKE, "train", 2), video_scene(more, "train", 2)
    np.testing.assert_array_equal(render_video(a).frames, render_video(b).frames)


def test_output_dir_that_is_a_file_is_a_data_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        generate_world(target, SMOKE, progress=False)


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_generates_and_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["synth", str(out), "--preset", "smoke", "--seed", "5", "--no-progress"]
    argv += ["--set", "num_train_videos=1", "--set", "num_valid_videos=1"]
    argv += ["--set", "frames_per_video=[3, 3]", "--set", "num_unlabeled_images=2"]
    assert main(argv) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("synth: wrote 1 train + 1 valid videos (6 frames")
    params = load_json(out / "manifest.json")["params"]
    assert params["seed"] == 5 and params["frames_per_video"] == [3, 3]
    assert len(list((out / "corpora" / "unlabeled" / "images").iterdir())) == 2


def test_cli_bad_override_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", str(tmp_path / "x"), "--preset", "smoke", "--set", "colour=red"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "'colour'" in err and "\n" not in err
