"""An overlay video of tracked results: each track's mask tinted in its own colour, labelled.

For people looking at what the model did (``uvis segment``). Frames are drawn and encoded one at
a time (H.264 in an .mp4, written atomically), so memory does not grow with video length.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

from uvis import masks
from uvis.data.frames import read_frame
from uvis.io import atomic_path


def track_colour(index: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour for the ``index``-th track (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_frame(
    image: np.ndarray,
    tracks: Sequence[tuple[np.ndarray | None, tuple[int, int, int], str]],
    *,
    alpha: float = 0.5,
) -> np.ndarray:
    """``image`` with each ``(mask or None, colour, label)`` tinted at ``alpha`` and labelled.

    The label is written at the top-left corner of the mask's bounding box.
    """
    out = image.astype(np.float32)
    for mask, colour, _ in tracks:
        if mask is not None and mask.any():
            m = mask.astype(bool)
            out[m] = (1 - alpha) * out[m] + alpha * np.asarray(colour, np.float32)
    canvas = Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for mask, colour, label in tracks:
        if mask is not None and mask.any():
            ys, xs = np.nonzero(mask)
            draw.text((int(xs.min()), max(0, int(ys.min()) - 10)), label, fill=colour)
    return np.asarray(canvas)


def write_overlay_video(
    frame_paths: Sequence[str],
    results: Sequence[dict[str, Any]],
    category_names: dict[int, str],
    out_path: str | os.PathLike[str],
    *,
    fps: int = 6,
    min_score: float = 0.0,
) -> int:
    """Write the overlay of one video's YouTube-VIS ``results`` as an .mp4; returns #tracks drawn.

    Results below ``min_score`` are left out. Odd frame sizes are padded by one pixel (H.264 in
    yuv420p needs even sizes).
    """
    shown = [r for r in results if r["score"] >= min_score]
    styles = [
        (
            track_colour(i),
            f"{category_names.get(r['category_id'], r['category_id'])} {r['score']:.2f}",
        )
        for i, r in enumerate(shown)
    ]
    with atomic_path(out_path) as tmp:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = None
            for t, path in enumerate(frame_paths):
                image = read_frame(path)
                h, w = image.shape[:2]
                if stream is None:
                    stream = container.add_stream("libx264", rate=fps)
                    stream.width, stream.height = w + w % 2, h + h % 2
                    stream.pix_fmt = "yuv420p"
                tracks = []
                for r, (colour, label) in zip(shown, styles, strict=True):
                    seg = r["segmentations"][t]
                    tracks.append((None if seg is None else masks.decode(seg), colour, label))
                frame = draw_frame(image, tracks)
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            if stream is not None:
                container.mux(stream.encode(None))
    return len(shown)
