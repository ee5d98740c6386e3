"""The tag-based bottom-up network (Kini & Shah, §III-A to D), with every ablation switch.

A clip of ``T`` frames is one volume ``(B, 3, T, H, W)``; the network returns one tag per pixel
and frame and, with the semantic branch, per-pixel class logits (background first):

1. **Encoder** (:class:`R2Plus1DEncoder`): a (2+1)D ResNet, torchvision's R(2+1)D-18 building
   blocks with configurable widths; ``(64, 128, 256, 512)`` x 2 blocks is R(2+1)D-18 itself and
   loads its Kinetics-400 weights (:func:`load_r2plus1d_weights`). Every stage after the first
   halves time and space.
2. **Location embedding** (:class:`LocationEmbedding`): x-y coordinate maps, projected to the
   encoder's channels and added to its deepest features ``f_t``.
3. **Spatio-temporal attention** (:class:`SpatioTemporalAttention`): each frame's pixels attend
   to the pixels of every frame separately; the attended features are pooled across time and
   added to the frame's own, giving ``u_t``.
4. **Bottleneck** (:class:`Bottleneck`): compresses ``u`` to ``feature_dim`` channels at the
   working resolution ``(T, H / s, W / s)``. The paper's network predicts per-frame, per-pixel
   outputs but its text does not say how the encoder's strides are undone; here every encoder
   stage joins through a lateral 1x1x1 projection resampled to the working resolution (an
   FPN-style sum), refined by a (2+1)D convolution.
5. **Tag generator** (:class:`TagGenerator`): one unbounded tag ``p_t`` per pixel and frame.
6. **Tag-based attention** (:class:`TagAttention`): the tags of all frames attend to each other;
   the weight of pixel ``j`` for pixel ``i`` is ``softmax_j(-(p_i - p_j)^2)``, the inner product
   of Fig. 3 in the form ``2 p_i p_j - p_j^2`` (equal under the softmax), so pixels re-weight
   the features of pixels with similar tags, in any frame: ``w_t``.
7. **Self-attention** (:class:`FrameSelfAttention`): non-local attention within each frame of
   the bottleneck features: ``v_t``.
8. **Semantic decoder** (:class:`SemanticDecoder`): ``w`` and ``v`` (the connectors) joined
   through a 1x1x1 bottleneck, a (2+1)D convolution and a classifier over background + classes.
9. **Instance class head** (:class:`RoiClassHead`, ``class_head="rois"``; uvis's addition):
   the class of a whole instance from crops of its box in the encoder's finest stage, trained
   on the ground-truth instance masks and applied to the instances the tags give.

Tags and logits are predicted at the working resolution and upsampled (bilinear) to the input
size. Inputs are RGB in 0..255, normalised with the Kinetics statistics of torchvision's video
models. Attention runs through ``scaled_dot_product_attention`` (memory-efficient kernels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D
from torchvision.ops import masks_to_boxes, roi_align

from uvis.checkpoints import load_torch_file
from uvis.errors import DataError
from uvis.foundation.checkpoints import mismatch_parts, state_dict_mismatch
from uvis.foundation.weights import resolve_weights
from uvis.tagvis.config import TagVisConfig

#: RGB mean and standard deviation (0..1 scale) of torchvision's Kinetics-400 video models.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
#: Channels between the stem's spatial and temporal convolutions, per output channel
#: (torchvision's R(2+1)D stem: 45 for 64).
_STEM_MID_RATIO = 45 / 64


# --------------------------------------------------------------------------------------------
# Encoder


class R2Plus1DEncoder(nn.Module):
    """A (2+1)D ResNet: torchvision's R(2+1)D stem and ``BasicBlock`` stages, any widths.

    Module names are torchvision's (``stem``, ``layer1`` ...), so with R(2+1)D-18's widths and
    depths its state dict (less ``fc``) loads as is. :meth:`forward` returns every stage's
    output, finest first.
    """

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...]) -> None:
        super().__init__()
        first = widths[0]
        mid = max(1, round(first * _STEM_MID_RATIO))
        self.stem = nn.Sequential(
            nn.Conv3d(3, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid, first, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(first),
            nn.ReLU(inplace=True),
        )
        self.stage_names: list[str] = []
        inplanes = first
        for i, (planes, depth) in enumerate(zip(widths, depths, strict=True)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(
                    nn.Conv3d(inplanes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm3d(planes),
                )
            blocks = [BasicBlock(inplanes, planes, Conv2Plus1D, stride, downsample)]
            blocks += [BasicBlock(planes, planes, Conv2Plus1D) for _ in range(depth - 1)]
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            inplanes = planes

    def forward(self, video: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(video)
        stages = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            stages.append(x)
        return stages


def load_r2plus1d_weights(encoder: R2Plus1DEncoder, path: str | os.PathLike[str]) -> None:
    """Load torchvision's ``r2plus1d_18`` state dict (Kinetics-400) into ``encoder``.

    The classifier (``fc.*``) is ignored; any other missing or unexpected key or shape mismatch
    (an encoder of other widths, another architecture's file) is a :class:`DataError`.
    """
    state = load_torch_file(path, what="a PyTorch state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "not an r2plus1d_18 state dict (expected a dict of tensors)")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    problems = mismatch_parts(*state_dict_mismatch(state, encoder.state_dict()))
    if problems:
        raise DataError(
            path,
            f"not a torchvision r2plus1d_18 state dict for this encoder: {', '.join(problems)}",
        )
    encoder.load_state_dict(state)


# --------------------------------------------------------------------------------------------
# Modules after the encoder


def coordinate_maps(frames: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """``(2, T, H, W)`` x and y coordinates of pixel centres, each in ``(-1, 1)``."""
    ys = (torch.arange(height, device=device) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=device) + 0.5) / width * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y])[:, None].expand(2, frames, height, width)


class LocationEmbedding(nn.Module):
    """x-y coordinate maps projected to ``channels`` and added to the features (§III, Table III
    "Location Embedding")."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.project = nn.Conv3d(2, channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = features.shape
        coords = coordinate_maps(t, h, w, features.device).to(features.dtype)
        return features + self.project(coords[None].expand(b, -1, -1, -1, -1))


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> ``(B, T, H * W, C)``, channels contiguous (as the fused attention
    kernels need)."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c).contiguous()


def _volume(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, T, H * W, C)`` -> ``(B, C, T, H, W)``."""
    b, t, _, c = tokens.shape
    return tokens.reshape(b, t, height, width, c).permute(0, 4, 1, 2, 3)


class SpatioTemporalAttention(nn.Module):
    """Frame ``t`` attends to every frame ``t'`` separately (softmax over ``t'``'s pixels); the
    ``T`` attended features are averaged (pooling across time) and added: ``u_t``."""

    def __init__(self, channels: int, attention_dim: int) -> None:
        super().__init__()
        self.query = nn.Conv3d(channels, attention_dim, 1)
        self.key = nn.Conv3d(channels, attention_dim, 1)
        self.value = nn.Conv3d(channels, attention_dim, 1)
        self.out = nn.Conv3d(attention_dim, channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = features.shape
        q, k, v = (_tokens(m(features)) for m in (self.query, self.key, self.value))
        d = q.shape[-1]
        # Batch (B, t) x heads t': every (frame, other frame) pair at once; fused kernels need
        # four dimensions.
        pairs = F.scaled_dot_product_attention(
            q[:, :, None].expand(b, t, t, h * w, d).reshape(b * t, t, h * w, d),
            k[:, None].expand(b, t, t, h * w, d).reshape(b * t, t, h * w, d),
            v[:, None].expand(b, t, t, h * w, d).reshape(b * t, t, h * w, d),
        )
        pooled = pairs.mean(dim=1).reshape(b, t, h * w, d)
        return features + self.out(_volume(pooled, h, w))


class Bottleneck(nn.Module):
    """Every encoder stage (the deepest after attention) projected to ``dim`` channels,
    resampled to the working resolution, summed and refined by a (2+1)D convolution."""

    def __init__(self, widths: tuple[int, ...], dim: int) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv3d(c, dim, 1) for c in widths)
        self.norm = nn.BatchNorm3d(dim)
        self.refine = nn.Sequential(
            Conv2Plus1D(dim, dim, dim), nn.BatchNorm3d(dim), nn.ReLU(inplace=True)
        )

    def forward(self, stages: list[torch.Tensor], size: tuple[int, int, int]) -> torch.Tensor:
        total = None
        for lateral, x in zip(self.laterals, stages, strict=True):
            y = lateral(x)
            if y.shape[3] > size[1]:  # finer than the working resolution: average-pool space
                y = F.adaptive_avg_pool3d(y, (y.shape[2], size[1], size[2]))
            if tuple(y.shape[2:]) != size:  # coarser in time or space: interpolate
                y = F.interpolate(y, size=size, mode="trilinear", align_corners=False)
            total = y if total is None else total + y
        return self.refine(F.relu(self.norm(total)))


class TagGenerator(nn.Module):
    """One tag per pixel and frame from the bottleneck features: ``(B, T, h, w)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            Conv2Plus1D(dim, dim, dim), nn.BatchNorm3d(dim), nn.ReLU(inplace=True)
        )
        self.head = nn.Conv3d(dim, 1, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(features))[:, 0]


class TagAttention(nn.Module):
    """Tags of all frames attend to each other (Fig. 3) and re-weight the features: pixel ``i``
    gets ``sum_j softmax_j(-(p_i - p_j)^2) V x_j`` over the pixels ``j`` of the whole clip, ``w``.

    With ``pool`` > 1 the keys are ``pool x pool`` cells (mean tag, mean feature): the cost falls
    by ``pool^2`` and a pixel still attends to every part of every frame.
    """

    def __init__(self, dim: int, pool: int) -> None:
        super().__init__()
        self.pool = pool
        self.value = nn.Conv3d(dim, dim, 1)
        self.out = nn.Conv3d(dim, dim, 1)

    def forward(self, tags: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = features.shape
        values = self.value(features)
        key_tags = tags[:, None]
        if self.pool > 1:
            cell = (1, self.pool, self.pool)
            values = F.avg_pool3d(values, cell, ceil_mode=True)
            key_tags = F.avg_pool3d(key_tags, cell, ceil_mode=True)
        p = tags.reshape(b, 1, -1, 1)
        k = key_tags.reshape(b, 1, -1, 1)
        # q_i . k_j = 2 p_i p_j - p_j^2, which equals -(p_i - p_j)^2 under a softmax over j;
        # zero-padded to the value width, as the fused (flash) kernels need (it adds nothing).
        query = torch.cat([2 * p, torch.ones_like(p), p.new_zeros(*p.shape[:3], c - 2)], dim=-1)
        key = torch.cat([k, -(k**2), k.new_zeros(*k.shape[:3], c - 2)], dim=-1)
        value = _tokens(values).reshape(b, 1, -1, c)
        out = F.scaled_dot_product_attention(query, key, value, scale=1.0)
        return self.out(_volume(out.reshape(b, t, h * w, c), h, w))


class FrameSelfAttention(nn.Module):
    """Non-local attention among the pixels of each frame (Fig. 4), added to its input: ``v``."""

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.query = nn.Conv3d(dim, attention_dim, 1)
        self.key = nn.Conv3d(dim, attention_dim, 1)
        self.value = nn.Conv3d(dim, attention_dim, 1)
        self.out = nn.Conv3d(attention_dim, dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _, _, _, h, w = features.shape
        q, k, v = (_tokens(m(features)) for m in (self.query, self.key, self.value))
        return features + self.out(_volume(F.scaled_dot_product_attention(q, k, v), h, w))


class SemanticDecoder(nn.Module):
    """Per-pixel logits over background + ``num_classes`` from the connected inputs, joined
    through a 1x1x1 bottleneck and a (2+1)D convolution."""

    def __init__(self, in_channels: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.join = nn.Sequential(
            nn.Conv3d(in_channels, dim, 1), nn.BatchNorm3d(dim), nn.ReLU(inplace=True)
        )
        self.body = nn.Sequential(
            Conv2Plus1D(dim, dim, dim), nn.BatchNorm3d(dim), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Conv3d(dim, num_classes + 1, 1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.body(self.join(torch.cat(inputs, dim=1))))


class RoiClassHead(nn.Module):
    """Class logits ``(N, C)`` of ``N`` instances from crops of the encoder's finest stage
    (uvis's addition, not in the paper; ``class_head="rois"``).

    In every frame where an instance has pixels, its box is cropped from the stage's map to
    ``size`` x ``size`` cells (``torchvision.ops.roi_align``, as Mask R-CNN's box head), the
    crop multiplied by the instance's mask cropped alike and joined with that mask; a small
    CNN embeds each crop, the frames' embeddings are averaged and a linear layer classifies.
    The crop brings every object to one scale, which a per-pixel classifier or a mask-pooled
    feature of small objects never sees.
    """

    def __init__(self, in_channels: int, dim: int, num_classes: int, size: int = 16) -> None:
        super().__init__()
        self.size = size
        layers: list[nn.Module] = []
        channels = in_channels + 1
        for out, pool in ((dim, True), (2 * dim, True), (2 * dim, False)):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out)]
            layers += [nn.ReLU(inplace=True)] + ([nn.MaxPool2d(2)] if pool else [])
            channels = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``features``: the finest stage ``(C, t, h, w)`` of one clip; ``masks`` ``(N, T, H,
        W)`` (bool, the input size); instances without pixels in any frame get the bias alone."""
        num, frames = masks.shape[:2]
        present = masks.flatten(2).any(dim=2)
        owner, frame = torch.nonzero(present, as_tuple=True)
        embedded = torch.zeros(num, self.classifier.in_features, device=features.device)
        if len(owner):
            crop_masks = masks[owner, frame].to(features.dtype)
            boxes = masks_to_boxes(crop_masks > 0)
            boxes[:, 2:] += 1  # the far edges of the last pixels
            first = torch.arange(len(owner), device=features.device, dtype=features.dtype)
            images = features.permute(1, 0, 2, 3)  # (t, C, h, w): one image per frame
            where = (frame * images.shape[0] // frames).to(features.dtype)
            scale = images.shape[-1] / masks.shape[-1]
            crops = roi_align(
                images, torch.cat([where[:, None], boxes], 1), self.size, scale, 2, aligned=True
            )
            shape = roi_align(
                crop_masks[:, None],
                torch.cat([first[:, None], boxes], 1),
                self.size,
                1.0,
                2,
                aligned=True,
            )
            per_crop = self.body(torch.cat([crops * shape, shape], dim=1))
            counts = torch.bincount(owner, minlength=num).clamp(min=1).to(per_crop.dtype)
            embedded = embedded.to(per_crop.dtype).index_add(0, owner, per_crop) / counts[:, None]
        return self.classifier(embedded)


# --------------------------------------------------------------------------------------------
# The network


@dataclass(frozen=True, eq=False)
class TagVisOutput:
    """``tags`` ``(B, T, H, W)`` and ``logits`` ``(B, 1 + C, T, H, W)`` (class 0 background;
    ``None`` without the semantic branch), both at the input resolution; ``class_features``
    what the instance class head reads (the encoder's finest stage ``(B, C, T, H/2, W/2)``;
    ``None`` without the head)."""

    tags: torch.Tensor
    logits: torch.Tensor | None
    class_features: torch.Tensor | None = None


def _upsample_frames(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``(B, C, T, h, w)`` to ``(B, C, T, *size)``, frame by frame."""
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    up = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    return up.reshape(b, t, c, *size).permute(0, 2, 1, 3, 4)


class TagVisNet(nn.Module):
    """The tag-based network for ``num_classes`` classes; modules switched off in ``config``
    are not built (no parameters, no gradient path)."""

    def __init__(self, config: TagVisConfig, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        widths, dim = config.encoder_widths, config.feature_dim
        deepest = widths[-1]
        self.encoder = R2Plus1DEncoder(widths, config.encoder_depths)
        self.location = LocationEmbedding(deepest) if config.location_embedding else None
        self.st_attention = (
            SpatioTemporalAttention(deepest, config.attention_dim)
            if config.spatio_temporal_attention
            else None
        )
        self.bottleneck = Bottleneck(widths, dim)
        self.tag_generator = TagGenerator(dim)
        self.tag_attention = (
            TagAttention(dim, config.tag_attention_pool) if config.tag_attention else None
        )
        self.self_attention = (
            FrameSelfAttention(dim, config.attention_dim) if config.self_attention else None
        )
        self.decoder = None
        if config.semantic:
            tag_channels = (dim if config.tag_attention else 1) if config.tag_connector else 0
            in_channels = tag_channels + (dim if config.self_connector else 0)
            self.decoder = SemanticDecoder(in_channels, dim, num_classes)
        self.class_head = None
        if config.class_head == "rois":
            self.class_head = RoiClassHead(widths[0], dim, num_classes)
        mean = torch.tensor(KINETICS_MEAN).reshape(1, 3, 1, 1, 1) * 255
        std = torch.tensor(KINETICS_STD).reshape(1, 3, 1, 1, 1) * 255
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def forward(self, video: torch.Tensor) -> TagVisOutput:
        """``video`` ``(B, 3, T, H, W)``, RGB 0..255 (any dtype), ``T`` and ``H, W`` multiples of
        the encoder's temporal and spatial strides."""
        x = (video.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        _, _, t, h, w = x.shape
        stages = self.encoder(x)
        f = stages[-1]
        if self.location is not None:
            f = self.location(f)
        u = self.st_attention(f) if self.st_attention is not None else f
        s = self.config.feature_stride
        features = self.bottleneck([*stages[:-1], u], (t, h // s, w // s))
        tags = self.tag_generator(features)
        logits = None
        if self.decoder is not None:
            inputs = []
            if self.config.tag_connector:
                inputs.append(
                    self.tag_attention(tags, features)
                    if self.tag_attention is not None
                    else tags[:, None]
                )
            if self.config.self_connector:
                inputs.append(
                    self.self_attention(features) if self.self_attention is not None else features
                )
            logits = _upsample_frames(self.decoder(inputs), (h, w))
        return TagVisOutput(
            tags=_upsample_frames(tags[:, None], (h, w))[:, 0],
            logits=logits,
            class_features=stages[0] if self.class_head is not None else None,
        )


def create_tagvis_model(config: TagVisConfig, num_classes: int) -> TagVisNet:
    """The network for ``config``, its encoder loaded from ``config.encoder_weights`` if set.

    Raises:
        MissingWeightsError: when the weights are not available locally.
        DataError: naming the weights file when it does not fit the encoder.
    """
    model = TagVisNet(config, num_classes)
    if config.encoder_weights is not None:
        load_r2plus1d_weights(model.encoder, resolve_weights(config.encoder_weights, "r2plus1d"))
    return model
