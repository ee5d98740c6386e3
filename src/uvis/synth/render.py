"""Render a :class:`~uvis.synth.scene.Scene` to frames and exact per-object masks.

Objects are painted back to front with hard edges, so the ground truth is exact: an object's
*visible* mask is precisely the set of pixels painted in its colours (before the pixel noise
and the lossy JPEG/H.264 encoding that follow). A scene's pillar is painted last, over every
object, and removes the pixels it covers from their visible masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uvis.synth.appearance import object_colours
from uvis.synth.scene import Scene
from uvis.synth.shapes import footprint


@dataclass(frozen=True, eq=False)
class RenderedVideo:
    """Frames and masks of a rendered scene.

    Attributes:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        visible: ``(K, T, H, W)`` bool, the part of each track (scene order) not hidden by a
            track in front of it or by the pillar; the masks of one frame never overlap.
        full: ``(K, T, H, W)`` bool, each track's whole shape within the frame, occlusion ignored.
    """

    frames: np.ndarray
    visible: np.ndarray
    full: np.ndarray


def visible_masks(full: np.ndarray) -> np.ndarray:
    """Occlusion rule: a pixel belongs to the front-most object covering it.

    ``full`` is ``(K, ...)`` bool in back-to-front order; returns the visible parts, same shape.
    """
    visible = np.empty_like(full)
    covered = np.zeros(full.shape[1:], dtype=bool)
    for k in range(len(full) - 1, -1, -1):
        visible[k] = full[k] & ~covered
        covered |= full[k]
    return visible


def render_video(scene: Scene) -> RenderedVideo:
    """Render every frame of ``scene``: background crop, objects back to front, the pillar,
    pixel noise."""
    h, w, num_frames = scene.height, scene.width, scene.num_frames
    pillar = scene.pillar.mask(h, w) if scene.pillar is not None else None
    noise = np.random.default_rng(scene.noise_seed)
    frames = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    full = np.zeros((len(scene.tracks), num_frames, h, w), dtype=bool)
    for t in range(num_frames):
        row, col = scene.pan[t]
        image = scene.background[row : row + h, col : col + w].copy()
        for k, track in enumerate(scene.tracks):
            fp = footprint(track.category_id, track.pose(t), h, w)
            full[k, t, fp.rows, fp.cols] = fp.mask
            window = image[fp.rows, fp.cols]  # a view: painting it paints the image
            window[fp.mask] = object_colours(track.appearance, fp.u[fp.mask], fp.v[fp.mask])
        if pillar is not None:
            image[pillar] = scene.pillar.colour
        if scene.noise_std > 0:
            image += noise.normal(0.0, scene.noise_std, image.shape)
        frames[t] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    visible = visible_masks(full)
    if pillar is not None:
        visible &= ~pillar
    return RenderedVideo(frames=frames, visible=visible, full=full)
