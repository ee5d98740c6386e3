"""Training the per-frame VIS model (UVIS §3.2, MinVIS's recipe) on pseudo-labels or ground truth.

:func:`targets_from_pseudo_labels` / :func:`targets_from_ground_truth` make a
:class:`TrainingSet`; :func:`train_vis` trains a :mod:`uvis.model` configuration on it with a
:class:`TrainConfig` (checkpoints, resume, DDP under ``torchrun``, loss curves).
"""

from uvis.train.config import TrainConfig
from uvis.train.loop import TrainResult, minvis_param_groups, train_vis
from uvis.train.targets import (
    FrameTargets,
    TrainingSet,
    targets_from_ground_truth,
    targets_from_pseudo_labels,
)

__all__ = [
    "FrameTargets",
    "TrainConfig",
    "TrainResult",
    "TrainingSet",
    "minvis_param_groups",
    "targets_from_ground_truth",
    "targets_from_pseudo_labels",
    "train_vis",
]
