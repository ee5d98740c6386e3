"""DINO self-distillation (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021), to train the embedded stand-in for the DINO ViT on the synthetic
world's unlabeled corpus.

The objective, one function per equation of the paper:

* **Sharpened, centred teacher** and **student** distributions over ``K`` prototypes,
  ``P_t(x) = softmax((g_t(x) - c) / tau_t)`` and ``P_s(x) = softmax(g_s(x) / tau_s)``; the loss
  is the cross-entropy ``-P_t(x) . log P_s(x')`` averaged over every pair of a teacher view
  (the two global crops) and a *different* student view (both global and all local crops):
  :func:`dino_loss`.
* **Centring**: ``c <- m c + (1 - m) mean_batch g_t(x)``: :func:`update_center`.
* **Teacher = EMA of the student**: ``theta_t <- l theta_t + (1 - l) theta_s``, with ``l`` going
  from 0.996 to 1 on a cosine schedule: :func:`ema_update`, :func:`cosine_schedule`.

Network and schedules follow the official implementation (``main_dino.py``): projection head
MLP -> L2 normalisation -> weight-normalised linear layer with its norm fixed at 1
(:class:`DinoHead`), AdamW with cosine learning-rate and weight-decay schedules, linear warm-up of
the teacher temperature, per-parameter gradient clipping, and the head's last layer frozen during
the first epoch. Multi-crop augmentation follows DINO's ``DataAugmentationDINO`` (two global
crops with different blur/solarisation, ``N`` local crops), implemented batched with per-sample
random parameters (:func:`multi_crop`); see there for why and how it differs.

The ``lightly`` library was considered for these components; version 1.6.0 pulls in
pytorch-lightning, hydra and aiohttp, so the objective is implemented here.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.ops import roi_align

from uvis import __version__
from uvis.devices import resolve_device
from uvis.errors import ConfigError, DataError, UvisError
from uvis.foundation.ssl import (
    build_vit,
    cls_features,
    create_ssl_vit,
    describe_arch,
    normalise_images,
)
from uvis.io import atomic_path, atomic_write_json
from uvis.presets import config_from_dict, config_from_preset, config_to_dict
from uvis.progress import progress_bar

log = logging.getLogger(__name__)

# Preset name -> overrides of the field defaults (the defaults *are* the "default" preset).
_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {
        "arch_kwargs": {
            "patch_size": 8,
            "img_size": 32,
            "depth": 2,
            "embed_dim": 64,
            "num_heads": 4,
        },
        "head_hidden_dim": 128,
        "head_bottleneck_dim": 64,
        "out_dim": 128,
        "epochs": 2,
        "warmup_epochs": 1,
        "warmup_teacher_temp_epochs": 1,
        "batch_size": 16,
        "local_crops_number": 2,
        "max_steps_per_epoch": 2,
    },
}

# Fields holding a fixed-length tuple of numbers, and their lengths.
_TUPLES = {"global_crop_scale": 2, "local_crop_scale": 2, "blur_sigma": 2, "colour_jitter": 4}

# ITU-R BT.601 luma weights (as torchvision's rgb_to_grayscale).
_LUMA = (0.299, 0.587, 0.114)
# RGB -> YIQ, whose (I, Q) plane a hue shift rotates.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)


@dataclass(frozen=True)
class DinoConfig:
    """Everything that determines a DINO training run (with the corpus and the seed).

    Attributes:
        arch, arch_kwargs: the timm ViT (``create_ssl_vit`` builds it from these two). The
            default is ViT-Ti/8 narrowed to width 128 and 4 blocks, trained on 32 px crops, to fit
            the few CPU minutes the stand-in may take.
        drop_path_rate: stochastic depth of the student (DINO: 0.1; off for tiny, short runs).
        out_dim: number of prototypes ``K`` of the projection head.
        head_hidden_dim, head_bottleneck_dim: widths of the head's 3-layer MLP.
        epochs, batch_size: passes over the corpus, and images per step.
        max_steps_per_epoch: cap on the steps of an epoch (0: the whole corpus), for smoke runs.
        lr, min_lr, warmup_epochs: peak AdamW learning rate (reached after a linear warm-up),
            cosine-decayed to ``min_lr``. Unlike ``main_dino.py``, ``lr`` is not rescaled by
            ``batch_size / 256``.
        weight_decay, weight_decay_end: cosine weight-decay schedule (not on biases and norms).
        clip_grad: per-parameter gradient-norm clip (0: off).
        freeze_last_layer: epochs during which the head's last layer is not updated.
        momentum_teacher: EMA momentum at step 0, raised to 1 on a cosine schedule.
        warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs: teacher temperature,
            linearly warmed up from the first to the second value.
        student_temp: student temperature.
        center_momentum: EMA momentum of the centre.
        centering: how the teacher's targets avoid collapse: ``"mean"`` (DINO's centre) or
            ``"sinkhorn_knopp"`` (DINOv2's batch balancing; the centre is then unused).
        global_crop_size, global_crop_scale: side and area fraction range of the 2 global crops.
        local_crops_number, local_crop_size, local_crop_scale: the same for the local crops.
        blur_sigma: Gaussian-blur sigma range in output-crop pixels (DINO's 0.1-2 px at 224 px
            scaled to this crop size).
        colour_jitter, grey_prob: jitter strengths (brightness, contrast, saturation, hue) and
            greyscale chance (DINO: 0.4, 0.4, 0.2, 0.1 and 0.2).
        probe_k, probe_temperature, probe_test_fraction: weighted k-NN probe (DINO's eval_knn:
            ``k`` = 20, ``T`` = 0.07) on CLS features, with this fraction of the corpus held out.
        seed: seed of the initialisation, the crop sampling and the probe split.
    """

    arch: str = "vit_tiny_patch16_224"
    arch_kwargs: dict[str, Any] = field(
        default_factory=lambda: {
            "patch_size": 8,
            "img_size": 32,
            "depth": 4,
            "embed_dim": 128,
            "num_heads": 4,
        }
    )
    drop_path_rate: float = 0.0
    out_dim: int = 256
    head_hidden_dim: int = 512
    head_bottleneck_dim: int = 128
    epochs: int = 8
    batch_size: int = 64
    max_steps_per_epoch: int = 0
    lr: float = 2.5e-4
    min_lr: float = 1e-6
    warmup_epochs: int = 1
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0
    freeze_last_layer: int = 1
    momentum_teacher: float = 0.996
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    student_temp: float = 0.1
    center_momentum: float = 0.9
    centering: str = "mean"
    global_crop_size: int = 32
    global_crop_scale: tuple[float, float] = (0.4, 1.0)
    local_crops_number: int = 4
    local_crop_size: int = 16
    local_crop_scale: tuple[float, float] = (0.1, 0.4)
    blur_sigma: tuple[float, float] = (0.1, 0.3)
    colour_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    grey_prob: float = 0.2
    probe_k: int = 20
    probe_temperature: float = 0.07
    probe_test_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        for name, length in _TUPLES.items():
            value = getattr(self, name)
            if not isinstance(value, Sequence) or len(value) != length:
                raise ConfigError(f"dino parameter {name!r} must be {length} numbers: {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if not isinstance(self.arch_kwargs, dict):
            raise ConfigError(f"dino parameter 'arch_kwargs' must be a mapping: {self.arch_kwargs}")
        object.__setattr__(self, "arch_kwargs", dict(self.arch_kwargs))
        self._check_values()

    def _check_values(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value is out of range."""
        checks = [
            ("out_dim", self.out_dim >= 2, "must be >= 2"),
            ("head_hidden_dim", self.head_hidden_dim >= 1, "must be >= 1"),
            ("head_bottleneck_dim", self.head_bottleneck_dim >= 1, "must be >= 1"),
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 2, "must be >= 2"),
            ("max_steps_per_epoch", self.max_steps_per_epoch >= 0, "must be >= 0"),
            ("lr", self.lr > 0, "must be > 0"),
            ("min_lr", 0 <= self.min_lr <= self.lr, "must lie in [0, lr]"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, "must lie in [0, epochs]"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("weight_decay_end", self.weight_decay_end >= 0, "must be >= 0"),
            ("clip_grad", self.clip_grad >= 0, "must be >= 0"),
            ("freeze_last_layer", self.freeze_last_layer >= 0, "must be >= 0"),
            ("momentum_teacher", 0 <= self.momentum_teacher <= 1, "must lie in [0, 1]"),
            ("warmup_teacher_temp", self.warmup_teacher_temp > 0, "must be > 0"),
            ("teacher_temp", self.teacher_temp > 0, "must be > 0"),
            (
                "warmup_teacher_temp_epochs",
                0 <= self.warmup_teacher_temp_epochs <= self.epochs,
                "must lie in [0, epochs]",
            ),
            ("student_temp", self.student_temp > 0, "must be > 0"),
            ("center_momentum", 0 <= self.center_momentum <= 1, "must lie in [0, 1]"),
            ("centering", self.centering in CENTERINGS, f"must be one of {CENTERINGS}"),
            ("global_crop_size", self.global_crop_size >= 8, "must be >= 8"),
            ("local_crops_number", self.local_crops_number >= 0, "must be >= 0"),
            ("local_crop_size", self.local_crop_size >= 8, "must be >= 8"),
            ("global_crop_scale", _is_scale(self.global_crop_scale), "must be 0 < lo <= hi <= 1"),
            ("local_crop_scale", _is_scale(self.local_crop_scale), "must be 0 < lo <= hi <= 1"),
            ("blur_sigma", 0 < self.blur_sigma[0] <= self.blur_sigma[1], "must be 0 < lo <= hi"),
            (
                "colour_jitter",
                _is_jitter(self.colour_jitter),
                "must be 3 numbers in [0, 1], hue in [0, 0.5]",
            ),
            ("grey_prob", 0 <= self.grey_prob <= 1, "must lie in [0, 1]"),
            ("probe_k", self.probe_k >= 1, "must be >= 1"),
            ("probe_temperature", self.probe_temperature > 0, "must be > 0"),
            ("probe_test_fraction", 0 < self.probe_test_fraction < 1, "must lie in (0, 1)"),
            ("seed", self.seed >= 0, "must be >= 0"),
        ]
        for name, ok, problem in checks:
            if not ok:
                raise ConfigError(f"dino parameter {name!r} = {getattr(self, name)!r} {problem}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DinoConfig:
        """The named preset (``"smoke"`` or ``"default"``) with ``overrides`` applied.

        Raises:
            ConfigError: for an unknown preset name, an unknown key or an invalid value.
        """
        return config_from_preset(cls, _PRESETS, name, overrides, what="dino")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DinoConfig:
        """Build from a (possibly partial) dict; missing fields take their defaults.

        Raises:
            ConfigError: naming the first unknown key, or the field with an invalid value.
        """
        return config_from_dict(cls, data, what="dino")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (pairs as lists)."""
        return config_to_dict(self)


def _is_scale(pair: tuple[float, float]) -> bool:
    return 0 < pair[0] <= pair[1] <= 1


def _is_jitter(strengths: tuple[float, float, float, float]) -> bool:
    return all(0 <= v <= 1 for v in strengths[:3]) and 0 <= strengths[3] <= 0.5


# --------------------------------------------------------------------------------------------
# The objective


CENTERINGS = ("mean", "sinkhorn_knopp")


def centred_teacher_probs(
    teacher_out: torch.Tensor, center: torch.Tensor, teacher_temp: float
) -> torch.Tensor:
    """DINO's teacher distributions ``P_t = softmax((g_t - c) / tau_t)`` over the last axis."""
    return F.softmax((teacher_out - center.reshape(-1)) / teacher_temp, dim=-1)


@torch.no_grad()
def sinkhorn_knopp_teacher_probs(
    teacher_out: torch.Tensor, teacher_temp: float, iterations: int = 3
) -> torch.Tensor:
    """Teacher distributions balanced over the batch by Sinkhorn-Knopp (DINOv2's replacement of
    the centre; Oquab et al. 2023, after SwAV).

    ``Q = exp(g_t / tau_t)`` over all ``R`` rows of ``teacher_out`` (``(..., K)``; every view of
    every image is a row) is scaled alternately so that each prototype receives ``R / K`` of the
    total mass and each row sums to 1. Equal mass per prototype makes both collapses
    impossible: every row cannot share one prototype, nor spread evenly over all of them
    while another row is sharp. Returns probabilities of ``teacher_out``'s shape.
    """
    shape = teacher_out.shape
    logits = teacher_out.reshape(-1, shape[-1]).double() / teacher_temp
    q = torch.exp(logits - logits.max())
    rows, protos = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        q = q / q.sum(dim=0, keepdim=True) / protos
        q = q / q.sum(dim=1, keepdim=True) / rows
    return (q * rows).to(teacher_out.dtype).reshape(shape)


def teacher_probs(
    teacher_out: torch.Tensor,
    center: torch.Tensor,
    teacher_temp: float,
    centering: str = "mean",
) -> torch.Tensor:
    """The teacher's targets: :func:`centred_teacher_probs` (``centering="mean"``, DINO) or
    :func:`sinkhorn_knopp_teacher_probs` (``"sinkhorn_knopp"``, DINOv2; ``center`` unused)."""
    if centering == "mean":
        return centred_teacher_probs(teacher_out, center, teacher_temp)
    if centering == "sinkhorn_knopp":
        return sinkhorn_knopp_teacher_probs(teacher_out, teacher_temp)
    raise ValueError(f"centering must be one of {CENTERINGS}: {centering!r}")


def dino_loss(
    student_out: torch.Tensor,
    teacher_out: torch.Tensor,
    center: torch.Tensor,
    *,
    student_temp: float,
    teacher_temp: float,
    centering: str = "mean",
) -> torch.Tensor:
    """DINO's cross-entropy between centred, sharpened teacher and student distributions.

    Args:
        student_out: ``(V, B, K)`` head outputs of the student for ``V`` views of ``B`` images;
            views ``0 .. G-1`` are the global crops the teacher saw, in the same order.
        teacher_out: ``(G, B, K)`` head outputs of the teacher for the ``G`` global crops.
        center: ``(K,)`` or ``(1, K)`` centre subtracted from the teacher outputs.
        student_temp, teacher_temp: temperatures ``tau_s``, ``tau_t``.
        centering: how the teacher's targets are balanced (:func:`teacher_probs`).

    Returns:
        ``mean over pairs (g, v), v != g, of mean_b H(P_t(g, b), P_s(v, b))`` with
        ``P_t = softmax((teacher - c) / tau_t)`` (no gradient; or its Sinkhorn-Knopp form) and
        ``P_s = softmax(student / tau_s)``: a scalar.
    """
    num_global, num_views = teacher_out.shape[0], student_out.shape[0]
    if num_views < 2 or num_global > num_views:
        raise ValueError(f"need >= 2 student views and <= {num_views} teacher views")
    targets = teacher_probs(teacher_out, center, teacher_temp, centering).detach()
    log_probs = F.log_softmax(student_out / student_temp, dim=-1)
    # (G, V) table of mean cross-entropies; the diagonal pairs a view with itself.
    cross = -torch.einsum("gbk,vbk->gv", targets, log_probs) / student_out.shape[1]
    same_view = torch.eye(num_global, num_views, dtype=torch.bool, device=cross.device)
    return cross[~same_view].mean()


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_out: torch.Tensor, momentum: float) -> torch.Tensor:
    """The centre's EMA update ``c <- m c + (1 - m) mean(teacher_out)`` over all rows.

    ``teacher_out`` is ``(..., K)``; the mean is over every view and image (DINO averages the
    teacher outputs of both global crops of the batch).
    """
    batch_center = teacher_out.reshape(-1, teacher_out.shape[-1]).mean(dim=0)
    return center * momentum + batch_center.reshape(center.shape) * (1.0 - momentum)


@torch.no_grad()
def teacher_entropies(
    teacher_out: torch.Tensor, center: torch.Tensor, teacher_temp: float, centering: str = "mean"
) -> tuple[float, float]:
    """Collapse diagnostics of the teacher distributions ``P_t`` of a batch (DINO, Sec. 5.3).

    Returns ``(mean_b H(P_t(b)), H(mean_b P_t(b)))`` in nats: the mean per-image entropy, near
    ``ln K`` when the outputs collapse to the uniform distribution, and the entropy of the
    batch-mean distribution, near 0 when every image falls on the same prototype. ``teacher_out``
    is ``(..., K)``; every row counts as one image.
    """
    probs = teacher_probs(teacher_out, center, teacher_temp, centering)
    probs = probs.reshape(-1, probs.shape[-1])

    def entropy(p: torch.Tensor) -> torch.Tensor:
        return -(p * p.clamp_min(1e-12).log()).sum(dim=-1)

    return float(entropy(probs).mean()), float(entropy(probs.mean(dim=0)))


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """The teacher's EMA update ``theta_t <- m theta_t + (1 - m) theta_s``, parameter-wise."""
    for p_t, p_s in zip(teacher.parameters(), student.parameters(), strict=True):
        p_t.mul_(momentum).add_(p_s.detach(), alpha=1.0 - momentum)


def cosine_schedule(
    base: float, final: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Per-step values: linear ``warmup_start -> base`` warm-up, then a cosine ``base -> final``.

    As ``utils.cosine_scheduler`` of DINO: step ``i`` after the warm-up has
    ``final + (base - final) (1 + cos(pi i / n)) / 2`` for the ``n`` remaining steps.
    """
    warmup = np.linspace(warmup_start, base, warmup_steps, endpoint=False)
    steps = np.arange(total_steps - warmup_steps)
    n = max(len(steps), 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / n))
    return np.concatenate([warmup, cosine])


def teacher_temp_schedule(cfg: DinoConfig) -> np.ndarray:
    """Per-epoch teacher temperature: linear warm-up, then constant (DINO's ``DINOLoss``)."""
    warmup = np.linspace(cfg.warmup_teacher_temp, cfg.teacher_temp, cfg.warmup_teacher_temp_epochs)
    rest = np.full(cfg.epochs - cfg.warmup_teacher_temp_epochs, cfg.teacher_temp)
    return np.concatenate([warmup, rest])


class DinoHead(nn.Module):
    """DINO's projection head: 3-layer MLP (GELU), L2 normalisation, weight-normalised linear.

    The last layer's weight norm ``g`` is fixed at 1 (DINO's ``norm_last_layer=True``), so its
    outputs are cosine similarities to ``out_dim`` learned prototypes.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        last = nn.Linear(bottleneck_dim, out_dim, bias=False)
        self.last_layer = nn.utils.parametrizations.weight_norm(last)
        magnitude = self.last_layer.parametrizations.weight.original0
        magnitude.data.fill_(1.0)
        magnitude.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class DinoNetwork(nn.Module):
    """A ViT backbone and its projection head (DINO's ``MultiCropWrapper``)."""

    def __init__(self, backbone: nn.Module, head: DinoHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops: Sequence[torch.Tensor], batch_size: int) -> torch.Tensor:
        """Head outputs ``(V, B, K)`` of the views in ``crops``.

        ``crops`` holds one tensor per crop resolution, ``(n_i * B, 3, S_i, S_i)`` with its
        ``n_i`` views stacked view-major (all images of view 0, then of view 1, ...); each runs
        through the backbone as one batch, and the views come out in the order given.
        """
        outs = [self.head(self.backbone(views)) for views in crops]
        return torch.cat([out.reshape(-1, batch_size, out.shape[-1]) for out in outs])


def build_dino_network(cfg: DinoConfig, *, drop_path_rate: float) -> DinoNetwork:
    """Backbone (timm ViT from ``cfg.arch``/``cfg.arch_kwargs``) + :class:`DinoHead`."""
    kwargs = {**cfg.arch_kwargs, "drop_path_rate": drop_path_rate}
    backbone = build_vit(cfg.arch, arch_kwargs=kwargs)
    head = DinoHead(
        backbone.num_features, cfg.out_dim, cfg.head_hidden_dim, cfg.head_bottleneck_dim
    )
    return DinoNetwork(backbone, head)


# --------------------------------------------------------------------------------------------
# Multi-crop augmentation

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


def make_view(
    images: torch.Tensor, recipe: CropRecipe, cfg: DinoConfig, gen: torch.Generator
) -> torch.Tensor:
    """One DINO view of every image: random resized crop, flip, colour jitter, greyscale, blur,
    solarisation, ImageNet normalisation. ``images`` float ``(B, 3, H, W)`` in ``[0, 1]``."""
    n, _, height, width = images.shape
    x = resized_crops(images, sample_crop_boxes(gen, n, height, width, recipe.scale), recipe.size)
    flip = _chance(gen, n, FLIP_PROB).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)
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


# --------------------------------------------------------------------------------------------
# Corpus and probe


class Corpus(NamedTuple):
    """The unlabeled corpus in memory: ``images`` ``uint8 (N, 3, H, W)``; ``labels`` ``(N,)``
    category ids (for probing only), or ``None`` when the index has none."""

    index_path: Path
    images: torch.Tensor
    labels: torch.Tensor | None


def unlabeled_index_path(corpus_dir: Path) -> Path:
    """``index.json`` of the unlabeled corpus: in ``corpus_dir`` itself, or in its
    ``unlabeled/`` folder when ``corpus_dir`` is a world's ``corpora/`` folder."""
    direct = corpus_dir / "index.json"
    nested = corpus_dir / "unlabeled" / "index.json"
    return nested if not direct.is_file() and nested.is_file() else direct


def load_unlabeled_corpus(corpus_dir: Path) -> Corpus:
    """Read ``index.json`` (``{"images": [{"file", "category_id"?}, ...]}``) and every image.

    Raises:
        DataError: naming the index or image file: missing, not JSON, no images, an entry
            without ``file``, category ids on some entries only, an unreadable image, or
            images of different sizes.
    """
    index_path = unlabeled_index_path(Path(corpus_dir))
    if not index_path.is_file():
        raise DataError(index_path, "missing: expected an unlabeled image corpus index")
    try:
        doc = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(index_path, f"not a readable JSON file ({exc})") from exc
    entries = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(index_path, "has no 'images' list, or it is empty")
    arrays, labels = [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise DataError(index_path, f"images[{i}] has no 'file' string")
        labels.append(entry.get("category_id"))
        arrays.append(_read_rgb(index_path.parent / entry["file"], arrays))
    has_label = [isinstance(label, int) for label in labels]
    if any(has_label) and not all(has_label):
        missing = has_label.index(False)
        raise DataError(index_path, f"images[{missing}] has no integer 'category_id' (others do)")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    label_tensor = torch.tensor(labels, dtype=torch.int64) if all(has_label) else None
    return Corpus(index_path, images, label_tensor)


def _read_rgb(path: Path, previous: list[np.ndarray]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except OSError as exc:
        raise DataError(path, f"cannot read image ({exc})") from exc
    if previous and array.shape != previous[0].shape:
        h, w = previous[0].shape[:2]
        raise DataError(path, f"is {array.shape[1]}x{array.shape[0]}, the corpus is {w}x{h}")
    return array


def probe_split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, test)`` of a seeded random split with ``round(n * test_fraction)``
    (at least 1) images held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    num_test = min(n - 1, max(1, round(n * test_fraction)))
    return order[num_test:], order[:num_test]


def probe_inputs(images: torch.Tensor, size: int) -> torch.Tensor:
    """``uint8`` images resized to ``size x size`` (the global-crop size the network is trained
    at; bilinear, antialiased) and normalised: what the k-NN probe embeds."""
    resized = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True)
    return normalise_images(resized.clamp(0, 255) / 255.0)


def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    *,
    k: int,
    temperature: float,
) -> torch.Tensor:
    """Weighted k-NN labels (DINO's ``eval_knn``): cosine similarity, the ``k`` nearest training
    samples vote for their label with weight ``exp(similarity / temperature)``."""
    train = F.normalize(train_feats.double(), dim=1)
    test = F.normalize(test_feats.double(), dim=1)
    sims, idx = (test @ train.T).topk(min(k, len(train)), dim=1)
    num_classes = int(train_labels.max()) + 1
    votes = torch.zeros(len(test), num_classes, dtype=torch.float64)
    votes.scatter_add_(1, train_labels[idx], torch.exp(sims / temperature))
    return votes.argmax(dim=1)


def knn_accuracy(feats: torch.Tensor, labels: torch.Tensor, cfg: DinoConfig) -> float:
    """Top-1 accuracy of :func:`knn_predict` on the held-out part of :func:`probe_split`."""
    train, test = probe_split(len(labels), cfg.probe_test_fraction, cfg.seed)
    pred = knn_predict(
        feats[train], labels[train], feats[test], k=cfg.probe_k, temperature=cfg.probe_temperature
    )
    return float((pred == labels[test]).double().mean())


# --------------------------------------------------------------------------------------------
# Training


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """AdamW groups as DINO: weights decayed; biases and 1-d parameters (norms) not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(".bias") or param.ndim == 1 else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def clip_gradients(model: nn.Module, clip: float) -> None:
    """Scale each parameter's gradient down to norm ``clip`` when larger (DINO's rule)."""
    for param in model.parameters():
        if param.grad is not None:
            norm = param.grad.norm()
            param.grad.mul_(torch.clamp(clip / (norm + 1e-6), max=1.0))


def steps_per_epoch(num_images: int, cfg: DinoConfig) -> tuple[int, int]:
    """``(batch size, steps per epoch)``: full batches only (DINO drops the last partial one);
    a corpus smaller than ``cfg.batch_size`` gives one batch of all its images."""
    batch = min(cfg.batch_size, num_images)
    steps = num_images // batch
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    return batch, steps


def initial_network(cfg: DinoConfig) -> DinoNetwork:
    """The student at step 0: built under ``torch.manual_seed(cfg.seed)``, so the same each time
    (the teacher starts as its copy; the k-NN baseline probes its backbone)."""
    torch.manual_seed(cfg.seed)
    return build_dino_network(cfg, drop_path_rate=cfg.drop_path_rate)


@dataclass(frozen=True, eq=False)
class DinoRun:
    """What :func:`fit_dino` returns: the trained teacher (eval mode), the per-epoch log, and
    the batch size and steps per epoch actually used."""

    teacher: DinoNetwork
    epochs: list[dict[str, Any]]
    batch_size: int
    steps_per_epoch: int


def fit_dino(
    images: torch.Tensor,
    cfg: DinoConfig,
    *,
    progress: bool = True,
    device: str | torch.device | None = None,
    student: DinoNetwork | None = None,
    on_epoch: Callable[[dict[str, Any], DinoNetwork], None] | None = None,
) -> DinoRun:
    """Train student and teacher with DINO on ``uint8`` images ``(N, 3, H, W)``.

    Deterministic for a given ``cfg`` (the seed included), device and thread count.
    ``student`` replaces the network :func:`initial_network` builds (e.g. another backbone in a
    benchmark; the teacher starts as its copy); ``on_epoch(record, teacher)`` is called after
    each epoch with the epoch's log record (a probe, a plot).

    Raises:
        UvisError: the loss became NaN or infinite (lower ``lr``).
    """
    dev = torch.device(device or resolve_device("auto", "dino"))
    images = images.to(dev)
    batch, steps = steps_per_epoch(len(images), cfg)
    if student is None:
        student = initial_network(cfg).to(dev)
        teacher = build_dino_network(cfg, drop_path_rate=0.0).to(dev)
        teacher.load_state_dict(student.state_dict())
    else:
        student = student.to(dev)
        teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)

    total = cfg.epochs * steps
    lr = cosine_schedule(cfg.lr, cfg.min_lr, total, cfg.warmup_epochs * steps)
    wd = cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, total)
    momentum = cosine_schedule(cfg.momentum_teacher, 1.0, total)
    temps = teacher_temp_schedule(cfg)
    optimizer = torch.optim.AdamW(param_groups(student))
    center = torch.zeros(cfg.out_dim, device=dev)
    gen = torch.Generator().manual_seed(cfg.seed)

    epochs_log: list[dict[str, Any]] = []
    bar = progress_bar(total=total, desc="dino", unit="step", disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        epoch_start, losses, entropies = time.perf_counter(), [], []
        order = torch.randperm(len(images), generator=gen)
        for i in range(steps):
            it = epoch * steps + i
            optimizer.param_groups[0].update(lr=lr[it], weight_decay=wd[it])
            optimizer.param_groups[1].update(lr=lr[it])
            crops = multi_crop(images[order[i * batch : (i + 1) * batch].to(dev)], cfg, gen)
            with torch.no_grad():
                teacher_out = teacher(crops[:1], batch)
            loss = dino_loss(
                student(crops, batch),
                teacher_out,
                center,
                student_temp=cfg.student_temp,
                teacher_temp=float(temps[epoch]),
                centering=cfg.centering,
            )
            if not torch.isfinite(loss):
                raise UvisError(
                    f"DINO loss is {loss.item()} at epoch {epoch + 1} step {i + 1}: "
                    f"training diverged, lower lr (now {cfg.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                clip_gradients(student, cfg.clip_grad)
            if epoch < cfg.freeze_last_layer:
                for param in student.head.last_layer.parameters():
                    param.grad = None
            optimizer.step()
            ema_update(teacher, student, float(momentum[it]))
            entropies.append(
                teacher_entropies(teacher_out, center, float(temps[epoch]), cfg.centering)
            )
            center = update_center(center, teacher_out, cfg.center_momentum)
            losses.append(loss.item())
            bar.update()
        last = (epoch + 1) * steps - 1
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "lr": float(lr[last]),
            "weight_decay": float(wd[last]),
            "teacher_momentum": float(momentum[last]),
            "teacher_temp": float(temps[epoch]),
            "teacher_entropy": float(np.mean([e[0] for e in entropies])),
            "teacher_batch_entropy": float(np.mean([e[1] for e in entropies])),
            "seconds": round(time.perf_counter() - epoch_start, 2),
        }
        epochs_log.append(record)
        if on_epoch is not None:
            on_epoch(record, teacher)
        bar.set_postfix(loss=f"{record['loss']:.3f}")
        log.info(
            "dino epoch %d/%d: loss %.4f, lr %.2e, teacher momentum %.4f, temp %.3f, teacher "
            "entropy %.2f (batch mean %.2f, uniform %.2f), %.1f s",
            epoch + 1, cfg.epochs, record["loss"], record["lr"], record["teacher_momentum"],
            record["teacher_temp"], record["teacher_entropy"], record["teacher_batch_entropy"],
            math.log(cfg.out_dim), record["seconds"],
        )  # fmt: skip
    bar.close()
    return DinoRun(teacher.eval(), epochs_log, batch, steps)


def save_dino_checkpoint(backbone: nn.Module, path: Path) -> None:
    """Write ``backbone``'s ``state_dict`` as the official DINO release does (a plain dict of
    CPU tensors, timm/DINO key names), atomically."""
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_dino(
    corpus_dir: Path,
    out_path: Path,
    cfg: DinoConfig,
    *,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train a ViT with DINO on the unlabeled corpus; save the teacher backbone and a report.

    Writes ``out_path`` (the teacher backbone in the official DINO checkpoint format, readable
    by ``create_ssl_vit(cfg.arch, weights=out_path, arch_kwargs=cfg.arch_kwargs)``) and
    ``out_path.with_suffix(".json")``: the resolved config, the per-epoch training log, and the
    k-NN probe accuracy of the trained teacher and of the same network at initialisation (when
    the corpus has category labels). Both files are written atomically. Returns the report.

    Raises:
        DataError: the corpus cannot be read (see :func:`load_unlabeled_corpus`).
        UvisError: the loss became NaN or infinite (lower ``lr``).
    """
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    corpus = load_unlabeled_corpus(Path(corpus_dir))
    n, _, height, width = corpus.images.shape
    log.info(
        "dino: %d images %dx%d from %s; %s, %d epochs",
        n, width, height, corpus.index_path, describe_arch(cfg.arch, cfg.arch_kwargs), cfg.epochs,
    )  # fmt: skip
    run = fit_dino(corpus.images, cfg, progress=progress, device=device)
    train_wall, train_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    save_dino_checkpoint(run.teacher.backbone, out_path)

    probe = None
    if corpus.labels is not None and len(corpus.labels) >= 2:
        device_of = next(run.teacher.parameters()).device
        inputs = probe_inputs(corpus.images.to(device_of), cfg.global_crop_size)
        initial = initial_network(cfg).backbone.to(device_of)
        probe = knn_report(cfg, corpus.labels, initial, run.teacher.backbone, inputs)
    report = _report(cfg, corpus, run, probe)
    report["training"]["seconds"] = round(train_wall, 2)
    report["training"]["cpu_seconds"] = round(train_cpu, 2)
    report["seconds"] = round(time.perf_counter() - start_wall, 2)
    atomic_write_json(Path(out_path).with_suffix(".json"), report, indent=1)
    return report


def knn_report(
    cfg: DinoConfig,
    labels: torch.Tensor,
    initial: nn.Module,
    trained: nn.Module,
    inputs: torch.Tensor,
) -> dict[str, Any]:
    """The k-NN probe of the trained backbone and, for contrast, of its initialisation."""
    train, test = probe_split(len(labels), cfg.probe_test_fraction, cfg.seed)
    num_classes = len(torch.unique(labels))
    return {
        "features": "CLS token after the final norm, L2-normalised",
        "image_size": cfg.global_crop_size,
        "k": cfg.probe_k,
        "temperature": cfg.probe_temperature,
        "num_train": len(train),
        "num_test": len(test),
        "num_classes": num_classes,
        "chance_accuracy": 1.0 / num_classes,
        "accuracy_trained": knn_accuracy(cls_features(trained, inputs).cpu(), labels, cfg),
        "accuracy_random_init": knn_accuracy(cls_features(initial, inputs).cpu(), labels, cfg),
    }


def _report(
    cfg: DinoConfig, corpus: Corpus, run: DinoRun, probe: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``.json`` written next to the checkpoint (timings are added by the caller)."""
    import timm

    n, _, height, width = corpus.images.shape
    return {
        "format": "dino",
        "arch": cfg.arch,
        "arch_kwargs": cfg.arch_kwargs,
        "config": cfg.to_dict(),
        "corpus": {"index": str(corpus.index_path), "images": n, "size_hw": [height, width]},
        "training": {
            "batch_size": run.batch_size,
            "steps_per_epoch": run.steps_per_epoch,
            "steps": run.steps_per_epoch * cfg.epochs,
            "threads": torch.get_num_threads(),
            "device": str(next(run.teacher.parameters()).device),
            "epochs": run.epochs,
        },
        "knn_probe": probe,
        "versions": {"uvis": __version__, "torch": torch.__version__, "timm": timm.__version__},
    }


def load_trained_ssl_vit(checkpoint: Path) -> nn.Module:
    """The stand-in saved by :func:`train_dino`, built from its ``.json`` and loaded by the
    real DINO loader (:func:`uvis.foundation.ssl.create_ssl_vit`)."""
    sidecar = Path(checkpoint).with_suffix(".json")
    try:
        report = json.loads(sidecar.read_text(encoding="utf-8"))
        arch, arch_kwargs = report["arch"], report["arch_kwargs"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(sidecar, f"not a readable DINO training report ({exc})") from exc
    return create_ssl_vit(arch, weights=checkpoint, arch_kwargs=arch_kwargs)
