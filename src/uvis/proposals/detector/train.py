"""CutLER's learn step: training targets from MaskCut's masks, training rounds with DropLoss
(on :class:`uvis.engine.trainer.Trainer`) and the self-training rounds."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torchvision
from pycocotools import mask as mask_utils
from torchvision.models.detection import MaskRCNN

from uvis import masks
from uvis.data.frames import read_frame
from uvis.engine.optim import amp_step
from uvis.engine.schedules import LRSchedule
from uvis.engine.trainer import LossWindow, Trainer, Window
from uvis.errors import DataError
from uvis.io import atomic_write_json
from uvis.masks import RLE
from uvis.progress import progress_bar
from uvis.proposals.detector.augment import copy_paste
from uvis.proposals.detector.config import (
    OBJECT_LABEL,
    SELF_TRAIN_LR_FACTOR,
    SELF_TRAIN_MERGE_IOU,
    DetectorConfig,
)
from uvis.proposals.detector.infer import Detection, detect
from uvis.proposals.detector.model import _to_tensor, build_detector, resolve_device, save_detector
from uvis.schemas import FRAME_INDEX, PROPOSALS

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class MaskTargets:
    """The pseudo-masks of one frame: ``boxes`` ``(N, 4)`` float32 ``x1, y1, x2, y2`` (tight
    boxes of the masks) and the masks as COCO RLEs, decoded on demand by :meth:`masks`.

    Masks are kept run-length encoded so that a split of full-size frames fits in memory.
    """

    path: Path
    height: int
    width: int
    boxes: np.ndarray
    rles: tuple[RLE, ...]

    @classmethod
    def from_rles(cls, path: Path, height: int, width: int, rles: Sequence[RLE]) -> MaskTargets:
        """Targets of the masks ``rles``, with their tight boxes."""
        boxes = np.zeros((len(rles), 4), dtype=np.float32)
        for i, rle in enumerate(rles):
            x, y, w, h = masks.bbox_xywh(rle)
            boxes[i] = (x, y, x + w, y + h)
        return cls(path, height, width, boxes, tuple(rles))

    def masks(self) -> np.ndarray:
        """The masks as ``uint8`` ``(N, height, width)`` with values 0/1."""
        if not self.rles:
            return np.zeros((0, self.height, self.width), dtype=np.uint8)
        return np.stack([masks.decode(r) for r in self.rles]).astype(np.uint8, copy=False)


def targets_from_proposals(
    frame_index: pa.Table, proposals: pa.Table, *, proposals_path: str | None = None
) -> list[MaskTargets]:
    """Training targets from a frame index and a proposals table (MaskCut's masks).

    One :class:`MaskTargets` per row of ``frame_index``, in its order, including frames without
    masks (kept so the caller sees them; :func:`train_detector` leaves them out as CutLER does).
    Empty masks are skipped and counted in a log line. ``proposals_path`` names the proposals
    file in error messages.

    Raises:
        DataError: when a table lacks columns of its schema, when a proposal's frame is not in
            the frame index, or when a mask's size differs from its frame's.
    """
    where = proposals_path or "proposals"
    frame_index = FRAME_INDEX.check(frame_index, "frame index")
    proposals = PROPOSALS.check(proposals, where)
    frames = frame_index.select(["video_id", "frame_index", "path", "height", "width"]).to_pydict()
    keys = list(zip(frames["video_id"], frames["frame_index"], strict=True))
    sizes = dict(zip(keys, zip(frames["height"], frames["width"], strict=True), strict=True))
    rles: dict[tuple[int, int], list[RLE]] = defaultdict(list)
    cols = proposals.select(["video_id", "frame_index", "height", "width", "rle"]).to_pydict()
    empty = 0
    for vid, t, h, w, counts in zip(*cols.values(), strict=True):
        key = (vid, t)
        if key not in sizes:
            raise DataError(where, f"proposal of video {vid} frame {t}: not in the frame index")
        if (h, w) != sizes[key]:
            raise DataError(
                where,
                f"proposal of video {vid} frame {t} is {h}x{w} (HxW) but the frame is "
                f"{sizes[key][0]}x{sizes[key][1]}",
            )
        rle = {"size": [h, w], "counts": counts}
        if masks.area(rle) == 0:
            empty += 1
            continue
        rles[key].append(rle)
    if empty:
        logger.warning("%s: skipped %d empty masks (nothing to learn from)", where, empty)
    return [
        MaskTargets.from_rles(Path(path), h, w, rles.get(key, []))
        for key, path, h, w in zip(
            keys, frames["path"], frames["height"], frames["width"], strict=True
        )
    ]


def _training_batch(
    batch: Sequence[MaskTargets], flips: Sequence[bool], device: torch.device
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Images and torchvision targets of a batch, each frame mirrored left-right where flipped."""
    images, targets = [], []
    for item, flip in zip(batch, flips, strict=True):
        rgb = read_frame(item.path, item.height, item.width)
        mask_array, boxes = item.masks(), item.boxes.copy()
        if flip:
            rgb, mask_array = rgb[:, ::-1], mask_array[:, :, ::-1]
            boxes[:, [0, 2]] = item.width - boxes[:, [2, 0]]
        images.append(_to_tensor(rgb, device))
        targets.append(
            {
                "boxes": torch.from_numpy(boxes).to(device),
                "labels": torch.full((len(boxes),), OBJECT_LABEL, dtype=torch.int64, device=device),
                "masks": torch.from_numpy(np.ascontiguousarray(mask_array)).to(device),
            }
        )
    return images, targets


# --------------------------------------------------------------------------------------------
# Training


def lr_schedule(warmup: int, total: int) -> LRSchedule:
    """detectron2's schedule as CutLER trains with it: a linear warm-up from 0.001 over
    ``warmup`` steps, then x 0.1 from 80 % of ``total`` on."""
    return LRSchedule(
        total=total, warmup=warmup, warmup_start=0.001, decay="step", drop_at=int(0.8 * total)
    )


def _batches(n: int, batch_size: int, iterations: int, generator: torch.Generator) -> Iterator:
    """``iterations`` batches of indices: shuffled epochs over ``range(n)``, last one wrapped."""
    order: list[int] = []
    for _ in range(iterations):
        while len(order) < batch_size:
            order += torch.randperm(n, generator=generator).tolist()
        yield order[:batch_size]
        order = order[batch_size:]


def _train_round(
    model: MaskRCNN,
    targets: list[MaskTargets],
    cfg: DetectorConfig,
    *,
    iterations: int,
    lr: float,
    drop_loss: bool,
    paste_scale: tuple[float, float],
    name: str,
    generator: torch.Generator,
    progress: bool,
) -> dict[str, Any]:
    """One training round of ``iterations`` steps; returns its log (losses every log_every)."""
    device = next(model.parameters()).device
    use_amp = device.type == "cuda"
    model.roi_heads.drop_loss_iou = cfg.drop_loss_iou if drop_loss else None
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    # Fused implementations: one kernel for all parameters (5x faster steps on CPU).
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_schedule(cfg.warmup_iterations, iterations)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    batch_size = min(cfg.batch_size, len(targets))
    log: list[dict[str, float]] = []
    keys: list[str] = []
    start = time.perf_counter()

    def step(iteration: int, idx: list[int]) -> torch.Tensor:
        flips = [False] * len(idx)
        if cfg.flip:
            flips = (torch.rand(len(idx), generator=generator) < 0.5).tolist()
        images, batch_targets = _training_batch([targets[i] for i in idx], flips, device)
        if cfg.copy_paste_rate > 0:
            images, batch_targets = copy_paste(
                images,
                batch_targets,
                rate=cfg.copy_paste_rate,
                scale_range=paste_scale,
                generator=generator,
            )
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            losses = model(images, batch_targets)
            loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"detector {name}: loss is {loss.item()} at step {iteration}")
        amp_step(loss, optimizer, scaler, scheduler, clip_params=params, grad_clip=cfg.grad_clip)
        keys[:] = ["loss", *losses]
        return torch.tensor(
            [loss.item(), *(v.item() for v in losses.values())], dtype=torch.float64
        )

    def log_window(window: Window) -> None:
        entry = {"iteration": window.iteration, **dict(zip(keys, window.means, strict=True))}
        entry["lr"] = optimizer.param_groups[0]["lr"]
        entry["seconds"] = round(window.seconds, 2)
        log.append(entry)
        logger.info(
            "detector %s: iteration %d/%d loss %.4f (cls %.4f box %.4f mask %.4f "
            "rpn %.4f/%.4f) lr %.2e",
            name,
            window.iteration,
            iterations,
            entry["loss"],
            entry["loss_classifier"],
            entry["loss_box_reg"],
            entry["loss_mask"],
            entry["loss_objectness"],
            entry["loss_rpn_box_reg"],
            entry["lr"],
        )

    Trainer(
        step,
        _batches(len(targets), batch_size, iterations, generator),
        iterations=iterations,
        hooks=[LossWindow(cfg.log_every, log_window)],
        desc=f"detector {name}",
        progress=progress,
    ).train()
    return {
        "name": name,
        "iterations": iterations,
        "lr": lr,
        "drop_loss": drop_loss,
        "frames": len(targets),
        "masks": int(sum(len(t.rles) for t in targets)),
        "log": log,
        "seconds": round(time.perf_counter() - start, 2),
    }


def merge_self_training_targets(
    previous: MaskTargets, detections: Sequence[Detection], cfg: DetectorConfig
) -> MaskTargets:
    """CutLER's self-training pseudo-masks of one frame (``get_self_training_ann.py``).

    The detections scoring ``>= cfg.self_train_score`` (at most ``cfg.self_train_detections``,
    highest first) with non-empty masks, plus the previous pseudo-masks whose mask IoU with every
    one of them is ``< SELF_TRAIN_MERGE_IOU`` (0.5). With no confident detection the previous
    masks stay as they are.
    """
    ranked = sorted(detections, key=lambda d: -d.score)[: cfg.self_train_detections]
    kept = [
        masks.encode(d.mask) for d in ranked if d.score >= cfg.self_train_score and d.mask.any()
    ]
    if not kept or not previous.rles:
        rles = kept or list(previous.rles)
        return MaskTargets.from_rles(previous.path, previous.height, previous.width, rles)
    old = [masks.to_coco(r) for r in previous.rles]
    new = [masks.to_coco(r) for r in kept]
    iou = np.asarray(mask_utils.iou(old, new, [0] * len(new))).reshape(len(old), len(new))
    survivors = [
        r
        for r, best in zip(previous.rles, iou.max(axis=1), strict=True)
        if best < SELF_TRAIN_MERGE_IOU
    ]
    return MaskTargets.from_rles(previous.path, previous.height, previous.width, kept + survivors)


def _self_training_targets(
    model: MaskRCNN, targets: list[MaskTargets], cfg: DetectorConfig, progress: bool
) -> list[MaskTargets]:
    """Predict on every frame of ``targets`` and merge with its pseudo-masks (see above)."""
    merged = []
    batch = max(1, cfg.batch_size)
    starts = range(0, len(targets), batch)
    for s in progress_bar(
        starts, desc="detector self-train labels", unit="batch", disable=not progress
    ):
        chunk = targets[s : s + batch]
        images = [read_frame(t.path, t.height, t.width) for t in chunk]
        for item, dets in zip(chunk, detect(model, images, cfg), strict=True):
            merged.append(merge_self_training_targets(item, dets, cfg))
    return merged


def train_detector(
    targets: list[MaskTargets], cfg: DetectorConfig, out_path: Path, *, progress: bool = True
) -> dict[str, Any]:
    """Train the learned detector on pseudo-masks; save the checkpoint and its report.

    Frames without masks are left out (counted in the report). Round 0 trains ``cfg.iterations``
    steps with DropLoss as configured; each of ``cfg.self_training_rounds`` rounds relabels every
    frame (:func:`merge_self_training_targets`) and trains ``cfg.self_train_iterations`` more
    steps from the current weights without DropLoss at half the learning rate. Writes
    ``out_path`` (``{"format", "model", "config"}``, read by :func:`load_detector`) and
    ``out_path`` with suffix ``.json`` (resolved config, per-round loss log, counts, timings),
    both atomically. Returns the report.

    Raises:
        DataError: when no frame has a mask, or a frame file is missing or unreadable.
    """
    start = time.perf_counter()
    device = resolve_device(cfg)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    usable = [t for t in targets if t.rles]
    if not usable:
        raise DataError(None, f"none of the {len(targets)} frames has a pseudo-mask to learn from")
    if len(usable) < len(targets):
        logger.info(
            "detector: %d of %d frames have no pseudo-mask and are left out of training",
            len(targets) - len(usable),
            len(targets),
        )
    model = build_detector(cfg).to(device)
    common = {"generator": generator, "progress": progress}
    rounds = [
        _train_round(
            model,
            usable,
            cfg,
            iterations=cfg.iterations,
            lr=cfg.lr,
            drop_loss=cfg.drop_loss,
            paste_scale=cfg.copy_paste_scale,
            name="round 0",
            **common,
        )
    ]
    current = targets
    for r in range(1, cfg.self_training_rounds + 1):
        label_start = time.perf_counter()
        current = _self_training_targets(model, current, cfg, progress)
        labelled = [t for t in current if t.rles]
        rounds.append(
            _train_round(
                model,
                labelled,
                cfg,
                iterations=cfg.self_train_iterations,
                lr=cfg.lr * SELF_TRAIN_LR_FACTOR,
                drop_loss=False,
                paste_scale=cfg.self_train_copy_paste_scale,
                name=f"self-training {r}",
                **common,
            )
        )
        rounds[-1]["labelling_seconds"] = round(time.perf_counter() - label_start, 2)
    out_path = Path(out_path)
    save_detector(model, cfg, out_path)
    report = {
        "checkpoint": str(out_path),
        "config": asdict(cfg),
        "frames": len(targets),
        "frames_without_masks": len(targets) - len(usable),
        "masks": int(sum(len(t.rles) for t in targets)),
        "rounds": rounds,
        "final_loss": rounds[-1]["log"][-1]["loss"],
        "seconds": round(time.perf_counter() - start, 2),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__},
    }
    atomic_write_json(out_path.with_suffix(".json"), report, indent=1)
    return report
