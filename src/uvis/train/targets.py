"""Training targets of the VIS model: per frame, masks with class indices.

Two sources, one container (:class:`TrainingSet`):

* **Pseudo-labels** (UVIS §3.1; :func:`targets_from_pseudo_labels`): the rows of a
  pseudo-label Parquet kept at one of UVIS Table 2's denoising levels (``none``,
  ``objectness``, ``clip``, ``pmf`` with an optional ``tau``; :func:`uvis.pseudo.levels.select`),
  each with its CLIP class.
* **Ground truth** (the supervised upper bound; :func:`targets_from_ground_truth`): every
  visible instance mask of a YouTube-VIS split with its annotated category.

Frames are those of the frame index, in its order. Category ids become contiguous class
indices in the order of the vocabulary (``categories[i]`` is class ``i``), the order the model's
class logits and its checkpoint keep. Frames without any target are kept here (with no masks);
the training run keeps or drops them as ``TrainConfig.empty_frames`` says. Masks stay
run-length encoded until a frame is loaded, so a whole split fits in memory.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from uvis import masks
from uvis.data.frame_index import FrameIndex
from uvis.data.frames import Category, VideoDataset
from uvis.errors import ConfigError, DataError
from uvis.masks import RLE
from uvis.pseudo.levels import LEVELS, select
from uvis.schemas import PSEUDO_LABELS

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FrameTargets:
    """One training frame: its file and size, and its target masks with class indices.

    ``track_ids[i]`` is the instance (annotation id) of mask ``i`` where the source follows
    instances across frames (ground truth); it is empty for per-frame pseudo-labels.
    """

    video_id: int
    frame_index: int
    path: Path
    height: int
    width: int
    rles: tuple[RLE, ...]
    labels: tuple[int, ...]
    track_ids: tuple[int, ...] = ()

    def masks(self) -> np.ndarray:
        """The target masks as ``uint8`` ``(N, height, width)`` with values 0/1."""
        if not self.rles:
            return np.zeros((0, self.height, self.width), dtype=np.uint8)
        return np.stack([masks.decode(r) for r in self.rles]).astype(np.uint8, copy=False)


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """The frames to train on, the vocabulary, and a description of where targets came from.

    ``source`` is JSON-ready (``kind``, files, selection level) and goes into ``config.json``.
    """

    frames: tuple[FrameTargets, ...]
    categories: tuple[Category, ...]
    source: dict[str, Any]

    @property
    def origin(self) -> str | None:
        """The file the targets came from (pseudo-labels or annotations), for messages."""
        return self.source.get("labels") or self.source.get("annotations")

    def summary(self) -> dict[str, int | str]:
        """Counts of frames, frames with targets and target masks, and a digest of the targets.

        The digest (SHA-1 over every frame's id, masks and classes) tells whether a checkpoint
        was trained on exactly these targets: a resumed run must be the same run.
        """
        digest = hashlib.sha1()
        for f in self.frames:
            digest.update(f"{f.video_id},{f.frame_index},{f.labels};".encode())
            for rle in f.rles:
                counts = rle["counts"]
                digest.update(counts.encode() if isinstance(counts, str) else bytes(counts))
        return {
            "frames": len(self.frames),
            "frames_with_targets": sum(1 for f in self.frames if f.rles),
            "masks": sum(len(f.rles) for f in self.frames),
            "digest": digest.hexdigest(),
        }


def class_indices(categories: Sequence[Category]) -> dict[int, int]:
    """Category id -> contiguous class index (position in ``categories``); ids must be unique."""
    index = {c.id: i for i, c in enumerate(categories)}
    if len(index) != len(categories):
        raise ConfigError(f"vocabulary lists a category id twice: {[c.id for c in categories]}")
    if not index:
        raise ConfigError("the vocabulary is empty: nothing to classify")
    return index


def _frames(frame_index: pa.Table, where: str) -> dict[tuple[int, int], tuple[str, int, int]]:
    """``(video_id, frame_index) -> (path, height, width)`` of a frame index, in its order."""
    return FrameIndex.of(frame_index, where).frame_files()


def _training_set(
    frames: dict[tuple[int, int], tuple[str, int, int]],
    targets: dict[tuple[int, int], list[tuple[RLE, int]]],
    categories: Sequence[Category],
    source: dict[str, Any],
    track_ids: dict[tuple[int, int], list[int]] | None = None,
) -> TrainingSet:
    items = []
    for (vid, t), (path, h, w) in frames.items():
        pairs = targets.get((vid, t), [])
        items.append(
            FrameTargets(
                video_id=vid,
                frame_index=t,
                path=Path(path),
                height=h,
                width=w,
                rles=tuple(rle for rle, _ in pairs),
                labels=tuple(label for _, label in pairs),
                track_ids=tuple(track_ids.get((vid, t), [])) if track_ids is not None else (),
            )
        )
    return TrainingSet(frames=tuple(items), categories=tuple(categories), source=source)


def targets_from_pseudo_labels(
    frame_index: pa.Table,
    labels: pa.Table,
    categories: Sequence[Category],
    *,
    level: str,
    tau: float | None = None,
    frames_path: str | None = None,
    labels_path: str | None = None,
) -> TrainingSet:
    """Targets from the pseudo-labels kept at ``level`` (and ``tau``, for ``pmf``).

    ``labels`` is a pseudo-label table (:data:`uvis.schemas.PSEUDO_LABELS`); each kept row's
    ``class_id`` must be a category id of ``categories``. Kept rows with empty masks are skipped
    (counted in a log line). ``frames_path`` and ``labels_path`` name the files in errors.

    Raises:
        ConfigError: for an unknown level, or ``tau`` with a level other than ``pmf``.
        DataError: when a table lacks columns of its schema, a kept row's frame is not in the
            frame index or has another size, its class is not in the vocabulary, or no row is
            kept (nothing to train on).
    """
    where = labels_path or "pseudo-labels"
    if level not in LEVELS:
        raise ConfigError(f"unknown pseudo-label level {level!r}; known: {list(LEVELS)}")
    if tau is not None and level != "pmf":
        raise ConfigError(f"tau applies to the 'pmf' level only, not {level!r}")
    frames = _frames(frame_index, frames_path or "frame index")
    labels = PSEUDO_LABELS.check(labels, where)
    try:
        keep = select(labels, level, tau)
    except ValueError as exc:  # tau out of [-1, 1]
        raise ConfigError(str(exc)) from exc
    index = class_indices(categories)
    kept = labels.filter(pa.array(keep))
    if kept.num_rows == 0:
        raise DataError(
            where,
            f"no pseudo-label passes level {level!r}"
            + (f" at tau {tau}" if tau is not None else "")
            + f" ({labels.num_rows} rows in the file): nothing to train on",
        )
    cols = kept.select(["video_id", "frame_index", "height", "width", "rle", "class_id"])
    targets: dict[tuple[int, int], list[tuple[RLE, int]]] = defaultdict(list)
    empty = 0
    for vid, t, h, w, counts, class_id in zip(*cols.to_pydict().values(), strict=True):
        key = (int(vid), int(t))
        if key not in frames:
            raise DataError(where, f"pseudo-label of video {vid} frame {t}: not in the frame index")
        if (h, w) != frames[key][1:]:
            raise DataError(
                where,
                f"pseudo-label of video {vid} frame {t} is {h}x{w} (HxW) but the frame is "
                f"{frames[key][1]}x{frames[key][2]}",
            )
        if class_id not in index:
            raise DataError(
                where,
                f"pseudo-label of video {vid} frame {t} has class id {class_id}, which is not "
                f"in the vocabulary (ids {sorted(index)})",
            )
        rle = {"size": [int(h), int(w)], "counts": counts}
        if masks.area(rle) == 0:
            empty += 1
            continue
        targets[key].append((rle, index[class_id]))
    if empty:
        logger.warning("%s: skipped %d empty masks", where, empty)
    source = {
        "kind": "pseudo_labels",
        "labels": labels_path,
        "frame_index": frames_path,
        "level": level,
        "tau": tau,
        "rows": labels.num_rows,
        "kept_rows": kept.num_rows,
    }
    return _training_set(frames, targets, categories, source)


def targets_from_ground_truth(
    frame_index: pa.Table,
    dataset: VideoDataset,
    *,
    frames_path: str | None = None,
    annotations_path: str | None = None,
) -> TrainingSet:
    """Targets from a YouTube-VIS split's ground truth: every visible instance mask.

    Crowd annotations (``iscrowd``) are not targets, as in Mask2Former's dataset mappers. The
    vocabulary is the dataset's categories. Frame ``t`` of a video in the frame index is
    frame ``t`` of the annotations, so both must have been built with the same frame stride.

    Raises:
        DataError: when the split has no annotations, a video of the frame index is not in the
            dataset or has another number of frames, or no frame has a visible mask.
    """
    where = annotations_path or dataset.name
    if dataset.instances is None:
        raise DataError(where, "has no annotations (a split without public ground truth)")
    frames = _frames(frame_index, frames_path or "frame index")
    lengths: dict[int, int] = defaultdict(int)
    for vid, t in frames:
        lengths[vid] = max(lengths[vid], t + 1)
    videos = {v.id: v for v in dataset.videos}
    for vid, length in lengths.items():
        if vid not in videos:
            raise DataError(where, f"video {vid} of the frame index is not in the annotations")
        if length != len(videos[vid].frame_paths):
            raise DataError(
                where,
                f"video {vid} has {len(videos[vid].frame_paths)} annotated frames but the frame "
                f"index has {length} (built with another frame stride?)",
            )
    index = class_indices(dataset.categories)
    targets: dict[tuple[int, int], list[tuple[RLE, int]]] = defaultdict(list)
    track_ids: dict[tuple[int, int], list[int]] = defaultdict(list)
    for inst in dataset.instances:
        if inst.video_id not in lengths or inst.iscrowd:
            continue
        for t, seg in enumerate(inst.segmentations):
            if seg is not None and (inst.video_id, t) in frames and masks.area(seg) > 0:
                targets[(inst.video_id, t)].append((seg, index[inst.category_id]))
                track_ids[(inst.video_id, t)].append(inst.id)
    if not targets:
        raise DataError(
            where, "no frame of the frame index has a visible object: nothing to train on"
        )
    source = {"kind": "ground_truth", "annotations": annotations_path, "frame_index": frames_path}
    return _training_set(frames, targets, dataset.categories, source, track_ids)
