"""Ground truth with controlled noise: a trivial baseline whose metrics are known in the limits.

With every noise knob at zero the predictions *are* the ground truth (AP 100, J&F 100); each
knob degrades them in a way a VIS model also fails: boundary errors (``jitter_px``), missed
frames (``drop_rate``), wrong classes (``class_flip_rate``) and spurious tracks
(``false_positives``). Scores are drawn so that worse predictions tend to score lower.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from uvis import masks
from uvis.errors import DataError
from uvis.io import atomic_path


@dataclass(frozen=True)
class NoiseParams:
    """How far the baseline departs from the ground truth."""

    seed: int = 0
    jitter_px: int = 2
    drop_rate: float = 0.1
    class_flip_rate: float = 0.1
    false_positives: int = 1

    def __post_init__(self) -> None:
        if self.jitter_px < 0 or self.false_positives < 0:
            raise ValueError("jitter_px and false_positives must be >= 0")
        for name in ("drop_rate", "class_flip_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


def jitter_mask(mask: np.ndarray, rng: np.random.Generator, max_px: int) -> np.ndarray:
    """Erode or dilate a binary mask by a random number of pixels in ``[-max_px, max_px]``."""
    if max_px == 0:
        return mask.astype(bool)
    k = int(rng.integers(-max_px, max_px + 1))
    if k > 0:
        return ndimage.binary_dilation(mask, iterations=k)
    if k < 0:
        return ndimage.binary_erosion(mask, iterations=-k)
    return mask.astype(bool)


def _random_blob(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An axis-aligned ellipse at a random place: the shape of a spurious detection."""
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(0.05, 0.2) * h, rng.uniform(0.05, 0.2) * w
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def noisy_ytvis_results(gt: dict[str, Any], params: NoiseParams) -> list[dict[str, Any]]:
    """YouTube-VIS results (``video_id, category_id, segmentations, score``) from ground truth.

    ``gt`` is a loaded YouTube-VIS JSON with annotations. Crowd annotations are skipped.
    """
    if "annotations" not in gt:
        raise DataError(None, "ground truth has no 'annotations': cannot build a noisy baseline")
    rng = np.random.default_rng(params.seed)
    cat_ids = sorted(int(c["id"]) for c in gt["categories"])
    videos = {int(v["id"]): v for v in gt["videos"]}
    results: list[dict[str, Any]] = []
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        segs: list[dict[str, Any] | None] = []
        for seg in ann["segmentations"]:
            if seg is None or rng.random() < params.drop_rate:
                segs.append(None)
                continue
            m = jitter_mask(masks.decode(seg), rng, params.jitter_px)
            segs.append(masks.encode(m) if m.any() else None)
        category = int(ann["category_id"])
        flipped = len(cat_ids) > 1 and rng.random() < params.class_flip_rate
        if flipped:
            category = int(rng.choice([c for c in cat_ids if c != category]))
        kept = sum(s is not None for s in segs) / max(1, len(segs))
        score = float(np.clip(0.5 * kept + 0.5 * rng.random() - 0.3 * flipped, 0.01, 1.0))
        results.append(
            {
                "video_id": int(ann["video_id"]),
                "category_id": category,
                "segmentations": segs,
                "score": score,
            }
        )
    for vid, video in videos.items():
        h, w, n = int(video["height"]), int(video["width"]), len(video["file_names"])
        for _ in range(params.false_positives):
            blob = masks.encode(_random_blob(h, w, rng))
            start = int(rng.integers(0, n))
            segs = [blob if start <= t < start + max(1, n // 3) else None for t in range(n)]
            results.append(
                {
                    "video_id": vid,
                    "category_id": int(rng.choice(cat_ids)),
                    "segmentations": segs,
                    "score": float(rng.uniform(0.01, 0.4)),
                }
            )
    return results


def _read_ids(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im if im.mode in ("P", "L") else im.convert("L"))
    except OSError as exc:
        raise DataError(path, f"cannot read annotation PNG: {exc}") from exc


def noisy_davis_predictions(gt_dir: Path, out_dir: Path, params: NoiseParams) -> int:
    """Write DAVIS-style id PNGs (``<seq>/<frame>.png``) that are the GT with noise.

    Object ids are permuted per sequence (an unsupervised method's ids are arbitrary) and
    ``false_positives`` spurious objects are added. Returns the number of frames written.
    """
    gt_dir, out_dir = Path(gt_dir), Path(out_dir)
    seqs = sorted(p for p in gt_dir.iterdir() if p.is_dir()) if gt_dir.is_dir() else []
    if not seqs:
        raise DataError(gt_dir, "no sequence folders found")
    rng = np.random.default_rng(params.seed)
    written = 0
    for seq in seqs:
        frames = sorted(seq.glob("*.png"))
        if not frames:
            raise DataError(seq, "sequence folder has no PNG frames")
        first = _read_ids(frames[0])
        ids = sorted(int(i) for i in np.unique(first) if i not in (0, 255))
        # Every id that occurs anywhere in the sequence, so late-entering objects are permuted too.
        all_ids = set(ids)
        labels = [_read_ids(f) for f in frames]
        for lab in labels:
            all_ids.update(int(i) for i in np.unique(lab) if i not in (0, 255))
        src = sorted(all_ids)
        perm = dict(zip(src, rng.permutation(len(src)) + 1, strict=True))
        fp_ids = list(range(len(src) + 1, len(src) + 1 + params.false_positives))
        h, w = labels[0].shape
        fp_blobs = [_random_blob(h, w, rng) for _ in fp_ids]
        for frame, lab in zip(frames, labels, strict=True):
            out = np.zeros((h, w), np.uint8)
            for fid, blob in zip(fp_ids, fp_blobs, strict=True):
                out[blob] = fid
            for old in src:
                m = lab == old
                if not m.any() or rng.random() < params.drop_rate:
                    continue
                out[jitter_mask(m, rng, params.jitter_px)] = perm[old]
            with atomic_path(out_dir / seq.name / frame.name) as tmp:
                Image.fromarray(out, mode="L").save(tmp, format="PNG")
            written += 1
    return written
