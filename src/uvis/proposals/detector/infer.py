"""Detection with a trained detector: masks per frame, their refinement, detection groups, and
the proposals table (:data:`uvis.schemas.PROPOSALS`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torchvision.models.detection import MaskRCNN

from uvis import masks
from uvis.data.frames import read_frame
from uvis.progress import progress_bar
from uvis.proposals.detector.config import DetectorConfig
from uvis.proposals.detector.model import _to_tensor
from uvis.proposals.maskcut import MaskCutConfig
from uvis.proposals.refine import BilateralParams, RefineMethod, refine_where_agreeing
from uvis.schemas import FRAME_INDEX, PROPOSALS

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Detection:
    """One detection: the detector's box ``x1, y1, x2, y2``, its score and the binarised mask."""

    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray


@torch.no_grad()
def detect(
    model: MaskRCNN, images: Sequence[np.ndarray], cfg: DetectorConfig
) -> list[list[Detection]]:
    """Detections of each ``(H, W, 3)`` uint8 RGB image, highest score first.

    ``cfg``'s inference settings (``score_floor``, ``nms_thresh``, ``detections_per_img``) are
    set on the model's heads; masks are the mask head's probabilities pasted into the image and
    binarised at ``cfg.mask_threshold``. Runs in batches of ``cfg.batch_size`` on the model's
    device.
    """
    heads = model.roi_heads
    heads.score_thresh, heads.nms_thresh = cfg.score_floor, cfg.nms_thresh
    heads.detections_per_img = cfg.detections_per_img
    model.eval()
    device = next(model.parameters()).device
    out: list[list[Detection]] = []
    for s in range(0, len(images), cfg.batch_size):
        batch = [_to_tensor(img, device) for img in images[s : s + cfg.batch_size]]
        for result in model(batch):
            order = torch.argsort(result["scores"], descending=True, stable=True)
            probs = result["masks"][order, 0].float().cpu().numpy()
            boxes = result["boxes"][order].float().cpu().numpy()
            scores = result["scores"][order].float().cpu().numpy()
            out.append(
                [
                    Detection(
                        tuple(float(v) for v in box), float(score), prob >= cfg.mask_threshold
                    )
                    for box, score, prob in zip(boxes, scores, probs, strict=True)
                ]
            )
    return out


#: A refined detection mask replaces the detector's only with at least this mask IoU between
#: them: MaskCut's own agreement threshold.
MIN_REFINED_IOU = MaskCutConfig.min_refined_iou


def refine_detections(
    image: np.ndarray,
    detections: Sequence[Detection],
    method: RefineMethod = "bilateral",
    min_score: float = 0.5,
    params: BilateralParams | None = None,
) -> list[Detection]:
    """Snap the masks of detections scoring ``>= min_score`` to the colour edges of ``image``.

    The detector's mask head predicts 28 x 28 masks per box, learned from MaskCut's patch-level
    masks, so its outlines are coarse. This applies MaskCut's own refinement (CutLER's dense
    CRF and hole filling, :func:`uvis.proposals.refine.refine_mask`) to them. A refined mask is
    kept only where it agrees with the detector's (mask IoU ``>= MIN_REFINED_IOU``, MaskCut's
    agreement test); otherwise, and for lower-scoring detections, the detector's mask stays.
    Boxes and scores are unchanged (:func:`proposals_table` recomputes the box from the mask).
    ``params`` are the CRF's constants (CutLER's by default).
    """
    chosen = [i for i, d in enumerate(detections) if d.score >= min_score]
    if method == "none" or not chosen:
        return list(detections)
    coarse = np.stack([detections[i].mask for i in chosen])
    refined = refine_where_agreeing(
        image, coarse, method, fill_holes=True, min_iou=MIN_REFINED_IOU, params=params
    )
    out = list(detections)
    for i, old, new in zip(chosen, coarse, refined, strict=True):
        if not np.array_equal(old, new):
            out[i] = dataclasses.replace(detections[i], mask=new)
    return out


#: A detection counts as lying inside another when at least this share of its mask does.
GROUP_INSIDE = 0.8
#: A detection with at least this many others inside it, one of them scoring higher, is a group.
GROUP_MIN_MEMBERS = 2


def group_flags(detections: Sequence[Detection]) -> list[bool]:
    """Which detections of one frame are *groups*: masks holding several objects at once.

    MaskCut's normalised cut often puts several objects on the foreground side of its first
    bipartition, and the detector trained on its masks learns to propose such unions next to the
    objects themselves. A detection is flagged when at least ``GROUP_MIN_MEMBERS`` other
    detections of the frame lie inside it (``>= GROUP_INSIDE`` of their mask area) and at least
    one of those scores higher than it: the frame's detections already explain it as several
    more confident parts. A detection scoring above everything inside it is never flagged (it
    may be one object whose parts were also detected). Empty masks are never members.
    """
    n = len(detections)
    if n <= GROUP_MIN_MEMBERS:
        return [False] * n
    flat = np.stack([d.mask.reshape(-1) for d in detections]).astype(np.float32)
    overlap = flat @ flat.T  # overlap[i, j]: pixels of j inside i
    area = np.diag(overlap).copy()
    inside = overlap >= GROUP_INSIDE * area[None, :]
    inside &= area[None, :] > 0
    np.fill_diagonal(inside, False)
    scores = np.array([d.score for d in detections])
    flags = []
    for i in range(n):
        members = np.flatnonzero(inside[i])
        flags.append(
            len(members) >= GROUP_MIN_MEMBERS and bool((scores[members] > scores[i]).any())
        )
    return flags


def suppress_groups(detections: Sequence[Detection]) -> list[Detection]:
    """The detections of one frame without the groups of :func:`group_flags`."""
    return [d for d, group in zip(detections, group_flags(detections), strict=True) if not group]


def proposals_table(frame_rows: pa.Table, detections: Sequence[Sequence[Detection]]) -> pa.Table:
    """The ``learned`` proposals (schema :data:`uvis.schemas.PROPOSALS`) of frames and detections.

    ``frame_rows`` are frame-index rows (``video_id``, ``frame_index``, ``height``, ``width``), one
    per entry of ``detections``. Per frame, detections are ranked by score (``proposal_id`` 0 is
    the best); ``box`` is the tight box of the binarised mask (the mask is what later stages use,
    so box and mask agree), ``area`` its pixel count, ``objectness`` the detector's score.
    Detections whose mask is empty after binarisation are left out and counted in a log line.
    """
    if frame_rows.num_rows != len(detections):
        raise ValueError(f"{frame_rows.num_rows} frame rows but {len(detections)} detection lists")
    frames = frame_rows.select(["video_id", "frame_index", "height", "width"]).to_pydict()
    columns: dict[str, list[Any]] = {f.name: [] for f in PROPOSALS.schema}
    empty = 0
    for vid, t, h, w, dets in zip(*frames.values(), detections, strict=True):
        ranked = sorted(dets, key=lambda d: -d.score)
        kept = [d for d in ranked if d.mask.any()]
        empty += len(ranked) - len(kept)
        for pid, det in enumerate(kept):
            if det.mask.shape != (h, w):
                raise ValueError(f"mask of video {vid} frame {t} is {det.mask.shape}, not {h}x{w}")
            rle = masks.encode(det.mask)
            columns["video_id"].append(vid)
            columns["frame_index"].append(t)
            columns["proposal_id"].append(pid)
            columns["box"].append(masks.bbox_xywh(rle))
            columns["area"].append(masks.area(rle))
            columns["height"].append(h)
            columns["width"].append(w)
            columns["rle"].append(rle["counts"])
            columns["objectness"].append(det.score)
            columns["source"].append("learned")
    if empty:
        logger.info("learned proposals: left out %d detections with empty masks", empty)
    return pa.table(columns, schema=PROPOSALS.schema)


def detect_frames(
    model: MaskRCNN,
    frame_index: pa.Table,
    cfg: DetectorConfig,
    *,
    refine: RefineMethod = "none",
    refine_min_score: float = 0.5,
    refine_params: BilateralParams | None = None,
    drop_groups: bool = False,
    progress: bool = True,
) -> pa.Table:
    """The ``learned`` proposals of every frame of a frame index (one batch at a time), their
    masks refined by :func:`refine_detections` (with ``refine_params``) unless ``refine`` is
    ``"none"``, then without the groups of :func:`group_flags` if ``drop_groups`` (the number
    dropped is logged)."""
    frame_index = FRAME_INDEX.check(frame_index, "frame index")
    rows = frame_index.select(["path", "height", "width"]).to_pydict()
    tables = [proposals_table(frame_index.slice(0, 0), [])]
    n = frame_index.num_rows
    bar = progress_bar(total=n, desc="detector proposals", unit="frame", disable=not progress)
    groups = 0
    for s in range(0, n, cfg.batch_size):
        images = [
            read_frame(Path(p), h, w)
            for p, h, w in zip(*(v[s : s + cfg.batch_size] for v in rows.values()), strict=True)
        ]
        # Encoded batch by batch: full-size masks of a whole shard would not fit in memory.
        found = [
            refine_detections(image, dets, refine, refine_min_score, refine_params)
            for image, dets in zip(images, detect(model, images, cfg), strict=True)
        ]
        if drop_groups:
            kept = [suppress_groups(dets) for dets in found]
            groups += sum(len(a) - len(b) for a, b in zip(found, kept, strict=True))
            found = kept
        tables.append(proposals_table(frame_index.slice(s, len(images)), found))
        bar.update(len(images))
    bar.close()
    if drop_groups:
        logger.info("detector proposals: dropped %d group detections on %d frames", groups, n)
    return pa.concat_tables(tables)
