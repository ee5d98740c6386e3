"""Qualitative strips: chosen videos' frames with coloured masks, class names and track ids.

For each chosen video of a run, :func:`write_run_strips` writes a PNG strip (ground truth on
top, the run's tracks below, a few frames side by side, a header saying why the video was
chosen) and an animated GIF of the video (ground truth | prediction), plus one HTML page that
shows all the GIFs (the Snakemake report shows HTML and PNG inline, GIFs only as downloads).

Videos are the failure cases picked by :func:`uvis.report.failures.pick_failures` (UVIS Figure
4: wrong class, merged instances, flicker) and a few evenly spaced over the split. The tracks
drawn are the ones the failure analysis looks at (each track's best-scoring result, as many as
the video has objects). Ground-truth object ``k`` is drawn in colour ``k``; a track matched to
it in the same colour; unmatched tracks in further colours. Masks and labels are drawn by
:func:`uvis.inference.overlay.draw_frame`.
"""

from __future__ import annotations

import base64
import html
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from uvis import masks
from uvis.data.frames import read_frame
from uvis.errors import DataError
from uvis.inference.overlay import draw_frame, track_colour
from uvis.inference.videos import VideoFrames, frame_index_videos
from uvis.io import temporary_dir
from uvis.progress import progress_bar
from uvis.report.failures import (
    ERROR_KINDS,
    GroundTruth,
    MaskTrack,
    VideoErrors,
    analyse_video,
    check_tracks,
    read_failures,
    read_ground_truth,
    read_tracks,
)

GAP = 4
"""Pixels between panels."""

BAND = 18
"""Height of a text band (title, row label, frame caption)."""

Drawn = tuple[np.ndarray | None, tuple[int, int, int], str]
"""A mask (or None), its colour and its label, as :func:`draw_frame` takes them."""


@dataclass(frozen=True)
class StripSettings:
    """``frames`` per PNG strip, each ``height`` pixels high; at most ``gif_frames`` frames (evenly
    spaced) in the GIF, shown at ``gif_fps``."""

    frames: int = 6
    height: int = 160
    gif_frames: int = 48
    gif_fps: float = 4.0


@dataclass(frozen=True)
class StripVideo:
    """A video chosen for a strip, and why: ``sample`` or one of the failure kinds."""

    video_id: int
    reason: str


def evenly_spaced(items: Sequence[int], n: int) -> list[int]:
    """``n`` items spread evenly from the first to the last (all of them if fewer)."""
    if n <= 0 or not items:
        return []
    if n >= len(items):
        return list(items)
    return [items[round(k)] for k in np.linspace(0, len(items) - 1, n)]


def chosen_videos(
    video_ids: Sequence[int], picks: dict[str, list[int]], samples: int
) -> list[StripVideo]:
    """``samples`` evenly spaced videos, then the picked failure cases of each kind."""
    chosen = [StripVideo(v, "sample") for v in evenly_spaced(sorted(video_ids), samples)]
    for kind in ERROR_KINDS:
        chosen += [StripVideo(v, kind) for v in picks.get(kind, [])]
    return chosen


def strip_frames(num_frames: int, count: int, events: Sequence[int] = ()) -> list[int]:
    """Frames of a strip: ``count`` evenly spaced over the video or, when the failure happens
    at known frames, ``count`` consecutive frames starting one before the first of them."""
    if not events:
        return evenly_spaced(list(range(num_frames)), count)
    start = max(0, min(events[0] - 1, num_frames - count))
    return list(range(start, min(num_frames, start + count)))


# ---------------------------------------------------------------------------------------------
# Drawing


def _font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def panel(image: np.ndarray, objects: Sequence[Drawn], height: int) -> np.ndarray:
    """One frame scaled to ``height`` pixels (masks nearest-neighbour) with ``objects`` drawn."""
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    scaled = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    drawn = []
    for mask, colour, label in objects:
        if mask is not None:
            mask = np.asarray(
                Image.fromarray(mask.astype(np.uint8) * 255).resize(
                    (width, height), Image.Resampling.NEAREST
                )
            )
            mask = mask > 127
        drawn.append((mask, colour, label))
    return draw_frame(scaled, drawn)


def _band(width: int, text: str, *, size: int = 12) -> Image.Image:
    band = Image.new("RGB", (width, BAND), (255, 255, 255))
    ImageDraw.Draw(band).text((3, 2), text, fill=(0, 0, 0), font=_font(size))
    return band


def compose(
    title: str, rows: Sequence[tuple[str, Sequence[np.ndarray]]], captions: Sequence[str] = ()
) -> Image.Image:
    """A white canvas: a title band, then per row a label band and its panels side by side
    (``GAP`` pixels apart), and a band of column ``captions`` if given."""
    panel_h, panel_w = rows[0][1][0].shape[:2]
    n = len(rows[0][1])
    width = n * panel_w + (n - 1) * GAP
    height = BAND + len(rows) * (BAND + panel_h) + (BAND if captions else 0)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(_band(width, title, size=13), (0, 0))
    y = BAND
    for label, panels in rows:
        canvas.paste(_band(width, label), (0, y))
        y += BAND
        for k, p in enumerate(panels):
            canvas.paste(Image.fromarray(p), (k * (panel_w + GAP), y))
        y += panel_h
    for k, caption in enumerate(captions):
        canvas.paste(_band(panel_w, caption, size=11), (k * (panel_w + GAP), y))
    return canvas


# ---------------------------------------------------------------------------------------------
# One video


@dataclass(frozen=True)
class VideoScene:
    """What is drawn for one video: its frames, and the objects and tracks with their styles."""

    frames: VideoFrames
    errors: VideoErrors
    gt: list[tuple[MaskTrack, tuple[int, int, int], str]]
    tracks: list[tuple[MaskTrack, tuple[int, int, int], str]]

    def drawn(self, t: int, which: str) -> list[Drawn]:
        """The ground truth (``gt``) or the tracks (``pred``) of frame ``t``."""
        items = self.gt if which == "gt" else self.tracks
        return [
            (None if o.masks[t] is None else masks.decode(o.masks[t]), colour, label)
            for o, colour, label in items
        ]


def video_scene(
    frames: VideoFrames,
    gt: GroundTruth,
    tracks: Sequence[MaskTrack],
    names: dict[int, str],
    *,
    iou_threshold: float,
    cover: float,
) -> VideoScene:
    """Analyse one video and give each object and track its colour and label."""
    video = gt.videos[frames.video_id]
    objects = gt.objects[frames.video_id]
    errors, shown, pairs = analyse_video(
        video, objects, tracks, iou_threshold=iou_threshold, cover=cover
    )
    colour_of = {p: track_colour(g) for g, p in pairs}
    unmatched = iter(range(len(objects), len(objects) + len(shown)))
    styled_tracks = []
    for p, track in enumerate(shown):
        colour = colour_of[p] if p in colour_of else track_colour(next(unmatched))
        label = f"{names.get(track.category_id, track.category_id)} #{track.track_id}"
        styled_tracks.append((track, colour, label))
    styled_gt = [
        (o, track_colour(g), str(names.get(o.category_id, o.category_id)))
        for g, o in enumerate(objects)
    ]
    return VideoScene(frames=frames, errors=errors, gt=styled_gt, tracks=styled_tracks)


def _reason_text(reason: str, errors: VideoErrors) -> str:
    if reason == "sample":
        return "sample"
    detail = {
        "wrong_class": f"{errors.wrong_class} object(s) with the wrong class",
        "merged": f"{errors.merged} (track, frame) covering two or more objects",
        "flicker": f"{errors.dropouts} dropout(s), {errors.id_switches} identity switch(es)",
    }[reason]
    return f"{reason.replace('_', ' ')}: {detail}"


def write_strip(
    scene: VideoScene, reason: str, run: str, out: Path, settings: StripSettings
) -> None:
    """The PNG strip of one video (ground truth above, the run's tracks below)."""
    frames = scene.frames
    ts = strip_frames(len(frames.paths), settings.frames, scene.errors.event_frames(reason))
    images = [read_frame(frames.paths[t], frames.height, frames.width) for t in ts]
    rows = [
        (
            label,
            [
                panel(img, scene.drawn(t, w), settings.height)
                for t, img in zip(ts, images, strict=True)
            ],
        )
        for label, w in (("ground truth", "gt"), (run, "pred"))
    ]
    title = f"{frames.name}: {_reason_text(reason, scene.errors)}"
    image = compose(title, rows, [f"frame {t}" for t in ts])
    image.save(out, format="PNG")


def write_gif(scene: VideoScene, out: Path, settings: StripSettings) -> None:
    """An animated GIF of the video: ground truth | prediction, frame number in the header."""
    frames = scene.frames
    ts = evenly_spaced(list(range(len(frames.paths))), settings.gif_frames)
    pictures = []
    for t in ts:
        img = read_frame(frames.paths[t], frames.height, frames.width)
        panels = [panel(img, scene.drawn(t, which), settings.height) for which in ("gt", "pred")]
        pictures.append(
            compose(f"{frames.name}  frame {t}", [("ground truth | prediction", panels)])
        )
    # 64 colours without dithering: masks stay flat, textured frames do not bloat the file.
    pictures = [p.quantize(colors=64, dither=Image.Dither.NONE) for p in pictures]
    pictures[0].save(
        out,
        format="GIF",
        save_all=True,
        append_images=pictures[1:],
        duration=round(1000 / settings.gif_fps),
        loop=0,
    )


def animations_page(run: str, gifs: Sequence[tuple[str, Path]]) -> str:
    """An HTML page showing each ``(caption, gif)`` inline (as a data URI)."""
    items = []
    for caption, gif in gifs:
        data = base64.b64encode(gif.read_bytes()).decode("ascii")
        items.append(
            f'<figure><img src="data:image/gif;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{html.escape(run)}: animations</title></head>\n<body>\n"
        f"<h1>{html.escape(run)}: animations</h1>\n" + "\n".join(items) + "\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------------------------------------
# A run


def write_run_strips(
    gt_json: str | os.PathLike[str],
    frame_index: str | os.PathLike[str],
    tracks_path: str | os.PathLike[str],
    failures_json: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    run: str,
    samples: int = 2,
    settings: StripSettings | None = None,
    progress: bool = True,
) -> list[Path]:
    """Strips and GIFs of a run's chosen videos into ``out_dir`` (replaced as a whole, so an
    interrupted job leaves no partial folder); returns the files written.

    Files: ``<video>.<reason>.png`` and ``.gif`` per chosen video, and ``animations.html``.
    The failure analysis settings and picks come from ``failures_json``
    (:func:`uvis.report.failures.write_failures`).
    """
    settings = settings or StripSettings()
    failures = read_failures(failures_json)
    gt = read_ground_truth(gt_json)
    names = {c.id: c.name for c in gt.categories}
    videos = {v.video_id: v for v in frame_index_videos(frame_index)}
    tracks = read_tracks(tracks_path)
    chosen = chosen_videos(sorted(gt.videos), failures["picks"], samples)
    out_dir = Path(out_dir)
    tmp = temporary_dir(out_dir)
    written = []
    gifs = []
    try:
        for item in progress_bar(chosen, desc=f"strips {run}", unit="video", disable=not progress):
            frames = videos.get(item.video_id)
            video = gt.videos.get(item.video_id)
            if frames is None or video is None:
                raise DataError(frame_index, f"video {item.video_id} is not in the frame index")
            if len(frames.paths) != len(video.frame_paths):
                raise DataError(
                    frame_index,
                    f"video {item.video_id} has {len(frames.paths)} frames, the ground truth "
                    f"{len(video.frame_paths)} (frames.stride must be 1 to compare)",
                )
            video_tracks = tracks.get(item.video_id, [])
            check_tracks(video, video_tracks, tracks_path)
            scene = video_scene(
                frames,
                gt,
                video_tracks,
                names,
                iou_threshold=failures["settings"]["iou_threshold"],
                cover=failures["settings"]["cover"],
            )
            stem = f"{frames.name.replace('/', '_')}.{item.reason}"
            write_strip(scene, item.reason, run, tmp / f"{stem}.png", settings)
            write_gif(scene, tmp / f"{stem}.gif", settings)
            caption = f"{frames.name}: {_reason_text(item.reason, scene.errors)}"
            gifs.append((caption, tmp / f"{stem}.gif"))
            written += [out_dir / f"{stem}.png", out_dir / f"{stem}.gif"]
        (tmp / "animations.html").write_text(animations_page(run, gifs))
        written.append(out_dir / "animations.html")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return written
