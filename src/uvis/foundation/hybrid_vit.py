"""A hybrid ViT: a small convolutional stem under timm's transformer blocks (``uvis_hybrid_vit``).

On the embedded world's few thousand small images, a ViT's linear patch embedding learns shape
slowly even with labels (``benchmarks/RESULTS.md``, "DINO stand-in: a CNN stem under the
ViT's blocks"). A hybrid ViT (Dosovitskiy et al. 2021, Sec. 3.1; Xiao et al., "Early
convolutions help transformers see better", 2021) feeds the transformer the feature map of a
few convolutions instead. Here the stem is ``log2(patch_size)`` blocks of 3x3
conv-BatchNorm-ReLU-2x2-maxpool (32, 64, ... channels, the last at ``embed_dim``), so the token
grid is the one of a ``patch_size`` linear embedding, then ``extra_stem_blocks`` blocks of the
same kind without pooling. ``stem_padding`` is the convolutions' ``padding_mode``: with
``"zeros"`` the frame's border tokens see a black frame around the image that interior tokens
never see, and DINO training can make them a cluster of their own, which MaskCut then cuts away
from the background (``benchmarks/RESULTS.md``, "DINO stand-in: the stem's zero padding");
``"replicate"`` pads with the edge pixels instead.

The model is a timm :class:`~timm.models.vision_transformer.VisionTransformer` whose
``patch_embed.proj`` is the stem; every other key name is a plain ViT's. So the DINO-format
loader, :func:`~uvis.foundation.ssl.last_block_keys` (MaskCut's features) and
:func:`~uvis.foundation.ssl.patch_size_of` serve it unchanged. Importing this module registers
the name in timm's model registry; :mod:`uvis.foundation.ssl` imports it.
"""

from __future__ import annotations

import itertools
from typing import Any

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

#: timm's registry name of the hybrid ViT.
HYBRID_VIT = "uvis_hybrid_vit"
# Keyword arguments timm's ``create_model`` adds for its pretrained-weight machinery, which
# ``VisionTransformer`` itself does not take (this architecture has no released weights).
_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
#: The stem convolutions' padding modes (``torch.nn.Conv2d``'s ``padding_mode``).
PADDING_MODES = ("zeros", "replicate", "reflect")


def conv_blocks(
    widths: list[int], *, pool: bool = True, padding_mode: str = "zeros"
) -> list[nn.Module]:
    """3x3 conv-BatchNorm-ReLU blocks between consecutive ``widths``, each followed by a 2x2
    max-pool when ``pool``; the convolutions pad by one pixel in ``padding_mode``."""
    layers: list[nn.Module] = []
    for cin, cout in itertools.pairwise(widths):
        conv = nn.Conv2d(cin, cout, 3, padding=1, padding_mode=padding_mode)
        layers += [conv, nn.BatchNorm2d(cout), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
    return layers


def cnn_stem(
    embed_dim: int, patch_size: int, extra_blocks: int = 0, padding_mode: str = "zeros"
) -> nn.Sequential:
    """The hybrid's stem: ``(B, 3, H, W)`` -> ``(B, embed_dim, H / patch_size, W / patch_size)``.

    Raises:
        ValueError: ``patch_size`` is not a power of two >= 2, ``extra_blocks`` < 0, or
            ``padding_mode`` is not one of :data:`PADDING_MODES`.
    """
    if patch_size < 2 or patch_size & (patch_size - 1):
        raise ValueError(f"patch_size must be a power of two >= 2, got {patch_size}")
    if extra_blocks < 0:
        raise ValueError(f"extra_stem_blocks must be >= 0, got {extra_blocks}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"stem_padding must be one of {PADDING_MODES}, got {padding_mode!r}")
    steps = patch_size.bit_length() - 1
    widths = [3] + [min(embed_dim, 32 << i) for i in range(steps - 1)] + [embed_dim]
    extra = conv_blocks([embed_dim] * (extra_blocks + 1), pool=False, padding_mode=padding_mode)
    return nn.Sequential(*conv_blocks(widths, padding_mode=padding_mode), *extra)


@register_model
def uvis_hybrid_vit(
    pretrained: bool = False,
    *,
    extra_stem_blocks: int = 1,
    stem_padding: str = "zeros",
    **kwargs: Any,
) -> VisionTransformer:
    """A :class:`VisionTransformer` built from ``kwargs`` with :func:`cnn_stem` as its patch
    embedding (``extra_stem_blocks`` unpooled blocks after the pooled ones, convolutions padded
    in ``stem_padding`` mode).

    Raises:
        ValueError: ``pretrained`` is set (there are no released weights), or the stem's
            arguments are invalid (:func:`cnn_stem`).
    """
    if pretrained:
        raise ValueError(f"{HYBRID_VIT} has no released weights: pass a checkpoint path instead")
    for key in _TIMM_ONLY_KWARGS:
        kwargs.pop(key, None)
    model = VisionTransformer(**kwargs)
    patch = model.patch_embed.patch_size
    if patch[0] != patch[1]:
        raise ValueError(f"{HYBRID_VIT} needs a square patch, got {tuple(patch)}")
    model.patch_embed.proj = cnn_stem(
        model.embed_dim, int(patch[0]), extra_stem_blocks, stem_padding
    )
    return model
