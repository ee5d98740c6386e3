"""DINO's objective, one function per equation of the paper, its projection head and network,
and the loader of a trained stand-in."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uvis.errors import DataError
from uvis.foundation.ssl import (
    build_vit,
    create_ssl_vit,
)
from uvis.standins.dino.config import CENTERINGS, DinoConfig


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
