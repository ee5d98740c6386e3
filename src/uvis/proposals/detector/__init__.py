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
  (:func:`_init_predictors`). Horizontal flips, and CutLER's copy-paste (:mod:`.augment`;
  ``copy_paste_rate``, 1.0 in the ``real`` and ``default`` presets, off in ``smoke``).

Departures, for a CPU budget and a dependency-free build: a Mask R-CNN rather than a Cascade
Mask R-CNN; no multi-scale training. The embedded default
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

Modules: :mod:`.config` (settings and constants), :mod:`.model` (the Mask R-CNN with DropLoss,
its checkpoints), :mod:`.augment` (copy-paste), :mod:`.train` (targets, CutLER's training rounds
and self-training) and :mod:`.infer` (detection, refinement, detection groups, the proposals table).
"""

from uvis.proposals.detector.config import (
    ANCHOR_RATIOS,
    BACKBONES,
    CHECKPOINT_FORMAT,
    DROPLOSS_IOU,
    INFERENCE_SETTINGS,
    OBJECT_LABEL,
    OPTIMIZERS,
    ROI_SAMPLING_RATIO,
    SELF_TRAIN_LR_FACTOR,
    SELF_TRAIN_MERGE_IOU,
    DetectorConfig,
)
from uvis.proposals.detector.infer import (
    GROUP_INSIDE,
    GROUP_MIN_MEMBERS,
    MIN_REFINED_IOU,
    Detection,
    detect,
    detect_frames,
    group_flags,
    proposals_table,
    refine_detections,
    suppress_groups,
)
from uvis.proposals.detector.model import (
    DropLossRoIHeads,
    build_detector,
    drop_loss_weights,
    load_backbone_weights,
    load_detector,
    resolve_device,
    save_detector,
)
from uvis.proposals.detector.train import (
    MaskTargets,
    lr_schedule,
    merge_self_training_targets,
    targets_from_proposals,
    train_detector,
)

__all__ = [
    "ANCHOR_RATIOS",
    "BACKBONES",
    "CHECKPOINT_FORMAT",
    "DROPLOSS_IOU",
    "GROUP_INSIDE",
    "GROUP_MIN_MEMBERS",
    "INFERENCE_SETTINGS",
    "MIN_REFINED_IOU",
    "OBJECT_LABEL",
    "OPTIMIZERS",
    "ROI_SAMPLING_RATIO",
    "SELF_TRAIN_LR_FACTOR",
    "SELF_TRAIN_MERGE_IOU",
    "Detection",
    "DetectorConfig",
    "DropLossRoIHeads",
    "MaskTargets",
    "build_detector",
    "detect",
    "detect_frames",
    "drop_loss_weights",
    "group_flags",
    "load_backbone_weights",
    "load_detector",
    "lr_schedule",
    "merge_self_training_targets",
    "proposals_table",
    "refine_detections",
    "resolve_device",
    "save_detector",
    "suppress_groups",
    "targets_from_proposals",
    "train_detector",
]
