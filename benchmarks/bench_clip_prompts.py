"""Zero-shot accuracy of the CLIP stand-in on video object crops under different prompt sets
(CLIP's prompt ensembling) and with horizontal-flip test-time averaging.

Usage::

    python benchmarks/bench_clip_prompts.py WORLD CLIP.pt [--split valid] [--video-stride 1]

The crops are cut as the ``clip_scores`` rule cuts them (box margin 0.1, background outside the
mask filled with its mean, ``longest`` resize). Prompt sets:

* ``single``: the pipeline's default, CLIP's "a photo of a {}.";
* ``colourless``: the captioned corpus's caption forms with the colour word left out;
* ``colours``: "a photo of a <colour> {}" for each of the world's colour names;
* ``captions x colours``: every caption form whose article belongs to the colour, for every
  colour name (48 prompts), i.e. the caption distribution the stand-in was trained on, with the
  colour marginalised out.

Choose settings on the train split or on another world's valid split, never on the default
world's valid split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from uvis.foundation.clip import classify, create_clip, image_embeddings, text_embeddings
from uvis.standins.clip import ClipTrainConfig, video_object_crops
from uvis.synth import COLOUR_NAMES


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


#: Caption forms of ``uvis.synth.corpora.CAPTION_TEMPLATES`` whose article belongs to the colour.
COLOUR_FORMS = (
    "a photo of {c} {{}}",
    "{c} {{}}",
    "{c} {{}} on a textured background",
    "a drawing of {c} {{}}",
    "there is {c} {{}} in the image",
    "a close-up photo of {c} {{}}",
)

PROMPT_SETS: dict[str, tuple[str, ...]] = {
    "single": ("a photo of a {}.",),
    "colourless": (
        "a photo of a {}",
        "a {}",
        "a picture of a {}",
        "a {} on a textured background",
        "a drawing of a {}",
        "there is a {} in the image",
        "a close-up photo of a {}",
    ),
    "colours": tuple(f"a photo of {_a(c)} {{}}" for c in COLOUR_NAMES),
    "captions x colours": tuple(f.format(c=_a(c)) for f in COLOUR_FORMS for c in COLOUR_NAMES),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("clip", type=Path)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--video-stride", type=int, default=1)
    parser.add_argument("--model", default="uvis-clip-tiny")
    args = parser.parse_args()

    torch.set_num_threads(1)
    bundle = create_clip(args.model, weights=args.clip, resize_mode="longest")
    cfg = ClipTrainConfig()
    found = video_object_crops(
        args.world, cfg.eval_context, cfg.eval_min_area, split=args.split,
        video_stride=args.video_stride,
    )  # fmt: skip
    images = image_embeddings(bundle, found.masked)
    flipped = image_embeddings(bundle, [np.ascontiguousarray(c[:, ::-1]) for c in found.masked])
    both = torch.nn.functional.normalize(images + flipped, dim=-1)
    small = found.sides < 18
    print(f"{args.world} {args.split}: {len(found.masked)} masked crops "
          f"({small.mean():.0%} under 18 px)")  # fmt: skip
    print("| prompts | n | accuracy | + flip average | under 18 px (+ flip) |")
    print("|---|---:|---:|---:|---:|")
    for name, templates in PROMPT_SETS.items():
        text = text_embeddings(bundle, found.names, templates=templates)
        acc = []
        for emb in (images, both):
            pred = classify(emb, text, bundle.logit_scale).class_index.numpy()
            acc.append(pred == found.labels)
        print(f"| {name} | {len(templates)} | {acc[0].mean():.1%} | {acc[1].mean():.1%} | "
              f"{acc[0][small].mean():.1%} ({acc[1][small].mean():.1%}) |")  # fmt: skip


if __name__ == "__main__":
    main()
