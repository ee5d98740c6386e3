"""DINO's multi-crop augmentation (``DataAugmentationDINO``), batched with per-sample random
parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from uvis.foundation.ssl import (
    normalise_images,
)
from uvis.standins.dino.config import DinoConfig

# ITU-R BT.601 luma weights (as torchvision's rgb_to_grayscale).
_LUMA = (0.299, 0.587, 0.114)
# RGB -> YIQ, whose (I, Q) plane a hue shift rotates.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)


# DINO's fixed photometric settings (``DataAugmentationDINO``): horizontal flip, and colour
# jitter applied with probability 0.8 (its strengths and the greyscale chance are config fields).
FLIP_PROB = 0.5
JITTER_PROB = 0.8
# RandomResizedCrop's aspect-ratio range and number of tries before it falls back.
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10


@dataclass(frozen=True)
class CropRecipe:
    """One kind of DINO view: output side, area-fraction range, blur and solarise chances."""

    size: int
    scale: tuple[float, float]
    blur_prob: float
    solarize_prob: float


def crop_recipes(cfg: DinoConfig) -> tuple[CropRecipe, CropRecipe, CropRecipe]:
    """DINO's three views: global 1 (always blurred), global 2 (rarely blurred, sometimes
    solarised) and local (blurred half the time)."""
    return (
        CropRecipe(cfg.global_crop_size, cfg.global_crop_scale, 1.0, 0.0),
        CropRecipe(cfg.global_crop_size, cfg.global_crop_scale, 0.1, 0.2),
        CropRecipe(cfg.local_crop_size, cfg.local_crop_scale, 0.5, 0.0),
    )


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def _chance(gen: torch.Generator, n: int, prob: float) -> torch.Tensor:
    return torch.rand(n, generator=gen) < prob


def sample_crop_boxes(
    gen: torch.Generator, n: int, height: int, width: int, scale: tuple[float, float]
) -> torch.Tensor:
    """``(n, 4)`` boxes ``x0, y0, x1, y1`` drawn as torchvision's ``RandomResizedCrop``.

    Area fraction uniform in ``scale``, aspect ratio log-uniform in 3/4..4/3; of
    ``CROP_ATTEMPTS`` draws per box the first that fits the image is taken, else the whole image.
    Positions are continuous (sub-pixel), uniform over where the box fits.
    """
    area = height * width * _uniform(gen, n * CROP_ATTEMPTS, *scale)
    log_ratio = _uniform(gen, n * CROP_ATTEMPTS, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    w = torch.sqrt(area * torch.exp(log_ratio)).reshape(n, CROP_ATTEMPTS)
    h = torch.sqrt(area / torch.exp(log_ratio)).reshape(n, CROP_ATTEMPTS)
    fits = (w <= width) & (h <= height)
    first = fits.to(torch.int8).argmax(dim=1)
    any_fit = fits.any(dim=1)
    rows = torch.arange(n)
    w = torch.where(any_fit, w[rows, first], torch.full((n,), float(width), dtype=w.dtype))
    h = torch.where(any_fit, h[rows, first], torch.full((n,), float(height), dtype=h.dtype))
    x0 = torch.rand(n, generator=gen, dtype=torch.float64) * (width - w)
    y0 = torch.rand(n, generator=gen, dtype=torch.float64) * (height - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def resized_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each image to its box and resize to ``size x size`` (``roi_align``: bilinear, with
    area averaging when shrinking). ``images`` float ``(B, 3, H, W)``, ``boxes`` ``(B, 4)``."""
    rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype)[:, None], boxes], dim=1)
    rois = rois.to(device=images.device, dtype=images.dtype)
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, aligned=True)


def _grey(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _per_image(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


def hue_rotation(angles: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` RGB matrices rotating the chroma plane (YIQ's I, Q) by ``angles`` radians."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    rot = torch.zeros(len(angles), 3, 3, dtype=torch.float64)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    return torch.linalg.inv(_RGB_TO_YIQ) @ rot @ _RGB_TO_YIQ


def colour_jitter(
    x: torch.Tensor,
    gen: torch.Generator,
    prob: float,
    strengths: tuple[float, float, float, float],
) -> torch.Tensor:
    """DINO's colour jitter on ``[0, 1]`` images, each image with its own factors.

    With probability ``prob`` an image gets brightness, contrast and saturation factors uniform
    in ``1 +- strengths[:3]`` and a hue shift uniform in ``+- strengths[3]`` turns; the others
    are left as they are. Brightness scales the pixels, contrast blends with the image's mean
    grey level, saturation with its grey image (torchvision's definitions); the hue shift is a
    rotation of the YIQ chroma plane (torchvision shifts H in HSV; the rotation is its linear
    counterpart). The four are applied in this fixed order (torchvision shuffles it).
    """
    n = x.shape[0]
    on = _chance(gen, n, prob)
    bright, contrast, sat, hue = strengths
    b = torch.where(on, _uniform(gen, n, 1 - bright, 1 + bright), 1.0)
    c = torch.where(on, _uniform(gen, n, 1 - contrast, 1 + contrast), 1.0)
    s = torch.where(on, _uniform(gen, n, 1 - sat, 1 + sat), 1.0)
    h = torch.where(on, _uniform(gen, n, -hue, hue), 0.0)
    x = (x * _per_image(b, x)).clamp(0, 1)
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (_per_image(c, x) * x + (1 - _per_image(c, x)) * mean).clamp(0, 1)
    x = (_per_image(s, x) * x + (1 - _per_image(s, x)) * _grey(x)).clamp(0, 1)
    matrices = hue_rotation(2 * math.pi * h).to(device=x.device, dtype=x.dtype)
    return torch.einsum("bij,bjhw->bihw", matrices, x).clamp(0, 1)


def gaussian_blur(
    x: torch.Tensor, gen: torch.Generator, prob: float, sigma: tuple[float, float]
) -> torch.Tensor:
    """Blur each image with probability ``prob`` by a Gaussian of sigma uniform in ``sigma``
    (pixels); separable, kernel radius ``ceil(3 sigma_max)``, reflect padding."""
    n, channels = x.shape[:2]
    on = _chance(gen, n, prob)
    sigmas = _uniform(gen, n, *sigma)
    radius = max(1, math.ceil(3 * sigma[1]))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernels = torch.exp(-(taps[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    kernels = torch.where(on[:, None], kernels, (taps == 0).to(kernels.dtype)[None, :])
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).to(device=x.device, dtype=x.dtype)
    weight = kernels.repeat_interleave(channels, dim=0)  # (n * channels, taps)
    flat = x.reshape(1, n * channels, *x.shape[2:])
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(flat, weight[:, None, None, :], groups=n * channels)
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(flat, weight[:, None, :, None], groups=n * channels)
    return flat.reshape(x.shape)


def random_rotation(x: torch.Tensor, gen: torch.Generator, max_degrees: float) -> torch.Tensor:
    """Rotate each image of ``x`` ``(B, C, H, W)`` about its centre by its own angle drawn
    uniformly from ``[-max_degrees, max_degrees]`` (bilinear; the corners the rotation uncovers
    are filled by reflection). Not one of DINO's augmentations: uvis's option for worlds whose
    objects appear at any orientation. ``max_degrees`` 0 returns ``x`` and draws nothing."""
    if max_degrees <= 0:
        return x
    angles = torch.deg2rad(_uniform(gen, x.shape[0], -max_degrees, max_degrees)).to(x)
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def make_view(
    images: torch.Tensor, recipe: CropRecipe, cfg: DinoConfig, gen: torch.Generator
) -> torch.Tensor:
    """One DINO view of every image: random resized crop, flip, (uvis's option) rotation,
    colour jitter, greyscale, blur, solarisation, ImageNet normalisation. ``images`` float
    ``(B, 3, H, W)`` in ``[0, 1]``."""
    n, _, height, width = images.shape
    x = resized_crops(images, sample_crop_boxes(gen, n, height, width, recipe.scale), recipe.size)
    flip = _chance(gen, n, FLIP_PROB).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)
    x = random_rotation(x, gen, cfg.rotation_degrees)
    x = colour_jitter(x, gen, JITTER_PROB, cfg.colour_jitter)
    grey = _chance(gen, n, cfg.grey_prob).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(grey, _grey(x).expand_as(x), x)
    x = gaussian_blur(x, gen, recipe.blur_prob, cfg.blur_sigma)
    solar = _chance(gen, n, recipe.solarize_prob).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(solar & (x >= 0.5), 1.0 - x, x)
    return normalise_images(x)


def multi_crop(images: torch.Tensor, cfg: DinoConfig, gen: torch.Generator) -> list[torch.Tensor]:
    """DINO's multi-crop views of a ``uint8`` batch, one tensor per resolution.

    Returns ``[globals (2B, 3, Sg, Sg)]`` followed by ``locals (N B, 3, Sl, Sl)`` when
    ``cfg.local_crops_number > 0``; views stacked view-major. DINO draws each image's views with
    per-image PIL transforms in data-loader workers; on a 2-core machine that costs more than
    the network, so the same random operations run here on the whole batch at once, each image
    with its own random parameters, on the batch's device.
    """
    x = images.float() / 255.0
    first, second, local = crop_recipes(cfg)
    crops = [torch.cat([make_view(x, r, cfg, gen) for r in (first, second)])]
    if cfg.local_crops_number:
        views = [make_view(x, local, cfg, gen) for _ in range(cfg.local_crops_number)]
        crops.append(torch.cat(views))
    return crops
