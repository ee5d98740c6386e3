"""Every pretrained weight file the pipeline can use, described in one place.

Nothing is ever downloaded at run time: a stage that needs a weight resolves it with
:func:`resolve_weights` at start-up and, when the file is missing, stops with one message that
names the weight, the file expected, and where to get it. A weight is given in config either
as a path to a local file or as one of the names below, looked up (:func:`locate_weights`) in
the weights folder (``$UVIS_WEIGHTS`` or ``~/.cache/uvis/weights``, as ``<name>/<file>``), then
in the caches other tools fill: torch.hub's checkpoint folder (where ``torch.hub`` and
torchvision save downloaded files) and the Hugging Face hub cache (where open_clip's
``pretrained=`` tags download to). Caches are only read, never filled.
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
    ``url`` is documentation for the user; the pipeline never fetches it. ``licence`` is the
    weights' own licence (several are non-commercial). ``sha256_prefix`` is the start of the
    file's SHA-256 where its publisher states it (torchvision puts it in the file name), else
    empty; ``hf_repo`` the Hugging Face repository whose cache may hold the file.
    """

    name: str
    family: Family
    arch: str
    format: Format
    filename: str
    url: str
    note: str = ""
    licence: str = ""
    sha256_prefix: str = ""
    hf_repo: str = ""


DINO_LICENCE = "Apache-2.0 (facebookresearch/dino)"
LAION_LICENCE = "MIT (LAION's model card)"
TORCHVISION_LICENCE = "BSD-3-Clause (torchvision)"

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
            licence=DINO_LICENCE,
        ),
        WeightSpec(
            "dino_vitb8",
            "ssl_vit",
            "vit_base_patch8_224",
            "dino",
            "dino_vitbase8_pretrain.pth",
            "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
            "DINO ViT-B/8 backbone, as used by MaskCut/CutLER",
            licence=DINO_LICENCE,
        ),
        WeightSpec(
            "clip_vit_b32_laion2b",
            "clip",
            "ViT-B-32",
            "open_clip",
            "open_clip_pytorch_model.bin",
            "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            "open_clip ViT-B-32, pretrained tag laion2b_s34b_b79k",
            licence=LAION_LICENCE,
            hf_repo="laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        ),
        WeightSpec(
            "clip_vit_bigg14_laion2b",
            "clip",
            "ViT-bigG-14",
            "open_clip",
            "open_clip_pytorch_model.bin",
            "https://huggingface.co/laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
            "open_clip ViT-bigG-14, pretrained tag laion2b_s39b_b160k (the UVIS paper's CLIP)",
            licence=LAION_LICENCE,
            hf_repo="laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
        ),
        WeightSpec(
            "cutler_cascade",
            "cutler",
            "cascade_mask_rcnn_R_50_FPN",
            "detectron2",
            "cutler_cascade_final.pth",
            "https://dl.fbaipublicfiles.com/cutler/checkpoints/cutler_cascade_final.pth",
            "CutLER Cascade Mask R-CNN (needs detectron2)",
            licence="CC BY-NC-SA 4.0 (facebookresearch/CutLER): non-commercial use only",
        ),
        WeightSpec(
            "resnet50_imagenet",
            "resnet",
            "resnet50",
            "torchvision",
            "resnet50-0676ba61.pth",
            "https://download.pytorch.org/models/resnet50-0676ba61.pth",
            "ResNet-50 ImageNet-1k classification (torchvision IMAGENET1K_V2)",
            licence=TORCHVISION_LICENCE + "; trained on ImageNet-1k, see its terms of access",
            sha256_prefix="0676ba61",
        ),
        WeightSpec(
            "r2plus1d_18_kinetics",
            "r2plus1d",
            "r2plus1d_18",
            "torchvision",
            "r2plus1d_18-91a641e6.pth",
            "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
            "R(2+1)D-18 Kinetics-400 (torchvision)",
            licence=TORCHVISION_LICENCE + "; trained on Kinetics-400",
            sha256_prefix="91a641e6",
        ),
    )
}


def weights_dir() -> Path:
    """The folder where named weights are looked up."""
    return Path(os.environ.get("UVIS_WEIGHTS", Path.home() / ".cache" / "uvis" / "weights"))


def weight_locations(spec: WeightSpec) -> list[Path]:
    """Where :func:`locate_weights` looks for a known weight, in order: the weights folder,
    torch.hub's checkpoint folder (files downloaded from a URL whose file name is the spec's),
    and the Hugging Face hub cache (files of ``spec.hf_repo``)."""
    places = [weights_dir() / spec.name / spec.filename]
    if spec.url.rsplit("/", 1)[-1] == spec.filename:
        places.append(_torch_hub_dir() / "checkpoints" / spec.filename)
    if spec.hf_repo:
        cached = hf_cached(spec.hf_repo, spec.filename)
        if cached is not None:
            places.append(cached)
    return places


def locate_weights(spec: WeightSpec) -> Path | None:
    """The first existing file of :func:`weight_locations`, or None (never downloads)."""
    return next((path for path in weight_locations(spec) if path.is_file()), None)


def _torch_hub_dir() -> Path:
    """torch.hub's folder, worked out as ``torch.hub.get_dir`` does but without importing
    torch: ``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``, else ``~/.cache/torch/hub``."""
    if "TORCH_HOME" in os.environ:
        return Path(os.environ["TORCH_HOME"]).expanduser() / "hub"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return cache / "torch" / "hub"


def hf_cached(repo: str, filename: str) -> Path | None:
    """The file in the Hugging Face hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, ...), read
    with huggingface_hub's own offline lookup; None when absent or the library is missing."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with timm and open_clip
        return None
    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) else None


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
    path = locate_weights(spec)
    if path is None:
        expected = weights_dir() / spec.name / spec.filename
        raise MissingWeightsError(
            f"weight {spec.name!r} ({spec.note}) is not available offline: download "
            f"{spec.url} and save it as {expected} (or set the config value to the file's path)"
        )
    return path


#: File names open_clip's Hugging Face repositories hold the weights under.
HF_WEIGHT_FILES = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")


def clip_weights_path(model_name: str, weights: str | os.PathLike[str] | None) -> Path | None:
    """The local file of a CLIP ``weights`` setting, never downloading: a path; a name of
    :data:`~uvis.foundation.weights.KNOWN_WEIGHTS`; ``hf-hub:<org>/<repo>`` (open_clip's
    syntax) found in the Hugging Face cache; or an open_clip ``pretrained`` tag of
    ``model_name`` (e.g. ``laion2b_s34b_b79k`` for ViT-B-32) found where open_clip downloads
    it (the Hugging Face cache, or ``~/.cache/clip`` for URL weights). ``None``: no weights.

    Raises:
        MissingWeightsError: naming what was looked for and where, when it is not there.
    """
    if weights is None:
        return None
    text = os.fspath(weights)
    if text in KNOWN_WEIGHTS or Path(text).expanduser().is_file():
        return resolve_weights(text, "clip")
    if text.startswith("hf-hub:"):
        return _hf_weights(text[len("hf-hub:") :].strip("/"), text)
    try:  # open_clip (and torch) may be absent where Snakemake itself runs
        import open_clip
    except ImportError:
        open_clip = None
    known_model = open_clip is not None and model_name in open_clip.list_models()
    tags = open_clip.list_pretrained_tags_by_model(model_name) if known_model else []
    if text in tags:
        cfg = open_clip.get_pretrained_cfg(model_name, text)
        if cfg.get("hf_hub"):
            return _hf_weights(cfg["hf_hub"].strip("/"), f"{model_name} pretrained={text}")
        if cfg.get("url"):
            cached = Path.home() / ".cache" / "clip" / os.path.basename(cfg["url"])
            if cached.is_file():
                return cached
            raise MissingWeightsError(
                f"CLIP weights {model_name} pretrained={text} are not available offline: "
                f"download {cfg['url']} to {cached} (or give the file's path)"
            )
    return resolve_weights(text, "clip")  # a missing file: its own message


def _hf_weights(repo: str, what: str) -> Path:
    for filename in HF_WEIGHT_FILES:
        found = hf_cached(repo, filename)
        if found is not None:
            return found
    raise MissingWeightsError(
        f"CLIP weights {what} are not in the Hugging Face cache: download {repo} there "
        f"(huggingface-cli download {repo} {HF_WEIGHT_FILES[0]}) or give the file's path"
    )
