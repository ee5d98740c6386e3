"""Comparing a checkpoint's state dict with a model's, for errors a user can act on.

Every loader (DINO ViTs, open_clip models, ResNet backbones, the learned detector) reports a
file that does not fit its architecture the same way: how many keys are missing, unexpected
or of another shape, with a few examples of each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def state_dict_mismatch(
    state: Mapping[str, Any],
    expected: Mapping[str, Any],
    *,
    optional: Callable[[str], bool] = lambda key: False,
) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys and shape mismatches (``key: file (..) vs model (..)``).

    ``expected`` is the model's own ``state_dict()``; keys for which ``optional`` is true may be
    absent from ``state`` without counting as missing.
    """
    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    return missing, unexpected, shapes


def examples(items: list[str], limit: int = 3) -> str:
    """The first ``limit`` items, comma-separated, with ``...`` when there are more."""
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def mismatch_parts(missing: list[str], unexpected: list[str], shapes: list[str]) -> list[str]:
    """``["N missing keys (e.g. ...)", ...]`` for the non-empty kinds; empty when all fit."""
    return [
        f"{len(items)} {what} (e.g. {examples(items)})"
        for items, what in (
            (missing, "missing keys"),
            (unexpected, "unexpected keys"),
            (shapes, "shape mismatches"),
        )
        if items
    ]
