"""MaskCut: CutLER's multi-object normalized cut on self-supervised ViT patch features.

UVIS (§3.1) takes its per-frame class-agnostic masks from CutLER (Wang et al., "Cut and Learn
for Unsupervised Object Detection and Instance Segmentation", CVPR 2023), whose pseudo-masks come
from MaskCut on DINO features. This module is MaskCut as in CutLER's ``maskcut/maskcut.py``, on
patch features the caller computed (in CutLER: the last block's attention *keys* of DINO ViT-B/8
on the image resized to 480 x 480, so a 60 x 60 patch grid). Patches are in row-major order:
patch ``n`` is grid cell ``(n // w, n % w)``.

Per image, for ``t = 0 .. num_masks - 1`` (CutLER: 3), on the patches' graph:

1. **Affinity** (:func:`affinity`). L2-normalised features, cosine similarity ``F Fᵀ``,
   binarised: ``1`` where ``> tau`` (0.15, the value of CutLER's README commands and released
   pseudo-masks; its script's argparse default is 0.2), else ``eps`` (1e-5), so the graph stays
   connected. Patches taken by earlier masks get ``eps`` to every
   patch (CutLER zeroes their features, which has the same effect for ``tau >= 0``).
2. **Second eigenvector** (:func:`second_smallest_eigenvector`). With ``D = diag(A 1)``, the
   generalised problem ``(D - A) x = λ D x`` is solved through the symmetric normalised Laplacian
   ``I - D^-1/2 A D^-1/2`` (batched ``torch.linalg.eigh``, float64) and back-transformed,
   ``x = D^-1/2 y``; ``x`` is the eigenvector of the second-smallest eigenvalue, the relaxed
   normalized cut, with CutLER's scaling ``xᵀ D x = 1``.
3. **Bipartition** (:func:`bipartition`). Patches with ``x`` above its mean form one side. The
   foreground is the side holding the patch with the largest ``|x|`` (TokenCut's rule), unless
   that side holds ``FLIP_MIN_CORNERS`` = 3 or more of the grid's 4 corner patches (CutLER's
   object-centric prior; the code's test is ``>= 3``), then it is the other side. The **seed** is
   then re-chosen as the foreground's most extreme patch: ``argmax(x)`` when the foreground is
   the ``x > mean`` side, ``argmax(-x)`` when it is the other.
4. **Seed component** (:func:`seed_component`). Only the foreground's 4-connected component
   holding the seed is kept (``scipy.ndimage.label`` with its default structure, as TokenCut's
   ``detect_box``): the *candidate*.
5. **Next object.** The candidate's patches are removed from the graph (step 1) and the cut
   repeats. From ``t = 1`` on (the first mask is always kept, as in CutLER) a candidate is
   dropped by :func:`is_new_object` when its IoU with an earlier candidate of the image is
   ``> max_iou`` (0.5), or when the part of it not already claimed by earlier masks covers
   ``<= min_area_frac`` (0.01) of the grid. A drop ends the image's loop: the graph is unchanged,
   so the next cut would be the same. The mask emitted for a candidate is that unclaimed part
   (CutLER subtracts earlier masks the same way), so patch masks of one image are disjoint.
5b. **Splitting oversized cuts** (not in CutLER; off by default): an emitted patch mask covering
   more than ``split_area_frac`` of the grid is replaced by the pieces of a cut loop run on its
   own patches (:func:`split_piece`): the same affinity and eigenvector on the piece's subgraph,
   the side holding the largest ``|x|`` (no corner flip: the piece has no image corners), its
   4-connected component around the seed, removed from the piece, until what is left covers at
   most ``min_area_frac`` of the grid or ``num_masks`` pieces were cut. Where the keys of several
   objects agree above ``tau``, the image-level cut separates "objects" from "background" and
   takes several objects with the background between them as one connected piece; inside the
   piece the objects are spatially apart, so the seed's component holds one of them. The
   image's graph loses the whole candidate as in step 5, so the later cuts are unchanged.

Deviation from CutLER's code in step 5, where it has an artefact: CutLER compares a candidate
with the previous mask only, and after a drop it sets the previous mask to empty, so the identical
cut of the next iteration passes the IoU test and is emitted minus the earlier masks; its size
test is on the candidate, not on what is left of it. Here every earlier candidate counts and the
size test is on the emitted part, so a repeated or vanishing cut is never emitted.

Pixel masks (:func:`maskcut`), per patch mask:

6. **Upsampling** (:func:`upsample_mask`): nearest neighbour to the image size (CutLER: to
   grid x patch size, which is its image size).
7. **Refinement and holes** (:func:`uvis.proposals.refine.refine_mask`): CutLER's dense CRF,
   here a mean-field CRF with a truncated bilateral window (``refine="bilateral"``; ``"none"``
   skips it), then ``binary_fill_holes`` (``fill_holes``; CutLER always fills).
8. **Agreement** (:func:`agrees_with_refinement`): a mask whose refined version has IoU
   ``< min_refined_iou`` (0.5) with its coarse version is dropped (CutLER zeroes it), as is an
   empty one.
9. **Size cap** (not in CutLER; off by default): a refined mask covering more than
   ``max_area_frac`` of the image is dropped (:func:`within_area_cap`). Where the keys of
   different objects agree above ``tau``, a cut can take several objects and the background
   between them as one piece; such a mask only teaches the detector to find the piece. Set it
   from what the objects of a training split cover, never from the evaluation split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

import numpy as np
import torch
from scipy import ndimage

from uvis.errors import ConfigError
from uvis.proposals.refine import (
    BilateralParams,
    RefineMethod,
    agrees_with_refinement,
    mask_iou,
    refine_mask,
)

# CutLER flips the bipartition when its foreground side holds at least this many grid corners.
FLIP_MIN_CORNERS = 3

# Float type of the graph and the eigen-solve: the eps-weighted edges (1e-5) and the small
# eigenvalue gaps of nearly disconnected graphs need double precision.
_SOLVE_DTYPE = torch.float64


@dataclass(frozen=True)
class MaskCutConfig:
    """MaskCut settings; defaults are CutLER's released pseudo-mask run (``--tau 0.15 --N 3``).

    ``min_area_frac`` and ``max_iou`` are the drop tests of step 5, ``min_refined_iou`` that of
    step 8 and ``max_area_frac`` that of step 9; ``split_area_frac`` triggers step 5b (both 1.0:
    off; see the module docstring).
    ``device`` is where the eigen-solves run.
    """

    tau: float = 0.15
    num_masks: int = 3
    eps: float = 1e-5
    refine: RefineMethod = "bilateral"
    fill_holes: bool = True
    min_area_frac: float = 0.01
    max_iou: float = 0.5
    min_refined_iou: float = 0.5
    max_area_frac: float = 1.0
    split_area_frac: float = 1.0
    device: str = "cpu"
    bilateral: BilateralParams = field(default_factory=BilateralParams)

    def __post_init__(self) -> None:
        if not -1.0 <= self.tau < 1.0:
            raise ConfigError(f"maskcut.tau must be in [-1, 1), got {self.tau}")
        if self.num_masks < 1:
            raise ConfigError(f"maskcut.num_masks must be >= 1, got {self.num_masks}")
        if not 0.0 < self.eps < 1.0:
            raise ConfigError(f"maskcut.eps must be in (0, 1), got {self.eps}")
        if self.refine not in get_args(RefineMethod):
            raise ConfigError(
                f"maskcut.refine must be one of {get_args(RefineMethod)}, got {self.refine!r}"
            )
        for name in ("min_area_frac", "max_iou", "min_refined_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"maskcut.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("max_area_frac", "split_area_frac"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"maskcut.{name} must be in (0, 1], got {getattr(self, name)}")
        try:
            torch.device(self.device)
        except RuntimeError as exc:
            raise ConfigError(f"maskcut.device: {exc}") from None


def _check_feats(feats: torch.Tensor, grid_hw: tuple[int, int]) -> None:
    """Raise ``ValueError`` unless ``feats`` is a finite ``(B, h*w, D)`` tensor."""
    h, w = grid_hw
    if feats.ndim != 3:
        raise ValueError(f"feats must be (B, N, D), got shape {tuple(feats.shape)}")
    if h < 1 or w < 1 or feats.shape[1] != h * w:
        raise ValueError(f"feats has {feats.shape[1]} patches but the grid is {h} x {w}")
    if h * w < 2:
        raise ValueError(f"a {h} x {w} grid has no second eigenvector")
    if not torch.isfinite(feats).all():
        raise ValueError("feats contains NaN or infinite values")


def affinity(
    feats: torch.Tensor, removed: torch.Tensor | None, tau: float, eps: float
) -> torch.Tensor:
    """Binarised cosine affinity ``(B, N, N)`` of patch features ``(B, N, D)`` (step 1).

    ``A_ij = 1`` if ``cos(f_i, f_j) > tau`` else ``eps``; rows and columns of ``removed``
    patches (``(B, N)`` bool, or ``None``) are ``eps`` throughout. Float64, on ``feats``' device.
    """
    unit = torch.nn.functional.normalize(feats.to(_SOLVE_DTYPE), p=2, dim=-1)
    cosine = unit @ unit.transpose(-1, -2)
    graph = torch.full_like(cosine, eps).masked_fill(cosine > tau, 1.0)
    if removed is not None:
        cut = removed[:, :, None] | removed[:, None, :]
        graph = graph.masked_fill(cut, eps)
    return graph


def second_smallest_eigenvector(graph: torch.Tensor) -> torch.Tensor:
    """Solve ``(D - A) x = λ D x`` for the second-smallest ``λ`` of each graph (step 2).

    ``graph`` is ``(B, N, N)`` symmetric with positive degrees; returns ``x`` as ``(B, N)``,
    scaled so that ``xᵀ D x = 1`` (the sign is arbitrary, as for any eigenvector). One batched
    ``eigh`` of the symmetric normalised Laplacian ``I - D^-1/2 A D^-1/2``; ``x = D^-1/2 y``.
    """
    inv_sqrt_degree = graph.sum(dim=-1).rsqrt()
    normalised = inv_sqrt_degree[:, :, None] * graph * inv_sqrt_degree[:, None, :]
    identity = torch.eye(graph.shape[-1], dtype=graph.dtype, device=graph.device)
    _, vectors = torch.linalg.eigh(identity - normalised)
    return inv_sqrt_degree * vectors[:, :, 1]


def count_foreground_corners(foreground: np.ndarray) -> int:
    """How many of the 4 corner cells of a ``(h, w)`` bool grid are foreground."""
    return int(np.count_nonzero(foreground[[0, 0, -1, -1], [0, -1, 0, -1]]))


def foreground_side(
    vector: np.ndarray, corner_grid: tuple[int, int] | None = None
) -> tuple[np.ndarray, int]:
    """The foreground side ``(N,)`` bool of an eigenvector's split and the seed's index in it.

    The side above the mean or the other, whichever holds the largest ``|x|``; with
    ``corner_grid`` (the ``(h, w)`` grid of the ``N`` patches) CutLER's corner flip applies; the
    seed is the foreground's most extreme patch (steps 3 and 5b).
    """
    upper = vector > vector.mean()
    take_upper = bool(upper[np.argmax(np.abs(vector))])
    if (
        corner_grid is not None
        and count_foreground_corners((upper if take_upper else ~upper).reshape(corner_grid))
        >= FLIP_MIN_CORNERS
    ):
        take_upper = not take_upper
    if take_upper:
        return upper, int(np.argmax(vector))
    return ~upper, int(np.argmax(-vector))


def bipartition(vector: np.ndarray, grid_hw: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Split the grid by the eigenvector ``(N,)`` and pick the foreground side (step 3).

    Returns the foreground ``(h, w)`` bool and the seed's flat patch index. See the module
    docstring for the rule (largest ``|x|``, then CutLER's corner flip, then the seed re-choice).
    """
    side, seed = foreground_side(vector, grid_hw)
    return side.reshape(grid_hw), seed


def seed_component(foreground: np.ndarray, seed: int) -> np.ndarray:
    """The 4-connected component of ``foreground`` ``(h, w)`` holding flat index ``seed`` (step 4)."""
    labels, _ = ndimage.label(foreground)
    seed_label = labels.flat[seed]
    if seed_label == 0:
        raise ValueError(f"seed patch {seed} is not in the foreground")
    return labels == seed_label


def is_new_object(
    candidate: np.ndarray,
    unclaimed: np.ndarray,
    earlier: list[np.ndarray],
    min_area_frac: float,
    max_iou: float,
) -> bool:
    """Step 5's test for a candidate after the first: not a repeat, and not (almost) all claimed.

    ``candidate`` is the seed component, ``unclaimed`` its part outside earlier masks, ``earlier``
    the image's earlier candidates (all ``(h, w)`` bool).
    """
    if any(mask_iou(candidate, prev) > max_iou for prev in earlier):
        return False
    return np.count_nonzero(unclaimed) / unclaimed.size > min_area_frac


def split_piece(feats: torch.Tensor, piece: np.ndarray, cfg: MaskCutConfig) -> list[np.ndarray]:
    """Step 5b: cut one image's oversized patch mask ``piece`` ``(h, w)`` into its parts.

    ``feats`` is the image's ``(h*w, D)`` features. Returns up to ``cfg.num_masks`` disjoint
    ``(h, w)`` bool masks inside ``piece``, in cut order; a piece too small to cut returns as is.
    """
    grid_hw = piece.shape
    remaining = piece.copy()
    parts: list[np.ndarray] = []
    while len(parts) < cfg.num_masks:
        index = np.flatnonzero(remaining)
        if index.size < 2 or index.size / remaining.size <= cfg.min_area_frac:
            break
        sub = feats[torch.from_numpy(index).to(feats.device)][None]
        vector = second_smallest_eigenvector(affinity(sub, None, cfg.tau, cfg.eps))[0]
        side, seed = foreground_side(vector.cpu().numpy())
        foreground = np.zeros(grid_hw, dtype=bool)
        foreground.flat[index[side]] = True
        part = seed_component(foreground, int(index[seed]))
        parts.append(part)
        remaining &= ~part
    return parts or [piece]


def maskcut_patches(
    feats: torch.Tensor, grid_hw: tuple[int, int], cfg: MaskCutConfig
) -> list[list[np.ndarray]]:
    """MaskCut's patch masks (steps 1-5) for a batch of images' features ``(B, h*w, D)``.

    Returns, per image, the disjoint ``(h, w)`` bool masks of up to ``cfg.num_masks`` cuts in the
    order they were cut (one per cut, or with step 5b up to ``cfg.num_masks`` parts of an
    oversized one). The eigen-solves of all images still cutting run as one batch on
    ``cfg.device``; those of step 5b one piece at a time.
    """
    _check_feats(feats, grid_hw)
    batch, num_patches = feats.shape[:2]
    feats = feats.to(cfg.device)
    removed = torch.zeros(batch, num_patches, dtype=torch.bool, device=cfg.device)
    masks: list[list[np.ndarray]] = [[] for _ in range(batch)]
    candidates: list[list[np.ndarray]] = [[] for _ in range(batch)]
    active = list(range(batch))
    for step in range(cfg.num_masks):
        if not active:
            break
        index = torch.tensor(active, device=cfg.device)
        graph = affinity(feats[index], removed[index], cfg.tau, cfg.eps)
        vectors = second_smallest_eigenvector(graph).cpu().numpy()
        claimed = removed[index].cpu().numpy().reshape(len(active), *grid_hw)
        still_active = []
        for row, image in enumerate(active):
            candidate = seed_component(*bipartition(vectors[row], grid_hw))
            unclaimed = candidate & ~claimed[row]
            if step > 0 and not is_new_object(
                candidate, unclaimed, candidates[image], cfg.min_area_frac, cfg.max_iou
            ):
                continue
            if within_area_cap(unclaimed, cfg.split_area_frac):
                masks[image].append(unclaimed)
            else:
                masks[image].extend(split_piece(feats[image], unclaimed, cfg))
            candidates[image].append(candidate)
            removed[image] |= torch.from_numpy(candidate.reshape(-1)).to(cfg.device)
            still_active.append(image)
        active = still_active
    return masks


def upsample_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of a ``(h, w)`` patch mask to ``size_hw`` (step 6).

    Pixel ``(y, x)`` takes patch ``(y * h // H, x * w // W)``: exact patch blocks when the image
    is a whole number of patches, as in CutLER.
    """
    height, width = size_hw
    rows = np.arange(height) * mask.shape[0] // height
    cols = np.arange(width) * mask.shape[1] // width
    return mask[rows[:, None], cols[None, :]]


def within_area_cap(mask: np.ndarray, max_area_frac: float) -> bool:
    """Whether a mask covers at most ``max_area_frac`` of its image or grid (steps 5b and 9)."""
    return np.count_nonzero(mask) <= max_area_frac * mask.size


def maskcut(
    images: np.ndarray, feats: torch.Tensor, grid_hw: tuple[int, int], cfg: MaskCutConfig
) -> list[list[np.ndarray]]:
    """MaskCut's pixel masks (steps 1-9) for images ``(B, H, W, 3)`` uint8 and their features.

    ``feats`` is ``(B, h*w, D)`` on the ``(h, w)`` patch grid of the same images. Returns, per
    image, the kept ``(H, W)`` bool masks in cut order (refined masks may overlap).
    """
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (B, H, W, 3) uint8, got {images.shape} {images.dtype}")
    if images.shape[0] != feats.shape[0]:
        raise ValueError(f"{images.shape[0]} images but features for {feats.shape[0]}")
    size_hw = (images.shape[1], images.shape[2])
    results = []
    for image, patch_masks in zip(images, maskcut_patches(feats, grid_hw, cfg), strict=True):
        coarse = np.stack([upsample_mask(m, size_hw) for m in patch_masks])
        refined = refine_mask(image, coarse, cfg.refine, cfg.fill_holes, cfg.bilateral)
        results.append(
            [
                r
                for c, r in zip(coarse, refined, strict=True)
                if agrees_with_refinement(c, r, cfg.min_refined_iou)
                and within_area_cap(r, cfg.max_area_frac)
            ]
        )
    return results
