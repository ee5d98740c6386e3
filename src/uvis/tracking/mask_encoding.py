"""Mask logits at the model's resolution -> binary masks at the frame size -> COCO RLE.

The rule (MinVIS, Mask2Former): resize each query's mask logits to the original frame size with
bilinear interpolation (``torch.nn.functional.interpolate(..., mode="bilinear",
align_corners=False)``, no antialiasing) and keep the pixels whose logit is > 0
(:func:`binarise_logits`).

Resizing every query of every frame to, say, 720x1280 costs ~10 ms per query with
``interpolate``, most of it on pixels far from any object. This module computes the same
masks on a window: a bilinear output pixel is a convex combination of (at most) four input
pixels, so it can only be positive where one of them is. Only the output rows and columns
whose input neighbours meet the bounding box of the positive input pixels are interpolated,
and the run-length encoding is computed from that window directly (the rest of the frame is
background). The arithmetic is the one of ``interpolate`` (source coordinate
``(dst + 0.5) * in / out - 0.5`` clamped at 0, two taps per axis); only the order of the float
operations differs, so a pixel can differ from ``interpolate``'s only where its logit is
within float32 rounding of 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils


def binarise_logits(values: np.ndarray) -> np.ndarray:
    """The mask of resized logits: a pixel is foreground when its logit is > 0 (p > 0.5)."""
    return values > 0


@dataclass(frozen=True)
class AxisTable:
    """Bilinear taps along one axis, from ``size_in`` samples to ``size_out``.

    Output sample ``i`` is ``(1 - weight[i]) * x[lo[i]] + weight[i] * x[hi[i]]``; ``lo`` and
    ``hi`` are non-decreasing, which makes the outputs touched by an input range contiguous.
    """

    size_in: int
    size_out: int
    lo: np.ndarray
    hi: np.ndarray
    weight: np.ndarray

    @classmethod
    def build(cls, size_in: int, size_out: int) -> AxisTable:
        """The taps of ``interpolate(mode="bilinear", align_corners=False)`` on one axis."""
        if size_in < 1 or size_out < 1:
            raise ValueError(f"sizes must be >= 1, got {size_in} -> {size_out}")
        scale = size_in / size_out
        src = np.maximum((np.arange(size_out) + 0.5) * scale - 0.5, 0.0)
        lo = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
        hi = np.minimum(lo + 1, size_in - 1)
        weight = (src - lo).astype(np.float32)
        return cls(size_in=size_in, size_out=size_out, lo=lo, hi=hi, weight=weight)

    def outputs_touching(self, first: int, last: int) -> tuple[int, int]:
        """The output range ``[start, stop)`` whose taps meet input samples ``first..last``."""
        start = int(np.searchsorted(self.hi, first, side="left"))
        stop = int(np.searchsorted(self.lo, last, side="right"))
        return start, stop


class MaskEncoder:
    """Resize, binarise and RLE-encode mask logits of one input size to one frame size.

    The interpolation tables are built once per ``(h, w) -> (H, W)`` pair; a video uses one.
    """

    def __init__(self, logits_size: tuple[int, int], frame_size: tuple[int, int]) -> None:
        self.logits_size = (int(logits_size[0]), int(logits_size[1]))
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self._rows = AxisTable.build(self.logits_size[0], self.frame_size[0])
        self._cols = AxisTable.build(self.logits_size[1], self.frame_size[1])

    def encode(self, mask_logits: np.ndarray) -> list[bytes | None]:
        """Compressed RLE counts of each mask of ``mask_logits`` (Q, h, w); None where empty.

        The counts are those of :func:`uvis.masks.encode` on the full-size binary mask (COCO's
        compressed string, column-major, size ``frame_size``), as ASCII bytes.
        """
        if mask_logits.shape[1:] != self.logits_size:
            raise ValueError(
                f"mask logits of size {mask_logits.shape[1:]}, encoder built for {self.logits_size}"
            )
        positive = mask_logits > 0
        any_rows = positive.any(axis=2)
        any_cols = positive.any(axis=1)
        return [
            self._encode_one(mask_logits[q], any_rows[q], any_cols[q])
            for q in range(mask_logits.shape[0])
        ]

    def resize(self, logits: np.ndarray) -> np.ndarray:
        """Bilinear resize of one ``(h, w)`` logit map to the frame size (float32).

        The full-frame reference of :meth:`encode` (which only resizes a window); used by
        tests and available to callers that need the resized logits themselves.
        """
        rows, cols = self._rows, self._cols
        return _interpolate(logits, rows, cols, (0, rows.size_out), (0, cols.size_out))

    def _encode_one(
        self, logits: np.ndarray, any_rows: np.ndarray, any_cols: np.ndarray
    ) -> bytes | None:
        if not any_rows.any():
            return None  # no positive input pixel: every output pixel is <= 0
        row_hits, col_hits = np.flatnonzero(any_rows), np.flatnonzero(any_cols)
        y_range = self._rows.outputs_touching(int(row_hits[0]), int(row_hits[-1]))
        x_range = self._cols.outputs_touching(int(col_hits[0]), int(col_hits[-1]))
        window = binarise_logits(_interpolate(logits, self._rows, self._cols, y_range, x_range))
        if not window.any():
            return None
        return _window_rle_counts(window, y_range[0], x_range[0], self.frame_size)


def _interpolate(
    logits: np.ndarray,
    rows: AxisTable,
    cols: AxisTable,
    y_range: tuple[int, int],
    x_range: tuple[int, int],
) -> np.ndarray:
    """Bilinear output rows ``y_range`` x columns ``x_range`` of ``logits`` (two passes)."""
    ys, xs = slice(*y_range), slice(*x_range)
    c_lo, c_hi = cols.lo[xs], cols.hi[xs]
    first_col = int(c_lo[0])
    needed = logits[:, first_col : int(c_hi[-1]) + 1].astype(np.float32, copy=False)
    wy = rows.weight[ys, None]
    by_rows = needed[rows.lo[ys]] * (1 - wy) + needed[rows.hi[ys]] * wy
    wx = cols.weight[xs]
    return by_rows[:, c_lo - first_col] * (1 - wx) + by_rows[:, c_hi - first_col] * wx


def _window_rle_counts(window: np.ndarray, y0: int, x0: int, frame_size: tuple[int, int]) -> bytes:
    """COCO compressed counts of a frame that is ``window`` at ``(y0, x0)`` and 0 elsewhere.

    Runs are found column by column (COCO RLE is column-major) with a zero pixel padded above
    and below each window column; a run that ends at the bottom of the frame and one that
    starts at the top of the next column meet at the same position and are merged, and a run
    that ends with the frame needs no closing edge.
    """
    height, width = frame_size
    n_rows = window.shape[0]
    padded = np.zeros((window.shape[1], n_rows + 2), dtype=bool)
    padded[:, 1:-1] = window.T
    change = np.flatnonzero(padded[:, 1:] != padded[:, :-1])
    col, row = np.divmod(change, n_rows + 1)
    edges = (x0 + col) * height + y0 + row
    touching = np.flatnonzero(edges[1:] == edges[:-1])
    edges = np.delete(edges, np.concatenate([touching, touching + 1]))
    edges = edges[edges < height * width]
    counts = np.diff(edges, prepend=0, append=height * width)
    rle = mask_utils.frPyObjects(
        {"size": [height, width], "counts": counts.tolist()}, height, width
    )
    return rle["counts"]
