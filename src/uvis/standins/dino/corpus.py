"""The unlabeled corpus the stand-in trains on, and the k-NN probe of its features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from uvis.errors import DataError
from uvis.foundation.ssl import (
    normalise_images,
)
from uvis.standins.dino.config import DinoConfig


class Corpus(NamedTuple):
    """The unlabeled corpus in memory: ``images`` ``uint8 (N, 3, H, W)``; ``labels`` ``(N,)``
    category ids (for probing only), or ``None`` when the index has none."""

    index_path: Path
    images: torch.Tensor
    labels: torch.Tensor | None


def unlabeled_index_path(corpus_dir: Path) -> Path:
    """``index.json`` of the unlabeled corpus: in ``corpus_dir`` itself, or in its
    ``unlabeled/`` folder when ``corpus_dir`` is a world's ``corpora/`` folder."""
    direct = corpus_dir / "index.json"
    nested = corpus_dir / "unlabeled" / "index.json"
    return nested if not direct.is_file() and nested.is_file() else direct


def load_unlabeled_corpus(corpus_dir: Path) -> Corpus:
    """Read ``index.json`` (``{"images": [{"file", "category_id"?}, ...]}``) and every image.

    Raises:
        DataError: naming the index or image file: missing, not JSON, no images, an entry
            without ``file``, category ids on some entries only, an unreadable image, or
            images of different sizes.
    """
    index_path = unlabeled_index_path(Path(corpus_dir))
    if not index_path.is_file():
        raise DataError(index_path, "missing: expected an unlabeled image corpus index")
    try:
        doc = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(index_path, f"not a readable JSON file ({exc})") from exc
    entries = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(index_path, "has no 'images' list, or it is empty")
    arrays, labels = [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            raise DataError(index_path, f"images[{i}] has no 'file' string")
        labels.append(entry.get("category_id"))
        arrays.append(_read_rgb(index_path.parent / entry["file"], arrays))
    has_label = [isinstance(label, int) for label in labels]
    if any(has_label) and not all(has_label):
        missing = has_label.index(False)
        raise DataError(index_path, f"images[{missing}] has no integer 'category_id' (others do)")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    label_tensor = torch.tensor(labels, dtype=torch.int64) if all(has_label) else None
    return Corpus(index_path, images, label_tensor)


def _read_rgb(path: Path, previous: list[np.ndarray]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except OSError as exc:
        raise DataError(path, f"cannot read image ({exc})") from exc
    if previous and array.shape != previous[0].shape:
        h, w = previous[0].shape[:2]
        raise DataError(path, f"is {array.shape[1]}x{array.shape[0]}, the corpus is {w}x{h}")
    return array


def probe_split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(train, test)`` of a seeded random split with ``round(n * test_fraction)``
    (at least 1) images held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    num_test = min(n - 1, max(1, round(n * test_fraction)))
    return order[num_test:], order[:num_test]


def probe_inputs(images: torch.Tensor, size: int) -> torch.Tensor:
    """``uint8`` images resized to ``size x size`` (the global-crop size the network is trained
    at; bilinear, antialiased) and normalised: what the k-NN probe embeds."""
    resized = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True)
    return normalise_images(resized.clamp(0, 255) / 255.0)


def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    *,
    k: int,
    temperature: float,
) -> torch.Tensor:
    """Weighted k-NN labels (DINO's ``eval_knn``): cosine similarity, the ``k`` nearest training
    samples vote for their label with weight ``exp(similarity / temperature)``."""
    train = F.normalize(train_feats.double(), dim=1)
    test = F.normalize(test_feats.double(), dim=1)
    sims, idx = (test @ train.T).topk(min(k, len(train)), dim=1)
    num_classes = int(train_labels.max()) + 1
    votes = torch.zeros(len(test), num_classes, dtype=torch.float64)
    votes.scatter_add_(1, train_labels[idx], torch.exp(sims / temperature))
    return votes.argmax(dim=1)


def knn_accuracy(feats: torch.Tensor, labels: torch.Tensor, cfg: DinoConfig) -> float:
    """Top-1 accuracy of :func:`knn_predict` on the held-out part of :func:`probe_split`."""
    train, test = probe_split(len(labels), cfg.probe_test_fraction, cfg.seed)
    pred = knn_predict(
        feats[train], labels[train], feats[test], k=cfg.probe_k, temperature=cfg.probe_temperature
    )
    return float((pred == labels[test]).double().mean())
