"""Checkpoint files shared by the trained models: written atomically and reproducibly, read
with one set of checks.

A checkpoint is a dict saved by ``torch.save`` whose ``"format"`` entry names what it holds
(e.g. the VIS model's or the tag-based model's checkpoint format). :func:`save_checkpoint`
writes through an open file, so the archive inside does not take the random name of the
temporary file and equal checkpoints are equal bytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from uvis.categories import Category
from uvis.errors import DataError
from uvis.io import atomic_path


def model_checkpoint(
    fmt: str,
    model: torch.nn.Module,
    categories: Sequence[Category],
    *,
    iteration: int,
    training: Mapping[str, Any] | None = None,
    **entries: Any,
) -> dict[str, Any]:
    """A trained model's checkpoint dict of format ``fmt``: ``entries`` (its settings), the
    vocabulary, the iteration, the weights moved to the CPU and, when given, the ``training``
    state a resumed run restores."""
    obj: dict[str, Any] = {
        "format": fmt,
        **entries,
        "categories": [{"id": c.id, "name": c.name} for c in categories],
        "iteration": int(iteration),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if training is not None:
        obj["training"] = dict(training)
    return obj


def save_checkpoint(path: str | os.PathLike[str], checkpoint: Mapping[str, Any]) -> None:
    """Write a checkpoint dict atomically (a reader never sees a half-written file)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(dict(checkpoint), f)


def load_problem(exc: BaseException) -> str:
    """One line saying why ``torch.load`` failed (its messages span paragraphs, or are empty)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsupported:
        return (
            f"it holds a Python object ({unsupported.group(1)}) besides tensors; refused, as "
            "loading it could run code"
        )
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if "Weights only load failed" in text:
        # Not a pickle of tensors at all (random bytes, another format): say what broke.
        reason = detail.group(1).strip() if detail else "unreadable pickle data"
        return f"not a PyTorch pickle: {reason}"
    first_line = text.strip().split("\n")[0]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def load_torch_file(
    path: str | os.PathLike[str], *, what: str, safe_globals: Iterable[Any] = ()
) -> Any:
    """``torch.load`` of a weights file on the CPU, tensors and plain containers only.

    ``what`` names the expected content in errors (e.g. "a PyTorch checkpoint").

    Raises:
        DataError: naming ``path`` and the reason in one line: missing, a folder, empty (an
            interrupted write or download), or not readable as ``what``.
    """
    p = Path(path)
    if p.is_dir():
        raise DataError(path, f"is a folder, not {what}")
    if not p.is_file():
        raise DataError(path, "checkpoint file does not exist")
    if p.stat().st_size == 0:
        raise DataError(path, f"file is empty (0 bytes), not {what}: an interrupted write?")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for files that are not checkpoints
        raise DataError(path, f"cannot read as {what} ({load_problem(exc)})") from exc


def read_checkpoint(
    path: str | os.PathLike[str], *, fmt: str, what: str, required: Sequence[str]
) -> dict[str, Any]:
    """A checkpoint dict of format ``fmt``, read on the CPU.

    ``what`` names the kind of checkpoint in errors; ``required`` are the entries it must have
    (each a dict or a list).

    Raises:
        DataError: naming ``path`` when it is missing, unreadable or not such a checkpoint.
    """
    obj = load_torch_file(path, what="a PyTorch checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise DataError(path, f"not a {what} checkpoint (no format {fmt!r})")
    for key in required:
        if not isinstance(obj.get(key), dict | list):
            raise DataError(path, f"{what} checkpoint has no {key!r} entry")
    return obj
