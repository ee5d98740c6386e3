"""The DINO stand-in's settings: :class:`DinoConfig` and its presets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from uvis.errors import ConfigError
from uvis.presets import config_from_dict, config_from_preset, config_to_dict

#: How the teacher's outputs become targets: DINO's centring, or DINOv2's Sinkhorn-Knopp.
CENTERINGS = ("mean", "sinkhorn_knopp")

# Preset name -> overrides of the field defaults (the defaults *are* the "default" preset).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {
        "arch_kwargs": {
            "patch_size": 8,
            "img_size": 32,
            "depth": 2,
            "embed_dim": 64,
            "num_heads": 4,
        },
        "head_hidden_dim": 128,
        "head_bottleneck_dim": 64,
        "out_dim": 128,
        "epochs": 2,
        "warmup_epochs": 1,
        "warmup_teacher_temp_epochs": 1,
        "batch_size": 16,
        "local_crops_number": 2,
        "max_steps_per_epoch": 2,
    },
    # The hybrid ViT (a CNN stem under one transformer block, replicate-padded, so that its
    # border patches do not form a cluster MaskCut cuts away; benchmarks/RESULTS.md, "DINO
    # stand-in: the stem's zero padding") with DINOv2's Sinkhorn-Knopp targets at a low teacher
    # temperature, strong colour jitter, a rotation per view, two global crops of 60-100 % of
    # the image and no local crops. 240 epochs (about 64 CPU-minutes on the embedded corpus):
    # over 160 the k-NN stopped at 0.41-0.44, because the learning rate and the teacher's
    # momentum decay over the whole run ("DINO stand-in: a longer schedule"). The pipeline's
    # ``ssl.arch``/``ssl.arch_kwargs`` replace ``arch`` and ``arch_kwargs``, so they must name
    # this architecture too (config.yaml does).
    "hybrid": {
        "arch": "uvis_hybrid_vit",
        "arch_kwargs": {
            "patch_size": 8,
            "img_size": 32,
            "depth": 1,
            "embed_dim": 128,
            "num_heads": 4,
            "global_pool": "avg",
            "extra_stem_blocks": 1,
            "stem_padding": "replicate",
        },
        "out_dim": 64,
        "epochs": 240,
        "warmup_epochs": 4,
        "lr": 5e-4,
        "momentum_teacher": 0.99,
        "centering": "sinkhorn_knopp",
        "teacher_temp": 0.02,
        "warmup_teacher_temp": 0.02,
        "colour_jitter": (0.8, 0.8, 0.8, 0.5),
        "grey_prob": 0.5,
        "rotation_degrees": 180.0,
        "global_crop_scale": (0.6, 1.0),
        "local_crops_number": 0,
    },
}

# Fields holding a fixed-length tuple of numbers, and their lengths.
_TUPLES = {"global_crop_scale": 2, "local_crop_scale": 2, "blur_sigma": 2, "colour_jitter": 4}


@dataclass(frozen=True)
class DinoConfig:
    """Everything that determines a DINO training run (with the corpus and the seed).

    Attributes:
        arch, arch_kwargs: the timm ViT (``create_ssl_vit`` builds it from these two). The
            default is ViT-Ti/8 narrowed to width 128 and 4 blocks, trained on 32 px crops, to fit
            the few CPU minutes the stand-in may take. ``"uvis_hybrid_vit"`` puts a small CNN
            stem under the blocks (:mod:`uvis.foundation.hybrid_vit`).
        drop_path_rate: stochastic depth of the student (DINO: 0.1; off for tiny, short runs).
        out_dim: number of prototypes ``K`` of the projection head.
        head_hidden_dim, head_bottleneck_dim: widths of the head's 3-layer MLP.
        epochs, batch_size: passes over the corpus, and images per step.
        max_steps_per_epoch: cap on the steps of an epoch (0: the whole corpus), for smoke runs.
        lr, min_lr, warmup_epochs: peak AdamW learning rate (reached after a linear warm-up),
            cosine-decayed to ``min_lr``. Unlike ``main_dino.py``, ``lr`` is not rescaled by
            ``batch_size / 256``.
        weight_decay, weight_decay_end: cosine weight-decay schedule (not on biases and norms).
        clip_grad: per-parameter gradient-norm clip (0: off).
        freeze_last_layer: epochs during which the head's last layer is not updated.
        momentum_teacher: EMA momentum at step 0, raised to 1 on a cosine schedule.
        warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs: teacher temperature,
            linearly warmed up from the first to the second value.
        student_temp: student temperature.
        center_momentum: EMA momentum of the centre.
        centering: how the teacher's targets avoid collapse: ``"mean"`` (DINO's centre) or
            ``"sinkhorn_knopp"`` (DINOv2's batch balancing; the centre is then unused).
        global_crop_size, global_crop_scale: side and area fraction range of the 2 global crops.
        local_crops_number, local_crop_size, local_crop_scale: the same for the local crops.
        blur_sigma: Gaussian-blur sigma range in output-crop pixels (DINO's 0.1-2 px at 224 px
            scaled to this crop size).
        colour_jitter, grey_prob: jitter strengths (brightness, contrast, saturation, hue) and
            greyscale chance (DINO: 0.4, 0.4, 0.2, 0.1 and 0.2).
        rotation_degrees: each view is rotated by an angle drawn uniformly from
            ``[-rotation_degrees, rotation_degrees]`` (not in DINO; 0, the default, turns it off).
        probe_k, probe_temperature, probe_test_fraction: weighted k-NN probe (DINO's eval_knn:
            ``k`` = 20, ``T`` = 0.07) on CLS features, with this fraction of the corpus held out.
        seed: seed of the initialisation, the crop sampling and the probe split.
    """

    arch: str = "vit_tiny_patch16_224"
    arch_kwargs: dict[str, Any] = field(
        default_factory=lambda: {
            "patch_size": 8,
            "img_size": 32,
            "depth": 4,
            "embed_dim": 128,
            "num_heads": 4,
        }
    )
    drop_path_rate: float = 0.0
    out_dim: int = 256
    head_hidden_dim: int = 512
    head_bottleneck_dim: int = 128
    epochs: int = 8
    batch_size: int = 64
    max_steps_per_epoch: int = 0
    lr: float = 2.5e-4
    min_lr: float = 1e-6
    warmup_epochs: int = 1
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0
    freeze_last_layer: int = 1
    momentum_teacher: float = 0.996
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    student_temp: float = 0.1
    center_momentum: float = 0.9
    centering: str = "mean"
    global_crop_size: int = 32
    global_crop_scale: tuple[float, float] = (0.4, 1.0)
    local_crops_number: int = 4
    local_crop_size: int = 16
    local_crop_scale: tuple[float, float] = (0.1, 0.4)
    blur_sigma: tuple[float, float] = (0.1, 0.3)
    colour_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    grey_prob: float = 0.2
    rotation_degrees: float = 0.0
    probe_k: int = 20
    probe_temperature: float = 0.07
    probe_test_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        for name, length in _TUPLES.items():
            value = getattr(self, name)
            if not isinstance(value, Sequence) or len(value) != length:
                raise ConfigError(f"dino parameter {name!r} must be {length} numbers: {value!r}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if not isinstance(self.arch_kwargs, dict):
            raise ConfigError(f"dino parameter 'arch_kwargs' must be a mapping: {self.arch_kwargs}")
        object.__setattr__(self, "arch_kwargs", dict(self.arch_kwargs))
        self._check_values()

    def _check_values(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value is out of range."""
        checks = [
            ("out_dim", self.out_dim >= 2, "must be >= 2"),
            ("head_hidden_dim", self.head_hidden_dim >= 1, "must be >= 1"),
            ("head_bottleneck_dim", self.head_bottleneck_dim >= 1, "must be >= 1"),
            ("epochs", self.epochs >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 2, "must be >= 2"),
            ("max_steps_per_epoch", self.max_steps_per_epoch >= 0, "must be >= 0"),
            ("lr", self.lr > 0, "must be > 0"),
            ("min_lr", 0 <= self.min_lr <= self.lr, "must lie in [0, lr]"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, "must lie in [0, epochs]"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("weight_decay_end", self.weight_decay_end >= 0, "must be >= 0"),
            ("clip_grad", self.clip_grad >= 0, "must be >= 0"),
            ("freeze_last_layer", self.freeze_last_layer >= 0, "must be >= 0"),
            ("momentum_teacher", 0 <= self.momentum_teacher <= 1, "must lie in [0, 1]"),
            ("warmup_teacher_temp", self.warmup_teacher_temp > 0, "must be > 0"),
            ("teacher_temp", self.teacher_temp > 0, "must be > 0"),
            (
                "warmup_teacher_temp_epochs",
                0 <= self.warmup_teacher_temp_epochs <= self.epochs,
                "must lie in [0, epochs]",
            ),
            ("student_temp", self.student_temp > 0, "must be > 0"),
            ("center_momentum", 0 <= self.center_momentum <= 1, "must lie in [0, 1]"),
            ("centering", self.centering in CENTERINGS, f"must be one of {CENTERINGS}"),
            ("global_crop_size", self.global_crop_size >= 8, "must be >= 8"),
            ("local_crops_number", self.local_crops_number >= 0, "must be >= 0"),
            ("local_crop_size", self.local_crop_size >= 8, "must be >= 8"),
            ("global_crop_scale", _is_scale(self.global_crop_scale), "must be 0 < lo <= hi <= 1"),
            ("local_crop_scale", _is_scale(self.local_crop_scale), "must be 0 < lo <= hi <= 1"),
            ("blur_sigma", 0 < self.blur_sigma[0] <= self.blur_sigma[1], "must be 0 < lo <= hi"),
            (
                "colour_jitter",
                _is_jitter(self.colour_jitter),
                "must be 3 numbers in [0, 1], hue in [0, 0.5]",
            ),
            ("grey_prob", 0 <= self.grey_prob <= 1, "must lie in [0, 1]"),
            ("rotation_degrees", 0 <= self.rotation_degrees <= 180, "must lie in [0, 180]"),
            ("probe_k", self.probe_k >= 1, "must be >= 1"),
            ("probe_temperature", self.probe_temperature > 0, "must be > 0"),
            ("probe_test_fraction", 0 < self.probe_test_fraction < 1, "must lie in (0, 1)"),
            ("seed", self.seed >= 0, "must be >= 0"),
        ]
        for name, ok, problem in checks:
            if not ok:
                raise ConfigError(f"dino parameter {name!r} = {getattr(self, name)!r} {problem}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DinoConfig:
        """The named preset (``"smoke"`` or ``"default"``) with ``overrides`` applied.

        Raises:
            ConfigError: for an unknown preset name, an unknown key or an invalid value.
        """
        return config_from_preset(cls, PRESETS, name, overrides, what="dino")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DinoConfig:
        """Build from a (possibly partial) dict; missing fields take their defaults.

        Raises:
            ConfigError: naming the first unknown key, or the field with an invalid value.
        """
        return config_from_dict(cls, data, what="dino")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (pairs as lists)."""
        return config_to_dict(self)


def _is_scale(pair: tuple[float, float]) -> bool:
    return 0 < pair[0] <= pair[1] <= 1


def _is_jitter(strengths: tuple[float, float, float, float]) -> bool:
    return all(0 <= v <= 1 for v in strengths[:3]) and 0 <= strengths[3] <= 0.5
