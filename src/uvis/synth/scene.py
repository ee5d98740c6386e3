"""Scenes: object tracks (category, look, per-frame pose) over a panning background.

A :class:`Scene` is a complete, explicit description of one video; rendering it
(:func:`uvis.synth.render.render_video`) is deterministic. :func:`sample_scene` draws a random
scene that exercises tracking: smooth motion (constant velocity plus a small constant
acceleration), spin, scale change, objects entering or leaving through the border, paths that
cross (so one object occludes another), repeated categories, and optionally a pillar that
hides one object completely for a few frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from uvis.synth.appearance import Appearance, sample_appearance, sample_background
from uvis.synth.params import SynthParams
from uvis.synth.shapes import CATEGORIES, Pose, rasterise

# Where a "staying" object's path starts and ends: this central fraction of each axis.
_INNER = (0.15, 0.85)
# Where crossing paths meet: this central fraction of each axis, at this fraction of the video.
_CROSS_REGION = (0.3, 0.7)
_CROSS_TIME = (0.3, 0.7)
# Largest sideways bend of a path, as a fraction of its length (the constant acceleration).
_MAX_BEND = 0.25
# A pillar stands across one object's path at a frame in this fraction of the video, and hides
# that object completely for this many frames (inclusive range).
_PILLAR_TIME = (1 / 3, 2 / 3)
_PILLAR_HIDDEN_FRAMES = (3, 6)
# The widest pillar, as a fraction of the frame across it (a wider one would hide most objects).
_PILLAR_MAX_SHARE = 0.3


@dataclass(frozen=True, eq=False)
class Track:
    """One object over a video: category, look, and per-frame centre, radius and angle.

    ``cx``, ``cy``, ``radius`` (pixels) and ``angle`` (radians) are arrays of length T.
    """

    category_id: int
    appearance: Appearance
    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    angle: np.ndarray

    def pose(self, t: int) -> Pose:
        """The object's pose in frame ``t``."""
        return Pose(
            cx=float(self.cx[t]),
            cy=float(self.cy[t]),
            radius=float(self.radius[t]),
            angle=float(self.angle[t]),
        )


@dataclass(frozen=True)
class Pillar:
    """A static band of flat colour painted in front of every object, fixed in the frame.

    ``axis`` 1 is a vertical band over columns ``start:stop``, ``axis`` 0 a horizontal band
    over rows ``start:stop``; ``colour`` is RGB (0-255).
    """

    axis: int
    start: int
    stop: int
    colour: tuple[float, float, float]

    def mask(self, height: int, width: int) -> np.ndarray:
        """The ``(height, width)`` bool mask of the pixels the pillar covers."""
        covered = np.zeros((height, width), dtype=bool)
        if self.axis == 1:
            covered[:, self.start : self.stop] = True
        else:
            covered[self.start : self.stop, :] = True
        return covered


@dataclass(frozen=True, eq=False)
class Scene:
    """A video to render.

    Attributes:
        height, width: frame size in pixels.
        tracks: the objects, back to front: a later track occludes an earlier one.
        background: float RGB canvas, at least as large as a frame.
        pan: ``(T, 2)`` integer (row, col) of each frame's top-left corner in the canvas.
        noise_std: standard deviation of the per-frame pixel noise.
        noise_seed: seed of the pixel noise, so rendering is a pure function of the scene.
        pillar: a static occluder in front of all tracks, or None.
    """

    height: int
    width: int
    tracks: tuple[Track, ...]
    background: np.ndarray
    pan: np.ndarray
    noise_std: float
    noise_seed: int
    pillar: Pillar | None = None

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return len(self.pan)


def _inner_point(
    rng: np.random.Generator, height: int, width: int, region: tuple[float, float]
) -> np.ndarray:
    """A uniform point ``(x, y)`` in the central ``region`` fraction of the frame."""
    return rng.uniform(region[0], region[1], 2) * np.array([width, height])


def _outside_point(
    rng: np.random.Generator, inside: np.ndarray, height: int, width: int, clearance: float
) -> np.ndarray:
    """A point just beyond a random border, level with ``inside``, ``clearance`` px outside.

    With ``clearance`` above the object's largest radius the object covers no pixel there.
    """
    x, y = inside
    side = rng.integers(4)
    if side == 0:
        return np.array([-clearance, y])
    if side == 1:
        return np.array([width + clearance, y])
    if side == 2:
        return np.array([x, -clearance])
    return np.array([x, height + clearance])


def _path(p0: np.ndarray, p1: np.ndarray, bend: float, num_frames: int) -> np.ndarray:
    """Centres ``(T, 2)`` from ``p0`` to ``p1`` along a parabola bulging ``bend`` px sideways.

    ``p0 + (p1 - p0) s + n 4 bend s (1 - s)`` with ``s = t / (T - 1)`` and ``n`` the unit
    normal: constant velocity plus a constant acceleration perpendicular to the chord.
    """
    s = np.arange(num_frames, dtype=float)[:, None] / (num_frames - 1)
    chord = p1 - p0
    length = float(np.hypot(*chord))
    normal = np.array([-chord[1], chord[0]]) / length if length > 0 else np.zeros(2)
    return p0 + chord * s + normal * (4.0 * bend * s * (1.0 - s))


def _sizes(rng: np.random.Generator, params: SynthParams, num_frames: int) -> np.ndarray:
    """Per-frame radius: geometric change from a random start size by a random factor.

    The end size is clipped to ``params.object_size`` so objects stay in the intended range.
    """
    low, high = (f * params.short_side for f in params.object_size)
    d0 = rng.uniform(low, high)
    d1 = float(np.clip(d0 * rng.uniform(*params.scale_change), low, high))
    s = np.arange(num_frames, dtype=float) / (num_frames - 1)
    return 0.5 * d0 * (d1 / d0) ** s


def _travel(rng: np.random.Generator, params: SynthParams, num_frames: int) -> float:
    """Path length in pixels for a random mean speed in ``params.speed``."""
    return rng.uniform(*params.speed) * params.short_side * (num_frames - 1)


def _wandering_path(rng: np.random.Generator, params: SynthParams, num_frames: int) -> np.ndarray:
    """A path that starts and ends in the central part of the frame, gently curved."""
    h, w = params.height, params.width
    p0 = _inner_point(rng, h, w, _INNER)
    direction = rng.uniform(0, 2 * np.pi)
    p1 = p0 + _travel(rng, params, num_frames) * np.array([np.cos(direction), np.sin(direction)])
    p1 = np.clip(p1, np.array([w, h]) * _INNER[0], np.array([w, h]) * _INNER[1])
    bend = rng.uniform(-_MAX_BEND, _MAX_BEND) * float(np.hypot(*(p1 - p0)))
    return _path(p0, p1, bend, num_frames)


def _border_path(
    rng: np.random.Generator, params: SynthParams, num_frames: int, max_radius: float, enter: bool
) -> np.ndarray:
    """A straight path between outside the border and inside: enters (or leaves) the frame.

    The outside end is ``max_radius + 1`` px beyond the border, so the object is absent from
    the first (entering) or last (leaving) frame.
    """
    inside = _inner_point(rng, params.height, params.width, _INNER)
    outside = _outside_point(rng, inside, params.height, params.width, max_radius + 1.0)
    p0, p1 = (outside, inside) if enter else (inside, outside)
    return _path(p0, p1, 0.0, num_frames)


def _crossing_paths(
    rng: np.random.Generator, params: SynthParams, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Two straight paths through one central point at one frame: their objects overlap there."""
    first_t, last_t = (round(f * (num_frames - 1)) for f in _CROSS_TIME)
    t_cross = int(rng.integers(first_t, last_t + 1))
    centre = _inner_point(rng, params.height, params.width, _CROSS_REGION)
    first = rng.uniform(0, 2 * np.pi)
    paths = []
    for direction in (first, first + rng.uniform(0.5 * np.pi, 1.5 * np.pi)):
        # At least half the fastest speed, so the two objects visibly move through each other.
        speed = max(rng.uniform(*params.speed), 0.5 * params.speed[1]) * params.short_side
        unit = np.array([np.cos(direction), np.sin(direction)])
        t = np.arange(num_frames, dtype=float)[:, None] - t_cross
        paths.append(centre + unit * speed * t)
    return paths[0], paths[1]


def _sample_track(
    rng: np.random.Generator, params: SynthParams, num_frames: int, category_id: int
) -> Track:
    """One object with a wandering path, or with probability ``enter_leave_rate`` a border path."""
    radius = _sizes(rng, params, num_frames)
    if rng.random() < params.enter_leave_rate:
        centres = _border_path(rng, params, num_frames, float(radius.max()), rng.random() < 0.5)
    else:
        centres = _wandering_path(rng, params, num_frames)
    spin = rng.uniform(-params.rotation_speed, params.rotation_speed)
    angle = rng.uniform(0, 2 * np.pi) + spin * np.arange(num_frames)
    return Track(
        category_id=category_id,
        appearance=sample_appearance(rng),
        cx=centres[:, 0],
        cy=centres[:, 1],
        radius=radius,
        angle=angle,
    )


def sample_categories(rng: np.random.Generator, count: int, same_category_rate: float) -> list[int]:
    """Category ids of ``count`` objects; with ``same_category_rate`` one id is repeated."""
    ids = [int(i) for i in rng.integers(1, len(CATEGORIES) + 1, count)]
    if count >= 2 and rng.random() < same_category_rate:
        ids[1] = ids[0]
    return ids


def panning_background(
    rng: np.random.Generator, height: int, width: int, num_frames: int, max_speed: float
) -> tuple[np.ndarray, np.ndarray]:
    """A background canvas and per-frame crop corners panning at a constant velocity.

    Returns the canvas ``(H + 2 pad, W + 2 pad, 3)`` and the ``(T, 2)`` (row, col) corners,
    which move by at most ``max_speed`` px per frame and stay within the canvas.
    """
    pad = int(np.ceil(max_speed * (num_frames - 1) / 2))
    canvas = sample_background(rng, height + 2 * pad, width + 2 * pad)
    direction = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(0, max_speed) * np.array([np.sin(direction), np.cos(direction)])
    t = np.arange(num_frames, dtype=float)[:, None] - (num_frames - 1) / 2
    corners = np.clip(np.rint(pad + velocity * t), 0, 2 * pad).astype(np.int64)
    return canvas, corners


def pillar_across(
    track: Track, t: int, hidden_frames: float, colour: np.ndarray, height: int, width: int
) -> Pillar:
    """A pillar across ``track``'s path at frame ``t`` that hides it for ``hidden_frames``.

    The band runs across the track's main direction of motion at ``t`` (vertical if it moves
    more sideways than up or down). It spans the pixels the object covers along that axis in
    frame ``t`` (of a ``height x width`` frame), widened on each side by half the distance it
    travels along the axis in ``hidden_frames`` frames: at that speed and in that pose, the
    object is covered whole for ``hidden_frames`` frames (+1, and more where the shape's
    spin or growth or the rounding to whole pixels add slack).
    """
    step = min(t + 1, len(track.cx) - 1)
    vx, vy = track.cx[step] - track.cx[step - 1], track.cy[step] - track.cy[step - 1]
    axis = 1 if abs(vx) >= abs(vy) else 0
    covered = np.flatnonzero(
        rasterise(track.category_id, track.pose(t), height, width).any(axis=1 - axis)
    )
    margin = abs(vx if axis == 1 else vy) * hidden_frames / 2
    return Pillar(
        axis=axis,
        start=max(int(np.floor(covered[0] - margin)), 0),
        stop=int(np.ceil(covered[-1] + 1 + margin)),
        colour=(float(colour[0]), float(colour[1]), float(colour[2])),
    )


def _sample_pillar(
    rng: np.random.Generator, params: SynthParams, tracks: list[Track], num_frames: int
) -> Pillar | None:
    """A pillar across a random object's path at a random frame of the video's middle third
    where the object is wholly inside the frame and the pillar would cover at most
    ``_PILLAR_MAX_SHARE`` of the frame; None if no object and frame allow that."""
    first_t, last_t = (round(f * (num_frames - 1)) for f in _PILLAR_TIME)
    hidden = float(rng.integers(_PILLAR_HIDDEN_FRAMES[0], _PILLAR_HIDDEN_FRAMES[1] + 1))
    colour = rng.uniform(30, 225, 3)
    h, w = params.height, params.width
    for k in rng.permutation(len(tracks)):
        track = tracks[k]
        for t in rng.permutation(np.arange(first_t, last_t + 1)):
            x, y, r = track.cx[t], track.cy[t], track.radius[t]
            if not (r <= x <= w - r and r <= y <= h - r):
                continue
            pillar = pillar_across(track, int(t), hidden, colour, h, w)
            if pillar.stop - pillar.start <= _PILLAR_MAX_SHARE * (w if pillar.axis == 1 else h):
                return pillar
    return None


def sample_scene(rng: np.random.Generator, params: SynthParams) -> Scene:
    """Draw one random video scene from ``params`` (frame count, objects, motion, background)."""
    num_frames = int(rng.integers(params.frames_per_video[0], params.frames_per_video[1] + 1))
    count = int(rng.integers(params.objects_per_video[0], params.objects_per_video[1] + 1))
    categories = sample_categories(rng, count, params.same_category_rate)
    tracks = [_sample_track(rng, params, num_frames, c) for c in categories]
    if count >= 2 and rng.random() < params.occlusion_rate:
        i, j = (int(k) for k in rng.choice(count, size=2, replace=False))
        path_i, path_j = _crossing_paths(rng, params, num_frames)
        tracks[i] = replace(tracks[i], cx=path_i[:, 0], cy=path_i[:, 1])
        tracks[j] = replace(tracks[j], cx=path_j[:, 0], cy=path_j[:, 1])
    depth_order = rng.permutation(count)
    background, pan = panning_background(
        rng, params.height, params.width, num_frames, params.background_pan
    )
    noise_seed = int(rng.integers(2**63))
    pillar = None
    # Drawn last, and only when asked for, so worlds without pillars stay as they were.
    if params.pillar_rate > 0 and rng.random() < params.pillar_rate:
        pillar = _sample_pillar(rng, params, tracks, num_frames)
    return Scene(
        height=params.height,
        width=params.width,
        tracks=tuple(tracks[k] for k in depth_order),
        background=background,
        pan=pan,
        noise_std=params.frame_noise,
        noise_seed=noise_seed,
        pillar=pillar,
    )


def sample_object_scene(rng: np.random.Generator, size: int, noise_std: float) -> Scene:
    """A one-frame ``size x size`` scene of one object near the centre, for the image corpora.

    The object's diameter is 40-80 % of the side, its centre within 10 % of the image centre,
    with a random category, look, rotation and background.
    """
    category_id = int(rng.integers(1, len(CATEGORIES) + 1))
    centre = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    track = Track(
        category_id=category_id,
        appearance=sample_appearance(rng),
        cx=np.array([centre[0]]),
        cy=np.array([centre[1]]),
        radius=np.array([0.5 * rng.uniform(0.4, 0.8) * size]),
        angle=np.array([rng.uniform(0, 2 * np.pi)]),
    )
    return Scene(
        height=size,
        width=size,
        tracks=(track,),
        background=sample_background(rng, size, size),
        pan=np.zeros((1, 2), dtype=np.int64),
        noise_std=noise_std,
        noise_seed=int(rng.integers(2**63)),
    )
