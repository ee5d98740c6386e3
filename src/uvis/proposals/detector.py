"""CutLER's "learn" step without detectron2: a class-agnostic Mask R-CNN trained on MaskCut masks.

UVIS (§3.1) keeps a proposal when CutLER's objectness is at least 0.7, and raw MaskCut masks have
no score. CutLER (Wang et al., CVPR 2023) gets its scores by training a detector on the MaskCut
masks of ImageNet and letting the detector's class-agnostic score be the objectness; its
proposals replace the raw masks. This module is that step with torchvision's Mask R-CNN
(:func:`build_detector`: ResNet-FPN backbone, two classes, background and "object").

What follows CutLER's released code (``cutler/modeling/roi_heads``, ``tools/
get_self_training_ann.py``, ``model_zoo/configs/CutLER-ImageNet``):

- **DropLoss** (:func:`drop_loss_weights`, :class:`DropLossRoIHeads`). A sampled region's
  classification loss counts only when the box the head *regresses* from it overlaps some
  pseudo-box with IoU ``> 0.01``: ``L_drop = 1(IoU_max > 0.01) · L_vanilla``. Regions that
  overlap no pseudo-mask are not taught to be background, so objects MaskCut missed can still be
  found. The loss is the mean over *all* sampled regions (dropped ones count as zeros), as in
  CutLER's ``(weights * cross_entropy).mean()``; box-regression and mask losses are torchvision's,
  unchanged (they only see foreground regions).
- **Frames without pseudo-masks** are left out of training (detectron2's
  ``FILTER_EMPTY_ANNOTATIONS``, on in CutLER; under DropLoss such a frame would teach the box head
  nothing anyway). :func:`train_detector` counts them in its report.
- **Self-training** (:func:`merge_self_training_targets`). After a round, the detector predicts
  on every training frame (at most ``self_train_detections`` = 30 per frame, CutLER's
  ``TEST.DETECTIONS_PER_IMAGE 30``); predictions scoring ``>= self_train_score`` (0.7) become
  pseudo-masks, together with the previous pseudo-masks whose mask IoU with every kept
  prediction is ``< 0.5``. The next round continues from the current weights, without DropLoss
  and at half the learning rate (CutLER's self-train config: ``USE_DROPLOSS: False``,
  ``BASE_LR`` 0.005 after 0.01).
- **Optimisation** (``real`` preset): SGD, momentum 0.9, weight decay 5e-5, gradient norm
  clipped at 1.0, linear warm-up, learning rate divided by 10 at 80% of the iterations (CutLER:
  SGD at 0.01 for 16 images per batch, weight decay 5e-5, clipping at 1.0); BatchNorm layers
  train (CutLER: SyncBN, no frozen stage); the last layers start as detectron2 initialises them
  (:func:`_init_predictors`). Horizontal flips are the only augmentation.

Departures, for a CPU budget and a dependency-free build: a Mask R-CNN rather than a Cascade
Mask R-CNN; no copy-paste augmentation and no multi-scale training. The embedded default
(``default`` preset) trains a randomly initialised ResNet-18 with narrow heads and small anchors
for 96 x 128 frames with AdamW (lr 1e-3, weight decay 1e-4, same clipping and schedule): from
random weights in a budget of a few CPU minutes, AdamW found far more objects than SGD did
(recall at objectness 0.7 after 100 steps: 0.62 against 0.28 and 0.52 with SGD at 0.02 and 0.05).
The ``real`` preset is CutLER's recipe on a ResNet-50 (ImageNet weights by default; CutLER's own
is a DINO ResNet-50), at 800/1333 px with COCO anchor sizes and torchvision's head widths.

Output (:func:`proposals_table`, schema :data:`uvis.schemas.PROPOSALS`): per frame, every
detection scoring at least ``score_floor`` (0.05; the paper's 0.7 is applied by the filter
stage), its mask binarised at ``mask_threshold`` (0.5), the box the tight box of that mask,
``objectness`` the detector's score, ``source="learned"``, ``proposal_id`` 0.. by descending
score.
"""

from __future__ import annotations

import dataclasses
import logging
import os
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
from torch import nn
from torch.nn import functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss, maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, box_iou
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from uvis import masks
from uvis.checkpoints import load_torch_file
from uvis.data.frames import read_frame
from uvis.devices import resolve_device as device_from_setting
from uvis.errors import ConfigError, DataError
from uvis.foundation.checkpoints import mismatch_parts, state_dict_mismatch
from uvis.foundation.weights import resolve_weights
from uvis.io import atomic_path, atomic_write_json
from uvis.masks import RLE
from uvis.presets import config_from_preset
from uvis.progress import progress_bar
from uvis.proposals.maskcut import MaskCutConfig
from uvis.proposals.refine import RefineMethod, refine_where_agreeing
from uvis.schemas import FRAME_INDEX, PROPOSALS

logger = logging.getLogger(__name__)

#: CutLER's ``DROPLOSS_IOU_THRESH``: a region's classification loss is kept when its regressed
#: box has IoU above this with some pseudo-box.
DROPLOSS_IOU = 0.01
#: ``get_self_training_ann.py``: a previous pseudo-mask survives self-training when its mask IoU
#: with every kept prediction is below this.
SELF_TRAIN_MERGE_IOU = 0.5
#: CutLER's self-training rounds run at half the first round's learning rate (0.005 vs 0.01).
SELF_TRAIN_LR_FACTOR = 0.5
#: Label of the one foreground class (0 is background).
OBJECT_LABEL = 1
#: ``"format"`` entry of checkpoints written by :func:`train_detector`.
CHECKPOINT_FORMAT = "uvis-learned-detector"
#: Supported torchvision ResNet builders.
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
#: ``sgd`` (CutLER's, with momentum) or ``adamw`` (the embedded default, trained from scratch).
OPTIMIZERS = ("sgd", "adamw")
#: Anchor aspect ratios (height / width) at every FPN level, torchvision's and detectron2's.
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
#: RoIAlign sampling points per bin: 0 is adaptive (``ceil(roi size / output size)``), the
#: default of detectron2 and so of CutLER; torchvision's Mask R-CNN uses 2.
ROI_SAMPLING_RATIO = 0
#: FPN outputs: ``"0".."3"`` for ResNet stages 2-5 (P2-P5), then ``"pool"`` (P6, anchors only).
_FPN_LEVELS = ("0", "1", "2", "3")

_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {
        "fpn_channels": 32,
        "box_head_dim": 64,
        "mask_head_channels": 16,
        "roi_batch_size": 32,
        "iterations": 30,
        "warmup_iterations": 5,
        "batch_size": 4,
        "self_train_iterations": 10,
    },
    "real": {
        "backbone": "resnet50",
        "backbone_weights": "resnet50_imagenet",
        "fpn_channels": 256,
        "box_head_dim": 1024,
        "mask_head_channels": 256,
        "anchor_sizes": (32, 64, 128, 256, 512),
        "min_size": 800,
        "max_size": 1333,
        "rpn_pre_nms_train": 2000,
        "rpn_pre_nms_test": 1000,
        "rpn_post_nms_train": 2000,
        "rpn_post_nms_test": 1000,
        "roi_batch_size": 512,
        "iterations": 20000,
        "warmup_iterations": 1000,
        "optimizer": "sgd",
        "lr": 0.005,
        "weight_decay": 5e-5,
        "self_training_rounds": 1,
        "self_train_iterations": 10000,
        "detections_per_img": 100,
        "log_every": 100,
    },
}


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that decides the learned detector (saved with the checkpoint).

    Model: ``backbone`` (a torchvision ResNet; ``backbone_weights`` ``None`` for random
    initialisation, else a local torchvision ResNet state-dict file or the known name
    ``resnet50_imagenet``), FPN width ``fpn_channels``, box-head width ``box_head_dim``, mask-head
    width ``mask_head_channels``, one anchor size per FPN level P2-P6 (``anchor_sizes``, pixels of
    the resized image), images resized so the short side is ``min_size`` unless the long side
    would exceed ``max_size`` (torchvision's rule), RPN proposals kept before NMS per FPN level
    (``rpn_pre_nms_train`` / ``_test``) and after NMS per image (``rpn_post_nms_train`` /
    ``_test``), regions sampled per image for the box head
    (``roi_batch_size``, a quarter of them foreground at most).

    Training: ``iterations`` steps of ``batch_size`` frames with ``optimizer`` (``adamw``, or
    ``sgd`` with ``momentum``) at ``lr`` with ``weight_decay``, gradient norm clipped at
    ``grad_clip``, ``warmup_iterations`` of linear warm-up, ``flip`` for random horizontal flips
    (see the module docstring for the schedule), DropLoss on or off (``drop_loss``, at ``drop_loss_iou``), then
    ``self_training_rounds`` rounds of ``self_train_iterations`` steps each on the detections
    scoring ``>= self_train_score`` (the best ``self_train_detections`` per frame) merged with the
    earlier masks. Inference: at most
    ``detections_per_img`` detections per frame scoring ``>= score_floor`` after NMS at
    ``nms_thresh``, masks binarised at ``mask_threshold``. ``device`` is ``"auto"`` (CUDA when
    available), ``"cpu"`` or ``"cuda"``; on CUDA, training runs under float16 autocast.
    (CPU threads are the caller's choice: ``torch.set_num_threads``, as the command line does.)
    """

    backbone: str = "resnet18"
    backbone_weights: str | None = None
    fpn_channels: int = 64
    box_head_dim: int = 256
    mask_head_channels: int = 32
    anchor_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    min_size: int = 96
    max_size: int = 128
    rpn_pre_nms_train: int = 500
    rpn_pre_nms_test: int = 500
    rpn_post_nms_train: int = 500
    rpn_post_nms_test: int = 100
    roi_batch_size: int = 64
    # Round 0 length and one self-training round (CutLER's learn step), tuned on the default
    # world's *train* split (benchmarks/RESULTS.md, issue 12): at objectness >= 0.7, 200 steps
    # gave recall 62.5 % / precision 43.2 %, 1,000 steps 68.1 / 67.8, and 1,000 + a 300-step
    # self-training round 70.5 / 53.8.
    iterations: int = 1000
    warmup_iterations: int = 50
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    flip: bool = True
    drop_loss: bool = True
    drop_loss_iou: float = DROPLOSS_IOU
    self_training_rounds: int = 1
    self_train_iterations: int = 300
    self_train_score: float = 0.7
    self_train_detections: int = 30
    detections_per_img: int = 10
    score_floor: float = 0.05
    nms_thresh: float = 0.5
    mask_threshold: float = 0.5
    seed: int = 0
    device: str = "auto"
    log_every: int = 25

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DetectorConfig:
        """The ``smoke`` (seconds), ``default`` (synthetic world) or ``real`` settings.

        Raises ConfigError for an unknown preset or setting.
        """
        return config_from_preset(cls, _PRESETS, name, overrides, what="detector")

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchor_sizes", tuple(int(s) for s in self.anchor_sizes))
        checks = {
            "backbone": self.backbone in BACKBONES,
            "anchor_sizes": len(self.anchor_sizes) == len(_FPN_LEVELS) + 1
            and all(s > 0 for s in self.anchor_sizes),
            "min_size": 0 < self.min_size <= self.max_size,
            "iterations": self.iterations >= 1,
            "warmup_iterations": self.warmup_iterations >= 0,
            "batch_size": self.batch_size >= 1,
            "optimizer": self.optimizer in OPTIMIZERS,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "grad_clip": self.grad_clip > 0,
            "drop_loss_iou": 0 <= self.drop_loss_iou < 1,
            "self_training_rounds": self.self_training_rounds >= 0,
            "self_train_iterations": self.self_train_iterations >= 1,
            "self_train_score": 0 <= self.self_train_score <= 1,
            "detections_per_img": self.detections_per_img >= 1,
            "score_floor": 0 <= self.score_floor < 1,
            "nms_thresh": 0 < self.nms_thresh <= 1,
            "mask_threshold": 0 < self.mask_threshold < 1,
            "device": self.device in ("auto", "cpu", "cuda"),
            "log_every": self.log_every >= 1,
        }
        bad = [key for key, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid detector setting {bad[0]}={getattr(self, bad[0])!r}")


# --------------------------------------------------------------------------------------------
# The model


def drop_loss_weights(
    boxes: torch.Tensor, gt_boxes: torch.Tensor, iou_thresh: float = DROPLOSS_IOU
) -> torch.Tensor:
    """CutLER's DropLoss: ``1.0`` for regions whose box overlaps a pseudo-box, else ``0.0``.

    ``boxes`` ``(N, 4)`` are the regions' regressed boxes and ``gt_boxes`` ``(M, 4)`` the image's
    pseudo-boxes, both ``x1, y1, x2, y2``. A region keeps its classification loss when its largest
    IoU with a pseudo-box is ``> iou_thresh`` (CutLER: ``0.01``); otherwise the loss is dropped:
    the region overlaps no pseudo-mask and may be an object MaskCut missed. With no pseudo-box
    every region is dropped.
    """
    if gt_boxes.numel() == 0:
        return boxes.new_zeros(boxes.shape[0])
    iou_max = box_iou(boxes, gt_boxes).max(dim=1).values
    return (iou_max > iou_thresh).to(boxes.dtype)


class DropLossRoIHeads(RoIHeads):
    """torchvision's Mask R-CNN ROI heads with CutLER's DropLoss on the classification loss.

    Inference and every other loss are torchvision's. ``drop_loss_iou`` ``None`` turns DropLoss
    off (torchvision's plain cross-entropy), as CutLER's self-training rounds do.
    """

    def __init__(self, *, drop_loss_iou: float | None, **roi_heads_args: Any) -> None:
        """``roi_heads_args`` are the arguments of torchvision's ``RoIHeads``, by name."""
        super().__init__(**roi_heads_args)
        self.drop_loss_iou = drop_loss_iou

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Training: sample regions, box and mask losses with DropLoss; inference: torchvision's."""
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are needed in training mode")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
            proposals, targets
        )
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        # torchvision's loss gives the box-regression term; its classification term is replaced.
        _, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        cross_entropy = F.cross_entropy(class_logits, torch.cat(labels), reduction="none")
        if self.drop_loss_iou is not None:
            with torch.no_grad():
                regressed = self.box_coder.decode(box_regression.detach(), proposals)
                regressed = regressed[:, OBJECT_LABEL].split([len(p) for p in proposals])
                weights = torch.cat(
                    [
                        drop_loss_weights(b, t["boxes"], self.drop_loss_iou)
                        for b, t in zip(regressed, targets, strict=True)
                    ]
                )
            cross_entropy = cross_entropy * weights.to(cross_entropy.dtype)
        positives = [torch.where(lab > 0)[0] for lab in labels]
        mask_proposals = [p[pos] for p, pos in zip(proposals, positives, strict=True)]
        mask_logits = self.mask_predictor(
            self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes))
        )
        loss_mask = maskrcnn_loss(
            mask_logits,
            mask_proposals,
            [t["masks"] for t in targets],
            [t["labels"] for t in targets],
            [m[pos] for m, pos in zip(matched_idxs, positives, strict=True)],
        )
        losses = {
            "loss_classifier": cross_entropy.mean(),
            "loss_box_reg": loss_box_reg,
            "loss_mask": loss_mask,
        }
        return [], losses


def load_backbone_weights(resnet: nn.Module, path: Path, arch: str) -> None:
    """Load a torchvision-format ResNet state dict (``conv1.weight``, ``layer1.0...``) strictly.

    The classifier (``fc.*``) may be absent (self-supervised checkpoints have none) and so may
    BatchNorm's ``num_batches_tracked`` (older files); anything else missing, any unexpected key
    or any shape mismatch raises :class:`DataError` naming ``path`` and a few of the keys.
    """
    state = load_torch_file(path, what="a PyTorch state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, f"not a {arch} state dict (expected a dict of tensors)")
    problems = mismatch_parts(
        *state_dict_mismatch(
            state,
            resnet.state_dict(),
            optional=lambda k: k.startswith("fc.") or k.endswith(".num_batches_tracked"),
        )
    )
    if problems:
        raise DataError(path, f"not a torchvision {arch} state dict: {', '.join(problems)}")
    resnet.load_state_dict(state, strict=False)


def _init_predictors(heads: RoIHeads) -> None:
    """detectron2's initialisation of the last layers (CutLER's): small outputs at the start.

    Class scores ~ N(0, 0.01), box deltas and mask logits ~ N(0, 0.001), zero biases, so the
    first losses are near ``log 2`` rather than the large values of torchvision's default
    initialisation, which a model trained from scratch spends its first iterations undoing.
    """
    layers = (
        (heads.box_predictor.cls_score, 0.01),
        (heads.box_predictor.bbox_pred, 0.001),
        (heads.mask_predictor.mask_fcn_logits, 0.001),
    )
    for layer, std in layers:
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)


def build_detector(cfg: DetectorConfig) -> MaskRCNN:
    """A class-agnostic torchvision Mask R-CNN (background + "object") as ``cfg`` describes.

    The backbone is a torchvision ResNet with trainable BatchNorm and an FPN over its four
    stages (plus max-pooled P6 for the RPN); nothing is downloaded. With ``backbone_weights`` the
    ResNet is loaded from that local file (resolved by
    :func:`uvis.foundation.weights.resolve_weights`, family ``resnet``). The ROI heads are
    :class:`DropLossRoIHeads` with DropLoss as ``cfg.drop_loss`` says.

    Raises:
        MissingWeightsError: when ``backbone_weights`` names a file that is not available.
        DataError: naming the weights file when it is not a state dict of ``cfg.backbone``.
    """
    resnet = torchvision.models.get_model(cfg.backbone, weights=None, norm_layer=nn.BatchNorm2d)
    if cfg.backbone_weights is not None:
        path = resolve_weights(cfg.backbone_weights, "resnet")
        load_backbone_weights(resnet, path, cfg.backbone)
    stage2 = resnet.inplanes // 8  # channels of layer1's output: 64 (basic) or 256 (bottleneck)
    backbone = BackboneWithFPN(
        resnet,
        return_layers={f"layer{i + 1}": name for i, name in enumerate(_FPN_LEVELS)},
        in_channels_list=[stage2 * 2**i for i in range(len(_FPN_LEVELS))],
        out_channels=cfg.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        rpn_anchor_generator=AnchorGenerator(
            tuple((s,) for s in cfg.anchor_sizes), (ANCHOR_RATIOS,) * len(cfg.anchor_sizes)
        ),
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_test,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_train,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_test,
        box_predictor=FastRCNNPredictor(cfg.box_head_dim, OBJECT_LABEL + 1),
        mask_predictor=MaskRCNNPredictor(cfg.mask_head_channels, cfg.mask_head_channels, 2),
        box_roi_pool=MultiScaleRoIAlign(list(_FPN_LEVELS), 7, ROI_SAMPLING_RATIO),
        mask_roi_pool=MultiScaleRoIAlign(list(_FPN_LEVELS), 14, ROI_SAMPLING_RATIO),
        box_head=TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.box_head_dim),
        mask_head=MaskRCNNHeads(cfg.fpn_channels, (cfg.mask_head_channels,) * 4, 1),
    )
    heads = model.roi_heads
    _init_predictors(heads)
    model.roi_heads = DropLossRoIHeads(
        box_roi_pool=heads.box_roi_pool,
        box_head=heads.box_head,
        box_predictor=heads.box_predictor,
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=cfg.roi_batch_size,
        positive_fraction=0.25,
        bbox_reg_weights=None,
        score_thresh=cfg.score_floor,
        nms_thresh=cfg.nms_thresh,
        detections_per_img=cfg.detections_per_img,
        mask_roi_pool=heads.mask_roi_pool,
        mask_head=heads.mask_head,
        mask_predictor=heads.mask_predictor,
        drop_loss_iou=cfg.drop_loss_iou if cfg.drop_loss else None,
    )
    return model


def resolve_device(cfg: DetectorConfig) -> torch.device:
    """``cfg.device`` as a torch device (``auto``: CUDA when available, else CPU)."""
    return torch.device(device_from_setting(cfg.device, "detector"))


# --------------------------------------------------------------------------------------------
# Training targets


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


def _to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float in ``[0, 1]`` (the model normalises)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1).float() / 255


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


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up from 0.001 (detectron2's), then 0.1 from 80% on."""
    if step < warmup:
        return 0.001 + (1 - 0.001) * step / warmup
    return 0.1 if step >= int(0.8 * total) else 1.0


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
        optimizer, lambda step: _lr_factor(step, cfg.warmup_iterations, iterations)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    batch_size = min(cfg.batch_size, len(targets))
    log: list[dict[str, float]] = []
    window: dict[str, list[float]] = defaultdict(list)
    start = window_start = time.perf_counter()
    bar = progress_bar(total=iterations, desc=f"detector {name}", unit="it", disable=not progress)
    for step, idx in enumerate(_batches(len(targets), batch_size, iterations, generator), 1):
        flips = [False] * len(idx)
        if cfg.flip:
            flips = (torch.rand(len(idx), generator=generator) < 0.5).tolist()
        images, batch_targets = _training_batch([targets[i] for i in idx], flips, device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            losses = model(images, batch_targets)
            loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"detector {name}: loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        window["loss"].append(loss.item())
        for key, value in losses.items():
            window[key].append(value.item())
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % cfg.log_every == 0 or step == iterations:
            entry = {"iteration": step, **{k: float(np.mean(v)) for k, v in window.items()}}
            entry["lr"] = optimizer.param_groups[0]["lr"]
            entry["seconds"] = round(time.perf_counter() - window_start, 2)
            log.append(entry)
            logger.info(
                "detector %s: iteration %d/%d loss %.4f (cls %.4f box %.4f mask %.4f "
                "rpn %.4f/%.4f) lr %.2e",
                name,
                step,
                iterations,
                entry["loss"],
                entry["loss_classifier"],
                entry["loss_box_reg"],
                entry["loss_mask"],
                entry["loss_objectness"],
                entry["loss_rpn_box_reg"],
                entry["lr"],
            )
            window.clear()
            window_start = time.perf_counter()
    bar.close()
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


def save_detector(model: MaskRCNN, cfg: DetectorConfig, path: Path) -> None:
    """Write ``{"format", "model": state_dict on CPU, "config": asdict(cfg)}`` atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "model": state, "config": asdict(cfg)}, tmp)


def load_detector(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[MaskRCNN, DetectorConfig]:
    """A detector saved by :func:`train_detector`, in eval mode on ``device``, and its config.

    Raises:
        DataError: naming ``path`` when it is not such a checkpoint (unreadable, another format,
            or weights that do not fit the saved config's architecture).
    """
    obj = load_torch_file(path, what="a PyTorch checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise DataError(
            path, f"not a learned-detector checkpoint (no format {CHECKPOINT_FORMAT!r})"
        )
    try:
        cfg = DetectorConfig(**obj["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise DataError(path, f"detector checkpoint has an invalid config: {exc}") from exc
    # The checkpoint holds every weight: the backbone file used for training is not needed.
    model = build_detector(dataclasses.replace(cfg, backbone_weights=None))
    state = obj.get("model")
    if not isinstance(state, dict):
        raise DataError(path, "detector checkpoint has no 'model' state dict")
    problems = mismatch_parts(*state_dict_mismatch(state, model.state_dict()))
    if problems:
        raise DataError(
            path,
            f"weights do not fit the saved {cfg.backbone} detector config: {', '.join(problems)}",
        )
    model.load_state_dict(state)
    return model.to(device).eval(), cfg


# --------------------------------------------------------------------------------------------
# Inference


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
) -> list[Detection]:
    """Snap the masks of detections scoring ``>= min_score`` to the colour edges of ``image``.

    The detector's mask head predicts 28 x 28 masks per box, learned from MaskCut's patch-level
    masks, so its outlines are coarse. This applies MaskCut's own refinement (CutLER's dense
    CRF and hole filling, :func:`uvis.proposals.refine.refine_mask`) to them. A refined mask is
    kept only where it agrees with the detector's (mask IoU ``>= MIN_REFINED_IOU``, MaskCut's
    agreement test); otherwise, and for lower-scoring detections, the detector's mask stays.
    Boxes and scores are unchanged (:func:`proposals_table` recomputes the box from the mask).
    """
    chosen = [i for i, d in enumerate(detections) if d.score >= min_score]
    if method == "none" or not chosen:
        return list(detections)
    coarse = np.stack([detections[i].mask for i in chosen])
    refined = refine_where_agreeing(image, coarse, method, fill_holes=True, min_iou=MIN_REFINED_IOU)
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
    drop_groups: bool = False,
    progress: bool = True,
) -> pa.Table:
    """The ``learned`` proposals of every frame of a frame index (one batch at a time), their
    masks refined by :func:`refine_detections` unless ``refine`` is ``"none"``, then without the
    groups of :func:`group_flags` if ``drop_groups`` (the number dropped is logged)."""
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
            refine_detections(image, dets, refine, refine_min_score)
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
