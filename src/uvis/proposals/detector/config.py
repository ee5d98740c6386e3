"""The learned detector's settings (:class:`DetectorConfig`, its presets) and CutLER's constants."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uvis.errors import ConfigError
from uvis.presets import check_settings, config_from_dict, config_from_preset, config_to_dict

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

PRESETS: dict[str, dict[str, Any]] = {
    # CutLER's copy-paste, as CutLER trains: on the hybrid DINO stand-in's MaskCut masks of the
    # default world's *train* split (benchmarks/RESULTS.md, issue 12) it lifted the detector's
    # recall on every 25th train video from 59.8 to 81.1 % at objectness >= 0.7, precision
    # 63.2 -> 71.4 %, at the same cost.
    "default": {"copy_paste_rate": 1.0},
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
        "copy_paste_rate": 1.0,
        "optimizer": "sgd",
        "lr": 0.005,
        "weight_decay": 5e-5,
        "self_training_rounds": 1,
        "self_train_iterations": 10000,
        "detections_per_img": 100,
        "log_every": 100,
    },
}


#: Settings that act only when frames are detected: the detect stage may change them without
#: retraining (the self-training rounds detect with the training config's own values).
INFERENCE_SETTINGS = (
    "detections_per_img",
    "score_floor",
    "nms_thresh",
    "mask_threshold",
    "batch_size",
)


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
    ``grad_clip``, ``warmup_iterations`` of linear warm-up (see the module docstring for the
    schedule), ``flip`` for random horizontal flips, CutLER's copy-paste on a
    ``copy_paste_rate`` share of frames with the pasted frame shrunk to ``copy_paste_scale``
    (``self_train_copy_paste_scale`` in self-training; see :mod:`.augment`), DropLoss on or off
    (``drop_loss``, at ``drop_loss_iou``), then
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
    # CutLER's copy-paste (:mod:`.augment`): the share of frames that receive pasted objects
    # (CutLER: 1.0; 0 is off) and the range of the pasted frame's size relative to the frame,
    # in round 0 (CutLER: 0.3-1.0) and in the self-training rounds (CutLER: 0.5-1.0). Off here
    # and in the smoke preset; the default and real presets set 1.0.
    copy_paste_rate: float = 0.0
    copy_paste_scale: tuple[float, float] = (0.3, 1.0)
    self_train_copy_paste_scale: tuple[float, float] = (0.5, 1.0)
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
        return config_from_preset(cls, PRESETS, name, overrides, what="detector")

    def for_detection(self, **overrides: Any) -> DetectorConfig:
        """These settings with detection-time ``overrides`` (:data:`INFERENCE_SETTINGS`).

        Raises:
            ConfigError: for a training or architecture setting (retrain to change it), an
                unknown key, or a bad value.
        """
        if not overrides:
            return self
        fixed = sorted(set(overrides) - set(INFERENCE_SETTINGS))
        if fixed:
            raise ConfigError(
                f"detector setting {fixed[0]!r} cannot change at detection (it is a training or "
                f"architecture setting: retrain the detector); detection settings: "
                f"{', '.join(INFERENCE_SETTINGS)}"
            )
        return config_from_dict(type(self), {**config_to_dict(self), **overrides}, what="detector")

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchor_sizes", tuple(int(s) for s in self.anchor_sizes))
        for name in ("copy_paste_scale", "self_train_copy_paste_scale"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
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
            "copy_paste_rate": 0 <= self.copy_paste_rate <= 1,
            "copy_paste_scale": _scale_range_ok(self.copy_paste_scale),
            "self_train_copy_paste_scale": _scale_range_ok(self.self_train_copy_paste_scale),
            "detections_per_img": self.detections_per_img >= 1,
            "score_floor": 0 <= self.score_floor < 1,
            "nms_thresh": 0 < self.nms_thresh <= 1,
            "mask_threshold": 0 < self.mask_threshold < 1,
            "device": self.device in ("auto", "cpu", "cuda"),
            "log_every": self.log_every >= 1,
        }
        check_settings(self, checks, "detector")


def _scale_range_ok(scale: tuple[float, ...]) -> bool:
    """A copy-paste size range: two numbers with ``0 < low <= high <= 1``."""
    return len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1
