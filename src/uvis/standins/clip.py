"""The embedded CLIP stand-in: a small open_clip model trained on the captioned corpus.

No CLIP weights can be downloaded here, so ``uvis pretrain clip`` trains one: an open_clip
architecture from ``model_configs/``, open_clip's real BPE tokenizer, and open_clip's own
contrastive loss (:class:`open_clip.loss.ClipLoss`, symmetric InfoNCE with a learned
temperature) on the synthetic world's ``corpora/captioned`` images and captions ("a photo of a
red star"). The checkpoint is saved as open_clip's training saves it (``{"epoch", "name",
"state_dict"}``) and read back through :func:`uvis.foundation.clip.create_clip`, the loader
that serves real checkpoints. Its quality is the zero-shot accuracy with the prompt "a photo of
a <class>." on held-out corpus images and, given a world folder, on object crops cut from the
synthetic videos by their ground-truth boxes: the crops the pipeline classifies.

Choices made by measurement on the default world (2,000 captioned images, CPU budget of a few
minutes; numbers are held-out zero-shot accuracy, chance 10 %):

* Architecture ``uvis-clip-tiny``: open_clip's ModifiedResNet image tower (CLIP's RN50 design,
  one bottleneck per stage, width 16) at 32 px, a 3-block text transformer with a 16-token
  context (captions are at most 12 tokens). ViT towers trained from scratch on so few images
  learn shape far more slowly: a ViT (patch 8, width 192, 4 blocks, 64 px) reached 21 % after
  20 epochs, a ResNet tower 36 % after 8 at a third of the cost.
* Batches of one caption colour (``colour_batches``): captions name the colour, which is
  visible at a glance, so a random batch is told apart by colour and the shape, the thing the
  pipeline needs, is learned slowly. Within a one-colour batch only shape and wording separate
  the pairs: 77 % instead of 36 % after 20 epochs. It is hard-negative batching; the loss is
  unchanged.
* 100 epochs (about 9 CPU minutes). Held-out corpus accuracy saturates by 40, but accuracy on
  the video object crops the pipeline scores keeps rising to about 100 epochs: on the valid
  crops of world seeds 1 and 2 (masked background), 69.9 -> 84.9 % and 85.9 -> 89.7 % from 40
  to 100 epochs; 150 epochs gave 85.1 % on seed 1 (``benchmarks/RESULTS.md``).
* Two members (:func:`train_clip_ensemble`, the workflow setting ``clip.members``):
  trainings with different seeds differ by up to 2 points on the video crops and err on partly
  different crops; two of them scored as one model beat their members' mean on all six pairs
  tried on world seeds 1-3 (+0.3 to +1.8 points with ``lowres_prob`` 0.3, +1.2 to +2.1
  without), at twice the training and scoring cost.

* Cut-out, partly hidden objects (``masked_prob`` 0.5, ``occlusion_prob`` 0.7 in the
  workflow's config): the stand-in named 94-96 % of wholly visible video objects but 72-81 %
  of those less than 90 % visible. Half of the training images are shown as ``clip_scores``
  shows a pseudo-label (the object cut out by its mask, from the corpus's ``segmentation``),
  most of them after an occluder hid part of it: +3.2 to +6.6 points on the video crops in five
  of six trainings on world seeds 0-3, -1.6 in one (``benchmarks/RESULTS.md``).

torch and open_clip are imported inside the functions that need them, so registering the
command line stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from uvis.devices import resolve_device
from uvis.engine.optim import weight_average
from uvis.engine.schedules import LRSchedule
from uvis.engine.trainer import Window, train_epochs
from uvis.errors import DataError
from uvis.io import atomic_path, atomic_write_json
from uvis.presets import check_settings, config_from_preset

if TYPE_CHECKING:
    import torch

    from uvis.foundation.clip import ClipBundle

logger = logging.getLogger(__name__)

#: Score threshold of the paper (Sec. 4.1); the report says how many crops pass it.
PAPER_SCORE_THRESHOLD = 0.7


#: Preset name -> overrides of :class:`ClipTrainConfig`'s defaults (the ``default`` preset).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {"model": "uvis-clip-smoke", "epochs": 4, "batch_size": 16, "warmup_steps": 2},
}


@dataclass(frozen=True)
class ClipTrainConfig:
    """Everything that decides the trained stand-in (saved next to the checkpoint).

    Optimisation follows open_clip's recipe at small scale: AdamW (betas 0.9/0.98, eps 1e-6)
    without weight decay on gains, biases and the logit scale, linear warm-up then cosine decay
    per step, logit scale clamped to 100. Augmentation: random resized crops (area fraction in
    ``crop_scale``, aspect ratio 3/4-4/3) resampled to the model's input size, and random
    horizontal and vertical flips (the shapes' names do not depend on orientation); no colour
    jitter, since captions name the colour. ``colour_batches``: see the module notes.
    Options meant to make training crops look like the video object crops the pipeline scores
    (all off by default): ``crop_centre_jitter`` below 1 keeps crop windows near the image
    centre, where corpus objects lie (:func:`random_resized_crops`); ``lowres_prob`` shows a
    crop at a lower resolution, down to ``lowres_min`` of its side, as small objects reach the
    model (:func:`random_low_resolution`); ``pad_prob`` squeezes a crop by up to ``pad_ratio``
    and pads it with black, as the ``longest`` resize shows a non-square box
    (:func:`random_letterbox`).
    ``holdout_fraction`` of the corpus is kept out of training for the zero-shot test.
    ``eval_*`` set how video object crops are cut and fed for the quality report: box margin
    ``eval_context`` (as :func:`uvis.foundation.clip.crop_regions`), the smallest visible
    object area in pixels that is scored, and the resize mode of the model's preprocessing
    (``longest``: fit the crop's longer side and pad, so no part of the object is cut off), and
    the prompt templates the classes are named with and whether crops are embedded with their
    mirror (the pipeline passes its ``clip.templates`` and ``clip.flip``, so the report measures
    the stand-in as the ``clip_scores`` stage uses it).
    ``masked_prob``: the probability that a training image is shown instead as the
    ``clip_scores`` stage shows a pseudo-label: the object cut out by its mask
    (:func:`masked_object_crop`), which needs the corpus's object masks; of those crops, a
    fraction ``occlusion_prob`` first loses up to ``occlusion_max`` of the object to an
    occluder (:func:`hide_part`), as objects behind others or crossing the frame's border do.
    ``ema_decay`` above 0 keeps an exponential moving average of the weights and saves it
    instead of the last weights; the report then also gives the last weights' quality, so one
    run compares the two.
    """

    model: str = "uvis-clip-tiny"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    crop_scale: tuple[float, float] = (0.6, 1.0)
    crop_centre_jitter: float = 1.0
    pad_prob: float = 0.0
    pad_ratio: float = 2.0
    lowres_prob: float = 0.0
    lowres_min: float = 0.4
    masked_prob: float = 0.0
    occlusion_prob: float = 0.0
    occlusion_max: float = 0.6
    flip: bool = True
    colour_batches: bool = True
    holdout_fraction: float = 0.1
    seed: int = 0
    eval_context: float = 0.1
    eval_min_area: int = 16
    eval_resize_mode: str = "longest"
    eval_templates: tuple[str, ...] = ("a photo of a {}.",)  # foundation.clip.DEFAULT_TEMPLATES
    eval_flip: bool = False
    ema_decay: float = 0.0

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ClipTrainConfig:
        """The ``smoke`` (seconds, for tests) or ``default`` settings, with ``overrides``.

        Raises ConfigError for an unknown preset, an unknown key or a value of the wrong type.
        """
        return config_from_preset(cls, PRESETS, name, overrides, what="CLIP training")

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup_steps": self.warmup_steps >= 0,
            "crop_scale": len(self.crop_scale) == 2
            and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            "crop_centre_jitter": 0 <= self.crop_centre_jitter <= 1,
            "pad_prob": 0 <= self.pad_prob <= 1,
            "pad_ratio": self.pad_ratio >= 1,
            "lowres_prob": 0 <= self.lowres_prob <= 1,
            "lowres_min": 0 < self.lowres_min <= 1,
            "masked_prob": 0 <= self.masked_prob <= 1,
            "occlusion_prob": 0 <= self.occlusion_prob <= 1,
            "occlusion_max": 0 < self.occlusion_max < 1,
            "holdout_fraction": 0 < self.holdout_fraction < 1,
            "eval_context": self.eval_context >= 0,
            "eval_min_area": self.eval_min_area >= 1,
            "eval_resize_mode": self.eval_resize_mode in ("shortest", "longest", "squash"),
            "eval_templates": len(self.eval_templates) >= 1
            and all("{}" in t for t in self.eval_templates),
            "ema_decay": 0 <= self.ema_decay < 1,
        }
        check_settings(self, checks, "CLIP training")


@dataclass(frozen=True, eq=False)
class CaptionedCorpus:
    """The captioned corpus in memory: ``images`` ``(N, H, W, 3)`` uint8, one caption each.

    ``source`` is the ``captions.jsonl`` read. ``colours`` (the colour each caption names)
    group the training batches; ``category_ids`` (1-based ids of
    :data:`uvis.synth.CATEGORIES`) are read for the zero-shot test only. ``masks``
    ``(N, H, W)`` bool: each image's object, from the records' ``segmentation``; None for a
    corpus without them.
    """

    source: Path
    images: np.ndarray
    captions: list[str]
    colours: list[str]
    category_ids: np.ndarray
    masks: np.ndarray | None = None


def read_captioned_corpus(corpus_dir: Path) -> CaptionedCorpus:
    """Read ``corpus_dir/captions.jsonl`` and its images (the world's ``corpora/captioned``).

    Each line: ``{"file", "caption", "colour", "category_id"}`` and, optionally, the object's
    mask ``segmentation`` (a COCO RLE of the image's size), given on every line or on none.

    Raises DataError naming the file for a missing or malformed ``captions.jsonl`` (with the
    line number), an unreadable image, images of different sizes, or masks on some lines only
    or of another size than their image.
    """
    from uvis import masks as rle_masks

    path = Path(corpus_dir) / "captions.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(
            path, "missing: CORPUS_DIR must be a captioned corpus folder (WORLD/corpora/captioned)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read: {exc}") from None
    images, captions, colours, category_ids, masks = [], [], [], [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            file, text, category_id = record["file"], record["caption"], record["category_id"]
            colour = record["colour"]
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise DataError(
                path,
                f"line {number}: expected {{'file', 'caption', 'colour', 'category_id'}}: {exc}",
            ) from None
        if not isinstance(text, str) or not isinstance(category_id, int):
            raise DataError(path, f"line {number}: caption must be text, category_id an integer")
        images.append(_read_rgb(Path(corpus_dir) / file))
        if "segmentation" in record:
            problem = rle_masks.rle_problem(record["segmentation"], *images[-1].shape[:2])
            if problem:
                raise DataError(path, f"line {number}: segmentation {problem}")
            masks.append(rle_masks.decode(record["segmentation"]).astype(bool))
        if len(masks) not in (0, len(images)):
            raise DataError(path, f"line {number}: segmentation given on some lines only")
        captions.append(text)
        colours.append(str(colour))
        category_ids.append(category_id)
    if not images:
        raise DataError(path, "no captioned images listed")
    sizes = {im.shape for im in images}
    if len(sizes) > 1:
        raise DataError(path, f"images must all have one size, found {sorted(sizes)}")
    return CaptionedCorpus(
        path,
        np.stack(images),
        captions,
        colours,
        np.asarray(category_ids, np.int64),
        np.stack(masks) if masks else None,
    )


def _read_rgb(path: Path) -> np.ndarray:
    """An image file as an ``H x W x 3`` uint8 array, or DataError naming it."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read image: {exc}") from None


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` (n >= 2) into (train, held-out) index arrays, both non-empty."""
    order = np.random.default_rng([seed, 0xC11]).permutation(n)
    n_held = min(max(1, round(fraction * n)), n - 1)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def epoch_batches(
    groups: np.ndarray, batch_size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """One epoch of index batches, drawn one group at a time (``groups``: id per image).

    Each group's indices are shuffled and cut into full batches; what is left of every group
    is pooled, shuffled and cut into mixed batches; an incomplete last batch is dropped and the
    batch order shuffled. One group for all images gives plain random batches. The batch count
    depends only on the group sizes, so the learning-rate schedule is known in advance.
    """
    import torch

    batches, rest = [], []
    for g in np.unique(groups):
        members = torch.from_numpy(np.flatnonzero(groups == g))
        members = members[torch.randperm(len(members), generator=generator)]
        full = len(members) // batch_size * batch_size
        if full:  # (splitting an empty tensor would yield one empty batch)
            batches += list(members[:full].split(batch_size))
        rest.append(members[full:])
    pooled = torch.cat(rest)
    pooled = pooled[torch.randperm(len(pooled), generator=generator)]
    full = len(pooled) // batch_size * batch_size
    if full:
        batches += list(pooled[:full].split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def random_resized_crops(
    images: torch.Tensor,
    size: tuple[int, int],
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    centre_jitter: float = 1.0,
) -> torch.Tensor:
    """Batched random resized crop: ``(B, 3, H, W)`` float -> ``(B, 3, *size)``.

    Per image, a window of area fraction ``U(scale)`` and aspect ratio log-uniform in ``ratio``
    (clipped to the image), bilinearly resampled to ``size`` in one ``roi_align`` call (no
    per-image Python loop). The window is placed uniformly within the middle ``centre_jitter``
    fraction of the room it has: 1 anywhere in the image, 0 centred (the corpus images show
    their object near the centre, so small centred windows are object-scale crops, as the video
    crops the pipeline classifies).
    """
    import torch
    from torchvision.ops import roi_align

    b, _, h, w = images.shape
    area = torch.empty(b).uniform_(*scale, generator=generator) * h * w
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    cw = torch.sqrt(area * log_r.exp()).clamp(1, w)
    ch = torch.sqrt(area / log_r.exp()).clamp(1, h)
    x0 = (0.5 + centre_jitter * (torch.rand(b, generator=generator) - 0.5)) * (w - cw)
    y0 = (0.5 + centre_jitter * (torch.rand(b, generator=generator) - 0.5)) * (h - ch)
    rois = torch.stack([torch.arange(b, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], dim=1)
    rois = rois.to(images.device)
    return roi_align(
        images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True
    )


def random_letterbox(
    images: torch.Tensor, prob: float, max_ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Show some square crops as open_clip's ``longest`` resize shows a non-square box crop.

    With probability ``prob`` an image ``(3, S, S)`` is squeezed along one axis (chosen at
    random) by a factor log-uniform in ``1 / max_ratio .. 1`` and centred on a black canvas of
    side ``S``: the fit-the-longer-side-and-pad preprocessing of a box crop whose aspect ratio is
    up to ``max_ratio``. The others are returned unchanged.
    """
    import torch
    import torch.nn.functional as F

    b, _, height, width = images.shape
    chosen = torch.rand(b, generator=generator) < prob
    log_squeeze = torch.rand(b, generator=generator) * math.log(max_ratio)
    along_width = torch.rand(b, generator=generator) < 0.5
    out = images.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        factor = math.exp(-float(log_squeeze[i]))
        new_h, new_w = height, width
        if along_width[i]:
            new_w = max(1, round(width * factor))
        else:
            new_h = max(1, round(height * factor))
        small = F.interpolate(images[i : i + 1], size=(new_h, new_w), mode="bilinear",
                              antialias=True, align_corners=False)  # fmt: skip
        top, left = (height - new_h) // 2, (width - new_w) // 2
        out[i] = 0.0
        out[i, :, top : top + new_h, left : left + new_w] = small[0]
    return out


def random_low_resolution(
    images: torch.Tensor, prob: float, min_fraction: float, generator: torch.Generator
) -> torch.Tensor:
    """Show some crops as a small object's crop looks after upsampling to the model's size.

    With probability ``prob`` an image ``(3, S, S)`` is downsampled (antialiased) to a side
    uniform in ``min_fraction * S .. S`` and bilinearly upsampled back to ``S``: objects a few
    pixels wide in a video frame reach the model this blurred. Others are unchanged.
    """
    import torch
    import torch.nn.functional as F

    b, _, height, width = images.shape
    chosen = torch.rand(b, generator=generator) < prob
    fraction = min_fraction + (1 - min_fraction) * torch.rand(b, generator=generator)
    out = images.clone()
    for i in torch.nonzero(chosen).flatten().tolist():
        small_size = (
            max(2, round(height * float(fraction[i]))),
            max(2, round(width * float(fraction[i]))),
        )
        small = F.interpolate(images[i : i + 1], size=small_size, mode="bilinear", antialias=True)
        out[i] = F.interpolate(small, size=(height, width), mode="bilinear")[0]
    return out


def hide_by_line(mask: np.ndarray, fraction: float, angle: float) -> np.ndarray:
    """``mask`` ``(H, W)`` bool less the ``fraction`` of its pixels furthest along ``angle``.

    The object's pixels are ordered by their projection on the direction ``angle`` (radians;
    0 points along +x, pi/2 along +y) and those past the ``1 - fraction`` quantile are hidden:
    a straight occluding edge, as the frame's border or a large object in front.
    """
    if not mask.any():
        return mask.copy()
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    along = math.cos(angle) * xx + math.sin(angle) * yy
    return mask & (along <= np.quantile(along[mask], 1 - fraction, method="lower"))


def hide_by_disc(mask: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    """``mask`` ``(H, W)`` bool less the disc of ``radius`` around ``centre`` (x, y)."""
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    return mask & ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 >= radius**2)


def hide_part(mask: np.ndarray, max_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The part of an object's ``mask`` ``(H, W)`` bool left visible by a random occluder.

    Half of the occluders are edges (:func:`hide_by_line`) at a random angle hiding a fraction
    uniform in ``0.1 .. max_fraction`` of the object. The others are discs
    (:func:`hide_by_disc`), as a smaller object in front: centred 0.6-1.4 object radii from
    the object's centroid in a random direction, of radius 0.4-1.0 object radii (the object
    radius is that of a disc of its area), so the hidden fraction varies and is 0 at times.
    An empty mask is returned unchanged.
    """
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return mask.copy()
    angle = rng.uniform(0, 2 * math.pi)
    if rng.random() < 0.5:
        return hide_by_line(mask, rng.uniform(min(0.1, max_fraction), max_fraction), angle)
    radius = math.sqrt(ys.size / math.pi)
    reach, size = radius * rng.uniform(0.6, 1.4), radius * rng.uniform(0.4, 1.0)
    centre = (xs.mean() + reach * math.cos(angle), ys.mean() + reach * math.sin(angle))
    return hide_by_disc(mask, centre, size)


def masked_object_crop(image: np.ndarray, mask: np.ndarray, context: float) -> np.ndarray:
    """``image``'s object cut out as ``clip_scores`` cuts a pseudo-label.

    The tight box of ``mask`` with margin ``context`` (:func:`uvis.foundation.clip.crop_regions`),
    the pixels outside the mask filled with their mean colour. ``mask`` must not be empty.
    """
    from uvis.foundation.clip import crop_regions

    ys, xs = np.nonzero(mask)
    box = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
    return crop_regions(image, [box], [mask], context=context, mask_background="mean")[0]


def random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally and, independently, vertically with probability 1/2."""
    import torch

    b = images.shape[0]
    hflip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
    vflip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
    images = torch.where(hflip[:, None, None, None], images.flip(-1), images)
    return torch.where(vflip[:, None, None, None], images.flip(-2), images)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's rule: no weight decay on gains, biases, norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name
        (no_decay if exclude or "logit_scale" in name else decay).append(p)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def train_clip(
    corpus_dir: Path,
    out_path: Path,
    cfg: ClipTrainConfig,
    *,
    eval_world: Path | None = None,
    progress: bool = True,
    device: str | None = None,
    member: int = 0,
) -> dict[str, Any]:
    """Train the stand-in on ``corpus_dir`` (captioned corpus); save it and its report.

    ``device``: torch device to train and evaluate on (default: CUDA when available). Random
    draws (batches, augmentation) come from one seeded CPU generator, so a CPU run is
    reproducible bit for bit. ``member`` numbers the members of an ensemble
    (:func:`train_clip_ensemble`): member ``i`` draws its initialisation, batches and
    augmentations from seed ``cfg.seed + i``; the held-out images are ``cfg.seed``'s for all.

    Writes ``out_path`` (open_clip checkpoint) and ``out_path`` with suffix ``.json``: the
    resolved config, the open_clip architecture config, the per-epoch log and the zero-shot
    quality (held-out corpus images; with ``eval_world``, also object crops of its
    ``ytvis/valid`` videos). Quality is measured on the model as reloaded from ``out_path`` by
    :func:`uvis.foundation.clip.create_clip`. Returns the report.
    """
    import open_clip
    import torch

    from uvis.foundation.clip import create_clip, model_config

    start, cpu_start = time.perf_counter(), time.process_time()
    corpus = read_captioned_corpus(corpus_dir)
    if len(corpus.captions) < 3:
        raise DataError(corpus.source, "needs at least 3 images (2 to train, 1 to test)")
    if cfg.masked_prob and corpus.masks is None:
        raise DataError(
            corpus.source,
            "has no object masks ('segmentation'), which masked_prob > 0 needs: regenerate "
            "the world with this version of uvis, or set masked_prob to 0",
        )
    train_idx, held_idx = holdout_split(len(corpus.captions), cfg.holdout_fraction, cfg.seed)
    if member < 0:
        raise ValueError(f"member must be >= 0, got {member}")
    torch.manual_seed(cfg.seed + member)
    generator = torch.Generator().manual_seed(cfg.seed + member)
    device = device or resolve_device("auto", "pretrain clip")
    # The inference transform (``bundle.preprocess``) cuts objects out as the pipeline does.
    bundle = create_clip(cfg.model, weights=None, device=device, resize_mode=cfg.eval_resize_mode)
    model = bundle.model.train()
    images = torch.from_numpy(corpus.images[train_idx]).permute(0, 3, 1, 2).to(device)
    tokens = bundle.tokenizer([corpus.captions[i] for i in train_idx]).to(device)
    mean = torch.tensor(bundle.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std, device=device).view(1, 3, 1, 1)

    batch_size = min(cfg.batch_size, len(train_idx))
    groups = np.zeros(len(train_idx), np.int64)
    if cfg.colour_batches:
        groups = np.unique([corpus.colours[i] for i in train_idx], return_inverse=True)[1]
    steps_per_epoch = len(epoch_batches(groups, batch_size, torch.Generator()))
    total_steps = cfg.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(  # fused: one kernel per step, 3x faster on CPU
        _param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, fused=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, LRSchedule(total=total_steps, warmup=cfg.warmup_steps, decay="cosine")
    )
    mask_rng = np.random.default_rng([cfg.seed + member, 1])
    to_unit = (mean.cpu()[0], std.cpu()[0])  # preprocess normalises; the augmentations do not

    def object_views(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Replace a ``masked_prob`` share of the crops ``x`` by their cut-out objects."""
        for row in np.nonzero(mask_rng.random(len(idx)) < cfg.masked_prob)[0].tolist():
            i = int(train_idx[int(idx[row])])
            visible = corpus.masks[i]
            if mask_rng.random() < cfg.occlusion_prob:
                left = hide_part(visible, cfg.occlusion_max, mask_rng)
                visible = left if left.sum() >= cfg.eval_min_area else visible
            if not visible.any():
                continue
            crop = masked_object_crop(corpus.images[i], visible, cfg.eval_context)
            view = bundle.preprocess(Image.fromarray(crop)) * to_unit[1] + to_unit[0]
            x[row] = view.to(x.device)
        return x

    loss_fn = open_clip.loss.ClipLoss()
    average = weight_average(model, cfg.ema_decay)
    log: list[dict[str, float]] = []

    def batches() -> Iterator[torch.Tensor]:
        for _ in range(cfg.epochs):
            yield from epoch_batches(groups, batch_size, generator)

    def step(iteration: int, batch: torch.Tensor) -> torch.Tensor:
        idx = batch.to(device)
        x = random_resized_crops(
            images[idx].float() / 255,
            bundle.image_size,
            cfg.crop_scale,
            generator,
            centre_jitter=cfg.crop_centre_jitter,
        )
        if cfg.masked_prob:
            x = object_views(x, idx.cpu())
        if cfg.lowres_prob:
            x = random_low_resolution(x, cfg.lowres_prob, cfg.lowres_min, generator)
        if cfg.pad_prob:
            x = random_letterbox(x, cfg.pad_prob, cfg.pad_ratio, generator)
        if cfg.flip:
            x = random_flips(x, generator)
        image_features, text_features, logit_scale = model((x - mean) / std, tokens[idx])[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if average is not None:
            average.update_parameters(model)
        return torch.tensor([loss.item()], dtype=torch.float64)

    def end_of_epoch(window: Window) -> None:
        entry = {
            "epoch": window.iteration // steps_per_epoch,
            "loss": window.means[0],
            "lr": optimizer.param_groups[0]["lr"],
            "logit_scale": float(model.logit_scale.detach().exp()),
            "seconds": round(window.seconds, 2),
        }
        log.append(entry)
        logger.info(
            "pretrain clip: epoch %d/%d loss %.4f lr %.2e logit scale %.1f (%.1f s)",
            entry["epoch"],
            cfg.epochs,
            entry["loss"],
            entry["lr"],
            entry["logit_scale"],
            entry["seconds"],
        )

    train_epochs(
        step,
        batches(),
        cfg.epochs,
        steps_per_epoch,
        end_of_epoch,
        desc="pretrain clip",
        progress=progress,
    )
    train_seconds = time.perf_counter() - start

    out_path = Path(out_path)
    final = model if average is None else average.module
    with atomic_path(out_path) as tmp:
        torch.save({"epoch": cfg.epochs, "name": cfg.model, "state_dict": final.state_dict()}, tmp)
    reloaded = create_clip(
        cfg.model, weights=out_path, device=device, resize_mode=cfg.eval_resize_mode
    )
    quality = _quality(reloaded, corpus, held_idx, cfg, eval_world)
    last_quality = None
    if average is not None:
        last = create_clip(cfg.model, weights=None, device=device, resize_mode=cfg.eval_resize_mode)
        last.model.load_state_dict(model.state_dict())
        last = dataclasses.replace(last, logit_scale=float(model.logit_scale.detach().exp()))
        last_quality = _quality(last, corpus, held_idx, cfg, eval_world)
    report = {
        "model": cfg.model,
        "checkpoint": str(out_path),
        "corpus": str(corpus_dir),
        "eval_world": None if eval_world is None else str(eval_world),
        "config": dataclasses.asdict(cfg),
        "member": member,
        "model_config": model_config(cfg.model),
        "num_train_images": len(train_idx),
        "num_heldout_images": len(held_idx),
        "steps": total_steps,
        "log": log,
        "quality": quality,
        "quality_last_weights": last_quality,
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
        "cpu_seconds": round(time.process_time() - cpu_start, 2),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__},
    }
    atomic_write_json(out_path.with_suffix(".json"), report, indent=1)
    return report


def train_clip_ensemble(
    corpus_dir: Path,
    out_paths: Sequence[Path],
    cfg: ClipTrainConfig,
    *,
    eval_world: Path | None = None,
    progress: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Train one stand-in per path of ``out_paths`` (member ``i`` as :func:`train_clip` with
    ``member=i``) and report the quality of their ensemble, the model the pipeline loads from
    those files (:func:`uvis.foundation.clip.create_clip` with all of them).

    Each member's checkpoint and report are written as :func:`train_clip` writes them; then the
    first member's report is rewritten as the ensemble's: ``quality`` is the ensemble's (same
    held-out images and crops), ``members`` each member's checkpoint, seed, final loss and
    quality; ``log`` stays the first member's. With one path this is :func:`train_clip`.
    Returns the (ensemble's) report.
    """
    from uvis.foundation.clip import create_clip

    start, cpu_start = time.perf_counter(), time.process_time()
    device = device or resolve_device("auto", "pretrain clip")
    if not out_paths:
        raise ValueError("train_clip_ensemble needs at least one output path")
    paths = [Path(p) for p in out_paths]
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError(f"ensemble members need distinct output paths, got {paths}")
    reports = [
        train_clip(
            corpus_dir,
            path,
            cfg,
            eval_world=eval_world,
            progress=progress,
            device=device,
            member=i,
        )
        for i, path in enumerate(paths)
    ]
    if len(paths) == 1:
        return reports[0]
    corpus = read_captioned_corpus(corpus_dir)
    _, held_idx = holdout_split(len(corpus.captions), cfg.holdout_fraction, cfg.seed)
    bundle = create_clip(cfg.model, weights=paths, device=device, resize_mode=cfg.eval_resize_mode)
    report = {
        **reports[0],
        "checkpoint": [str(p) for p in paths],
        "quality": _quality(bundle, corpus, held_idx, cfg, eval_world),
        "quality_last_weights": None,
        "members": [
            {
                "checkpoint": r["checkpoint"],
                "seed": cfg.seed + r["member"],
                "final_loss": r["log"][-1]["loss"] if r["log"] else None,
                "quality": r["quality"],
            }
            for r in reports
        ],
        "train_seconds": round(sum(r["train_seconds"] for r in reports), 2),
        "total_seconds": round(time.perf_counter() - start, 2),
        "cpu_seconds": round(time.process_time() - cpu_start, 2),
    }
    del report["member"]
    atomic_write_json(paths[0].with_suffix(".json"), report, indent=1)
    return report


def _quality(
    bundle: ClipBundle,
    corpus: CaptionedCorpus,
    held_idx: np.ndarray,
    cfg: ClipTrainConfig,
    eval_world: Path | None,
) -> dict[str, Any]:
    """Zero-shot accuracy of ``bundle`` on held-out images and, optionally, video crops."""
    from uvis.synth import CATEGORIES

    names = [c.name for c in CATEGORIES]
    index_of = {c.id: i for i, c in enumerate(CATEGORIES)}
    unknown = sorted({int(c) for c in corpus.category_ids} - set(index_of))
    if unknown:
        raise DataError(corpus.source, f"category ids {unknown} are not synthetic-world ids")
    held_labels = np.array([index_of[int(c)] for c in corpus.category_ids[held_idx]])
    quality = {
        "prompts": list(cfg.eval_templates),
        "resize_mode": cfg.eval_resize_mode,
        "flip": cfg.eval_flip,
        "chance": 1 / len(names),
        "heldout_corpus": zero_shot_report(
            bundle,
            list(corpus.images[held_idx]),
            held_labels,
            names,
            cfg.eval_templates,
            cfg.eval_flip,
        ),
    }
    if eval_world is not None:
        crops = video_object_crops(Path(eval_world), cfg.eval_context, cfg.eval_min_area)
        for key, images in (
            ("video_crops", crops.crops),
            ("video_crops_masked_mean", crops.masked),
        ):
            quality[key] = zero_shot_report(
                bundle, images, crops.labels, crops.names, cfg.eval_templates, cfg.eval_flip
            )
    return quality


def zero_shot_report(
    bundle: ClipBundle,
    crops: list[np.ndarray],
    labels: np.ndarray,
    class_names: list[str],
    templates: Sequence[str],
    flip: bool = False,
) -> dict[str, Any]:
    """Zero-shot accuracy of ``crops`` against ``labels`` (indices into ``class_names``), the
    classes named through ``templates`` (several: CLIP's prompt ensembling), each crop embedded
    with its mirror when ``flip``.

    Also the mean class score, the fraction of crops whose score passes the paper's 0.7, and
    the accuracy among those (what the CLIP-score filter keeps).
    """
    from uvis.foundation.clip import classify, image_embeddings, text_embeddings

    if not crops:
        return {"num_crops": 0}
    labels_t = np.asarray(labels)
    text = text_embeddings(bundle, class_names, templates)
    result = classify(image_embeddings(bundle, crops, flip=flip), text, bundle.logit_scale)
    predicted = result.class_index.numpy()
    score = result.class_score.numpy()
    correct = predicted == labels_t
    passes = score >= PAPER_SCORE_THRESHOLD
    return {
        "num_crops": len(crops),
        "accuracy": float(correct.mean()),
        "mean_class_score": float(score.mean()),
        "fraction_score_ge_0.7": float(passes.mean()),
        "accuracy_score_ge_0.7": float(correct[passes].mean()) if passes.any() else None,
    }


@dataclass(frozen=True, eq=False)
class VideoCrops:
    """Ground-truth object crops of a world's videos, their class indices and how they look.

    ``crops`` are box crops; ``masked`` the same crops with the background outside the
    object's mask filled with its mean colour. ``labels`` index ``names`` (the dataset's
    categories, in file order). ``sides`` is each box's longer side in pixels; ``visible`` the
    object's mask area over its largest area in the video (low: occluded or leaving the frame).
    """

    crops: list[np.ndarray]
    masked: list[np.ndarray]
    labels: np.ndarray
    names: list[str]
    sides: np.ndarray
    visible: np.ndarray


def video_object_crops(
    world_dir: Path,
    context: float,
    min_area: int,
    *,
    split: str = "valid",
    video_stride: int = 1,
) -> VideoCrops:
    """Crop every visible object (mask area >= ``min_area``) of ``world/ytvis/<split>``.

    Only every ``video_stride``-th video (in id order) is used. Boxes are the tight boxes of
    the ground-truth masks, cut by :func:`uvis.foundation.clip.crop_regions` with margin
    ``context``; each frame is read once. Raises DataError for a split without annotations.
    """
    from uvis import masks
    from uvis.data.ytvis import load_ytvis
    from uvis.foundation.clip import crop_regions

    if video_stride < 1:
        raise ValueError(f"video_stride must be >= 1, got {video_stride}")
    ytvis = Path(world_dir) / "ytvis"
    dataset = load_ytvis(ytvis / f"{split}.json", ytvis / split / "JPEGImages")
    if dataset.instances is None:
        raise DataError(ytvis / f"{split}.json", "has no annotations to measure accuracy against")
    names = [c.name for c in dataset.categories]
    index_of = {c.id: i for i, c in enumerate(dataset.categories)}
    frames = {v.id: v.frame_paths for v in dataset.videos}
    chosen = set(sorted(frames)[::video_stride])
    per_frame: dict[tuple[int, int], list[tuple[dict[str, Any], int, float]]] = {}
    for inst in dataset.instances:
        if inst.video_id not in chosen:
            continue
        areas = [0 if rle is None else masks.area(rle) for rle in inst.segmentations]
        largest = max(areas, default=0)
        for t, rle in enumerate(inst.segmentations):
            if rle is not None and areas[t] >= min_area:
                per_frame.setdefault((inst.video_id, t), []).append(
                    (rle, index_of[inst.category_id], areas[t] / largest)
                )
    crops, masked, labels, sides, visible = [], [], [], [], []
    for (video_id, t), objects in sorted(per_frame.items()):
        image = _read_rgb(frames[video_id][t])
        rles = [rle for rle, _, _ in objects]
        boxes = [masks.bbox_xywh(rle) for rle in rles]
        crops += crop_regions(image, boxes, context=context)
        masked += crop_regions(image, boxes, rles, context=context, mask_background="mean")
        labels += [label for _, label, _ in objects]
        sides += [max(box[2], box[3]) for box in boxes]
        visible += [fraction for _, _, fraction in objects]
    return VideoCrops(
        crops,
        masked,
        np.asarray(labels, np.int64),
        names,
        np.asarray(sides, np.float64),
        np.asarray(visible, np.float64),
    )
