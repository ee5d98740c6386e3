"""Settings of the tag-based model and its training run (:class:`TagVisConfig`) and presets.

One frozen dataclass holds the architecture, the loss, the clip sampling and the optimisation,
because the paper's ablations (Table III) cut across all of them: every row is a set of
overrides of this class (``tagvis.variants`` in ``config.yaml``), saved with each checkpoint.

Presets (the field defaults are ``default``):

* ``default`` - the embedded synthetic world at one CPU thread, about 14 CPU minutes (1,500
  steps of 2 clips, about 0.55 CPU-s each; 600 steps until the sixteenth session, whose
  measurements on world seeds 1 and 2 found DAVIS J&F 50.8 / 51.9 at 600 and 58.0 / 60.1 at
  1,500 steps, benchmarks/RESULTS.md): a narrow three-stage (2+1)D ResNet from scratch,
  clips of 8 frames at the world's 96 x 128, features at stride 4. Adam at 2e-3 after 20
  steps of linear warm-up, falling along a half cosine to 0, not the paper's constant 1e-4,
  which is for fine-tuning a pretrained encoder: from scratch, 150 steps at 1e-4 left a
  (wider) model near chance (DAVIS J&F 6.6 on the default world). The tagging terms are
  means (``loss_reduction``; :mod:`uvis.tagvis.losses` says why). Chosen on the train split
  and a world of another seed (``uvis synth --seed 1``), never on the default world's valid
  split; figures in benchmarks/RESULTS.md.
* ``smoke`` - seconds, for tests.
* ``paper`` - Kini & Shah: R(2+1)D-18 from its Kinetics-400 weights (``r2plus1d_18_kinetics``,
  a local file; see :mod:`uvis.foundation.weights`), clips of 32 frames, Adam at 1e-4 for 100
  epochs. The paper does not give its input size, batch size or the tag-pixel sample size;
  those here are ours, and so is ``loss_reduction: mean`` (inherited from the field
  defaults; ``sum`` is the equations as written).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from uvis.engine.schedules import LRSchedule
from uvis.errors import ConfigError
from uvis.presets import (
    check_settings,
    config_from_dict,
    config_from_preset,
    config_to_dict,
    resume_conflicts,
)

DEVICES = ("auto", "cpu", "cuda")
#: Learning-rate schedules of :func:`learning_rate`.
LR_SCHEDULES = ("constant", "cosine")
#: Pixel weightings of the cross-entropy (:func:`uvis.tagvis.train.semantic_cross_entropy`).
SEMANTIC_WEIGHTINGS = ("pixels", "foreground")
#: Where an instance's class comes from (:class:`uvis.tagvis.model.RoiClassHead`).
CLASS_HEADS = ("pixels", "rois")
#: Reductions of the tagging loss terms (:mod:`uvis.tagvis.losses`).
REDUCTIONS = ("sum", "mean")
#: Encoder widths and depths of torchvision's R(2+1)D-18 (its Kinetics weights fit only these).
R2PLUS1D_18_WIDTHS = (64, 128, 256, 512)
R2PLUS1D_18_DEPTHS = (2, 2, 2, 2)
#: Settings that may change when a run is resumed (they do not change what is computed).
RESUMABLE_CHANGES = frozenset(
    {"checkpoint_period", "keep_checkpoints", "log_period", "num_threads", "num_workers", "device"}
)

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {
        "encoder_widths": (8, 16),
        "encoder_depths": (1, 1),
        "feature_dim": 8,
        "attention_dim": 8,
        "clip_frames": 4,
        "input_size": (32, 40),
        "pixels_per_frame": 4,
        "epochs": 1,
        "batch_size": 2,
        "checkpoint_period": 1,
        "log_period": 1,
    },
    "paper": {
        "encoder_widths": R2PLUS1D_18_WIDTHS,
        "encoder_depths": R2PLUS1D_18_DEPTHS,
        "encoder_weights": "r2plus1d_18_kinetics",
        "class_head": "pixels",
        "feature_dim": 128,
        "attention_dim": 64,
        "feature_stride": 8,
        "clip_frames": 32,
        "input_size": (224, 384),
        "pixels_per_frame": 32,
        "epochs": 100,
        "max_steps": 0,
        "batch_size": 4,
        "lr": 1e-4,
        "lr_schedule": "constant",
        "warmup_steps": 0,
        "checkpoint_period": 500,
        "log_period": 20,
        "num_workers": 4,
    },
}


@dataclass(frozen=True)
class TagVisConfig:
    """Everything that decides a tag-based model and its training besides the data.

    Architecture (:mod:`uvis.tagvis.model`):
        encoder_widths, encoder_depths: channels and residual blocks of the (2+1)D ResNet's
            stages after the stem; ``(64, 128, 256, 512)`` / ``(2, 2, 2, 2)`` is R(2+1)D-18.
            Every stage after the first halves time and space, as in R(2+1)D.
        encoder_weights: torchvision ``r2plus1d_18`` Kinetics-400 weights (a local file or the
            known name ``r2plus1d_18_kinetics``); ``None`` trains the encoder from scratch.
        feature_dim: channels of the bottleneck, the tag generator and the decoder.
        attention_dim: query/key width of the spatio-temporal and self-attention modules.
        feature_stride: spatial stride of the working resolution (tags and class logits are
            predicted there, then upsampled to the input size); time is at full rate.
        tag_attention_pool: the tag-based attention's keys are cells of this many pixels
            square (mean tag and feature), dividing its cost by the square (1: every pixel).

    Ablation switches (Table III; each removes its module or loss term; combinations that
    leave a module without input or consumer are rejected):
        location_embedding: x-y coordinate maps added to the encoded features.
        spatio_temporal_attention, tag_attention, self_attention: the three attention modules.
        tag_connector: the tags reach the decoder (through the tag-based attention when it is
            on, as the raw tag map when it is off); off removes every link from tags to decoder.
        self_connector: the bottleneck features reach the decoder (through the self-attention
            when it is on, directly when it is off).
        semantic: the semantic branch (decoder and cross-entropy). Without it the model has no
            classes: inference takes the background from the tags alone and labels every
            instance with the most frequent training class (see :mod:`uvis.tagvis.infer`).
        spatial_intra, spatial_inter, temporal_grouping, temporal_separation: the four terms
            of the spatio-temporal tagging loss (eqs. 2-5).
        class_head: ``pixels`` (the paper's, and the ``paper`` preset's: an instance's classes
            are the mean of the semantic branch's per-pixel probabilities over its pixels) or
            ``rois`` (the ``default`` and ``smoke`` presets'; uvis's addition: a small
            classifier of crops of the instance's box in the encoder's finest stage, trained by
            a cross-entropy per ground-truth instance beside the paper's loss; see
            :class:`uvis.tagvis.model.RoiClassHead`). Needs the semantic branch, which still
            gives the foreground.

    Loss:
        margin: G of eqs. 3 and 5 (the paper's 3).
        loss_reduction: ``"mean"`` (every tagging term a mean over what it sums) or ``"sum"``
            (eqs. 2-5 as written); why the default is ``"mean"``: :mod:`uvis.tagvis.losses`.
        semantic_weighting: ``pixels`` (the plain mean of the cross-entropy over pixels) or
            ``foreground`` (background and object pixels weigh half each); see
            :func:`uvis.tagvis.train.semantic_cross_entropy`.
        pixels_per_frame: pixels sampled per instance and frame (the paper's M' is this times
            the frames an instance is visible in).

    Clips and augmentation (:mod:`uvis.tagvis.data`):
        clip_frames: T, frames per clip (the paper's 32).
        input_size: ``(height, width)`` frames are resized to; both multiples of the
            encoder's total stride.
        max_drop: clips are made by dropping runs of 1 to ``max_drop`` consecutive frames.
        min_crop: random crops keep a ``U(min_crop, 1)`` fraction of each side (1: no crop).
        flip, temporal_flip: mirror half of the clips left-right / reverse half in time.
        link_iou, link_gap: pseudo-labels (per frame) are linked into tracks at this mask IoU
            or more, a track surviving up to ``link_gap`` frames without a mask.

    Optimisation (:mod:`uvis.tagvis.train`):
        epochs: passes over the training videos, one clip per video each.
        max_steps: at most this many steps (0: no cap), whatever the number of videos: the
            default world's 600 training videos would otherwise make 20 epochs four times the
            default recipe's 1,500 steps.
        batch_size: clips per step. lr: Adam's learning rate (the paper's 1e-4).
        lr_schedule: ``constant``, or ``cosine``: after ``warmup_steps`` of linear warm-up
            the rate falls along a half cosine to 0 at the last step (:func:`learning_rate`).
        warmup_steps: steps of linear warm-up from ``lr / warmup_steps`` (0: none).
        checkpoint_period, keep_checkpoints, log_period: steps between checkpoints, how many
            intermediate ones to keep (0: all), steps per loss-curve point.
        seed: of the initialisation, the clip sampling and the augmentation.
        device: ``auto``, ``cpu`` or ``cuda``; num_threads: torch CPU threads (one is fastest
            for small models on a 2-core machine); num_workers: data-loading processes.
    """

    encoder_widths: tuple[int, ...] = (16, 32, 64)
    encoder_depths: tuple[int, ...] = (1, 1, 1)
    encoder_weights: str | None = None
    feature_dim: int = 32
    attention_dim: int = 32
    feature_stride: int = 4
    tag_attention_pool: int = 2
    location_embedding: bool = True
    spatio_temporal_attention: bool = True
    tag_attention: bool = True
    tag_connector: bool = True
    self_attention: bool = True
    self_connector: bool = True
    semantic: bool = True
    spatial_intra: bool = True
    spatial_inter: bool = True
    temporal_grouping: bool = True
    temporal_separation: bool = True
    class_head: str = "rois"
    margin: float = 3.0
    loss_reduction: str = "mean"
    semantic_weighting: str = "pixels"
    pixels_per_frame: int = 16
    clip_frames: int = 8
    input_size: tuple[int, ...] = (96, 128)
    max_drop: int = 5
    min_crop: float = 0.8
    flip: bool = True
    temporal_flip: bool = True
    link_iou: float = 0.5
    link_gap: int = 2
    epochs: int = 20
    max_steps: int = 1500
    batch_size: int = 2
    lr: float = 2e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 20
    checkpoint_period: int = 100
    keep_checkpoints: int = 2
    log_period: int = 10
    seed: int = 0
    device: str = "auto"
    num_threads: int = 1
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("encoder_widths", "encoder_depths", "input_size"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            raise ConfigError(
                f"tagvis setting 'encoder_weights' must be text: {self.encoder_weights!r}"
            )
        stride = self.encoder_stride
        checks = {
            "encoder_widths": len(self.encoder_widths) >= 2
            and all(w >= 4 for w in self.encoder_widths),
            "encoder_depths": len(self.encoder_depths) == len(self.encoder_widths)
            and all(d >= 1 for d in self.encoder_depths),
            "feature_dim": self.feature_dim >= 4,
            "attention_dim": self.attention_dim >= 4,
            "feature_stride": self.feature_stride in (2, 4, 8, 16, 32)
            and self.feature_stride <= stride,
            "tag_attention_pool": self.tag_attention_pool >= 1,
            "margin": self.margin > 0,
            "loss_reduction": self.loss_reduction in REDUCTIONS,
            "semantic_weighting": self.semantic_weighting in SEMANTIC_WEIGHTINGS,
            "class_head": self.class_head in CLASS_HEADS,
            "pixels_per_frame": self.pixels_per_frame >= 1,
            "clip_frames": self.clip_frames >= 1 and self.clip_frames % self.temporal_stride == 0,
            "input_size": len(self.input_size) == 2
            and all(s >= stride and s % stride == 0 for s in self.input_size),
            "max_drop": self.max_drop >= 1,
            "min_crop": 0 < self.min_crop <= 1,
            "link_iou": 0 < self.link_iou <= 1,
            "link_gap": self.link_gap >= 0,
            "epochs": self.epochs >= 1,
            "max_steps": self.max_steps >= 0,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "lr_schedule": self.lr_schedule in LR_SCHEDULES,
            "warmup_steps": self.warmup_steps >= 0,
            "checkpoint_period": self.checkpoint_period >= 1,
            "keep_checkpoints": self.keep_checkpoints >= 0,
            "log_period": self.log_period >= 1,
            "seed": self.seed >= 0,
            "device": self.device in DEVICES,
            "num_threads": self.num_threads >= 1,
            "num_workers": self.num_workers >= 0,
        }
        check_settings(self, checks, "tagvis")
        self._check_switches()

    def _check_switches(self) -> None:
        """Reject switch combinations that leave a module without a consumer or input."""
        needs = (
            ("tag_attention", "tag_connector", "its output reaches the decoder only through it"),
            ("self_attention", "self_connector", "its output reaches the decoder only through it"),
            ("tag_connector", "semantic", "it connects the tags to the semantic decoder"),
            ("self_connector", "semantic", "it connects the features to the semantic decoder"),
        )
        for switch, needed, why in needs:
            if getattr(self, switch) and not getattr(self, needed):
                raise ConfigError(
                    f"tagvis setting {switch}=true needs {needed}=true ({why}); "
                    f"set {switch}=false too"
                )
        if self.semantic and not (self.tag_connector or self.self_connector):
            raise ConfigError(
                "tagvis setting semantic=true needs tag_connector or self_connector: the "
                "decoder would have no input"
            )
        if self.class_head != "pixels" and not self.semantic:
            raise ConfigError(
                f"tagvis setting class_head={self.class_head!r} needs semantic=true (the "
                "semantic branch gives the foreground the instances are found in); set "
                "class_head='pixels'"
            )

    @property
    def encoder_stride(self) -> int:
        """Spatial stride of the deepest encoder stage (the stem halves, then each later stage)."""
        return 2 ** len(self.encoder_widths)

    @property
    def temporal_stride(self) -> int:
        """Temporal stride of the deepest encoder stage (every stage after the first halves)."""
        return 2 ** (len(self.encoder_widths) - 1)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TagVisConfig:
        """The ``default``, ``smoke`` or ``paper`` settings, overridden.

        Raises:
            ConfigError: for an unknown preset or setting, or an invalid value.
        """
        return config_from_preset(cls, PRESETS, name, overrides, what="tagvis")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TagVisConfig:
        """The config saved in a checkpoint (:meth:`to_dict`). A checkpoint saved before
        ``class_head`` existed had the paper's per-pixel classes: ``pixels``."""
        return config_from_dict(cls, {"class_head": "pixels", **data}, what="tagvis")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (tuples as lists)."""
        return config_to_dict(self)

    def schedule(self, total: int) -> LRSchedule:
        """Adam's learning-rate factor by 1-based step of ``total``: ``lr_schedule`` after a
        linear warm-up of ``warmup_steps`` (step ``warmup_steps`` at the full rate)."""
        decay = "cosine" if self.lr_schedule == "cosine" else "constant"
        return LRSchedule(total=total, warmup=self.warmup_steps, warmup_start=0.0, decay=decay)

    def learning_rate(self, step: int, total: int) -> float:
        """Adam's learning rate at ``step`` (1-based) of ``total`` (:meth:`schedule`)."""
        return self.schedule(total).rate(step, self.lr)

    def resume_conflicts(self, saved: Mapping[str, Any]) -> list[str]:
        """Settings that differ from a checkpoint's ``saved`` config and must not on resume."""
        return resume_conflicts(self, saved, RESUMABLE_CHANGES)
