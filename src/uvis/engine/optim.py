"""The optimiser step with mixed precision, shared by the trainings that use AMP, and the
weights' moving average some trainings keep beside it."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


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


class WeightAverage(AveragedModel):
    """torch's :class:`~torch.optim.swa_utils.AveragedModel` whose integer buffers (BatchNorm's
    ``num_batches_tracked``) follow the model instead of being averaged."""

    def update_parameters(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s weights; copy its integer buffers."""
        super().update_parameters(model)
        with torch.no_grad():
            for mine, theirs in zip(self.module.buffers(), model.buffers(), strict=True):
                if not mine.is_floating_point():
                    mine.copy_(theirs)


def weight_average(model: torch.nn.Module, decay: float) -> WeightAverage | None:
    """An exponential moving average of ``model``'s parameters and floating-point buffers
    (``decay`` per update, the first update copying the weights), or ``None`` for
    ``decay == 0``.

    Call ``update_parameters(model)`` after each optimiser step; ``.module`` is the averaged
    copy; its state dict resumes it.
    """
    if decay == 0:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"decay must lie in [0, 1), got {decay}")
    return WeightAverage(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
