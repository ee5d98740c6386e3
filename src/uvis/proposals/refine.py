"""Pixel-level refinement of coarse (patch-resolution) masks, CutLER's dense-CRF step without
compiled dependencies.

CutLER (``maskcut/crf.py``) refines every MaskCut mask with a fully connected CRF (pydensecrf):
two labels, the unary is the softmax of the 0/1 mask used as logits (so a log-odds of ``+1``
inside the coarse mask and ``-1`` outside), a Gaussian smoothness kernel (``sxy=3``, weight 7),
a bilateral appearance kernel (``sxy=50``, ``srgb=5``, weight 10), 10 mean-field iterations,
then the arg-max label; the result's holes are filled afterwards (:func:`refine_mask`).

:func:`bilateral_refine` runs the same two-label mean field with the same unary, kernels and
weights, with one approximation: the bilateral kernel is evaluated on a truncated, strided window
(offsets ``-radius..radius`` in steps of ``stride`` on both axes; 7 x 7 = 49 offsets by default)
instead of over the whole image through a permutohedral lattice. Within that window the
``sxy=50`` spatial term is nearly flat, so the bilateral message of a pixel is the mean of the
current foreground probability over nearby pixels *of similar colour* (``srgb=5`` on 0-255 RGB).
Both kernels are normalised (as pydensecrf's default ``NORMALIZE_SYMMETRIC`` makes them behave),
so with ``m`` a kernel-weighted mean of the foreground probability ``q`` the update is

    logit(q) = unary + w_smooth * (2 m_smooth - 1) + w_bilateral * (2 m_bilateral - 1).

A coarse mask that spills over an object edge is therefore pulled back to the colour edge from
the outside in, a few pixels per iteration; the reach (about ``radius`` pixels per iteration,
~10 iterations) covers the half-patch error of nearest-upsampled ViT-S/8 or /16 patch masks. The
pixel itself is left out of its bilateral message, and a pixel with no similar-coloured neighbour
in its window gets a neutral message (0.5), as it would from an empty sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

RefineMethod = Literal["none", "bilateral"]
REFINE_METHODS: tuple[RefineMethod, ...] = ("none", "bilateral")

# Weight of the neutral prior (0.5) in a bilateral message: only matters when no neighbour has a
# similar colour, where it turns 0/0 into "no opinion".
_NEUTRAL_WEIGHT = 1e-6


@dataclass(frozen=True)
class BilateralParams:
    """Mean-field refinement constants; the defaults are CutLER's ``crf.py`` values.

    ``radius`` and ``stride`` (pixels) define the truncated bilateral window, the one place where
    this refinement departs from a fully connected CRF.
    """

    iterations: int = 10
    unary_logit: float = 1.0
    smooth_weight: float = 7.0
    smooth_sigma_xy: float = 3.0
    bilateral_weight: float = 10.0
    bilateral_sigma_xy: float = 50.0
    bilateral_sigma_rgb: float = 5.0
    radius: int = 9
    stride: int = 3

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError("iterations must be >= 0")
        if self.radius < 1 or self.stride < 1:
            raise ValueError("radius and stride must be >= 1")
        for name in ("smooth_sigma_xy", "bilateral_sigma_xy", "bilateral_sigma_rgb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")


def _check_image_and_masks(image: np.ndarray, masks: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is ``(H, W, 3)`` uint8 and ``masks`` ``(K, H, W)``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"masks must be (K, H, W) with (H, W) = {image.shape[:2]}, got {masks.shape}"
        )


def _window_offsets(params: BilateralParams) -> list[tuple[int, int]]:
    """The bilateral window's pixel offsets, the centre excluded."""
    steps = range(-params.radius, params.radius + 1, params.stride)
    return [(dy, dx) for dy in steps for dx in steps if (dy, dx) != (0, 0)]


def _bilateral_weights(
    image: np.ndarray, offsets: list[tuple[int, int]], params: BilateralParams
) -> np.ndarray:
    """Kernel weight between each pixel and its neighbour at each offset, ``(len(offsets), H, W)``.

    Zero where the neighbour falls outside the image.
    """
    h, w = image.shape[:2]
    r = params.radius
    rgb = np.pad(image.astype(np.float32), ((r, r), (r, r), (0, 0)), mode="edge")
    inside = np.pad(np.ones((h, w), np.float32), r)
    weights = np.empty((len(offsets), h, w), np.float32)
    centre = rgb[r : r + h, r : r + w]
    for i, (dy, dx) in enumerate(offsets):
        ys, xs = slice(r + dy, r + dy + h), slice(r + dx, r + dx + w)
        colour_d2 = ((rgb[ys, xs] - centre) ** 2).sum(axis=2)
        spatial_d2 = float(dy * dy + dx * dx)
        weights[i] = inside[ys, xs] * np.exp(
            -spatial_d2 / (2.0 * params.bilateral_sigma_xy**2)
            - colour_d2 / (2.0 * params.bilateral_sigma_rgb**2)
        )
    return weights


def bilateral_refine(
    image: np.ndarray, masks: np.ndarray, params: BilateralParams | None = None
) -> np.ndarray:
    """Snap coarse masks ``(K, H, W)`` to the colour edges of ``image`` ``(H, W, 3)`` uint8.

    Two-label mean-field inference with CutLER's CRF constants (see the module docstring); the
    ``K`` masks are refined independently but share the image's kernel weights. Returns ``(K, H,
    W)`` bool.
    """
    params = params or BilateralParams()
    _check_image_and_masks(image, masks)
    k, h, w = masks.shape
    if k == 0:
        return np.zeros((0, h, w), bool)
    offsets = _window_offsets(params)
    weights = _bilateral_weights(image, offsets, params)
    norm = weights.sum(axis=0) + _NEUTRAL_WEIGHT
    unary = params.unary_logit * (2.0 * masks.astype(np.float32) - 1.0)
    q = 1.0 / (1.0 + np.exp(-unary))
    r = params.radius
    for _ in range(params.iterations):
        padded = np.pad(q, ((0, 0), (r, r), (r, r)))
        acc = np.full((k, h, w), 0.5 * _NEUTRAL_WEIGHT, np.float32)
        for weight, (dy, dx) in zip(weights, offsets, strict=True):
            acc += weight * padded[:, r + dy : r + dy + h, r + dx : r + dx + w]
        m_bilateral = acc / norm
        m_smooth = ndimage.gaussian_filter(
            q, sigma=(0.0, params.smooth_sigma_xy, params.smooth_sigma_xy), mode="nearest"
        )
        logit = (
            unary
            + params.smooth_weight * (2.0 * m_smooth - 1.0)
            + params.bilateral_weight * (2.0 * m_bilateral - 1.0)
        )
        q = 1.0 / (1.0 + np.exp(-logit))
    return q > 0.5


def refine_mask(
    image: np.ndarray,
    masks: np.ndarray,
    method: RefineMethod = "bilateral",
    fill_holes: bool = True,
    params: BilateralParams | None = None,
) -> np.ndarray:
    """CutLER's post-processing of image-size masks ``(K, H, W)``: refinement, then hole filling.

    ``method="none"`` keeps the coarse masks as they are; ``"bilateral"`` is
    :func:`bilateral_refine`. ``fill_holes`` fills every enclosed background region of each mask
    (``scipy.ndimage.binary_fill_holes``), as CutLER does after its CRF: it removes the spurious
    holes that refinement punches into textured objects, at the price of also filling the real
    hole of a ring-shaped object. Returns ``(K, H, W)`` bool.
    """
    _check_image_and_masks(image, masks)
    if method == "bilateral":
        refined = bilateral_refine(image, masks, params)
    elif method == "none":
        refined = masks.astype(bool)  # a copy: filled in place below
    else:
        raise ValueError(f"unknown refinement {method!r}; expected one of {REFINE_METHODS}")
    if fill_holes:
        for mask in refined:
            mask[...] = ndimage.binary_fill_holes(mask)
    return refined


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks; 0 when both are empty."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def agrees_with_refinement(coarse: np.ndarray, refined: np.ndarray, min_iou: float) -> bool:
    """CutLER's post-CRF test (MaskCut step 8): refinement left the mask mostly unchanged.

    False for an empty refined mask, and when the IoU of the two is below ``min_iou``.
    """
    return bool(refined.any()) and mask_iou(coarse, refined) >= min_iou


def refine_where_agreeing(
    image: np.ndarray,
    masks: np.ndarray,
    method: RefineMethod = "bilateral",
    *,
    fill_holes: bool,
    min_iou: float,
    params: BilateralParams | None = None,
) -> np.ndarray:
    """Refine masks ``(K, H, W)``, keeping a refined mask only where it agrees with its own.

    Each non-empty mask is refined (:func:`refine_mask`, with ``params``, CutLER's constants by
    default); its refined version replaces it when :func:`agrees_with_refinement` holds,
    otherwise the coarse mask stays (a refinement that moves a mask that far has latched onto
    another edge than the object's). Empty masks stay empty and cost nothing. Returns a new
    ``(K, H, W)`` bool array.
    """
    _check_image_and_masks(image, masks)
    out = masks.astype(bool)  # a copy
    chosen = np.flatnonzero(out.reshape(len(out), -1).any(axis=1))
    if method == "none" or len(chosen) == 0:
        return out
    refined = refine_mask(image, out[chosen], method, fill_holes=fill_holes, params=params)
    for i, new in zip(chosen, refined, strict=True):
        if agrees_with_refinement(out[i], new, min_iou):
            out[i] = new
    return out
