"""Self-supervised ViTs: build a timm ViT, load a DINO checkpoint, extract last-block keys.

The checkpoint format is the one of the official DINO release (Caron et al. 2021,
``dino_deitsmall8_pretrain.pth``, ``dino_vitbase8_pretrain.pth``): a plain ``state_dict`` of the
teacher backbone. Its key names (``cls_token``, ``pos_embed``, ``patch_embed.proj.weight``,
``blocks.N.norm1.weight``, ``blocks.N.attn.qkv.weight``, ``blocks.N.mlp.fc1.weight``, ...,
``norm.weight``) are exactly those of timm's ``VisionTransformer``, so no renaming is needed.
DINO *training* checkpoints (``checkpoint.pth``) hold ``{"teacher": ..., "student": ...}`` with
keys prefixed ``module.`` (DDP) and ``backbone.`` (DINO's multi-crop wrapper), plus the
projection head under ``head.``; :func:`read_dino_state_dict` unwraps both layouts, as DINO's own
``utils.load_pretrained_weights`` does. The embedded stand-in (:mod:`uvis.standins.dino`) saves
in the first layout, so the loader that serves the real weights is the one that runs here.

Images fed to these models are RGB in ``[0, 1]`` normalised with the ImageNet mean and standard
deviation (:func:`normalise_images`), as in DINO and CutLER.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from uvis.checkpoints import load_torch_file
from uvis.errors import ConfigError, DataError
from uvis.foundation import hybrid_vit
from uvis.foundation.checkpoints import mismatch_parts, state_dict_mismatch
from uvis.foundation.weights import resolve_weights

#: timm name of uvis's hybrid ViT (a CNN stem under ViT blocks), registered by importing
#: :mod:`uvis.foundation.hybrid_vit`; built like any timm ViT by :func:`build_vit`.
HYBRID_VIT = hybrid_vit.HYBRID_VIT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Prefixes that DINO training checkpoints put before the backbone's keys: DistributedDataParallel
# adds ``module.``, DINO's MultiCropWrapper ``backbone.``.
_WRAPPER_PREFIXES = ("module.", "backbone.")
# Keys under this prefix belong to a head (DINO's projection head, or a classifier) that the
# backbone built with ``num_classes=0`` does not have.
_HEAD_PREFIX = "head."


class PatchKeys(NamedTuple):
    """Per-patch features of a batch: ``keys`` ``(B, h * w, D)`` in row-major patch order."""

    keys: torch.Tensor
    grid_hw: tuple[int, int]


def normalise_images(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` ``(B, 3, H, W)`` RGB (or float in ``[0, 1]``) -> ImageNet-normalised float32."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def describe_arch(arch: str, arch_kwargs: Mapping[str, Any] | None) -> str:
    """``arch`` with its keyword overrides, as written in messages (``vit_x(depth=4)``)."""
    if not arch_kwargs:
        return arch
    return f"{arch}({', '.join(f'{k}={v!r}' for k, v in arch_kwargs.items())})"


def build_vit(
    arch: str,
    *,
    arch_kwargs: Mapping[str, Any] | None = None,
    img_size: int | tuple[int, int] | None = None,
) -> VisionTransformer:
    """A randomly initialised timm ViT backbone (no classifier, any input size).

    ``arch`` is a timm model name; ``arch_kwargs`` override its constructor arguments (e.g.
    ``{"patch_size": 8, "depth": 4}``); ``img_size`` sets the position-embedding grid (other
    sizes still work: the model resamples position embeddings on the fly).

    Raises:
        ConfigError: when timm does not know ``arch`` or rejects ``arch_kwargs``, or when the
            model is not a ViT.
    """
    import timm

    kwargs = dict(arch_kwargs or {})
    if img_size is not None:
        kwargs["img_size"] = img_size
    try:
        model = timm.create_model(
            arch, pretrained=False, num_classes=0, dynamic_img_size=True, **kwargs
        )
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build ViT {describe_arch(arch, kwargs)!r}: {exc}") from exc
    if not isinstance(model, VisionTransformer):
        raise ConfigError(f"{arch!r} is a {type(model).__name__}, not a timm VisionTransformer")
    return model


def _strip_wrapper_prefixes(key: str) -> str:
    """``module.backbone.blocks.0...`` -> ``blocks.0...`` (leading wrapper prefixes only)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def read_dino_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The backbone ``state_dict`` in a DINO checkpoint, with wrapper prefixes and head removed.

    Accepts the released format (a plain ``state_dict``) and DINO training checkpoints
    (``{"teacher": state_dict, "student": ..., "args": Namespace, ...}``, of which the teacher is
    taken, as DINO's evaluation scripts do). Loading is ``weights_only`` (no arbitrary code).

    Raises:
        DataError: naming ``path`` when it is not a PyTorch file or holds no tensor dict.
    """
    obj = load_torch_file(path, what="a PyTorch checkpoint", safe_globals=[argparse.Namespace])
    if isinstance(obj, Mapping) and isinstance(obj.get("teacher"), Mapping):
        obj = obj["teacher"]
    if not isinstance(obj, Mapping) or not obj:
        raise DataError(path, "not a DINO checkpoint: expected a state dict of tensors")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise DataError(path, f"not a DINO checkpoint: entry {key!r} is not a tensor")
        name = _strip_wrapper_prefixes(str(key))
        if not name.startswith(_HEAD_PREFIX):
            state[name] = value
    return state


def _patch_grid_of(pos_embed: torch.Tensor, num_prefix_tokens: int) -> tuple[int, int] | None:
    """The square patch grid of a ``(1, prefix + g * g, D)`` position embedding, else ``None``."""
    n = pos_embed.shape[1] - num_prefix_tokens
    side = round(n**0.5)
    return (side, side) if n > 0 and side * side == n else None


def fit_pos_embed(
    state: dict[str, torch.Tensor], model: VisionTransformer
) -> dict[str, torch.Tensor]:
    """Resample the checkpoint's position embedding to the model's patch grid when they differ.

    DINO checkpoints are trained at 224 px (a 28 x 28 grid at patch 8); a model built for
    another ``img_size`` gets the embedding interpolated bicubically (timm's
    ``resample_abs_pos_embed``, the resampling its ``dynamic_img_size`` forward also uses). The
    class-token entry is kept as is. Embeddings of another width are left alone (reported as a
    shape mismatch by :func:`load_dino_checkpoint`).
    """
    file_pe = state.get("pos_embed")
    model_pe = model.pos_embed
    if file_pe is None or file_pe.shape == model_pe.shape or file_pe.ndim != 3:
        return state
    if file_pe.shape[-1] != model_pe.shape[-1]:
        return state
    prefix = 0 if model.no_embed_class else model.num_prefix_tokens
    old_grid = _patch_grid_of(file_pe, prefix)
    if old_grid is None:
        return state
    new_grid = model.patch_embed.grid_size
    resampled = resample_abs_pos_embed(
        file_pe.float(), new_size=list(new_grid), old_size=list(old_grid), num_prefix_tokens=prefix
    )
    return {**state, "pos_embed": resampled.to(file_pe.dtype)}


def checkpoint_mismatch(
    state: Mapping[str, torch.Tensor], model: torch.nn.Module
) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys and shape mismatches (``key: file (..) vs model (..)``)."""
    return state_dict_mismatch(state, model.state_dict())


def load_dino_checkpoint(
    model: VisionTransformer, path: str | os.PathLike[str], arch_name: str
) -> None:
    """Load a DINO-format checkpoint into ``model`` (strictly: every key, every shape).

    Raises:
        DataError: naming ``path``: ``not a <arch_name> checkpoint: N missing keys (e.g. ...),
            M unexpected keys (e.g. ...), K shape mismatches (e.g. key: file (..) vs model (..))``.
    """
    state = fit_pos_embed(read_dino_state_dict(path), model)
    problems = mismatch_parts(*checkpoint_mismatch(state, model))
    if problems:
        raise DataError(path, f"not a {arch_name} checkpoint: {', '.join(problems)}")
    model.load_state_dict(state, strict=True)


def create_ssl_vit(
    arch: str,
    *,
    weights: str | os.PathLike[str] | None,
    arch_kwargs: Mapping[str, Any] | None = None,
    img_size: int | tuple[int, int] | None = None,
) -> VisionTransformer:
    """A timm ViT backbone with DINO weights, in eval mode.

    Args:
        arch: timm model name, e.g. ``"vit_small_patch8_224"`` (DINO ViT-S/8) or
            ``"vit_base_patch8_224"`` (DINO ViT-B/8, MaskCut's backbone).
        weights: a local checkpoint path or a known weight name (resolved by
            :func:`uvis.foundation.weights.resolve_weights`); ``None`` keeps the random init.
        arch_kwargs: constructor overrides (the embedded stand-in's ``patch_size``, ``depth``...).
        img_size: input size the position embeddings are resampled to at load time.

    Raises:
        MissingWeightsError: the weight file is not available locally.
        DataError: the file is not a checkpoint of this architecture.
        ConfigError: timm cannot build ``arch``.
    """
    model = build_vit(arch, arch_kwargs=arch_kwargs, img_size=img_size)
    if weights is not None:
        path = resolve_weights(weights, "ssl_vit")
        load_dino_checkpoint(model, path, describe_arch(arch, arch_kwargs))
    return model.eval()


def patch_size_of(model: VisionTransformer) -> tuple[int, int]:
    """The model's patch size ``(ph, pw)`` in pixels."""
    ph, pw = model.patch_embed.patch_size
    return int(ph), int(pw)


@torch.no_grad()
def last_block_keys(model: VisionTransformer, images: torch.Tensor) -> PatchKeys:
    """The keys of the last block's self-attention for every patch, as MaskCut uses them.

    A forward hook on ``blocks[-1].attn.qkv`` captures that linear layer's output
    ``(B, T, 3 * D)`` for the ``T`` tokens; its middle third is the keys of all heads,
    concatenated in head order (the layout both timm and DINO reshape as ``(3, heads, D/heads)``).
    The prefix tokens (CLS, any register tokens) are dropped, leaving ``h * w`` patches in
    row-major order. The model runs in eval mode (restored afterwards) on its own device; the
    keys are returned there.

    ``images`` is a float ``(B, 3, H, W)`` batch normalised with :func:`normalise_images`; ``H``
    and ``W`` must be multiples of the patch size. Callers resize (CutLER resizes every image to
    480 x 480, a 60 x 60 grid at patch 8) or pad at the bottom/right to the next multiple and
    ignore the padded patches; any size works, since the position embeddings are resampled.

    Raises:
        ValueError: for a batch that is not ``(B, 3, H, W)`` with ``H, W`` multiples of the patch.
    """
    ph, pw = patch_size_of(model)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height % ph or width % pw:
        raise ValueError(
            f"image size {height}x{width} is not a multiple of the patch size {ph}x{pw}: "
            "resize or pad the images first"
        )
    captured: list[torch.Tensor] = []
    handle = model.blocks[-1].attn.qkv.register_forward_hook(
        lambda _module, _inputs, output: captured.append(output)
    )
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        model.forward_features(images.to(device=param.device, dtype=param.dtype))
    finally:
        handle.remove()
        model.train(was_training)
    qkv = captured[0]
    dim = qkv.shape[-1] // 3
    keys = qkv[:, model.num_prefix_tokens :, dim : 2 * dim]
    return PatchKeys(keys=keys, grid_hw=(height // ph, width // pw))


def pooled_feature_name(model: VisionTransformer) -> str:
    """How :func:`cls_features` pools ``model``'s tokens, in words (for reports)."""
    pool = getattr(model, "global_pool", "token")
    if pool == "token":
        return "CLS token after the final norm, L2-normalised"
    if pool == "avg":
        return "mean of the patch tokens, then a norm, L2-normalised"
    return f"timm global_pool {pool!r} of the tokens, L2-normalised"


@torch.no_grad()
def cls_features(
    model: VisionTransformer, images: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """The pooled embedding ``(B, D)`` of normalised ``images``, as DINO's k-NN uses: the CLS
    token after the final norm, or what the model's ``global_pool`` gives instead
    (:func:`pooled_feature_name`)."""
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()
        out = [
            model(images[i : i + batch_size].to(device=param.device, dtype=param.dtype))
            for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else images.new_zeros((0, model.num_features))
