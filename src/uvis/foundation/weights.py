"""Every pretrained weight file the pipeline can use, described in one place.

Nothing is ever downloaded at run time: a stage that needs a weight resolves it with
:func:`resolve_weights` at start-up and, when the file is missing, stops with one message that
names the weight, the file expected, and where to get it. A weight is given in config either
as a path to a local file or as one of the names below, looked up in the weights folder
(``$UVIS_WEIGHTS`` or ``~/.cache/uvis/weights``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from uvis.errors import UvisError

Family = Literal["ssl_vit", "clip", "cutler", "resnet", "r2plus1d"]
Format = Literal["dino", "open_clip", "detectron2", "torchvision"]


class MissingWeightsError(UvisError):
    """A weight file that a stage needs is not available locally."""


@dataclass(frozen=True)
class WeightSpec:
    """A published weight file: what it is, the architecture it fits, and where it comes from.

    ``arch`` is the architecture name of the library that builds the model (a timm name for
    self-supervised ViTs, an open_clip model name for CLIP, a torchvision builder otherwise).
    ``url`` is documentation for the user; the pipeline never fetches it.
    """

    name: str
    family: Family
    arch: str
    format: Format
    filename: str
    url: str
    note: str = ""


KNOWN_WEIGHTS: dict[str, WeightSpec] = {
    s.name: s
    for s in (
        WeightSpec(
            "dino_vits8",
            "ssl_vit",
            "vit_small_patch8_224",
            "dino",
            "dino_deitsmall8_pretrain.pth",
            "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
            "DINO ViT-S/8 backbone (state dict of the teacher backbone)",
        ),
        WeightSpec(
            "dino_vitb8",
            "ssl_vit",
            "vit_base_patch8_224",
            "dino",
            "dino_vitbase8_pretrain.pth",
            "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
            "DINO ViT-B/8 backbone, as used by MaskCut/CutLER",
        ),
        WeightSpec(
            "clip_vit_b32_laion2b",
            "clip",
            "ViT-B-32",
            "open_clip",
            "open_clip_pytorch_model.bin",
            "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            "open_clip ViT-B-32, pretrained tag laion2b_s34b_b79k",
        ),
        WeightSpec(
            "clip_vit_bigg14_laion2b",
            "clip",
            "ViT-bigG-14",
            "open_clip",
            "open_clip_pytorch_model.bin",
            "https://huggingface.co/laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
            "open_clip ViT-bigG-14, pretrained tag laion2b_s39b_b160k (the UVIS paper's CLIP)",
        ),
        WeightSpec(
            "cutler_cascade",
            "cutler",
            "cascade_mask_rcnn_R_50_FPN",
            "detectron2",
            "cutler_cascade_final.pth",
            "https://dl.fbaipublicfiles.com/cutler/checkpoints/cutler_cascade_final.pth",
            "CutLER Cascade Mask R-CNN (needs detectron2)",
        ),
        WeightSpec(
            "resnet50_imagenet",
            "resnet",
            "resnet50",
            "torchvision",
            "resnet50-0676ba61.pth",
            "https://download.pytorch.org/models/resnet50-0676ba61.pth",
            "ResNet-50 ImageNet-1k classification (torchvision IMAGENET1K_V2)",
        ),
        WeightSpec(
            "r2plus1d_18_kinetics",
            "r2plus1d",
            "r2plus1d_18",
            "torchvision",
            "r2plus1d_18-91a641e6.pth",
            "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
            "R(2+1)D-18 Kinetics-400 (torchvision)",
        ),
    )
}


def weights_dir() -> Path:
    """The folder where named weights are looked up."""
    return Path(os.environ.get("UVIS_WEIGHTS", Path.home() / ".cache" / "uvis" / "weights"))


def resolve_weights(ref: str | os.PathLike[str], family: Family) -> Path:
    """Turn a config value (a local path, or a name of :data:`KNOWN_WEIGHTS`) into a file path.

    Raises :class:`MissingWeightsError` naming the weight and how to provide it when the file
    does not exist, and when a known name belongs to another model family.
    """
    text = os.fspath(ref)
    spec = KNOWN_WEIGHTS.get(text)
    if spec is None:
        path = Path(text).expanduser()
        if path.is_file():
            return path
        known = ", ".join(n for n, s in KNOWN_WEIGHTS.items() if s.family == family)
        raise MissingWeightsError(
            f"weight file {text!r} ({family}) not found: give the path of a local file, or one "
            f"of the known names ({known}) with the file placed in {weights_dir()}"
        )
    if spec.family != family:
        raise MissingWeightsError(
            f"weight {spec.name!r} is a {spec.family} weight, but a {family} weight is needed here"
        )
    path = weights_dir() / spec.name / spec.filename
    if not path.is_file():
        raise MissingWeightsError(
            f"weight {spec.name!r} ({spec.note}) is not available offline: download "
            f"{spec.url} and save it as {path} (or set the config value to the file's path)"
        )
    return path
