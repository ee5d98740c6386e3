"""Shared fixtures: tiny datasets with known contents, built in ``tmp_path``.

Every fixture documents what it builds so tests can state their expected answers by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from uvis import masks

Color = tuple[int, int, int]


def write_jpeg(path: Path, width: int, height: int, color: Color = (90, 120, 150)) -> Path:
    """Write a solid-colour JPEG of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path, quality=95)
    return path


def noisy_square() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red 12 x 12 square on grey, both noisy (per-pixel sigma 16 on 0-255, seed 0): the
    ``(32, 40, 3)`` image, the square's mask and a coarse mask grown by 2 px on every side.

    CutLER's colour bandwidth (5) is too narrow for this noise to pull the coarse mask back to
    the square; a bandwidth of 20 snaps it exactly (checked by the tests that use it)."""
    rng = np.random.default_rng(0)
    image = np.full((32, 40, 3), 120.0)
    image[8:20, 10:22] = (200, 30, 30)
    image = np.clip(image + rng.normal(0, 16, image.shape), 0, 255).astype(np.uint8)
    square = np.zeros((32, 40), bool)
    square[8:20, 10:22] = True
    coarse = np.zeros_like(square)
    coarse[6:22, 8:24] = True
    return image, square, coarse


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """A ``uint8`` mask with rows ``y0:y1`` and columns ``x0:x1`` set (area (y1-y0)*(x1-x0))."""
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


# --------------------------------------------------------------------------------------------
# YouTube-VIS


@dataclass
class TinyYtvis:
    """A YouTube-VIS train split; ``doc`` is the JSON content, rewritten by :meth:`write`."""

    json_path: Path
    image_root: Path
    doc: dict[str, Any]
    masks: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    def write(self, doc: Any | None = None) -> Path:
        self.json_path.write_text(json.dumps(self.doc if doc is None else doc))
        return self.json_path


@pytest.fixture
def tiny_ytvis(tmp_path: Path) -> TinyYtvis:
    """Two videos, listed in the JSON in the order id 7, id 3 (readers sort by id):

    - video 3 ``aaa``: 3 frames ``aaa/00000.jpg, 00005.jpg, 00010.jpg``, 32x24 (WxH), ``length`` 3;
    - video 7 ``bbb``: 2 frames ``bbb/00000.jpg, 00005.jpg``, 20x16, no ``length`` (2021/OVIS style).

    Categories 1 ``person``, 2 ``dog``. Annotation 1 (video 3, dog): masks in frames 0 (area 20)
    and 2 (area 6), absent in frame 1, ``areas`` given. Annotation 2 (video 7, person): areas 10
    and 1, ``areas`` key omitted. ``masks[(annotation id, frame)]`` holds the masks.
    """
    image_root = tmp_path / "train" / "JPEGImages"
    for t in (0, 5, 10):
        write_jpeg(image_root / "aaa" / f"{t:05d}.jpg", 32, 24)
    for t in (0, 5):
        write_jpeg(image_root / "bbb" / f"{t:05d}.jpg", 20, 16)
    m = {
        (1, 0): box_mask(24, 32, 2, 6, 10, 15),
        (1, 2): box_mask(24, 32, 0, 2, 0, 3),
        (2, 0): box_mask(16, 20, 5, 7, 5, 10),
        (2, 1): box_mask(16, 20, 15, 16, 19, 20),
    }
    doc = {
        "info": {},
        "videos": [
            {"id": 7, "width": 20, "height": 16, "file_names": ["bbb/00000.jpg", "bbb/00005.jpg"]},
            {
                "id": 3,
                "width": 32,
                "height": 24,
                "length": 3,
                "file_names": ["aaa/00000.jpg", "aaa/00005.jpg", "aaa/00010.jpg"],
            },
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {
                "id": 1,
                "video_id": 3,
                "category_id": 2,
                "iscrowd": 0,
                "segmentations": [masks.encode(m[1, 0]), None, masks.encode(m[1, 2])],
                "areas": [20, None, 6],
            },
            {
                "id": 2,
                "video_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "segmentations": [masks.encode(m[2, 0]), masks.encode(m[2, 1])],
            },
        ],
    }
    data = TinyYtvis(json_path=tmp_path / "train.json", image_root=image_root, doc=doc, masks=m)
    data.write()
    return data


# --------------------------------------------------------------------------------------------
# DAVIS


def write_label_png(path: Path, labels: np.ndarray) -> Path:
    """Write an object-id map as a palette PNG, as DAVIS stores annotations."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))  # mode L; putpalette makes it P
    image.putpalette([c for k in range(256) for c in (k * 7 % 256, k * 13 % 256, k * 29 % 256)])
    image.save(path)
    return path


@dataclass
class TinyDavis:
    """A DAVIS root; ``labels[seq]`` are the object-id maps written as PNGs, one per frame."""

    root: Path
    labels: dict[str, list[np.ndarray]]


@pytest.fixture
def tiny_davis(tmp_path: Path) -> TinyDavis:
    """Three sequences under ``JPEGImages/480p`` and ``Annotations_unsupervised/480p``:

    - ``bear``: 3 frames 40x30 (WxH); PNG ids: frame 0 has object 1 (area 12), object 2
      (area 4) and a void (255) region; frame 1 object 1 only (area 6); frame 2 object 2 only
      (area 9);
    - ``car``: 2 frames 20x10; object id 3 in both frames (areas 5 and 0 -> absent in frame 1);
    - ``dog``: 1 frame 16x8, background only.

    ``ImageSets/2019/val.txt`` lists ``car`` then ``bear``.
    """
    root = tmp_path / "DAVIS"

    def labels(height: int, width: int, *boxes: tuple[int, int, int, int, int]) -> np.ndarray:
        out = np.zeros((height, width), np.uint8)
        for value, y0, y1, x0, x1 in boxes:
            out[y0:y1, x0:x1] = value
        return out

    seqs = {
        "bear": [
            labels(30, 40, (1, 0, 3, 0, 4), (2, 10, 12, 10, 12), (255, 20, 25, 20, 25)),
            labels(30, 40, (1, 5, 7, 5, 8)),
            labels(30, 40, (2, 27, 30, 37, 40)),
        ],
        "car": [labels(10, 20, (3, 0, 1, 0, 5)), labels(10, 20)],
        "dog": [labels(8, 16)],
    }
    for seq, maps in seqs.items():
        for t, lab in enumerate(maps):
            write_jpeg(
                root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", lab.shape[1], lab.shape[0]
            )
            write_label_png(root / "Annotations_unsupervised" / "480p" / seq / f"{t:05d}.png", lab)
    (root / "ImageSets" / "2019").mkdir(parents=True)
    (root / "ImageSets" / "2019" / "val.txt").write_text("car\nbear\n")
    return TinyDavis(root=root, labels=seqs)


# --------------------------------------------------------------------------------------------
# Video files


def frame_color(position: int) -> Color:
    """The colour of frame ``position`` of videos made by ``make_video`` (far apart per frame)."""
    return (position * 20 % 256, 255 - position * 20 % 256, (position * 90 + 40) % 256)


@pytest.fixture
def make_video() -> Callable[..., Path]:
    """Factory: ``make_video(path, frames=12, width=64, height=48)`` writes an H.264 mp4 whose
    frame ``t`` is a solid ``frame_color(t)``; returns ``path``."""

    def make(path: Path, frames: int = 12, width: int = 64, height: int = 48) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                rgb = np.full((height, width, 3), frame_color(t), np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            container.mux(stream.encode(None))
        return path

    return make


@pytest.fixture
def identify_frame() -> Callable[[Path, int], tuple[int, float]]:
    """``identify_frame(image_path, frames)``: which ``frame_color(t)``, ``t < frames``, the
    image's mean colour is nearest to, and the largest channel error to that colour."""

    def identify(path: Path, frames: int) -> tuple[int, float]:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
        errors = [np.abs(rgb - frame_color(t)) for t in range(frames)]
        best = int(np.argmin([e.sum() for e in errors]))
        return best, float(errors[best].max())

    return identify


# --------------------------------------------------------------------------------------------
# Signals


@pytest.fixture
def sigterm_at_step(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Any, int], contextlib.AbstractContextManager[None]]:
    """``with sigterm_at_step(loop_module, k): ...``: inside the block, a real SIGTERM reaches
    this process right after step ``k`` of ``loop_module._step`` (whose last argument is the
    step number), with uvis' handler installed as the CLI installs it."""
    from uvis import interrupt

    @contextlib.contextmanager
    def patched(module: Any, at: int) -> Iterator[None]:
        real_step = module._step

        def step_then_sigterm(*args: Any) -> Any:
            values = real_step(*args)
            if args[-1] == at:
                os.kill(os.getpid(), signal.SIGTERM)
            return values

        previous = signal.getsignal(signal.SIGTERM)
        interrupt.install()
        monkeypatch.setattr(module, "_step", step_then_sigterm)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
            monkeypatch.undo()

    return patched
