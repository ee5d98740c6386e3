"""Writers for the real datasets' formats: YouTube-VIS JSON, DAVIS palette PNGs, JPEG, mp4.

The synthetic world is written exactly as the real datasets are laid out, so the same
readers and the official evaluation code serve both. Every file is written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from uvis import __version__, masks
from uvis.io import atomic_path, atomic_write_bytes
from uvis.synth.shapes import Category

# YouTube-VIS names the frames it annotates by their index in the 30 fps source video, and
# annotates every 5th one: 00000.jpg, 00005.jpg, 00010.jpg, ...
YTVIS_FRAME_STRIDE = 5


def ytvis_frame_name(index: int) -> str:
    """File stem of the ``index``-th annotated frame of a YouTube-VIS video (``"00005"``)."""
    return f"{YTVIS_FRAME_STRIDE * index:05d}"


def davis_frame_name(index: int) -> str:
    """File stem of the ``index``-th frame of a DAVIS sequence, numbered densely from 00000."""
    return f"{index:05d}"


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a uint8 RGB image ``(H, W, 3)`` (4:2:0, no optimisation: reproducible)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.getvalue()


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS (and PASCAL VOC) annotation PNGs, flat ``[r, g, b, ...]``.

    Colour of id ``i``: the bits of ``i`` taken three at a time (lowest first) set the bits of
    r, g and b from the most significant down, so 1 is dark red, 2 dark green, 3 olive ...
    """
    ids = np.arange(256)
    rgb = np.zeros((256, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1
            rgb[:, channel] |= bit << (7 - shift)
    return [int(v) for v in rgb.reshape(-1)]


def encode_palette_png(ids: np.ndarray) -> bytes:
    """PNG bytes (mode 'P', DAVIS palette) of an ``(H, W)`` map of instance ids 0..255."""
    if ids.max(initial=0) > 255:
        raise ValueError("a palette PNG holds at most 255 instances")
    height, width = ids.shape
    image = Image.frombytes("P", (width, height), ids.astype(np.uint8).tobytes())
    image.putpalette(davis_palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def instance_id_map(visible: np.ndarray) -> np.ndarray:
    """DAVIS annotation of one frame: ``(N, H, W)`` disjoint masks -> ``(H, W)`` ids 1..N, 0 bg."""
    ids = np.zeros(visible.shape[1:], dtype=np.uint8)
    for k, mask in enumerate(visible):
        ids[mask] = k + 1
    return ids


def write_mp4(path: Path, frames: np.ndarray, fps: int, crf: int) -> None:
    """Write uint8 RGB ``(T, H, W, 3)`` frames as H.264 (libx264, yuv420p) mp4, one per frame.

    Reproducible bytes for a given FFmpeg/x264 build: one encoder thread, bit-exact muxing,
    and x264's macroblock-tree rate control off (with it on, repeated encodes of the same
    frames in one process were seen to differ).
    """
    _, height, width, _ = frames.shape
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "threads": "1", "x264-params": "mbtree=0"}
            for frame in frames:
                image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                container.mux(stream.encode(image))
            container.mux(stream.encode(None))


def ytvis_video(
    video_id: int, name: str, height: int, width: int, num_frames: int
) -> dict[str, Any]:
    """The ``videos`` entry of a YouTube-VIS file for one video."""
    return {
        "id": video_id,
        "width": width,
        "height": height,
        "length": num_frames,
        "file_names": [f"{name}/{ytvis_frame_name(t)}.jpg" for t in range(num_frames)],
    }


def ytvis_annotation(
    annotation_id: int, video_id: int, category_id: int, visible: np.ndarray
) -> dict[str, Any]:
    """The ``annotations`` entry of one instance from its ``(T, H, W)`` visible masks.

    Frames where the instance has no visible pixel get ``null`` segmentation, box and area,
    as in YouTube-VIS.
    """
    num_frames, height, width = visible.shape
    segmentations: list[masks.RLE | None] = []
    boxes: list[list[float] | None] = []
    areas: list[int | None] = []
    for t in range(num_frames):
        if not visible[t].any():
            segmentations.append(None)
            boxes.append(None)
            areas.append(None)
            continue
        rle = masks.encode(visible[t])
        segmentations.append(rle)
        boxes.append(masks.bbox_xywh(rle))
        areas.append(masks.area(rle))
    return {
        "id": annotation_id,
        "video_id": video_id,
        "category_id": category_id,
        "iscrowd": 0,
        "width": width,
        "height": height,
        "length": 1,
        "segmentations": segmentations,
        "bboxes": boxes,
        "areas": areas,
    }


def ytvis_document(
    videos: Sequence[dict[str, Any]],
    annotations: Sequence[dict[str, Any]],
    categories: Sequence[Category],
    description: str,
) -> dict[str, Any]:
    """A complete YouTube-VIS 2019 style file (``info``, ``licenses``, ``videos`` ...)."""
    return {
        "info": {
            "description": description,
            "version": __version__,
            "contributor": "uvis synth",
        },
        "licenses": [],
        "videos": list(videos),
        "categories": [
            {"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in categories
        ],
        "annotations": list(annotations),
    }


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write one item per line (UTF-8, trailing newline) atomically."""
    atomic_write_bytes(path, "".join(f"{line}\n" for line in lines).encode("utf-8"))
