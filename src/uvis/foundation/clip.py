"""CLIP through open_clip: loading, text and image embeddings, and zero-shot labels of crops.

UVIS labels each class-agnostic proposal by cropping it from its frame, embedding the crop with
CLIP's image encoder and picking the class whose prompt ("a photo of a <class>.") has the most
similar text embedding (eq. 1 of the paper, :func:`classify`).

Models are built by open_clip from an architecture name: a built-in one (``ViT-B-32``,
``ViT-bigG-14``, ...) or one of ours in ``model_configs/`` (``uvis-clip-tiny``,
``uvis-clip-smoke``), registered with ``open_clip.add_model_config``. Weights always come from a
local file in open_clip's checkpoint format, resolved by :func:`uvis.foundation.weights.
resolve_weights`; open_clip's ``pretrained`` *tags* and ``hf-hub:`` names, which download, are
never passed on. The embedded stand-in trained by :mod:`uvis.standins.clip` is saved in
the same format, so the loader below is what runs in tests and in the default pipeline.

Several checkpoints of one architecture load as one model (:class:`ClipEnsemble`, by passing
:func:`create_clip` a sequence of weights): the embedded default ensembles two stand-ins
trained with different seeds, whose errors are partly independent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.factory import load_state_dict
from PIL import Image, ImageFilter

from uvis import masks as rle_masks
from uvis.errors import ConfigError, DataError
from uvis.foundation.checkpoints import mismatch_parts, state_dict_mismatch
from uvis.foundation.weights import (
    KNOWN_WEIGHTS,
    MissingWeightsError,
    clip_weights_path,
)
from uvis.masks import RLE

logger = logging.getLogger(__name__)

#: Folder of our open_clip model configs (package data, one JSON per architecture).
MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"

#: CLIP's single zero-shot prompt; UVIS eq. 1 writes it "a photo of <class>".
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

MaskBackground = Literal["mean", "blur"]

#: open_clip's inference resize modes (see :func:`create_clip`).
RESIZE_MODES = ("shortest", "longest", "squash")

#: Gaussian blur radius of ``mask_background="blur"``, as a fraction of the crop's longer side.
BLUR_RADIUS_FRACTION = 0.1


@dataclass(frozen=True, eq=False)
class ClipBundle:
    """An open_clip model ready for inference, with what is needed to feed it.

    ``preprocess`` is open_clip's own inference transform for the model (PIL image -> normalised
    ``(3, S, S)`` tensor: resize as ``resize_mode`` says, normalise with ``mean``/``std``),
    ``tokenizer``
    open_clip's tokenizer for the model (BPE vocabulary shipped with the package, padded to the
    model's context length), ``logit_scale`` the learned temperature as a multiplier
    (``exp`` of the stored parameter; 100 for the released CLIP models). ``weights`` is the file
    the weights came from (``None``: randomly initialised); for an ensemble the first member's,
    and ``members`` lists every member's file (one entry for a single model).
    """

    model_name: str
    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_mode: str
    embed_dim: int
    logit_scale: float
    device: torch.device
    weights: Path | None
    members: tuple[Path | None, ...] = ()


class ClipEnsemble(torch.nn.Module):
    """CLIP models of one architecture used as one model, with open_clip's ``encode_image`` and
    ``encode_text``.

    An embedding is the concatenation of the members' L2-normalised embeddings divided by
    ``sqrt(K)``: a unit vector whose cosine with another such vector is the mean of the K
    members' cosines, so zero-shot logits are the members' mean logits (at a shared logit scale)
    and everything downstream (prompt ensembling, flip averaging, prototypes) works unchanged
    on the ``K * D``-wide embeddings.
    """

    def __init__(self, members: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        self.members = torch.nn.ModuleList(members)

    def _join(self, features: list[torch.Tensor]) -> torch.Tensor:
        joined = torch.cat([F.normalize(f.float(), dim=-1) for f in features], dim=-1)
        return joined / math.sqrt(len(features))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self._join([m.encode_image(images) for m in self.members])

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._join([m.encode_text(tokens) for m in self.members])


class CropLabels(NamedTuple):
    """Zero-shot labels of ``N`` crops over a vocabulary of ``C`` classes (see :func:`classify`)."""

    class_index: torch.Tensor  # (N,) int64, index into the vocabulary
    class_score: torch.Tensor  # (N,) float32, softmax probability of that class
    probs: torch.Tensor  # (N, C) float32, rows sum to 1


@functools.cache
def register_model_configs() -> None:
    """Make our architectures (``model_configs/*.json``) known to open_clip, once per process."""
    open_clip.add_model_config(MODEL_CONFIG_DIR)


def model_config(model_name: str) -> dict[str, Any]:
    """open_clip's architecture config (``embed_dim``, ``vision_cfg``, ``text_cfg``) of a name.

    Raises:
        MissingWeightsError: for ``hf-hub:`` names, which open_clip would download.
        ConfigError: for any other name open_clip does not know.
    """
    register_model_configs()
    if model_name.startswith("hf-hub:"):
        raise MissingWeightsError(
            f"CLIP model {model_name!r} is on the Hugging Face hub, and nothing is downloaded at "
            "run time: give an open_clip architecture name (e.g. ViT-B-32) as the model and a "
            "local checkpoint file or a known weight name as its weights"
        )
    cfg = None if ":" in model_name else open_clip.get_model_config(model_name)
    if cfg is None:
        known = ", ".join(n for n in open_clip.list_models() if n.startswith(("uvis", "ViT-B")))
        raise ConfigError(
            f"unknown CLIP architecture {model_name!r}: give an open_clip model name "
            f"(e.g. {known}; all: open_clip.list_models())"
        )
    return cfg


def create_clip(
    model_name: str,
    *,
    weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
    device: str | torch.device = "cpu",
    resize_mode: str | None = None,
) -> ClipBundle:
    """Build open_clip model ``model_name`` and load ``weights``; return it ready for inference.

    ``weights`` is one checkpoint (described below) or a sequence of them: two or more are
    loaded alike and joined into a :class:`ClipEnsemble`, the bundle's ``logit_scale`` the
    members' mean and its ``embed_dim`` K times the architecture's.

    Raises:
        ConfigError: an empty sequence of weights; otherwise as :func:`create_one_clip`.
    """
    if weights is None or isinstance(weights, (str, os.PathLike)):
        return create_one_clip(model_name, weights=weights, device=device, resize_mode=resize_mode)
    bundles = [
        create_one_clip(model_name, weights=w, device=device, resize_mode=resize_mode)
        for w in weights
    ]
    if not bundles:
        raise ConfigError("CLIP weights: an empty list; give one checkpoint or several")
    if len(bundles) == 1:
        return bundles[0]
    return dataclasses.replace(
        bundles[0],
        model=ClipEnsemble([b.model for b in bundles]).eval(),
        embed_dim=bundles[0].embed_dim * len(bundles),
        logit_scale=float(np.mean([b.logit_scale for b in bundles])),
        members=tuple(b.weights for b in bundles),
    )


def create_one_clip(
    model_name: str,
    *,
    weights: str | os.PathLike[str] | None,
    device: str | torch.device = "cpu",
    resize_mode: str | None = None,
) -> ClipBundle:
    """Build open_clip model ``model_name`` and load ``weights``; return it ready for inference.

    ``weights`` is a local checkpoint in open_clip's format (a state dict, optionally under
    ``"state_dict"`` with ``module.`` prefixes, as open_clip's training saves it; read by
    open_clip's own loader), or a name of :data:`uvis.foundation.weights.KNOWN_WEIGHTS`;
    ``None`` leaves the model randomly initialised (benchmarks, training from scratch).
    ``resize_mode`` overrides open_clip's inference resize (``shortest``: resize the short side
    and centre-crop, the default; ``squash``; ``longest``: fit the long side and pad, which
    keeps all of an elongated crop). Preprocessing is open_clip's default for the architecture
    (OpenAI mean/std, bicubic), which is what the known LAION weights were trained with; since
    no pretrained *tag* is passed, tag-specific statistics (e.g. SigLIP's) are not applied.

    Raises:
        MissingWeightsError: the weight file is not available (with how to provide it).
        ConfigError: unknown architecture, or a known weight name of another architecture.
        DataError: the file is not a checkpoint of this architecture; names a few offending keys.
    """
    cfg = model_config(model_name)
    if resize_mode not in (None, *RESIZE_MODES):
        raise ConfigError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    _check_known_weight_arch(weights, model_name)
    path = clip_weights_path(model_name, weights)
    try:
        with _open_clip_quiet():
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name,
                pretrained=None if path is None else str(path),
                image_resize_mode=resize_mode,
            )
    except Exception as exc:  # open_clip/torch raise RuntimeError, UnpicklingError, KeyError...
        if path is None:
            raise
        raise DataError(path, _checkpoint_problem(model_name, path, exc)) from None
    with _open_clip_quiet():
        tokenizer = open_clip.get_tokenizer(model_name)
    device = torch.device(device)
    model.to(device).eval()
    pp = open_clip.get_model_preprocess_cfg(model)
    size = pp["size"]
    return ClipBundle(
        model_name=model_name,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        image_size=(size, size) if isinstance(size, int) else tuple(size),
        mean=tuple(pp["mean"]),
        std=tuple(pp["std"]),
        resize_mode=pp["resize_mode"],
        embed_dim=int(cfg["embed_dim"]),
        logit_scale=float(model.logit_scale.detach().exp().item()),
        device=device,
        weights=path,
        members=(path,),
    )


class _BelowError(logging.Filter):
    """Drops open_clip's root-logger records below ERROR (see :func:`_open_clip_quiet`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "open_clip" not in record.pathname


@contextlib.contextmanager
def _open_clip_quiet() -> Iterator[None]:
    """Keep open_clip's step-by-step construction log (root logger, INFO) out of our logs.

    Its one warning on this path, "initialized randomly", is what ``weights=None`` asks for;
    load failures are raised, not logged.
    """
    quiet = _BelowError()
    logging.getLogger().addFilter(quiet)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)


def _check_known_weight_arch(weights: str | os.PathLike[str] | None, model_name: str) -> None:
    """A known weight name must be given with the architecture it was trained for."""
    spec = None if weights is None else KNOWN_WEIGHTS.get(os.fspath(weights))
    if spec is not None and spec.arch != model_name:
        raise ConfigError(
            f"CLIP weight {spec.name!r} is for architecture {spec.arch!r}, not {model_name!r}"
        )


def _checkpoint_problem(model_name: str, path: Path, exc: Exception) -> str:
    """Explain why ``path`` did not load into ``model_name``: the keys that do not fit.

    Compares the file's state dict (as open_clip reads it: ``state_dict`` unwrapped, ``module.``
    stripped) with a fresh model's; falls back to the loader's own message when the file is not
    a state dict at all.
    """
    head = f"not an open_clip {model_name} checkpoint"
    try:
        theirs = load_state_dict(str(path))
        if not isinstance(theirs, dict) or not theirs:
            raise TypeError(f"holds a {type(theirs).__name__}, not a state dict")
        with _open_clip_quiet():
            ours = open_clip.create_model(model_name).state_dict()
    except Exception as inner:
        reason = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
        return f"{head}: cannot read it as a state dict ({reason[:200]})"
    parts = mismatch_parts(*state_dict_mismatch(theirs, ours))
    if not parts:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        parts = [first[:300]]
    return f"{head}: {'; '.join(parts)}"


def text_embeddings(
    bundle: ClipBundle,
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """L2-normalised text embedding per class, ``(C, D)`` float32 on the CPU.

    With several templates this is CLIP's prompt ensembling: each prompt's embedding is
    normalised, the class's prompts are averaged, and the mean is normalised again.
    """
    if not class_names:
        raise ValueError("text_embeddings needs at least one class name")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"every template must contain '{{}}', got {list(templates)}")
    prompts = [t.format(name) for name in class_names for t in templates]
    tokens = bundle.tokenizer(prompts)
    _warn_truncated(prompts, tokens)
    chunks = []
    with torch.inference_mode(), _autocast(bundle.device):
        for start in range(0, len(prompts), batch_size):
            batch = tokens[start : start + batch_size].to(bundle.device)
            chunks.append(F.normalize(bundle.model.encode_text(batch).float(), dim=-1).cpu())
    per_prompt = torch.cat(chunks).reshape(len(class_names), len(templates), -1)
    return ensemble_prompts(per_prompt)


def ensemble_prompts(per_prompt: torch.Tensor) -> torch.Tensor:
    """``(C, T, D)`` prompt embeddings -> ``(C, D)``: normalise, average over T, re-normalise.

    This is the zero-shot classifier of Radford et al. (2021): averaging unit vectors of a
    class's prompts, then projecting back onto the sphere, so every template counts equally
    whatever the norm of its raw embedding.
    """
    return F.normalize(F.normalize(per_prompt.float(), dim=-1).mean(dim=1), dim=-1)


def _warn_truncated(prompts: list[str], tokens: torch.Tensor) -> None:
    """Log prompts that fill the whole context (the tokenizer cuts longer ones)."""
    full = (tokens[:, -1] != 0).nonzero().flatten().tolist()
    if full:
        logger.warning(
            "%d prompt(s) reach the text context length %d and may be truncated, e.g. %r",
            len(full),
            tokens.shape[1],
            prompts[full[0]],
        )


def image_embeddings(
    bundle: ClipBundle,
    crops: Sequence[np.ndarray] | torch.Tensor,
    *,
    batch_size: int = 256,
    flip: bool = False,
) -> torch.Tensor:
    """L2-normalised image embeddings ``(N, D)`` float32 on the CPU.

    ``crops`` is a list of ``H x W x 3`` uint8 RGB arrays of any sizes (each goes through the
    model's own preprocessing, :attr:`ClipBundle.preprocess`), or an already preprocessed
    ``(N, 3, S, S)`` tensor. Batches run on the model's device; on CUDA under autocast
    (bfloat16 where supported, else float16), on the CPU in float32. ``flip``: test-time
    flip averaging, each embedding the normalised sum of the input's and its horizontal
    mirror's (twice the cost).
    """
    n = len(crops)
    if isinstance(crops, np.ndarray):
        raise TypeError("crops must be a list of HxWx3 arrays or a (N, 3, S, S) tensor")
    if not isinstance(crops, torch.Tensor):
        for i, crop in enumerate(crops):
            if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 or crop.size == 0:
                raise ValueError(
                    f"crop {i}: expected a non-empty HxWx3 uint8 array, got {crop.dtype} "
                    f"{crop.shape}"
                )
    chunks = [torch.zeros(0, bundle.embed_dim)]
    with torch.inference_mode(), _autocast(bundle.device):
        for start in range(0, n, batch_size):
            if isinstance(crops, torch.Tensor):
                batch = crops[start : start + batch_size]
            else:
                batch = torch.stack(
                    [
                        bundle.preprocess(Image.fromarray(c))
                        for c in crops[start : start + batch_size]
                    ]
                )
            batch = batch.to(bundle.device, non_blocking=True)
            feats = F.normalize(bundle.model.encode_image(batch).float(), dim=-1)
            if flip:
                mirrored = F.normalize(bundle.model.encode_image(batch.flip(-1)).float(), dim=-1)
                feats = F.normalize(feats + mirrored, dim=-1)
            chunks.append(feats.cpu())
    return torch.cat(chunks)


def _autocast(device: torch.device) -> torch.autocast:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); off elsewhere."""
    if device.type != "cuda":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def crop_regions(
    image: np.ndarray,
    boxes_xywh: np.ndarray | Sequence[Sequence[float]],
    masks: Sequence[np.ndarray | RLE] | None = None,
    *,
    context: float = 0.1,
    mask_background: MaskBackground | None = None,
) -> list[np.ndarray]:
    """Cut one crop per box out of ``image`` (``H x W x 3`` uint8), with context around it.

    Each box ``[x, y, w, h]`` (COCO, pixels) is widened by ``context * w`` on the left and on
    the right and by ``context * h`` above and below (``context=0.1``: a crop 1.2 times the box
    size), rounded outwards to whole pixels and clamped to the image. ``mask_background`` uses
    the instance's mask (``(H, W)`` array or RLE, one per box) to hide what is not the object,
    e.g. neighbours that overlap the box:

    * ``"mean"``: pixels of the crop outside the mask become the mean colour of those pixels
      (flat background in the crop's own tone);
    * ``"blur"``: they become a Gaussian blur of the crop (radius
      :data:`BLUR_RADIUS_FRACTION` of the crop's longer side), keeping only coarse context.

    Raises ValueError, naming the box, for a box with a non-finite or non-positive size, a
    box outside the image, and (with ``mask_background``) a missing or empty mask or one whose
    size differs from the image.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    if context < 0 or not np.isfinite(context):
        raise ValueError(f"context must be a finite fraction >= 0, got {context}")
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    if mask_background is not None and (masks is None or len(masks) != len(boxes)):
        raise ValueError(f"mask_background={mask_background!r} needs one mask per box")
    height, width = image.shape[:2]
    crops = []
    for i, box in enumerate(boxes):
        y0, y1, x0, x1 = crop_window(box, context, height, width, index=i)
        crop = image[y0:y1, x0:x1].copy()
        if mask_background is not None:
            assert masks is not None
            mask = _mask_array(masks[i], height, width, i)[y0:y1, x0:x1]
            crop = _fill_background(crop, mask, mask_background)
        crops.append(crop)
    return crops


def crop_window(
    box_xywh: np.ndarray, context: float, height: int, width: int, *, index: int = 0
) -> tuple[int, int, int, int]:
    """Pixel window ``(y0, y1, x0, x1)`` (end-exclusive) of a box widened by ``context``."""
    x, y, w, h = (float(v) for v in box_xywh)
    if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
        raise ValueError(f"box {index}: {[x, y, w, h]} is not a box with a positive size")
    mx, my = context * w, context * h
    x0, x1 = max(0, int(np.floor(x - mx))), min(width, int(np.ceil(x + w + mx)))
    y0, y1 = max(0, int(np.floor(y - my))), min(height, int(np.ceil(y + h + my)))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {index}: {[x, y, w, h]} lies outside the {width}x{height} image")
    return y0, y1, x0, x1


def _mask_array(mask: np.ndarray | RLE, height: int, width: int, index: int) -> np.ndarray:
    """A box's mask as a boolean ``(H, W)`` array (RLEs decoded); must match the image size."""
    array = rle_masks.decode(mask) if isinstance(mask, dict) else np.asarray(mask)
    if array.shape != (height, width):
        raise ValueError(f"mask {index}: size {array.shape} differs from the image's")
    return array.astype(bool)


def _fill_background(crop: np.ndarray, mask: np.ndarray, mode: MaskBackground) -> np.ndarray:
    """Replace the crop's pixels outside ``mask`` (same size as the crop) as ``mode`` says."""
    if not mask.any():
        raise ValueError("the mask is empty inside its box, there is no object to keep")
    outside = ~mask
    if not outside.any():
        return crop
    if mode == "mean":
        fill = np.rint(crop[outside].mean(axis=0)).astype(np.uint8)
        crop[outside] = fill
    elif mode == "blur":
        radius = max(1.0, BLUR_RADIUS_FRACTION * max(crop.shape[:2]))
        blurred = np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(radius)))
        crop[outside] = blurred[outside]
    else:
        raise ValueError(f"mask_background must be 'mean', 'blur' or None, got {mode!r}")
    return crop


def classify(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: float) -> CropLabels:
    """Zero-shot class of each crop, UVIS eq. 1, and its class score.

    Eq. 1: ``class(i) = argmax_l f_vision(b_i) . f_text("a photo of <l>")``, the dot product of
    L2-normalised embeddings (a cosine; inputs are normalised here, so unnormalised ones give
    the same answer). The paper calls that dot product at the argmax the class score ``u`` and
    keeps instances with ``u >= 0.7``; but CLIP cosines between an image and a prompt are
    about 0.2-0.35 even for correct labels, so a 0.7 cut on raw cosine would drop everything.
    The score here is what CLIP's zero-shot classifier outputs: the softmax over the vocabulary
    of the cosines times CLIP's logit scale (``bundle.logit_scale``, 100 for released models),
    i.e. the probability of the chosen class among the ``C`` candidates. The argmax is the same
    as eq. 1's (softmax is monotonic), and 0.7 then means "CLIP is fairly sure" on a scale that
    does not depend on the model's cosine range.

    Returns ``CropLabels(class_index (N,), class_score (N,), probs (N, C))`` in float32.
    Raises ValueError for mismatched widths, an empty vocabulary, a non-positive logit scale,
    or non-finite embeddings (naming the rows), rather than returning NaN scores.
    """
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"expected (N, D) image and (C, D) text embeddings, got {tuple(image_emb.shape)} "
            f"and {tuple(text_emb.shape)}"
        )
    if text_emb.shape[0] == 0:
        raise ValueError("the vocabulary is empty")
    if not (np.isfinite(logit_scale) and logit_scale > 0):
        raise ValueError(f"logit_scale must be a positive number, got {logit_scale}")
    for name, emb in (("image", image_emb), ("text", text_emb)):
        bad = (~torch.isfinite(emb).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            raise ValueError(f"{len(bad)} {name} embedding row(s) are not finite, e.g. {bad[:5]}")
    cosine = F.normalize(image_emb.float(), dim=-1) @ F.normalize(text_emb.float(), dim=-1).T
    probs = torch.softmax(logit_scale * cosine, dim=-1)
    class_score, class_index = probs.max(dim=-1)
    return CropLabels(class_index=class_index, class_score=class_score, probs=probs)
