"""Tags to instances: mean-shift on the 1-D tag values of a clip.

The network gives every pixel of every frame one real tag, trained so that an instance's pixels
share a tag in all frames and different instances are at least ``G`` apart (eqs. 2-5). The
paper does not say how tags become instances; here it is mean-shift with a Gaussian kernel,
which in one dimension has an exact and fast form:

1. The tags of the pixels to group (the foreground of the whole clip) give a Gaussian kernel
   density estimate with standard deviation ``bandwidth``, evaluated on a grid (binned: a
   histogram convolved with the kernel; :func:`tag_density`).
2. Its local maxima are the modes mean-shift converges to. In one dimension the points that
   converge to a mode are exactly those between the density minima on either side of it, so
   each pixel takes the mode of the interval its tag falls in (:func:`density_modes`).
3. Clusters with fewer than ``min_pixels`` pixels are dropped (their pixels become background):
   tags interpolated across an instance boundary, and noise.

A cluster spans every frame of the clip, so clustering also associates instances across
frames: nothing else tracks them. Clusters are numbered 1, 2, ... by decreasing size.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: Grid step of the density, as a fraction of the bandwidth.
GRID_STEP = 1 / 8
#: The Gaussian kernel is truncated at this many bandwidths.
KERNEL_RADIUS = 4.0
#: The density grid never has more points than this (very spread tags get a coarser grid).
MAX_GRID = 1 << 16


@dataclass(frozen=True)
class TagClusters:
    """Clusters of a clip's tags.

    ``labels`` has the shape of the tags: 0 for pixels not grouped (background, dropped
    clusters), ``k`` for cluster ``k`` (1-based, by decreasing size). ``modes[k - 1]`` is the
    tag at the density maximum of cluster ``k``; ``sizes[k - 1]`` its pixel count.
    """

    labels: np.ndarray
    modes: np.ndarray
    sizes: np.ndarray

    @property
    def count(self) -> int:
        return len(self.modes)


def tag_density(values: np.ndarray, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """``(grid, density)``: the binned Gaussian kernel density of ``values`` (1-D, finite).

    The grid spans the values plus ``KERNEL_RADIUS`` bandwidths on each side; the density is
    unnormalised (a histogram convolved with the sampled kernel).
    """
    lo = float(values.min()) - KERNEL_RADIUS * bandwidth
    hi = float(values.max()) + KERNEL_RADIUS * bandwidth
    step = max(bandwidth * GRID_STEP, (hi - lo) / (MAX_GRID - 1))
    bins = int(np.ceil((hi - lo) / step)) + 1
    grid = lo + step * np.arange(bins)
    index = np.clip(np.rint((values - lo) / step).astype(np.int64), 0, bins - 1)
    histogram = np.bincount(index, minlength=bins).astype(np.float64)
    half = int(np.ceil(KERNEL_RADIUS * bandwidth / step))
    offsets = step * np.arange(-half, half + 1)
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
    return grid, np.convolve(histogram, kernel, mode="full")[half : half + bins]


def density_modes(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(modes, cuts)``: grid indices of the local maxima of ``density`` and, between each two
    neighbouring maxima, the index of the lowest point (the basin boundary).

    A plateau counts once (at its first point); ``cuts`` has one entry fewer than ``modes``.
    """
    left = np.concatenate([[-np.inf], density[:-1]])
    right = np.concatenate([density[1:], [-np.inf]])
    modes = np.flatnonzero((density > left) & (density >= right) & (density > 0))
    cuts = np.array(
        [a + int(np.argmin(density[a : b + 1])) for a, b in itertools.pairwise(modes)],
        dtype=np.int64,
    )
    return modes, cuts


def cluster_tags(
    tags: np.ndarray, foreground: np.ndarray, *, bandwidth: float, min_pixels: int
) -> TagClusters:
    """Group the ``foreground`` pixels of ``tags`` (any shape, e.g. ``(T, H, W)``) by mean-shift.

    Raises:
        ValueError: for a non-positive bandwidth, shapes that differ, or non-finite tags in
            the foreground (a diverged model must not produce silent instances).
    """
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    if tags.shape != foreground.shape:
        raise ValueError(f"tags {tags.shape} and foreground {foreground.shape} differ in shape")
    labels = np.zeros(tags.shape, dtype=np.int32)
    values = tags[foreground].astype(np.float64)
    if values.size == 0:
        return TagClusters(labels=labels, modes=np.zeros(0), sizes=np.zeros(0, dtype=np.int64))
    if not np.isfinite(values).all():
        raise ValueError("tags contain NaN or inf")
    grid, density = tag_density(values, bandwidth)
    modes, cuts = density_modes(density)
    basin = np.searchsorted(grid[cuts], values, side="right")
    sizes = np.bincount(basin, minlength=len(modes))
    kept = np.flatnonzero(sizes >= max(1, min_pixels))
    kept = kept[np.argsort(-sizes[kept], kind="stable")]
    number = np.zeros(len(modes), dtype=np.int32)
    number[kept] = np.arange(1, len(kept) + 1)
    labels[foreground] = number[basin]
    return TagClusters(labels=labels, modes=grid[modes[kept]], sizes=sizes[kept])
