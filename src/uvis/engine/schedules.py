"""Learning-rate schedules of every training in uvis, in one place.

Each schedule is a factor of the base learning rate per optimiser step, with 0-based steps
unless a caller says otherwise. Two warm-up conventions occur in the codes uvis follows and are
both kept, so that every training keeps its numbers:

* detectron2's ``WarmupLinear`` (CutLER's detector) and DINO's ``cosine_scheduler``: the factor
  rises linearly from ``start`` at step 0 to 1 at step ``warmup``;
* MinVIS's and the CLIP stand-in's: the first step already trains at ``1 / warmup`` and step
  ``warmup - 1`` at the full rate (``start=None`` below).

After the warm-up the rate is constant, drops once (MinVIS's and detectron2's multi-step
schedule with one milestone) or follows a half cosine to ``final`` (DINO, CLIP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: What follows the warm-up.
DECAYS = ("constant", "step", "cosine")


def warmup_factor(step: int, warmup: int, start: float | None = None) -> float:
    """Factor of ``step`` (< ``warmup``) of a linear warm-up over ``warmup`` steps.

    ``start=None``: ``(step + 1) / warmup``; otherwise ``start + (1 - start) * step / warmup``
    (detectron2's warm-up factor is ``start``; 0.001 by default).
    """
    if start is None:
        return (step + 1) / warmup
    return start + (1 - start) * step / warmup


def cosine_factor(step: int, warmup: int, total: int, final: float = 0.0) -> float:
    """Half-cosine decay from 1 at step ``warmup`` to ``final`` at step ``total`` (held after)."""
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate factor per step: a linear warm-up of ``warmup`` steps (convention
    ``warmup_start``, see :func:`warmup_factor`), then ``decay``:

    * ``constant``: 1;
    * ``step``: 1 before step ``drop_at``, ``drop_factor`` from it on (the drop also scales the
      warm-up when it falls inside it);
    * ``cosine``: :func:`cosine_factor` to ``final`` at step ``total``.
    """

    total: int
    warmup: int = 0
    warmup_start: float | None = None
    decay: str = "constant"
    drop_at: float = math.inf
    drop_factor: float = 0.1
    final: float = 0.0

    def __post_init__(self) -> None:
        if self.decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {self.decay!r}")

    def __call__(self, step: int) -> float:
        if self.decay == "step":
            drop = self.drop_factor if step >= self.drop_at else 1.0
            if step < self.warmup and self.warmup_start is None:
                return drop * (step + 1) / self.warmup  # MinVIS's order of operations
            if step < self.warmup:
                return drop * warmup_factor(step, self.warmup, self.warmup_start)
            return drop
        if step < self.warmup:
            return warmup_factor(step, self.warmup, self.warmup_start)
        if self.decay == "cosine":
            return cosine_factor(step, self.warmup, self.total, self.final)
        return 1.0

    def rate(self, step: int, base: float) -> float:
        """The learning rate ``base`` x the factor of ``step``. A warm-up from zero is computed as
        ``base * step / warmup`` up to step ``warmup`` itself, the order of operations the
        tag-based model has always used (1-based steps), so that its rates stay the same to the
        last bit."""
        if 0 < step <= self.warmup and self.warmup_start == 0.0 and self.decay != "step":
            return base * step / self.warmup
        return base * self(step)


def cosine_schedule(
    base: float, final: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Per-step values: linear ``warmup_start -> base`` warm-up, then a cosine ``base -> final``.

    As ``utils.cosine_scheduler`` of DINO, which schedules the learning rate, the weight decay
    and the teacher's momentum with it: step ``i`` after the warm-up has
    ``final + (base - final) (1 + cos(pi i / n)) / 2`` for the ``n`` remaining steps.
    """
    warmup = np.linspace(warmup_start, base, warmup_steps, endpoint=False)
    steps = np.arange(total_steps - warmup_steps)
    n = max(len(steps), 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / n))
    return np.concatenate([warmup, cosine])
