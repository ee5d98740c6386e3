"""DINO self-distillation (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021), to train the embedded stand-in for the DINO ViT on the synthetic
world's unlabeled corpus.

The objective, one function per equation of the paper:

* **Sharpened, centred teacher** and **student** distributions over ``K`` prototypes,
  ``P_t(x) = softmax((g_t(x) - c) / tau_t)`` and ``P_s(x) = softmax(g_s(x) / tau_s)``; the loss
  is the cross-entropy ``-P_t(x) . log P_s(x')`` averaged over every pair of a teacher view
  (the two global crops) and a *different* student view (both global and all local crops):
  :func:`dino_loss`.
* **Centring**: ``c <- m c + (1 - m) mean_batch g_t(x)``: :func:`update_center`.
* **Teacher = EMA of the student**: ``theta_t <- l theta_t + (1 - l) theta_s``, with ``l`` going
  from 0.996 to 1 on a cosine schedule: :func:`ema_update`, :func:`uvis.engine.schedules.cosine_schedule`.

Network and schedules follow the official implementation (``main_dino.py``): projection head
MLP -> L2 normalisation -> weight-normalised linear layer with its norm fixed at 1
(:class:`DinoHead`), AdamW with cosine learning-rate and weight-decay schedules, linear warm-up of
the teacher temperature, per-parameter gradient clipping, and the head's last layer frozen during
the first epoch. Multi-crop augmentation follows DINO's ``DataAugmentationDINO`` (two global
crops with different blur/solarisation, ``N`` local crops), implemented batched with per-sample
random parameters (:func:`multi_crop`); see there for why and how it differs.

The ``lightly`` library was considered for these components; version 1.6.0 pulls in
pytorch-lightning, hydra and aiohttp, so the objective is implemented here.

Modules: :mod:`.config` (:class:`DinoConfig` and its presets), :mod:`.model` (the objective, one
function per equation, the head and network, and the trained stand-in's loader),
:mod:`.augment` (multi-crop), :mod:`.corpus` (the unlabeled corpus and the k-NN probe) and
:mod:`.train` (:func:`fit_dino` on :class:`uvis.engine.trainer.Trainer`, :func:`train_dino`).
"""

from uvis.standins.dino.augment import (
    CROP_ATTEMPTS,
    CROP_RATIO,
    FLIP_PROB,
    JITTER_PROB,
    CropRecipe,
    colour_jitter,
    crop_recipes,
    gaussian_blur,
    hue_rotation,
    make_view,
    multi_crop,
    random_rotation,
    resized_crops,
    sample_crop_boxes,
)
from uvis.standins.dino.config import DinoConfig
from uvis.standins.dino.corpus import (
    Corpus,
    knn_accuracy,
    knn_predict,
    load_unlabeled_corpus,
    probe_inputs,
    probe_split,
    unlabeled_index_path,
)
from uvis.standins.dino.model import (
    CENTERINGS,
    DinoHead,
    DinoNetwork,
    build_dino_network,
    centred_teacher_probs,
    dino_loss,
    ema_update,
    load_trained_ssl_vit,
    sinkhorn_knopp_teacher_probs,
    teacher_entropies,
    teacher_probs,
    teacher_temp_schedule,
    update_center,
)
from uvis.standins.dino.train import (
    DinoRun,
    clip_gradients,
    fit_dino,
    initial_network,
    knn_report,
    param_groups,
    save_dino_checkpoint,
    steps_per_epoch,
    train_dino,
)

__all__ = [
    "CENTERINGS",
    "CROP_ATTEMPTS",
    "CROP_RATIO",
    "FLIP_PROB",
    "JITTER_PROB",
    "Corpus",
    "CropRecipe",
    "DinoConfig",
    "DinoHead",
    "DinoNetwork",
    "DinoRun",
    "build_dino_network",
    "centred_teacher_probs",
    "clip_gradients",
    "colour_jitter",
    "crop_recipes",
    "dino_loss",
    "ema_update",
    "fit_dino",
    "gaussian_blur",
    "hue_rotation",
    "initial_network",
    "knn_accuracy",
    "knn_predict",
    "knn_report",
    "load_trained_ssl_vit",
    "load_unlabeled_corpus",
    "make_view",
    "multi_crop",
    "param_groups",
    "probe_inputs",
    "probe_split",
    "random_rotation",
    "resized_crops",
    "sample_crop_boxes",
    "save_dino_checkpoint",
    "sinkhorn_knopp_teacher_probs",
    "steps_per_epoch",
    "teacher_entropies",
    "teacher_probs",
    "teacher_temp_schedule",
    "train_dino",
    "unlabeled_index_path",
    "update_center",
]
