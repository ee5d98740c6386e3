"""The embedded stand-in for the Kinetics-400 weights of the tag-based model's encoder.

Kini & Shah fine-tune an R(2+1)D-18 pretrained on Kinetics-400 (``paper`` preset,
``encoder_weights: r2plus1d_18_kinetics``). The embedded default's narrow (2+1)D ResNet has no
such weights, and trained from scratch inside the tagging run it never learns the ten classes
(class accuracy at chance, benchmarks/RESULTS.md). ``uvis pretrain video-encoder`` stands in
for the video pretraining as ``uvis pretrain backbone`` does for ImageNet: the encoder, of the
tag-based model's widths and depths, learns to classify the synthetic world's captioned corpus,
each image shown as a static clip of ``clip_frames`` frames, and is saved in torchvision's
``r2plus1d_18`` state-dict layout (``stem.*``, ``layer<i>.*``, ``fc.*``), which
:func:`uvis.tagvis.model.load_r2plus1d_weights` reads as it reads the Kinetics file.

The optimisation (AdamW, one-cycle, flips and scale jitter) is the backbone stand-in's
(:func:`uvis.standins.backbone.fit_classifier`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uvis.presets import check_settings, config_from_preset
from uvis.standins.backbone import BackboneTrainConfig, train_corpus_classifier
from uvis.tagvis.config import TagVisConfig
from uvis.tagvis.model import KINETICS_MEAN, KINETICS_STD, R2Plus1DEncoder

_TAGVIS = TagVisConfig()
_TAGVIS_SMOKE = TagVisConfig.preset("smoke")

#: Presets of :class:`EncoderPretrainConfig`, each with the encoder of the tagvis preset of
#: the same name.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {
        "encoder_widths": _TAGVIS_SMOKE.encoder_widths,
        "encoder_depths": _TAGVIS_SMOKE.encoder_depths,
        "epochs": 2,
        "batch_size": 16,
    },
}


@dataclass(frozen=True)
class EncoderPretrainConfig(BackboneTrainConfig):
    """:class:`BackboneTrainConfig`'s optimisation for the (2+1)D encoder (saved with it).

    ``encoder_widths`` / ``encoder_depths`` must be the tag-based model's (defaults: the
    ``default`` tagvis preset's); each image is repeated over ``clip_frames`` frames. Default
    20 epochs: in a 30-epoch run on world seed 1 held-out accuracy was 99 % from epoch 18 on
    (benchmarks/RESULTS.md).
    """

    arch: str = "r2plus1d"
    epochs: int = 20
    encoder_widths: tuple[int, ...] = _TAGVIS.encoder_widths
    encoder_depths: tuple[int, ...] = _TAGVIS.encoder_depths
    clip_frames: int = 2

    def __post_init__(self) -> None:
        for name in ("encoder_widths", "encoder_depths", "scale_range"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        super().__post_init__()
        checks = {
            "arch": self.arch == "r2plus1d",
            "encoder_widths": len(self.encoder_widths) >= 2
            and all(w >= 4 for w in self.encoder_widths),
            "encoder_depths": len(self.encoder_depths) == len(self.encoder_widths)
            and all(d >= 1 for d in self.encoder_depths),
            "clip_frames": self.clip_frames >= 1,
        }
        check_settings(self, checks, "video encoder pretraining")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> EncoderPretrainConfig:
        """The ``smoke`` or ``default`` settings, with ``overrides``.

        Raises ConfigError for an unknown preset, an unknown key or a value of the wrong type.
        """
        return config_from_preset(cls, PRESETS, name, overrides, what="video encoder pretraining")


class StaticClipClassifier(nn.Module):
    """``encoder`` applied to each image repeated over ``clip_frames`` frames, its deepest
    stage (``channels`` wide) averaged over time and space, and a linear classifier (``fc``, as
    torchvision's)."""

    def __init__(
        self, encoder: R2Plus1DEncoder, channels: int, num_classes: int, clip_frames: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.clip_frames = clip_frames
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        clip = images[:, :, None].expand(-1, -1, self.clip_frames, -1, -1)
        return self.fc(self.encoder(clip)[-1].mean(dim=(2, 3, 4)))

    def r2plus1d_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's and classifier's weights under torchvision ``r2plus1d_18`` keys."""
        state = dict(self.encoder.state_dict())
        state.update({f"fc.{k}": v for k, v in self.fc.state_dict().items()})
        return state


def train_video_encoder(
    corpus_dir: Path,
    cfg: EncoderPretrainConfig,
    out: Path,
    *,
    progress: bool = True,
    threads: int = 1,
) -> dict[str, Any]:
    """Train the (2+1)D encoder to classify the captioned corpus as static clips.

    Writes ``out`` (torchvision ``r2plus1d_18`` layout, for ``tagvis`` ``encoder_weights``)
    and ``out`` with suffix ``.json`` (config, per-epoch log, held-out accuracy), both
    atomically; returns the report. Raises DataError naming the file for a bad corpus.
    """

    def build(num_classes: int) -> StaticClipClassifier:
        encoder = R2Plus1DEncoder(cfg.encoder_widths, cfg.encoder_depths)
        return StaticClipClassifier(encoder, cfg.encoder_widths[-1], num_classes, cfg.clip_frames)

    scale = 255.0
    return train_corpus_classifier(
        corpus_dir,
        cfg,
        out,
        build,
        mean=tuple(m * scale for m in KINETICS_MEAN),  # type: ignore[arg-type]
        std=tuple(s * scale for s in KINETICS_STD),  # type: ignore[arg-type]
        progress=progress,
        threads=threads,
        desc="pretrain video encoder",
        state_dict=lambda model: model.r2plus1d_state_dict(),
    )
