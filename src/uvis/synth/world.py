"""Generate the whole synthetic world: videos in YouTube-VIS, DAVIS and mp4 form, and corpora.

Layout under the output folder::

    manifest.json
    ytvis/{train,valid}.json, ytvis/{train,valid}/JPEGImages/<video>/<00000, 00005 ...>.jpg
    davis/JPEGImages/480p/<seq>/00000.jpg, davis/Annotations_unsupervised/480p/<seq>/00000.png
    davis/ImageSets/{2017,2019}/val.txt          (the valid split, frames renumbered densely)
    videos/{train,valid}/<video>.mp4, videos/vocabulary.txt
    corpora/unlabeled/images/*.jpg + index.json, corpora/captioned/images/*.jpg + captions.jsonl

Every video draws from its own generator ``default_rng([seed, split_stream, index])``, so a
video does not depend on how many others are generated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uvis import __version__
from uvis.errors import DataError
from uvis.io import atomic_write_bytes, atomic_write_json
from uvis.progress import progress_bar
from uvis.synth import corpora
from uvis.synth.appearance import COLOUR_NAMES
from uvis.synth.params import SynthParams
from uvis.synth.render import render_video
from uvis.synth.scene import Scene, sample_scene
from uvis.synth.shapes import CATEGORIES
from uvis.synth.writers import (
    davis_frame_name,
    encode_jpeg,
    encode_palette_png,
    instance_id_map,
    write_lines,
    write_mp4,
    ytvis_annotation,
    ytvis_document,
    ytvis_frame_name,
    ytvis_video,
)

SPLITS: tuple[str, ...] = ("train", "valid")  # the index of a split is its random-stream id
DAVIS_RESOLUTION = "480p"  # DAVIS folder name; the frames keep the world's own size
DAVIS_YEARS = ("2017", "2019")


@dataclass(frozen=True)
class _VideoOutput:
    """What one written video contributes to its split's JSON and to the manifest."""

    video: dict[str, Any]
    annotations: list[dict[str, Any]]
    files: list[Path]


def video_name(split: str, index: int) -> str:
    """Name of the ``index``-th video of ``split`` (``synth_train_0000``)."""
    return f"synth_{split}_{index:04d}"


def video_scene(params: SynthParams, split: str, index: int) -> Scene:
    """The scene of one video, from its own generator."""
    rng = np.random.default_rng([params.seed, SPLITS.index(split), index])
    return sample_scene(rng, params)


def _write_video(
    out: Path,
    params: SynthParams,
    split: str,
    index: int,
    video_id: int,
    first_annotation_id: int,
) -> _VideoOutput:
    """Render one video and write its JPEG frames, mp4, and (valid split) DAVIS files."""
    name = video_name(split, index)
    scene = video_scene(params, split, index)
    rendered = render_video(scene)
    num_frames = scene.num_frames
    files: list[Path] = []

    jpegs = [encode_jpeg(frame, params.jpeg_quality) for frame in rendered.frames]
    for t, data in enumerate(jpegs):
        path = out / "ytvis" / split / "JPEGImages" / name / f"{ytvis_frame_name(t)}.jpg"
        atomic_write_bytes(path, data)
        files.append(path)

    # Instances never visible get no annotation (and no DAVIS id); ids follow scene order.
    shown = [k for k in range(len(scene.tracks)) if rendered.visible[k].any()]
    annotations = [
        ytvis_annotation(
            first_annotation_id + n,
            video_id,
            scene.tracks[k].category_id,
            rendered.visible[k],
        )
        for n, k in enumerate(shown)
    ]

    if split == "valid":
        davis = out / "davis"
        for t, data in enumerate(jpegs):
            frame = davis_frame_name(t)
            jpg = davis / "JPEGImages" / DAVIS_RESOLUTION / name / f"{frame}.jpg"
            png = davis / "Annotations_unsupervised" / DAVIS_RESOLUTION / name / f"{frame}.png"
            atomic_write_bytes(jpg, data)
            atomic_write_bytes(png, encode_palette_png(instance_id_map(rendered.visible[shown, t])))
            files += [jpg, png]

    mp4 = out / "videos" / split / f"{name}.mp4"
    write_mp4(mp4, rendered.frames, params.fps, params.mp4_crf)
    files.append(mp4)
    video = ytvis_video(video_id, name, scene.height, scene.width, num_frames)
    return _VideoOutput(video=video, annotations=annotations, files=files)


def _split_counts(document: dict[str, Any]) -> dict[str, int]:
    """Videos, frames, instances and non-empty masks of one YouTube-VIS document."""
    return {
        "videos": len(document["videos"]),
        "frames": sum(v["length"] for v in document["videos"]),
        "instances": len(document["annotations"]),
        "masks": sum(s is not None for a in document["annotations"] for s in a["segmentations"]),
    }


def generate_world(out_dir: Path, params: SynthParams, *, progress: bool = True) -> dict[str, Any]:
    """Write the synthetic world described by ``params`` under ``out_dir``; return the manifest.

    Deterministic: the same ``params`` give byte-identical JSON (except the manifest's
    ``generation_seconds``), PNG and JPEG files, and mp4 files for the same FFmpeg build.
    ``manifest.json`` is written last, so its presence marks a complete world.

    Raises:
        DataError: if ``out_dir`` is not a writable folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a directory")
    start = time.perf_counter()
    try:
        manifest = _generate(out, params, progress)
    except OSError as exc:
        raise DataError(exc.filename or out, exc.strerror or str(exc)) from exc
    manifest["generation_seconds"] = round(time.perf_counter() - start, 3)
    try:
        atomic_write_json(out / "manifest.json", manifest, indent=1)
    except OSError as exc:
        raise DataError(out / "manifest.json", exc.strerror or str(exc)) from exc
    return manifest


def _generate(out: Path, params: SynthParams, progress: bool) -> dict[str, Any]:
    files: list[Path] = []
    counts: dict[str, Any] = {}
    total = params.num_train_videos + params.num_valid_videos
    bar = progress_bar(total=total, desc="synth videos", unit="video", disable=not progress)
    with bar:
        for split in SPLITS:
            count = params.num_train_videos if split == "train" else params.num_valid_videos
            videos, annotations = [], []
            for index in range(count):
                result = _write_video(out, params, split, index, index + 1, len(annotations) + 1)
                videos.append(result.video)
                annotations += result.annotations
                files += result.files
                bar.update()
            document = ytvis_document(
                videos, annotations, CATEGORIES, f"uvis synthetic world, {split} split"
            )
            path = out / "ytvis" / f"{split}.json"
            atomic_write_json(path, document)
            files.append(path)
            counts[split] = _split_counts(document)

    valid_names = [video_name("valid", i) for i in range(params.num_valid_videos)]
    for year in DAVIS_YEARS:
        path = out / "davis" / "ImageSets" / year / "val.txt"
        write_lines(path, valid_names)
        files.append(path)
    vocabulary = out / "videos" / "vocabulary.txt"
    write_lines(vocabulary, [c.name for c in CATEGORIES])
    files.append(vocabulary)

    files += corpora.write_unlabeled(out / "corpora" / "unlabeled", params)
    files += corpora.write_captioned(out / "corpora" / "captioned", params)
    counts["unlabeled_images"] = params.num_unlabeled_images
    counts["captioned_images"] = params.num_captioned_images

    return {
        "uvis_version": __version__,
        "params": params.to_dict(),
        "vocabulary": {
            "categories": [
                {"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in CATEGORIES
            ],
            "colours": list(COLOUR_NAMES),
        },
        "counts": counts,
        "files": sorted(p.relative_to(out).as_posix() for p in files),
    }
