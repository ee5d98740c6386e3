"""The detector network: torchvision's Mask R-CNN with CutLER's DropLoss RoI heads, built from a
:class:`~uvis.proposals.detector.config.DetectorConfig`, and its checkpoints."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
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

from uvis.checkpoints import load_torch_file, read_checkpoint, save_checkpoint
from uvis.devices import resolve_device as device_from_setting
from uvis.errors import ConfigError, DataError
from uvis.foundation.checkpoints import mismatch_parts, state_dict_mismatch
from uvis.foundation.weights import resolve_weights
from uvis.proposals.detector.config import (
    _FPN_LEVELS,
    ANCHOR_RATIOS,
    CHECKPOINT_FORMAT,
    DROPLOSS_IOU,
    OBJECT_LABEL,
    ROI_SAMPLING_RATIO,
    DetectorConfig,
)


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


def _to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float in ``[0, 1]`` (the model normalises)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1).float() / 255


def save_detector(model: MaskRCNN, cfg: DetectorConfig, path: Path) -> None:
    """Write ``{"format", "model": state_dict on CPU, "config": asdict(cfg)}`` atomically."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": state, "config": asdict(cfg)})


def load_detector(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[MaskRCNN, DetectorConfig]:
    """A detector saved by :func:`train_detector`, in eval mode on ``device``, and its config.

    Raises:
        DataError: naming ``path`` when it is not such a checkpoint (unreadable, another format,
            or weights that do not fit the saved config's architecture).
    """
    obj = read_checkpoint(
        path, fmt=CHECKPOINT_FORMAT, what="learned-detector", required=("config", "model")
    )
    try:
        cfg = DetectorConfig(**obj["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise DataError(path, f"detector checkpoint has an invalid config: {exc}") from exc
    # The checkpoint holds every weight: the backbone file used for training is not needed.
    model = build_detector(dataclasses.replace(cfg, backbone_weights=None))
    state = obj["model"]
    problems = mismatch_parts(*state_dict_mismatch(state, model.state_dict()))
    if problems:
        raise DataError(
            path,
            f"weights do not fit the saved {cfg.backbone} detector config: {', '.join(problems)}",
        )
    model.load_state_dict(state)
    return model.to(device).eval(), cfg
