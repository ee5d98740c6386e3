"""The category vocabulary of the synthetic world and the rasterisation of its shapes.

Each category is a 2-D shape defined in *object coordinates* ``(u, v)``: the object's centre
is the origin, ``u`` points along the object's rotated x axis, ``v`` along its rotated y axis
(image rows grow downwards), and the shape fits in the unit disc, so an object of radius
``r`` pixels covers at most a disc of radius ``r`` around its centre. The shapes were chosen to
stay distinct under any rotation and at 10-40 px: they differ in corner count (triangle,
square), in elongation (diamond), in concavity (star, cross, heart, crescent, arrow) or topology (ring).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uvis.categories import Category


@dataclass(frozen=True)
class Pose:
    """Where an object is in one frame: centre (pixels), radius (pixels), rotation (radians)."""

    cx: float
    cy: float
    radius: float
    angle: float


@dataclass(frozen=True, eq=False)
class Footprint:
    """The pixels of a frame an object may cover, in object coordinates.

    ``rows`` and ``cols`` select a window of the frame; ``u`` and ``v`` hold the object
    coordinates of the window's pixel centres and ``mask`` which of them the shape covers.
    """

    rows: slice
    cols: slice
    u: np.ndarray
    v: np.ndarray
    mask: np.ndarray


def _polygon(vertices: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Membership test of a simple polygon (``(n, 2)`` vertices, ``(u, v)``) by ray crossing."""
    us, vs = vertices[:, 0], vertices[:, 1]
    us2, vs2 = np.roll(us, -1), np.roll(vs, -1)

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        result = np.zeros(u.shape, dtype=bool)
        for u1, v1, u2, v2 in zip(us, vs, us2, vs2, strict=True):
            if v1 == v2:
                continue  # a horizontal edge never crosses a horizontal ray
            straddles = (v1 > v) != (v2 > v)
            u_cross = u1 + (v - v1) * (u2 - u1) / (v2 - v1)
            result ^= straddles & (u < u_cross)
        return result

    return inside


def _regular(n: int, start: float) -> np.ndarray:
    """Vertices of a regular ``n``-gon inscribed in the unit circle, first vertex at ``start``."""
    a = start + 2.0 * np.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def _star(points: int, inner: float) -> np.ndarray:
    """Vertices of a star with ``points`` tips on the unit circle and notches at ``inner``."""
    a = -np.pi / 2 + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 0.9**2


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.55**2)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


_HEART_TIP = _polygon(np.array([[-0.86, -0.15], [0.86, -0.15], [0.0, 0.92]]))


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Two lobes (discs) above a downward tip (triangle tangent to the lobes); rows grow
    # downwards, so "above" is negative v. The notch between the lobes keeps it from a disc.
    lobes = ((np.abs(u) - 0.4) ** 2 + (v + 0.3) ** 2) <= 0.48**2
    return lobes | _HEART_TIP(u, v)


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= 1.0) & ((u - 0.45) ** 2 + v * v > 0.8**2)


_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": _circle,
    "square": _polygon(np.array([[-0.7, -0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, 0.7]])),
    "triangle": _polygon(_regular(3, -np.pi / 2)),
    "star": _polygon(_star(5, 0.42)),
    "ring": _ring,
    "cross": _cross,
    "heart": _heart,
    "diamond": _polygon(np.array([[0.0, -1.0], [0.55, 0.0], [0.0, 1.0], [-0.55, 0.0]])),
    "crescent": _crescent,
    "arrow": _polygon(
        np.array(
            [
                [-0.95, -0.25],
                [0.1, -0.25],
                [0.1, -0.65],
                [0.95, 0.0],
                [0.1, 0.65],
                [0.1, 0.25],
                [-0.95, 0.25],
            ]
        )
    ),
}

CATEGORIES: tuple[Category, ...] = tuple(
    Category(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(_SHAPES)
)


def category_by_id(category_id: int) -> Category:
    """The category with 1-based id ``category_id``."""
    return CATEGORIES[category_id - 1]


def shape_mask(category_id: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which object-coordinate points ``(u, v)`` the shape of ``category_id`` covers."""
    return _SHAPES[category_by_id(category_id).name](u, v)


def footprint(category_id: int, pose: Pose, height: int, width: int) -> Footprint:
    """Rasterise one object: the window of an ``height x width`` frame it may cover.

    Pixel ``(row, col)`` is sampled at its centre ``(col + 0.5, row + 0.5)``; the window is the
    pose's bounding square clipped to the frame, so it may be empty (object outside the frame).
    """
    r = pose.radius
    r0 = int(np.clip(np.floor(pose.cy - r), 0, height))
    r1 = int(np.clip(np.ceil(pose.cy + r) + 1, r0, height))
    c0 = int(np.clip(np.floor(pose.cx - r), 0, width))
    c1 = int(np.clip(np.ceil(pose.cx + r) + 1, c0, width))
    dy = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5 - pose.cy
    dx = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5 - pose.cx
    cos, sin = np.cos(pose.angle), np.sin(pose.angle)
    u = (cos * dx + sin * dy) / r
    v = (-sin * dx + cos * dy) / r
    return Footprint(
        rows=slice(r0, r1), cols=slice(c0, c1), u=u, v=v, mask=shape_mask(category_id, u, v)
    )


def rasterise(category_id: int, pose: Pose, height: int, width: int) -> np.ndarray:
    """Full-frame boolean mask ``(height, width)`` of one object, ignoring occlusion."""
    mask = np.zeros((height, width), dtype=bool)
    fp = footprint(category_id, pose, height, width)
    mask[fp.rows, fp.cols] = fp.mask
    return mask
