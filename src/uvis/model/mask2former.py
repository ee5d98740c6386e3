"""The per-frame VIS model: a MinVIS-style Mask2Former built on ``transformers``.

UVIS §3.2 trains MinVIS's image-level Mask2Former (Cheng et al., CVPR 2022): a convolutional
backbone, a pixel decoder with multi-scale deformable attention, a masked-attention transformer
decoder over ``N_q`` learnable queries, a class head and mask embeddings dotted with per-pixel
features. The network, its Hungarian matcher and its losses (class cross-entropy with a
down-weighted "no object" class, mask BCE and dice on points sampled by uncertainty, deep
supervision on every decoder layer) are ``transformers``' ``Mask2FormerForUniversalSegmentation``,
whose deformable attention is plain PyTorch (no compiled CUDA op). The backbone is a ``timm``
ResNet, whose state-dict keys are those of torchvision's ResNets, so ImageNet classification
weights load as published.

Named configurations live in :data:`MODEL_CONFIGS` and are built by :func:`create_vis_model`
(the ``timm.create_model`` idiom):

* ``minvis_r50`` - the paper's: ResNet-50 from ImageNet classification weights with frozen
  BatchNorm (detectron2's ``FrozenBN``, MinVIS's R50 setting), hidden width 256, 100 queries,
  6 deformable pixel-decoder layers, ``DEC_LAYERS`` 10 (9 masked-attention layers plus the
  prediction from the learnable queries), 8 heads, feed-forward 2048, 12,544 sampled points,
  test size 360 (short side) / 1333 (long side cap), as MinVIS's YouTube-VIS R50 config.
* ``uvis-tiny`` - the embedded default for the 96 x 128 synthetic world: timm's 0.4 M-parameter
  ``test_resnet`` with trainable BatchNorm, hidden width 64, 16 queries (the world has at most
  4 objects per frame), 2 pixel-decoder and 4 decoder layers, 256 sampled points (the mask
  logits of a 96 x 128 frame have 768 pixels); 0.7 M parameters, about 76 ms of CPU per
  training step of 4 frames at one thread (width 128, 32 queries and 1,024 points at MinVIS's
  two scales: 234 ms; ``benchmarks/bench_vis_profile.py``).
* ``uvis-smoke`` - the same family at width 32 with 8 queries, for tests (seconds).

Inputs follow detectron2's conventions, as the original code does: RGB in 0..255 normalised
with ImageNet mean and std, resized so the short side is a given length unless the long side
would exceed ``max_size`` (:func:`shortest_edge_size`), zero-padded (after normalisation) to a
multiple of 32 at the bottom and right (:meth:`VisModel.pixel_batch`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn
from transformers import (
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    TimmBackboneConfig,
)
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerForUniversalSegmentationOutput,
    Mask2FormerLoss,
)

from uvis.checkpoints import load_torch_file
from uvis.errors import ConfigError, DataError
from uvis.foundation.checkpoints import mismatch_parts, state_dict_mismatch
from uvis.foundation.weights import resolve_weights
from uvis.presets import check_settings, coerce_like, config_to_dict

#: ImageNet mean and standard deviation of RGB values in 0..255 (detectron2's, MinVIS's).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
#: Backbone stages fed to the pixel decoder (timm feature indices of ResNet stages 2-5, at
#: strides 4, 8, 16 and 32); the deformable attention runs on the last three.
BACKBONE_STAGES = (1, 2, 3, 4)
BACKBONE_STRIDES = (4, 8, 16, 32)
#: Mask logits are predicted at 1/4 of the (padded) input resolution.
MASK_STRIDE = 4


@dataclass(frozen=True)
class VisModelConfig:
    """Architecture, loss weights and input sizes of a VIS model (saved with its checkpoints).

    Attributes:
        name: the :data:`MODEL_CONFIGS` entry this was derived from.
        backbone: timm ResNet name (features of stages 2-5 are used).
        freeze_backbone_norm: BatchNorm layers of the backbone frozen (detectron2's FrozenBN, for
            pretrained backbones) rather than trained (for backbones trained from scratch).
        hidden_dim: width of the pixel decoder, the mask features and the transformer decoder
            (Mask2Former's ``CONVS_DIM`` = ``MASK_DIM`` = ``HIDDEN_DIM``).
        num_queries: learnable queries ``N_q``.
        encoder_layers: deformable-attention layers of the pixel decoder.
        decoder_layers: Mask2Former's ``DEC_LAYERS``: masked-attention layers plus one (the
            prediction from the learnable queries themselves is supervised too).
        num_heads: attention heads (pixel decoder and transformer decoder).
        dim_feedforward: feed-forward width of the transformer decoder.
        encoder_feedforward_dim: feed-forward width of the pixel decoder.
        train_num_points, oversample_ratio, importance_sample_ratio: points on which mask
            losses are computed (PointRend-style uncertainty sampling).
        class_weight, mask_weight, dice_weight, no_object_weight: loss (and matching cost)
            weights; the last is the cross-entropy weight of the "no object" class.
        test_short_side, max_size: inference resize (short side, cap of the long side);
            training scales are multiples of ``test_short_side`` (see ``TrainConfig.scales``).
        size_divisibility: inputs are padded to a multiple of this.
        pixel_mean, pixel_std: RGB normalisation (0..255 scale).
    """

    name: str
    backbone: str
    freeze_backbone_norm: bool
    hidden_dim: int
    num_queries: int
    encoder_layers: int
    decoder_layers: int
    num_heads: int
    dim_feedforward: int
    encoder_feedforward_dim: int
    train_num_points: int
    test_short_side: int
    max_size: int
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("pixel_mean", "pixel_std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ConfigError(f"model setting {name!r} must be 3 numbers, got {value}")
            object.__setattr__(self, name, value)
        checks = {
            "hidden_dim": self.hidden_dim >= 8 and self.hidden_dim % self.num_heads == 0,
            "num_queries": self.num_queries >= 1,
            "encoder_layers": self.encoder_layers >= 1,
            "decoder_layers": self.decoder_layers >= 2,
            "num_heads": self.num_heads >= 1,
            "dim_feedforward": self.dim_feedforward >= 1,
            "encoder_feedforward_dim": self.encoder_feedforward_dim >= 1,
            "train_num_points": self.train_num_points >= 1,
            "oversample_ratio": self.oversample_ratio >= 1,
            "importance_sample_ratio": 0 <= self.importance_sample_ratio <= 1,
            "class_weight": self.class_weight >= 0,
            "mask_weight": self.mask_weight >= 0,
            "dice_weight": self.dice_weight >= 0,
            "no_object_weight": 0 <= self.no_object_weight <= 1,
            "test_short_side": self.test_short_side >= 8,
            "max_size": self.max_size >= self.test_short_side,
            "size_divisibility": self.size_divisibility >= 1
            and self.size_divisibility % BACKBONE_STRIDES[-1] == 0,
            "pixel_std": all(s > 0 for s in self.pixel_std),
        }
        check_settings(self, checks, "model")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields."""
        return config_to_dict(self)


#: The named model configurations (see the module docstring).
MODEL_CONFIGS: dict[str, VisModelConfig] = {
    c.name: c
    for c in (
        VisModelConfig(
            name="minvis_r50",
            backbone="resnet50",
            freeze_backbone_norm=True,
            hidden_dim=256,
            num_queries=100,
            encoder_layers=6,
            decoder_layers=10,
            num_heads=8,
            dim_feedforward=2048,
            encoder_feedforward_dim=1024,
            train_num_points=12544,
            test_short_side=360,
            max_size=1333,
        ),
        VisModelConfig(
            name="uvis-tiny",
            backbone="test_resnet",
            freeze_backbone_norm=False,
            hidden_dim=64,
            num_queries=16,
            encoder_layers=2,
            decoder_layers=4,
            num_heads=4,
            dim_feedforward=256,
            encoder_feedforward_dim=128,
            train_num_points=256,
            test_short_side=96,
            max_size=1333,
        ),
        VisModelConfig(
            name="uvis-smoke",
            backbone="test_resnet",
            freeze_backbone_norm=False,
            hidden_dim=32,
            num_queries=8,
            encoder_layers=1,
            decoder_layers=2,
            num_heads=2,
            dim_feedforward=64,
            encoder_feedforward_dim=64,
            train_num_points=256,
            test_short_side=32,
            max_size=1333,
        ),
    )
}


def model_config(name: str, **overrides: Any) -> VisModelConfig:
    """The named configuration with ``overrides`` (field values) applied.

    Raises:
        ConfigError: for an unknown name or field, or an invalid value.
    """
    if name not in MODEL_CONFIGS:
        raise ConfigError(f"unknown VIS model {name!r}; known: {sorted(MODEL_CONFIGS)}")
    base = MODEL_CONFIGS[name]
    known = {f.name for f in dataclasses.fields(VisModelConfig)} - {"name"}
    values = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown VIS model setting {key!r}; known: {sorted(known)}")
        values[key] = coerce_like(value, getattr(base, key), f"VIS model setting {key!r}")
    return dataclasses.replace(base, **values)


def shortest_edge_size(height: int, width: int, short_side: int, max_size: int) -> tuple[int, int]:
    """detectron2's ``ResizeShortestEdge`` output size ``(height, width)``.

    The image is scaled so its short side is ``short_side``, unless its long side would then
    exceed ``max_size``, in which case the long side is ``max_size``; sizes are rounded to the
    nearest pixel.
    """
    scale = short_side / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB image resized to ``(height, width, 3)`` (PIL bilinear).

    PIL's bilinear filter, as detectron2's ``ResizeTransform`` uses for images (it widens its
    support when shrinking, so downscaling is antialiased).
    """
    if image.shape[:2] == (height, width):
        return image
    return np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))


class DistributedMask2FormerLoss(Mask2FormerLoss):
    """``transformers``' Mask2Former criterion, normalised by the masks of *all* processes.

    Mask2Former divides the mask and dice losses by the number of target masks averaged over
    processes (``num_masks`` all-reduced, as in the original ``SetCriterion``); ``transformers``
    does so only under ``accelerate``. Under ``torch.distributed`` this does it with an
    all-reduce, so that the gradient DDP averages is the same whatever the number of processes.
    """

    def get_num_masks(
        self, class_labels: Sequence[torch.Tensor], device: torch.device
    ) -> torch.Tensor:
        """Target masks per process, averaged over processes, at least 1."""
        num_masks = torch.as_tensor(
            float(sum(len(labels) for labels in class_labels)), dtype=torch.float, device=device
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num_masks)
            num_masks = num_masks / dist.get_world_size()
        return torch.clamp(num_masks, min=1)


@contextlib.contextmanager
def _quiet_transformers_config() -> Iterator[None]:
    """Silence Mask2FormerConfig's warning that only Swin backbones are "supported".

    Any ``transformers`` backbone producing four feature maps at strides 4-32 works; the
    warning would be printed by every process of every run.
    """
    config_logger = logging.getLogger("transformers.models.mask2former.configuration_mask2former")
    level = config_logger.level
    config_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        config_logger.setLevel(level)


def _transformers_config(config: VisModelConfig, num_classes: int) -> Mask2FormerConfig:
    """The ``transformers`` configuration of ``config`` with ``num_classes`` real classes."""
    backbone = TimmBackboneConfig(
        backbone=config.backbone,
        out_indices=list(BACKBONE_STAGES),
        freeze_batch_norm_2d=config.freeze_backbone_norm,
    )
    with _quiet_transformers_config():
        return Mask2FormerConfig(
            backbone_config=backbone,
            num_labels=num_classes,
            feature_size=config.hidden_dim,
            mask_feature_size=config.hidden_dim,
            hidden_dim=config.hidden_dim,
            encoder_feedforward_dim=config.encoder_feedforward_dim,
            encoder_layers=config.encoder_layers,
            decoder_layers=config.decoder_layers,
            num_attention_heads=config.num_heads,
            dim_feedforward=config.dim_feedforward,
            dropout=0.0,
            num_queries=config.num_queries,
            no_object_weight=config.no_object_weight,
            class_weight=config.class_weight,
            mask_weight=config.mask_weight,
            dice_weight=config.dice_weight,
            train_num_points=config.train_num_points,
            oversample_ratio=config.oversample_ratio,
            importance_sample_ratio=config.importance_sample_ratio,
            feature_strides=list(BACKBONE_STRIDES),
            common_stride=MASK_STRIDE,
            use_auxiliary_loss=True,
        )


class VisModel(nn.Module):
    """A Mask2Former for ``num_classes`` classes, with its input conventions.

    ``forward`` takes a batch made by :meth:`pixel_batch` and returns ``transformers``' output
    (``class_queries_logits`` ``(B, Q, C + 1)``, ``masks_queries_logits`` ``(B, Q, Hp/4, Wp/4)``,
    and in training mode the per-layer predictions for deep supervision); :meth:`losses` gives
    the weighted MinVIS losses and :meth:`query_embeddings` the query embeddings MinVIS tracks.
    """

    def __init__(self, config: VisModelConfig, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"a VIS model needs at least one class, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.mask2former = Mask2FormerForUniversalSegmentation(
            _transformers_config(config, num_classes)
        )
        criterion = self.mask2former.criterion
        self.mask2former.criterion = DistributedMask2FormerLoss(
            config=self.mask2former.config, weight_dict=criterion.weight_dict
        )
        mean = torch.tensor(config.pixel_mean).view(3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer(
            "pixel_std", torch.tensor(config.pixel_std).view(3, 1, 1), persistent=False
        )

    @property
    def backbone(self) -> nn.Module:
        """The timm ResNet (its state-dict keys are torchvision's, without ``fc``)."""
        return self.mask2former.model.pixel_level_module.encoder._backbone

    def pixel_batch(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalise ``(3, h, w)`` uint8 RGB images and zero-pad them into one batch.

        Padding goes at the bottom and right, to the largest height and width of the batch
        rounded up to ``size_divisibility`` (detectron2's ``ImageList.from_tensors``).
        """
        div = self.config.size_divisibility
        height = -(-max(int(img.shape[1]) for img in images) // div) * div
        width = -(-max(int(img.shape[2]) for img in images) // div) * div
        batch = self.pixel_mean.new_zeros((len(images), 3, height, width))
        for out, img in zip(batch, images, strict=True):
            image = img.to(self.pixel_mean.device, non_blocking=True).float()
            out[:, : img.shape[1], : img.shape[2]] = (image - self.pixel_mean) / self.pixel_std
        return batch

    def forward(self, pixel_values: torch.Tensor) -> Mask2FormerForUniversalSegmentationOutput:
        """Predictions for a batch; per-layer predictions are kept in training mode only."""
        return self.mask2former(pixel_values=pixel_values, output_auxiliary_logits=self.training)

    def losses(
        self,
        outputs: Mask2FormerForUniversalSegmentationOutput,
        mask_labels: Sequence[torch.Tensor],
        class_labels: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """MinVIS's weighted losses of every decoder layer (Hungarian matching per layer).

        ``mask_labels[i]`` are image ``i``'s target masks ``(N_i, Hp, Wp)`` (float 0/1, padded
        like the input) and ``class_labels[i]`` their class indices ``(N_i,)``; ``N_i`` may be 0
        (every query is then taught "no object"). Keys: ``loss_cross_entropy``, ``loss_mask``,
        ``loss_dice`` for the last layer and the same with ``_<k>`` for layer ``k``.
        """
        return self.mask2former.get_loss_dict(
            masks_queries_logits=outputs.masks_queries_logits,
            class_queries_logits=outputs.class_queries_logits,
            mask_labels=list(mask_labels),
            class_labels=list(class_labels),
            auxiliary_predictions=outputs.auxiliary_logits,
        )

    def query_embeddings(self, outputs: Mask2FormerForUniversalSegmentationOutput) -> torch.Tensor:
        """``(B, Q, D)`` embeddings of the last decoder layer, as MinVIS tracks them.

        MinVIS's ``pred_embds`` are the decoder's final LayerNorm applied to the last layer's
        output: the features the class head and the mask embedding read. ``transformers``
        returns the output before that LayerNorm (``transformer_decoder_last_hidden_state``).
        """
        decoder = self.mask2former.model.transformer_module.decoder
        return decoder.layernorm(outputs.transformer_decoder_last_hidden_state)


def create_vis_model(
    name: str,
    num_classes: int,
    *,
    backbone_weights: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> VisModel:
    """Build the named VIS model (:data:`MODEL_CONFIGS`) for ``num_classes`` classes.

    The transformer is randomly initialised; the backbone too unless ``backbone_weights`` is
    given: a local file of ImageNet classification weights in the torchvision/timm ResNet
    state-dict format, or a known weight name of :mod:`uvis.foundation.weights` (family
    ``resnet``). ``overrides`` replace fields of the named :class:`VisModelConfig`. Nothing
    is downloaded.

    Raises:
        ConfigError: for an unknown name or setting.
        MissingWeightsError: when ``backbone_weights`` is not available locally.
        DataError: naming the weights file when it does not fit the backbone.
    """
    config = model_config(name, **overrides)
    path = None if backbone_weights is None else resolve_weights(backbone_weights, "resnet")
    model = VisModel(config, num_classes)
    if path is not None:
        load_backbone_weights(model, path)
    return model


def load_backbone_weights(model: VisModel, path: Path) -> None:
    """Load an ImageNet classification ResNet state dict into ``model``'s backbone.

    The file is torchvision's (``resnet50-0676ba61.pth``) or timm's format (the same keys; a
    ``.safetensors`` file is read as such). The classifier (``fc.*``) and BatchNorm's
    ``num_batches_tracked`` counters are not part of the backbone and are ignored; any other
    missing or unexpected key or shape mismatch raises :class:`DataError` naming the file.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_torch_file(path, what="a PyTorch state dict")
    except DataError:
        raise
    except Exception as exc:  # safetensors raises many types for foreign files
        raise DataError(path, f"cannot read as a safetensors state dict: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(
            path, f"not a {model.config.backbone} state dict (expected a dict of tensors)"
        )
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith("fc.") and not k.endswith(".num_batches_tracked")
    }
    backbone = model.backbone
    expected = backbone.state_dict()
    problems = mismatch_parts(
        *state_dict_mismatch(state, expected, optional=lambda k: k.endswith(".num_batches_tracked"))
    )
    if problems:
        raise DataError(
            path,
            f"not a torchvision/timm {model.config.backbone} state dict: {', '.join(problems)}",
        )
    backbone.load_state_dict(state, strict=False)
