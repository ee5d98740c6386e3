"""Checkpoint files shared by the trained models: written atomically and reproducibly, read
with one set of checks.

A checkpoint is a dict saved by ``torch.save`` whose ``"format"`` entry names what it holds
(e.g. the VIS model's or the tag-based model's checkpoint format). :func:`save_checkpoint`
writes through an open file, so the archive inside does not take the random name of the
temporary file and equal checkpoints are equal bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from uvis.errors import DataError
from uvis.io import atomic_path


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Mapping[str, Any]) -> None:
    """Write a checkpoint dict atomically (a reader never sees a half-written file)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(dict(checkpoint), f)


def read_checkpoint(
    path: str | os.PathLike[str], *, fmt: str, what: str, required: Sequence[str]
) -> dict[str, Any]:
    """A checkpoint dict of format ``fmt``, read on the CPU.

    ``what`` names the kind of checkpoint in errors; ``required`` are the entries it must have
    (each a dict or a list).

    Raises:
        DataError: naming ``path`` when it is missing, unreadable or not such a checkpoint.
    """
    if not Path(path).is_file():
        raise DataError(path, "checkpoint file does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for files that are not checkpoints
        raise DataError(path, f"cannot read as a PyTorch checkpoint: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise DataError(path, f"not a {what} checkpoint (no format {fmt!r})")
    for key in required:
        if not isinstance(obj.get(key), dict | list):
            raise DataError(path, f"{what} checkpoint has no {key!r} entry")
    return obj
