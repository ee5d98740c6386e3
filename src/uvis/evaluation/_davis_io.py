"""Reading DAVIS id PNG folders for evaluation, with errors that name the offending file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from uvis.errors import DataError


def list_sequences(gt_dir: Path, sequences: list[str] | None) -> list[str]:
    """Names of the sequences to evaluate: ``sequences`` as given, else every folder of ``gt_dir``.

    Folders whose name starts with a dot are skipped; the default order is sorted by name.
    """
    if not gt_dir.is_dir():
        raise DataError(gt_dir, "ground-truth folder does not exist")
    if sequences is None:
        names = sorted(
            p.name for p in gt_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not names:
            raise DataError(gt_dir, "no sequence folders (expected <sequence>/<frame>.png)")
        return names
    if len(set(sequences)) != len(sequences):
        raise DataError(gt_dir, f"sequences listed more than once: {sequences}")
    for name in sequences:
        if not (gt_dir / name).is_dir():
            raise DataError(gt_dir / name, "sequence folder not found in the ground truth")
    return list(sequences)


def frame_paths(seq_dir: Path) -> list[Path]:
    """The ground-truth frames of a sequence: its ``*.png`` files in name order (dotfiles skipped)."""
    paths = sorted(
        (p for p in seq_dir.glob("*.png") if not p.name.startswith(".")), key=lambda p: p.name
    )
    if not paths:
        raise DataError(seq_dir, "no PNG frames in this ground-truth sequence folder")
    return paths


def read_id_png(path: Path) -> NDArray[np.integer]:
    """Read a single-channel id PNG: palette indices (mode 'P') or grey values ('L', 'I;16', ...).

    The pixel values are the ids, whatever colours a palette gives them.
    """
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read PNG: {exc}") from None
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise DataError(
            path, f"expected a single-channel id PNG (mode 'P' or 'L'), got mode {mode!r}"
        )
    return array.astype(np.uint8) if array.dtype == bool else array


def read_sequence(
    paths: list[Path], what: str, shape: tuple[int, int] | None = None
) -> NDArray[np.integer]:
    """Read frames into a ``(T, H, W)`` array; ``what`` names them in errors.

    Every frame must be of ``shape`` (``(H, W)``, the ground truth's), or else of the size of
    the first frame.
    """
    frames: list[NDArray[np.integer]] = []
    for path in paths:
        frame = read_id_png(path)
        expected = frames[0].shape if shape is None and frames else shape
        if expected is not None and frame.shape != expected:
            against = "the ground truth" if shape is not None else paths[0].name
            raise DataError(
                path,
                f"{what} is {frame.shape[1]}x{frame.shape[0]} but {against} is "
                f"{expected[1]}x{expected[0]} (width x height)",
            )
        frames.append(frame)
    return np.stack(frames)


def read_predictions(
    pred_seq_dir: Path, frame_names: list[str], shape: tuple[int, int], max_objects: int
) -> NDArray[np.integer]:
    """Read the predicted id PNG of every ground-truth frame, ``(T, H, W)``.

    Every ground-truth frame needs a prediction of the same size, with ids at most
    ``max_objects`` (the official evaluation rejects results with a larger id); predicted frames
    without a ground-truth frame are not read.
    """
    if not pred_seq_dir.is_dir():
        raise DataError(
            pred_seq_dir,
            "prediction folder for this sequence does not exist (to evaluate a subset, list "
            "the sequences)",
        )
    paths = [pred_seq_dir / f"{name}.png" for name in frame_names]
    for path in paths:
        if not path.is_file():
            raise DataError(path, "missing predicted frame (every ground-truth frame needs one)")
    pred = read_sequence(paths, "predicted frame", shape)
    frame_max = pred.reshape(pred.shape[0], -1).max(axis=1)
    over = np.flatnonzero(frame_max > max_objects)
    if over.size:
        t = int(over[0])
        raise DataError(
            paths[t],
            f"object id {int(frame_max[t])} exceeds the limit of {max_objects} predicted objects "
            "(the official evaluation rejects such results; ids must be 1..max_objects)",
        )
    return pred
