"""The optimiser step with mixed precision, shared by the trainings that use AMP."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def amp_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    clip_params: Iterable[torch.nn.Parameter] | None = None,
    grad_clip: float = 0.0,
) -> None:
    """One optimiser step on ``loss`` through the gradient scaler (a no-op scaler without AMP):
    gradients cleared, back-propagated, unscaled and clipped to norm ``grad_clip`` over
    ``clip_params`` (when ``grad_clip > 0``), the step taken, the scale and the learning-rate
    schedule advanced."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip > 0 and clip_params is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(clip_params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()
