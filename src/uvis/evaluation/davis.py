"""DAVIS 2017/2019 unsupervised evaluation (J&F), identical to davisvideochallenge/davis2017-evaluation.

Protocol of the official ``DAVISEvaluation(task="unsupervised")``, reproduced here:

* **Frames.** Every ground-truth PNG of a sequence is evaluated, first and last frame included
  (only the semi-supervised task drops them). Frames are the ``*.png`` files in name order; the
  prediction for ``<frame>.png`` is ``PRED_DIR/<sequence>/<frame>.png``. Predicted frames with
  no ground-truth frame are ignored.
* **Ids.** A PNG's pixel values are ids (palette indices for mode 'P', grey values for 'L').
  In the ground truth, 255 is *void*; the sequence has objects ``1..N`` where ``N`` is the
  largest non-void id in its **first** frame (:func:`gt_object_count`): ids missing from the
  first frame below ``N`` are objects (possibly empty), ids above ``N`` that appear only later
  count as background (logged as a warning). A prediction has objects ``1..P``, ``P`` its largest
  id over all frames; 255 is an ordinary id there, not void.
* **Void.** Void pixels count neither for J nor for F (predicted pixels there are dropped).
* **J** (:func:`jaccard`): intersection over union per frame; an empty union scores 1.
* **F** (:func:`boundary_f`): one-pixel boundaries (:func:`boundary_map`, the Berkeley
  ``seg2bmap``) matched within ``ceil(0.008 * frame diagonal)`` pixels (:func:`boundary_radius`)
  by dilation with a disk (:func:`disk_footprint`, as skimage; :func:`dilate`, as ``cv2.dilate``);
  the empty cases are in :func:`f_measure_from_counts`.
* **Assignment** (:func:`match_unsupervised`): if ``P < N`` the prediction is padded with empty
  objects up to ``N`` (:func:`candidate_count`); every (prediction, object) pair is scored over all frames and a Hungarian
  assignment maximises the sum of ``(mean J + mean F) / 2``. Each object is thus matched to some
  prediction: an object matched to an empty one scores 0 on frames where it is visible and 1 on
  frames where it is absent. Unmatched predictions cost nothing.
* **Limit.** A prediction with an id above ``max_objects`` (20 in the benchmark) is rejected: the
  official script stops with a message, here it is a :class:`~uvis.errors.DataError` naming the
  first such PNG. The limit is on the largest id, not on the number of distinct ids.
* **Statistics** (:func:`temporal_statistics`): per object, the mean over frames, the recall
  (fraction of frames above 0.5) and the decay (mean of the first of four temporal bins minus the
  last, :func:`decay_bins`), for J and for F.
* **Averages.** The global J, F, recalls and decays are means over **objects** pooled across all
  sequences (not means of sequence means), and ``JF = (J + F) / 2``.

Output and choices where the official code has no (or a broken) answer:

* All numbers are on the 0-100 scale (the official code prints 0-1).
* ``per_sequence[seq]`` holds the mean J, F over that sequence's objects, their average ``JF``
  and ``num_objects``; ``per_object["<seq>_<id>"]`` holds each ground-truth object's J, F, JF and
  the predicted id matched to it (``None`` for padding). The official per-object table labels
  objects by matching order, not by ground-truth id; here the label is the ground-truth id.
* A sequence whose first frame has no object contributes no objects, as in the official code;
  its ``per_sequence`` J, F, JF are ``None``. If no sequence has an object, every global number
  is ``None`` (the official code gives NaN). Nothing is ever NaN.
* The official decay bins overflow for sequences longer than 256 frames (``uint8`` indices);
  here bins are computed without overflow.
* Missing ground-truth or prediction folders, a missing predicted frame, PNGs that are not
  single-channel, frames of a size different from the sequence's first ground-truth frame and
  ids above ``max_objects`` raise :class:`~uvis.errors.DataError` naming the file; the official
  code crashes or exits on all of these.
* Frames are matched by file stem; the official code strips every dot from the stem, which
  differs only for frame names containing dots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from uvis.errors import ConfigError, DataError
from uvis.evaluation._davis_io import frame_paths, list_sequences, read_predictions, read_sequence
from uvis.evaluation._davis_metrics import (
    DEFAULT_BOUND_TH,
    TemporalStats,
    boundary_f,
    boundary_map,
    boundary_radius,
    decay_bins,
    dilate,
    disk_footprint,
    f_measure_from_counts,
    jaccard,
    temporal_statistics,
)
from uvis.evaluation._davis_pairs import Matching, match_unsupervised, score_pairs

__all__ = [
    "DEFAULT_BOUND_TH",
    "MAX_OBJECTS",
    "VOID_LABEL",
    "Matching",
    "ObjectResult",
    "SequenceResult",
    "TemporalStats",
    "boundary_f",
    "boundary_map",
    "boundary_radius",
    "candidate_count",
    "decay_bins",
    "dilate",
    "disk_footprint",
    "evaluate_folders",
    "evaluate_sequence",
    "f_measure_from_counts",
    "format_summary",
    "gt_object_count",
    "jaccard",
    "match_unsupervised",
    "score_pairs",
    "temporal_statistics",
]

log = logging.getLogger(__name__)

#: Ground-truth pixel value of regions ignored by both measures.
VOID_LABEL = 255
#: Largest predicted id the benchmark accepts.
MAX_OBJECTS = 20


def gt_object_count(first_frame: ArrayLike) -> int:
    """Number of ground-truth objects of a sequence: the largest non-void id in its first frame."""
    ids = np.asarray(first_frame)
    return int(ids[ids != VOID_LABEL].max(initial=0))


def candidate_count(num_pred: int, num_gt: int) -> int:
    """Predicted objects entering the matching: ids ``1..num_pred``, padded with empty objects
    up to ``num_gt`` so that every ground-truth object gets a match."""
    return max(num_pred, num_gt)


@dataclass(frozen=True, eq=False)
class ObjectResult:
    """Scores of one ground-truth object (ids are the PNG values, from 1).

    ``pred_id`` is the prediction matched to it, ``None`` when that is padding (the prediction
    had fewer objects than the ground truth). ``j_frames``/``f_frames`` are the per-frame scores
    (0-1) whose statistics are ``j``/``f``.
    """

    gt_id: int
    pred_id: int | None
    j: TemporalStats
    f: TemporalStats
    j_frames: NDArray[np.float64]
    f_frames: NDArray[np.float64]


@dataclass(frozen=True)
class SequenceResult:
    """Matched objects of one sequence, in the official order (increasing matched prediction)."""

    objects: tuple[ObjectResult, ...]


def evaluate_sequence(
    gt: ArrayLike,
    pred: ArrayLike,
    *,
    max_objects: int = MAX_OBJECTS,
    bound_th: float = DEFAULT_BOUND_TH,
) -> SequenceResult:
    """Evaluate one sequence given as arrays, with the unsupervised protocol of the module docs.

    ``gt`` is the ``(T, H, W)`` ground-truth id video as stored (255 = void), ``pred`` the
    ``(T, H, W)`` predicted id video (0 = background). Raises ``ValueError`` on shape mismatch or
    a predicted id above ``max_objects``.
    """
    gt_ids = np.asarray(gt)
    pred_ids = np.asarray(pred)
    if gt_ids.ndim != 3 or gt_ids.shape != pred_ids.shape or gt_ids.shape[0] == 0:
        raise ValueError(
            f"gt and pred must be (T, H, W) of one shape, got {gt_ids.shape} and {pred_ids.shape}"
        )
    if not (np.issubdtype(gt_ids.dtype, np.integer) and np.issubdtype(pred_ids.dtype, np.integer)):
        raise ValueError("gt and pred must be integer id arrays")
    num_gt = gt_object_count(gt_ids[0])
    num_pred = int(pred_ids.max())
    if pred_ids.min() < 0 or num_pred > max_objects:
        raise ValueError(f"predicted ids must be in 0..{max_objects}, got up to {num_pred}")
    if num_gt == 0:
        return SequenceResult(objects=())
    void = gt_ids == VOID_LABEL
    num_candidates = candidate_count(num_pred, num_gt)
    j, f = score_pairs(gt_ids, pred_ids, void, num_gt, num_candidates, bound_th)
    matching = match_unsupervised(j, f)
    objects = []
    for p, g in zip(matching.pred_index, matching.gt_index, strict=True):
        objects.append(
            ObjectResult(
                gt_id=g + 1,
                pred_id=p + 1 if p < num_pred else None,
                j=temporal_statistics(j[p, g]),
                f=temporal_statistics(f[p, g]),
                j_frames=j[p, g].copy(),
                f_frames=f[p, g].copy(),
            )
        )
    return SequenceResult(objects=tuple(objects))


def _scaled_mean(values: list[float]) -> float | None:
    """Mean on the 0-100 scale, ``None`` for no values."""
    return None if not values else 100 * float(np.mean(values))


def _summarise(results: dict[str, SequenceResult]) -> dict[str, Any]:
    """The metrics dictionary: global means over all objects, then per sequence and per object."""
    objects = [obj for result in results.values() for obj in result.objects]
    j_mean = _scaled_mean([o.j.mean for o in objects])
    f_mean = _scaled_mean([o.f.mean for o in objects])
    per_sequence: dict[str, dict[str, Any]] = {}
    per_object: dict[str, dict[str, Any]] = {}
    for name, result in results.items():
        seq_j = _scaled_mean([o.j.mean for o in result.objects])
        seq_f = _scaled_mean([o.f.mean for o in result.objects])
        per_sequence[name] = {
            "J": seq_j,
            "F": seq_f,
            "JF": None if seq_j is None or seq_f is None else (seq_j + seq_f) / 2,
            "num_objects": len(result.objects),
        }
        for obj in sorted(result.objects, key=lambda o: o.gt_id):
            per_object[f"{name}_{obj.gt_id}"] = {
                "J": 100 * obj.j.mean,
                "F": 100 * obj.f.mean,
                "JF": 100 * (obj.j.mean + obj.f.mean) / 2,
                "pred_id": obj.pred_id,
            }
    return {
        "JF": None if j_mean is None or f_mean is None else (j_mean + f_mean) / 2,
        "J": j_mean,
        "J_recall": _scaled_mean([o.j.recall for o in objects]),
        "J_decay": _scaled_mean([o.j.decay for o in objects]),
        "F": f_mean,
        "F_recall": _scaled_mean([o.f.recall for o in objects]),
        "F_decay": _scaled_mean([o.f.decay for o in objects]),
        "num_sequences": len(results),
        "num_objects": len(objects),
        "per_sequence": per_sequence,
        "per_object": per_object,
    }


def _warn_late_ids(gt: NDArray[np.integer], num_gt: int, seq_dir: Path) -> None:
    """Log ground-truth ids that appear only after the first frame (they are not evaluated)."""
    late = np.setdiff1d(np.unique(gt[1:]), np.arange(num_gt + 1))
    late = late[late != VOID_LABEL]
    if late.size:
        log.warning(
            "%s: ids %s appear after the first frame and are not evaluated (the official "
            "protocol takes the objects from the first frame)",
            seq_dir,
            late.tolist(),
        )


def evaluate_folders(
    gt_dir: Path,
    pred_dir: Path,
    *,
    sequences: list[str] | None = None,
    max_objects: int = MAX_OBJECTS,
    bound_th: float = DEFAULT_BOUND_TH,
) -> dict[str, Any]:
    """Evaluate ``PRED_DIR/<seq>/<frame>.png`` against ``GT_DIR/<seq>/<frame>.png``.

    Evaluates ``sequences`` or every sequence folder of ``gt_dir``. Returns a JSON-ready dict
    (0-100 scale, ``None`` where undefined): ``JF``, ``J``, ``F``, ``J_recall``, ``J_decay``,
    ``F_recall``, ``F_decay``, ``num_sequences``, ``num_objects``, ``per_sequence`` and
    ``per_object`` (see the module docs). Bad input raises :class:`~uvis.errors.DataError`.
    """
    if max_objects < 1:
        raise ConfigError(f"max_objects: must be at least 1, got {max_objects}")
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    names = list_sequences(gt_dir, sequences)
    if not pred_dir.is_dir():
        raise DataError(pred_dir, "prediction folder does not exist")
    results: dict[str, SequenceResult] = {}
    for name in names:
        paths = frame_paths(gt_dir / name)
        gt = read_sequence(paths, "ground-truth frame")
        num_gt = gt_object_count(gt[0])
        _warn_late_ids(gt, num_gt, gt_dir / name)
        pred = read_predictions(pred_dir / name, [p.stem for p in paths], gt.shape[1:], max_objects)
        results[name] = evaluate_sequence(gt, pred, max_objects=max_objects, bound_th=bound_th)
    return _summarise(results)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_summary(metrics: dict[str, Any]) -> str:
    """Human-readable tables of :func:`evaluate_folders` output: global, then per sequence."""
    columns = [
        ("J&F-Mean", "JF"),
        ("J-Mean", "J"),
        ("J-Recall", "J_recall"),
        ("J-Decay", "J_decay"),
        ("F-Mean", "F"),
        ("F-Recall", "F_recall"),
        ("F-Decay", "F_decay"),
    ]
    lines = [
        f"DAVIS unsupervised: {metrics['num_sequences']} sequences, "
        f"{metrics['num_objects']} objects (0-100 scale)",
        "  ".join(f"{title:>9}" for title, _ in columns),
        "  ".join(f"{_fmt(metrics[key]):>9}" for _, key in columns),
        "",
    ]
    per_sequence = metrics["per_sequence"]
    width = max([len("Sequence"), *(len(name) for name in per_sequence)])
    lines.append(f"{'Sequence':<{width}}  {'J-Mean':>9}  {'F-Mean':>9}  {'J&F':>9}  Objects")
    for name, row in per_sequence.items():
        lines.append(
            f"{name:<{width}}  {_fmt(row['J']):>9}  {_fmt(row['F']):>9}  {_fmt(row['JF']):>9}  "
            f"{row['num_objects']:>7}"
        )
    return "\n".join(lines)
