"""Settings of a VIS model training run (:class:`TrainConfig`) and its presets.

The optimisation is MinVIS's (its YouTube-VIS R50 configs, ``configs/youtubevis_2019/
Base-YouTubeVIS-VideoInstanceSegmentation.yaml`` and ``video_maskformer2_R50_bs32_8ep_frame
.yaml``): AdamW with weight decay 0.05 (none on normalisation layers and embeddings), the whole
model's gradient norm clipped at 0.01, learning rate x 0.1 after 2/3 of the iterations (MinVIS:
step 4000 of 6000, no warm-up), short side chosen from {360, 480} (``scales`` 1 and 4/3 of the
test size 360) with random horizontal flips, frames without objects kept
(``FILTER_EMPTY_ANNOTATIONS: False``), float16 autocast on CUDA.

Presets (the field defaults are ``default``):

* ``paper`` - UVIS's run (§4.1): ``minvis_r50`` from ImageNet weights (``resnet50_imagenet``),
  MinVIS's learning rate 1e-4 with the backbone at x 0.1, 32 images per batch, 320k iterations.
* ``default`` - ``uvis-tiny`` on the embedded synthetic world: 8,000 iterations of 4 frames
  at the test size only (``scales`` (1,): MinVIS's 4/3 doubles the pixels and the cost of a
  step), lr 3e-4 with the backbone at x 1.0, about 18 CPU minutes at one thread (138-150 ms
  a step on the 2026-12 machines; ``benchmarks/bench_vis_profile.py``). Chosen on the world of
  synth seed 1, never on the default world's valid split: ``benchmarks/bench_vis_curve.py``
  and ``benchmarks/RESULTS.md`` (sections "The supervised upper bound learns" and "Upper
  bound: 8,000 iterations") give its learning curves (seed 1: 34.0 AP at 4,000, 45.8 at 8,000).
* ``smoke`` - ``uvis-smoke``, a few iterations, for tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from uvis.errors import ConfigError
from uvis.presets import check_settings, config_from_preset, config_to_dict, resume_conflicts

#: What happens to training frames without any target mask: ``keep`` them as images where every
#: query is taught "no object" (MinVIS), or ``drop`` them.
EMPTY_FRAME_POLICIES = ("keep", "drop")
DEVICES = ("auto", "cpu", "cuda")
#: Settings that may change when a run is resumed (they do not change what is computed).
RESUMABLE_CHANGES = frozenset(
    {
        "checkpoint_period",
        "keep_checkpoints",
        "log_period",
        "eval_period",
        "num_threads",
        "num_workers",
        "device",
    }
)

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {
        "model": "uvis-smoke",
        "iterations": 6,
        "batch_size": 2,
        "checkpoint_period": 3,
        "log_period": 1,
    },
    "paper": {
        "model": "minvis_r50",
        "backbone_weights": "resnet50_imagenet",
        "iterations": 320_000,
        "batch_size": 32,
        "scales": (1.0, 4 / 3),
        "lr": 1e-4,
        "backbone_lr_factor": 0.1,
        "checkpoint_period": 5000,
        "log_period": 20,
        "num_workers": 4,
    },
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run besides its data (saved with every checkpoint).

    Attributes:
        model, model_overrides: the :data:`uvis.model.MODEL_CONFIGS` name and field overrides.
        backbone_weights: ImageNet classification weights of the backbone (a local file or a
            known name of :mod:`uvis.foundation.weights`); ``None`` trains it from scratch.
        iterations: optimiser steps.
        batch_size: images per step over all processes (each of ``W`` processes takes
            ``batch_size / W``), so a run means the same with any number of processes.
        lr, weight_decay: AdamW's (no decay on normalisation layers and embeddings).
        backbone_lr_factor: backbone learning rate = ``lr * backbone_lr_factor``.
        grad_clip: the whole model's gradient norm is clipped to this (0: off).
        lr_drop_fraction, lr_drop_factor: the learning rate is multiplied by ``lr_drop_factor``
            once ``lr_drop_fraction * iterations`` steps are done.
        warmup_iterations: the learning rate rises linearly over the first this many steps,
            from ``lr / warmup_iterations`` to ``lr`` (0: no warm-up, as MinVIS).
        ema_decay: keep an exponential moving average of the weights (parameters and buffers)
            with this decay per step, and save it as the final model (0: off, as MinVIS; the
            periodic checkpoints keep the trained weights and the average beside them). At
            0.999 it cost 0.8-0.9 AP on two embedded worlds (benchmarks/RESULTS.md).
        scales: each training image is resized so its short side is ``s * test_short_side`` of
            the model, ``s`` drawn uniformly from these (scale jitter, MinVIS's choice of sizes).
        flip: mirror half of the training images left-right.
        channel_shuffle: put each training image's colour channels in a random order. Not in
            MinVIS. The synthetic world draws an object's colour independently of its category;
            with its few training objects a model can learn the category of each object from
            its colour instead of its shape, which does not carry over to new objects.
        empty_frames: ``keep`` or ``drop`` frames without target masks (see
            :data:`EMPTY_FRAME_POLICIES`).
        checkpoint_period: a checkpoint every this many iterations (and at the end).
        keep_checkpoints: how many of the latest intermediate checkpoints to keep (0: all).
        log_period: iterations between loss-curve points (means over the period).
        eval_period: iterations between two periodic validations (AP on a few held-out videos,
            when the training is given them; 0: none). It does not change the weights.
        seed: seed of the initialisation, the sampling and the augmentation.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; under ``torchrun`` each
            process takes the GPU of its ``LOCAL_RANK``.
        amp: float16 autocast and gradient scaling on CUDA (never on CPU).
        num_threads: torch CPU threads per process (on this kind of 2-core machine 1 is 8-10x
            faster than 2 for small models).
        num_workers: data-loading worker processes per training process.
    """

    model: str = "uvis-tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    backbone_weights: str | None = None
    iterations: int = 8000
    batch_size: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.05
    backbone_lr_factor: float = 1.0
    grad_clip: float = 0.01
    lr_drop_fraction: float = 2 / 3
    lr_drop_factor: float = 0.1
    warmup_iterations: int = 0
    ema_decay: float = 0.0
    scales: tuple[float, ...] = (1.0,)
    flip: bool = True
    channel_shuffle: bool = False
    empty_frames: str = "keep"
    checkpoint_period: int = 100
    keep_checkpoints: int = 2
    log_period: int = 20
    eval_period: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_threads: int = 1
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.model_overrides, Mapping):
            raise ConfigError(
                f"train setting 'model_overrides' must be a mapping: {self.model_overrides!r}"
            )
        object.__setattr__(self, "model_overrides", dict(self.model_overrides))
        if self.backbone_weights is not None and not isinstance(self.backbone_weights, str):
            raise ConfigError(
                f"train setting 'backbone_weights' must be text: {self.backbone_weights!r}"
            )
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        checks = {
            "iterations": self.iterations >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "backbone_lr_factor": self.backbone_lr_factor >= 0,
            "grad_clip": self.grad_clip >= 0,
            "lr_drop_fraction": 0 <= self.lr_drop_fraction <= 1,
            "lr_drop_factor": 0 < self.lr_drop_factor <= 1,
            "warmup_iterations": 0 <= self.warmup_iterations <= self.iterations,
            "ema_decay": 0 <= self.ema_decay < 1,
            "scales": len(self.scales) >= 1 and all(s > 0 for s in self.scales),
            "empty_frames": self.empty_frames in EMPTY_FRAME_POLICIES,
            "checkpoint_period": self.checkpoint_period >= 1,
            "keep_checkpoints": self.keep_checkpoints >= 0,
            "log_period": self.log_period >= 1,
            "eval_period": self.eval_period >= 0,
            "seed": self.seed >= 0,
            "device": self.device in DEVICES,
            "num_threads": self.num_threads >= 1,
            "num_workers": self.num_workers >= 0,
        }
        check_settings(self, checks, "train")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """The ``default``, ``smoke`` (seconds, for tests) or ``paper`` settings, overridden.

        Raises:
            ConfigError: for an unknown preset or setting, or an invalid value.
        """
        return config_from_preset(cls, PRESETS, name, overrides, what="train")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (tuples as lists)."""
        return config_to_dict(self)

    def resume_conflicts(self, saved: Mapping[str, Any]) -> list[str]:
        """Settings that differ from a checkpoint's ``saved`` config and must not on resume."""
        return resume_conflicts(self, saved, RESUMABLE_CHANGES)
