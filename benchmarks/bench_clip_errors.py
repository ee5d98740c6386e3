"""Where the CLIP stand-in misnames objects: accuracy by crop size, by how much of the object is
visible, and per class with its most frequent confusion.

Usage::

    python benchmarks/bench_clip_errors.py WORLD CLIP.pt [--split train] [--video-stride 10]
        [--model uvis-clip-tiny]

``WORLD`` is a ``uvis synth`` folder (e.g. ``results/synth/world``) and ``CLIP.pt`` the stand-in
the ``pretrain_clip`` rule wrote. Every visible object (mask area >= 16 px) of every
``--video-stride``-th video of the split is cropped as the ``clip_scores`` rule crops it (box
margin 0.1, background outside the mask filled with the crop's mean, ``longest`` resize) and
named zero-shot with the pipeline's prompt. *Visible fraction* is the mask area over the
object's largest area in its video (low: occluded, or crossing the border). Analyse the
**train** split (or another world's) when choosing settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from uvis.foundation.clip import (
    ClipBundle,
    classify,
    create_clip,
    image_embeddings,
    text_embeddings,
)
from uvis.standins.clip import ClipTrainConfig, VideoCrops, video_object_crops

SIDE_BINS = ((0, 18), (18, 26), (26, 40), (40, 10_000))
VISIBLE_BINS = ((0.0, 0.5), (0.5, 0.8), (0.8, 0.95), (0.95, 1.01))


def add_arguments(parser: argparse.ArgumentParser, *, split: str, video_stride: int) -> None:
    """``WORLD CLIP.pt [CLIP2.pt ...] [--split] [--video-stride] [--model]``, with these
    defaults; several checkpoints are scored as one ensemble (``create_clip``'s)."""
    parser.add_argument("world", type=Path)
    parser.add_argument("clip", type=Path, nargs="+")
    parser.add_argument("--split", default=split)
    parser.add_argument("--video-stride", type=int, default=video_stride)
    parser.add_argument("--model", default="uvis-clip-tiny")


def model_and_crops(args: argparse.Namespace) -> tuple[ClipBundle, VideoCrops]:
    """The stand-in of ``args.clip`` and the object crops of ``args.world``, cut as the
    ``clip_scores`` rule cuts them (margin 0.1, 16 px at least: the quality report's)."""
    bundle = create_clip(args.model, weights=args.clip, resize_mode="longest")
    cfg = ClipTrainConfig()
    found = video_object_crops(
        args.world,
        cfg.eval_context,
        cfg.eval_min_area,
        split=args.split,
        video_stride=args.video_stride,
    )
    return bundle, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, split="train", video_stride=10)
    args = parser.parse_args()

    bundle, found = model_and_crops(args)
    crops, names = found.masked, found.names
    labels_a, sides_a, visible_a = found.labels, found.sides, found.visible
    text = text_embeddings(bundle, names)
    predicted = classify(image_embeddings(bundle, crops), text, bundle.logit_scale).class_index
    predicted_a = predicted.numpy()
    right = predicted_a == labels_a

    print(f"{args.split}, every {args.video_stride}th video: {len(crops)} masked crops, "
          f"accuracy {right.mean():.1%}")  # fmt: skip
    print("| longer box side (px) | crops | accuracy |\n|---|---:|---:|")
    for lo, hi in SIDE_BINS:
        sel = (sides_a >= lo) & (sides_a < hi)
        if sel.any():
            print(f"| {lo}–{hi if hi < 10_000 else ''} | {sel.sum()} | {right[sel].mean():.1%} |")
    print("\n| visible fraction | crops | accuracy |\n|---|---:|---:|")
    for lo, hi in VISIBLE_BINS:
        sel = (visible_a >= lo) & (visible_a < hi)
        if sel.any():
            print(f"| {lo}–{min(hi, 1.0)} | {sel.sum()} | {right[sel].mean():.1%} |")
    print("\n| class | crops | accuracy | most frequent wrong name |\n|---|---:|---:|---|")
    for i, name in enumerate(names):
        sel = labels_a == i
        if not sel.any():
            continue
        wrong = np.bincount(predicted_a[sel & ~right], minlength=len(names))
        confusion = names[int(wrong.argmax())] if wrong.any() else "–"
        print(f"| {name} | {sel.sum()} | {right[sel].mean():.1%} | {confusion} |")


if __name__ == "__main__":
    main()
